"""The cluster's Karpenter as the estate records it, and what the plan's Karpenter GPU pools need of it.

The program writes NodePools and EC2NodeClasses for the cluster's own Karpenter and neither installs its
controller nor grants it IAM (docs/aws.md). So when the plan has NodePools, the estate records, read-only:

- the controller Deployment (label `app.kubernetes.io/name=karpenter`, the Helm chart's), its version (the
  image tag, the chart's appVersion: aws/karpenter-provider-aws@v1.14.1 charts/karpenter/templates/_helpers.tpl:70-76)
  and its interruption queue (env `INTERRUPTION_QUEUE`, from `settings.interruptionQueue`:
  charts/karpenter/templates/deployment.yaml:168-171);
- that queue, when one is set (`aws sqs get-queue-url`);
- a node role the stack names (`gpu.karpenterNodeRole`): the role (`aws iam get-role`), the cluster's access
  entries (`aws eks list-access-entries`) and the `aws-auth` ConfigMap, one of which lets its instances join.

`karpenter_problems` then names, one line each: no controller; a controller older than the v1 API the objects
are written in (NodePool `karpenter.sh/v1` and EC2NodeClass `karpenter.k8s.aws/v1` are served from Karpenter
1.0.0); a queue that does not exist; a Spot pool without interruption handling; a named node role that is
missing or cannot join the cluster. Where the program creates the node role itself (the default), it also
creates the role's access entry; that the controller may iam:PassRole it is written in docs/aws.md, since the
role's name is known only after deploy.

Pure Python over plans and answers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any, Optional

NODE_POOL = "kubernetes:karpenter.sh/v1:NodePool"
NODE_CLASS = "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass"
#: The label the Karpenter Helm chart puts on its Deployment (app.kubernetes.io/name: karpenter).
CONTROLLER_SELECTOR = "app.kubernetes.io/name=karpenter"
#: Karpenter 1.0.0 is the first release serving the v1 NodePool and EC2NodeClass the program writes.
V1_API_FROM = (1, 0, 0)
#: Where the queue name of the controller's answer goes into the sqs command.
INTERRUPTION_QUEUE = "{interruption-queue-from-the-controller-above}"
#: What `aws sqs get-queue-url` says of a queue that does not exist.
QUEUE_ABSENT = ("NonExistentQueue", "QueueDoesNotExist")


def planned_karpenter(plan: Mapping[str, Any]) -> tuple[list[Mapping[str, Any]], list[str]]:
    """The plan's NodePools, and the node role names its EC2NodeClasses name where known before deploy
    (`gpu.karpenterNodeRole`; the program's own role is named by AWS at creation)."""
    resources = plan.get("resources") or []
    pools = [r for r in resources if r.get("type") == NODE_POOL]
    roles = sorted({role for r in resources if r.get("type") == NODE_CLASS
                    for role in [((r.get("inputs") or {}).get("spec") or {}).get("role")]
                    if isinstance(role, str) and re.fullmatch(r"[\w+=,.@-]{1,64}", role)})
    return pools, roles


def karpenter_commands(plan: Mapping[str, Any], cluster_name: str, region: str) -> list[tuple[tuple[str, ...], str, tuple[str, ...]]]:
    """(argv, answer key, absent_when) of each read the Karpenter checks need; none without NodePools."""
    pools, roles = planned_karpenter(plan)
    if not pools:
        return []
    found: list[tuple[tuple[str, ...], str, tuple[str, ...]]] = [
        (("kubectl", "get", "deployments", "--all-namespaces", "-l", CONTROLLER_SELECTOR, "-o", "json"), "karpenter", ()),
        (("aws", "sqs", "get-queue-url", "--queue-name", INTERRUPTION_QUEUE, "--region", region, "--output", "json"),
         "interruption queue", QUEUE_ABSENT),
    ]
    if roles:
        found.append((("kubectl", "get", "configmap", "aws-auth", "-n", "kube-system", "--ignore-not-found", "-o", "json"),
                      "aws-auth", ()))
        found.append((("aws", "eks", "list-access-entries", "--cluster-name", cluster_name, "--region", region,
                       "--output", "json"), "access entries", ()))
        for role in roles:
            found.append((("aws", "iam", "get-role", "--role-name", role, "--output", "json"), f"node role {role}",
                          ("NoSuchEntity",)))
    return found


def _json(text: str) -> Any:
    try:
        return json.loads(text) if text.strip() else None
    except ValueError:
        return None


def _items(document: Any) -> list[Mapping[str, Any]]:
    if isinstance(document, Mapping) and isinstance(document.get("items"), list):
        return [i for i in document["items"] if isinstance(i, Mapping)]
    return [document] if isinstance(document, Mapping) and document.get("kind") else []


def controllers_of(stdout: str) -> list[dict[str, Any]]:
    """The Karpenter controller Deployments of a `kubectl get deployments -o json` answer: where, the version
    (image tag) and the interruption queue."""
    found = []
    for obj in _items(_json(stdout)):
        metadata = obj.get("metadata") or {}
        for container in (((obj.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []:
            image = str(container.get("image", ""))
            name = image.split("@", 1)[0]
            if not name.rsplit("/", 1)[-1].split(":", 1)[0] == "controller" or "karpenter" not in name:
                continue
            last = name.rsplit("/", 1)[-1]
            env = {e.get("name"): e.get("value") for e in container.get("env") or [] if isinstance(e, Mapping)}
            found.append({"namespace": metadata.get("namespace"), "name": metadata.get("name"),
                          "version": last.split(":", 1)[1] if ":" in last else "",
                          "interruptionQueue": env.get("INTERRUPTION_QUEUE") or None})
    return found


def interruption_queue(stdout: str) -> Optional[str]:
    """The queue the first controller of the answer is set up with, or None."""
    return next((c["interruptionQueue"] for c in controllers_of(stdout) if c["interruptionQueue"]), None)


def record_karpenter(plan: Mapping[str, Any], answers: Mapping[str, Any]) -> Optional[dict[str, Any]]:
    """The estate's `karpenter` section, from answers keyed like `karpenter_commands`; None without NodePools."""
    pools, roles = planned_karpenter(plan)
    if not pools:
        return None
    controller = answers.get("karpenter")
    controllers = controllers_of(controller.stdout) if controller is not None and controller.returncode == 0 else []
    queue = next((c["interruptionQueue"] for c in controllers if c["interruptionQueue"]), None)
    queue_answer = answers.get("interruption queue")
    exists = None if queue_answer is None else queue_answer.returncode == 0
    entries_answer, auth_answer = answers.get("access entries"), answers.get("aws-auth")
    entries = set((_json(entries_answer.stdout) or {}).get("accessEntries") or []) \
        if entries_answer is not None and entries_answer.returncode == 0 else set()
    auth = str((((_json(auth_answer.stdout) or {}).get("data") or {}).get("mapRoles")) or "") \
        if auth_answer is not None and auth_answer.returncode == 0 else ""
    node_roles = {}
    for role in roles:
        answer = answers.get(f"node role {role}")
        arn = ((_json(answer.stdout) or {}).get("Role") or {}).get("Arn") if answer is not None and answer.returncode == 0 else None
        node_roles[role] = {"arn": arn, "accessEntry": bool(arn) and arn in entries,
                            "awsAuth": bool(arn) and f"rolearn: {arn}" in auth}
    return {"controllers": controllers,
            "interruptionQueue": None if queue is None else {"name": queue, "exists": exists},
            "nodeRoles": node_roles}


def _pool_name(resource: Mapping[str, Any]) -> str:
    """The NodePool's name on the cluster (its resource name where the plan does not know it)."""
    return str(((resource.get("inputs") or {}).get("metadata") or {}).get("name") or resource.get("name"))


def _version(text: str) -> Optional[tuple[int, int, int]]:
    match = re.match(r"^v?(\d+)\.(\d+)\.(\d+)", text or "")
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


def karpenter_problems(estate: Mapping[str, Any], plan: Mapping[str, Any], cluster_name: str) -> Iterator[str]:
    """What the recorded Karpenter lacks for the plan's NodePools. Estates recorded before Karpenter was
    (no `karpenter`) are not judged."""
    pools, _ = planned_karpenter(plan)
    recorded = estate.get("karpenter")
    if not pools or recorded is None:
        return
    names = ", ".join(_pool_name(p) for p in pools)
    controllers = recorded.get("controllers") or []
    if not controllers:
        yield (f"gpu.provisioner is karpenter ({names}) but no Karpenter controller Deployment runs (label "
               f"{CONTROLLER_SELECTOR}): install Karpenter 1.0.0 or later, which serves the v1 NodePool and "
               "EC2NodeClass the plan writes, before `pulumi up`; or set gpu.provisioner: nodeGroups")
    for controller in controllers:
        version = _version(str(controller.get("version") or ""))
        where = f"{controller.get('namespace')}/{controller.get('name')}"
        if version is not None and version < V1_API_FROM:
            yield (f"the Karpenter controller {where} is {controller.get('version')}, which does not serve the v1 "
                   "NodePool and EC2NodeClass the plan writes (Karpenter 1.0.0 and later do): upgrade it first")
    queue = recorded.get("interruptionQueue")
    if queue is not None and queue.get("exists") is False:
        yield (f"the Karpenter controller is set up with interruption queue {queue.get('name')}, which does not exist "
               "in the region: create it (with its EventBridge rules) or clear settings.interruptionQueue")
    spot = [_pool_name(p) for p in pools if any(
        r.get("key") == "karpenter.sh/capacity-type" and "spot" in (r.get("values") or [])
        for r in ((((p.get("inputs") or {}).get("spec") or {}).get("template") or {}).get("spec") or {}).get("requirements") or [])]
    if spot and controllers and queue is None:
        yield (f"{', '.join(spot)}: Spot GPU capacity, but the Karpenter controller has no interruption queue, so a Spot "
               "interruption ends a GPU node without Karpenter draining it first: set the chart's "
               "settings.interruptionQueue to an SQS queue fed by the EC2 interruption events")
    for role, state in sorted((recorded.get("nodeRoles") or {}).items()):
        if not state.get("arn"):
            yield (f"gpu.karpenterNodeRole is {role}, which the account does not have: name the role your Karpenter "
                   "is set up for, or leave the setting out and the program creates one")
        elif not state.get("accessEntry") and not state.get("awsAuth"):
            yield (f"gpu.karpenterNodeRole {role} has no EKS access entry and no aws-auth mapping, so its instances "
                   f"cannot join the cluster: aws eks create-access-entry --cluster-name {cluster_name} "
                   f"--principal-arn {state['arn']} --type EC2_LINUX")
