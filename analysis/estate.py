"""The estate: what the preview must know about the real cluster and account, recorded as data.

A platform engineer runs `make estate` (tools/estate.py) with their own credentials. It asks the cluster and
the account only read questions (`kubectl get`, `aws ... describe-/list-/get-/head-`), every one listed
before the first runs, and writes the answers as an estate file (`estate/<stack>.yaml`) that `make preview
ESTATE=...` checks the stack against (analysis/estate_checks.py).

This module is pure Python over plans and answers, no Pulumi, no subprocess: `commands(plan, target)` says
what to ask, `refuse_writes(argv)` refuses anything but a read, `record(plan, target, answers)` turns the
answers into the estate, `load_estate(path)` reads a file back and refuses a malformed one.

The answers are read in the shapes the tools print:
- kubectl `-o json`: one object, or a `List` with `items` for several names or a selector (kubectl's
  printers, https://kubernetes.io/docs/reference/kubectl/#output-options); `-o name`: `<resource>/<name>`
  per line. Objects are the Kubernetes API types (https://kubernetes.io/docs/reference/kubernetes-api/):
  ObjectMeta (`labels`, `managedFields[].manager`), Namespace, Deployment (`spec.template.spec.containers[]`
  `image`, `args`, `env`), DaemonSet, Pod (`spec.serviceAccountName`), ConfigMap (`data`).
- Istio's own objects: ConfigMap `istio`/`istio-<revision>` with the MeshConfig YAML under `data.mesh`
  (istio/istio@1.24.6 manifests/charts/istio-control/istio-discovery/templates/configmap.yaml:79-92) and
  PeerAuthentication `spec.mtls.mode` (https://istio.io/latest/docs/reference/config/security/peer_authentication/).
- AWS CLI `--output json`: `eks describe-cluster` `cluster.identity.oidc.issuer`
  (https://docs.aws.amazon.com/cli/latest/reference/eks/describe-cluster.html), `iam
  list-open-id-connect-providers` `OpenIDConnectProviderList[].Arn`, `iam get-role` `Role.RoleName`/`Arn`,
  `s3api head-bucket` (an empty or `BucketRegion` answer; errors 404 and 403), `route53
  list-hosted-zones-by-name` `HostedZones[].Id/Name`, `route53 list-resource-record-sets`
  `ResourceRecordSets[].Name/Type`. A missing role or bucket is the CLI's error text on stderr with exit
  status 254 ("An error occurred (NoSuchEntity) ...", "(404) ... Not Found").
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from analysis.karpenter_estate import karpenter_commands, record_karpenter
from analysis.node_agents import record_node_agents
from analysis.ownership import classify
from analysis.plan_objects import KNOWN_AFTER_DEPLOY, kubernetes_objects

FORMAT = "kubeflow-platform/estate/v1"

#: The only kubectl verbs the estate command runs.
KUBECTL_READ_VERBS = ("get",)
#: AWS CLI operations are reads when their name starts so (describe-cluster, list-roles, get-role, head-bucket).
AWS_READ_PREFIXES = ("describe-", "list-", "get-", "head-")
#: kubectl flags that would change something or leave the cluster's answer (never passed).
_KUBECTL_REFUSED_FLAGS = ("--raw", "--kubeconfig", "--server", "--token", "--as", "--subresource", "-f", "--filename")

#: Where the zone id of an earlier answer goes into a later command.
ZONE_ID = "{hosted-zone-id-from-the-answer-above}"

#: Istio's names: the control plane's Deployment label, the CNI node agent and ambient's node proxy
#: DaemonSets (istio/istio@1.24.6 manifests/charts/istio-control/istio-discovery/templates/deployment.yaml:9,
#: manifests/charts/istio-cni/templates/daemonset.yaml:16, manifests/charts/ztunnel/templates/daemonset.yaml:4).
ISTIOD_SELECTOR = "app=istiod"
CNI_DAEMONSET = "istio-cni-node"
ZTUNNEL_DAEMONSET = "ztunnel"


class EstateError(ValueError):
    """A command that is not a read, or an estate file that cannot be used; the message says which and why."""


@dataclass(frozen=True)
class Target:
    """What the commands are about, from the stack's settings."""

    stack: str
    cluster_name: str
    region: str
    zone_name: str
    #: The external Argo's namespace and the ConfigMap its controller reads (None: Argo is not external).
    argo_namespace: Optional[str]
    argo_configmap: str
    gateway_selector: Mapping[str, str]


@dataclass(frozen=True)
class Command:
    argv: tuple[str, ...]
    #: The answer's name in `record`'s answers.
    key: str
    #: stderr text that means "not there" rather than "failed" (exit status non-zero).
    absent_when: tuple[str, ...] = ()

    def shown(self) -> str:
        return " ".join(_quote(part) for part in self.argv)


@dataclass(frozen=True)
class Answer:
    returncode: int
    stdout: str
    stderr: str = ""


def _quote(part: str) -> str:
    return part if re.fullmatch(r"[\w@%+=:,./{}-]+", part) else "'" + part.replace("'", "'\\''") + "'"


def refuse_writes(argv: Iterable[str]) -> None:
    """Raises EstateError unless `argv` is a kubectl get or an AWS CLI describe/list/get/head call."""
    argv = list(argv)
    if not argv:
        raise EstateError("an empty command")
    tool = Path(argv[0]).name
    if tool == "kubectl":
        verb = argv[1] if len(argv) > 1 else ""
        if verb not in KUBECTL_READ_VERBS:
            raise EstateError(f"refused: {' '.join(argv)!r} is not a read (kubectl {verb!r}; only `kubectl get` is run)")
        refused = [a for a in argv[2:] if a.split("=", 1)[0] in _KUBECTL_REFUSED_FLAGS]
        if refused:
            raise EstateError(f"refused: {' '.join(argv)!r} passes {', '.join(refused)}")
        return
    if tool == "aws":
        operation = argv[2] if len(argv) > 2 else ""
        if not operation.startswith(AWS_READ_PREFIXES):
            raise EstateError(f"refused: {' '.join(argv)!r} is not a read (aws {argv[1] if len(argv) > 1 else ''} "
                              f"{operation!r}; only describe-, list-, get- and head- operations are run)")
        return
    raise EstateError(f"refused: {argv[0]!r} is neither kubectl nor aws")


# --- What to ask -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedObject:
    group: str
    kind: str
    namespace: str
    name: str
    #: How the plan treats it: created (the stack owns it), patched (someone else's; only its fields), expected.
    ownership: str
    source: str
    api_version: str = ""
    #: Retained on delete. For a patch: one of the stack's own objects applied server-side (a profile's namespace,
    #: the policy that closes it), which the apply creates when it is absent, so it need not exist beforehand.
    retained: bool = False

    @property
    def ref(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind}{'.' + self.group if self.group else ''} {where}"


def _group(api_version: str) -> str:
    return api_version.rpartition("/")[0] if "/" in api_version else ""


def planned_objects(plan: Mapping[str, Any]) -> list[PlannedObject]:
    """Every Kubernetes object the plan touches, with its class in the one ownership classification
    (analysis/ownership.py): created, patched or expected."""
    found = []
    for row in classify(plan).rows:
        if row.name == KNOWN_AFTER_DEPLOY or not row.name:
            continue
        found.append(PlannedObject(group=_group(row.api_version), kind=row.kind, namespace=row.namespace,
                                   name=row.name, ownership=row.ownership, source=row.source or row.reason,
                                   api_version=row.api_version, retained=row.retained))
    return found


def _resource(group: str, kind: str) -> str:
    # kubectl resolves a kind's lower-case singular, with its API group for anything outside the core group.
    return kind.lower() + (f".{group}" if group else "")


def _object_queries(plan: Mapping[str, Any]) -> list[Command]:
    names: dict[tuple[str, str, str], set[str]] = {}
    for obj in planned_objects(plan):
        if obj.kind == "Namespace" and not obj.group:
            continue  # the namespaces answer holds them all
        names.setdefault((obj.group, obj.kind, obj.namespace), set()).add(obj.name)
    queries = []
    for (group, kind, namespace), wanted in sorted(names.items()):
        resource = _resource(group, kind)
        where = ("-n", namespace) if namespace else ()
        # A Secret's data is never read: its name says whether it exists.
        output = ("-o", "name") if (group, kind) == ("", "Secret") else ("-o", "json", "--show-managed-fields")
        queries.append(Command(
            ("kubectl", "get", resource, *sorted(wanted), *where, "--ignore-not-found", *output),
            key=f"objects {group}/{kind} {namespace}",
            absent_when=("the server doesn't have a resource type",)))
    return queries


def _selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def local_gateway_service(plan: Mapping[str, Any]) -> Optional[dict[str, Any]]:
    """The `knative-local-gateway` Service the plan applies (KServe sends every InferenceService request to it),
    or None when the plan serves no models."""
    for item in kubernetes_objects(plan).objects:
        obj = item.obj
        metadata = obj.get("metadata") or {}
        if obj.get("kind") == "Service" and metadata.get("name") == "knative-local-gateway":
            return obj
    return None


def commands(plan: Mapping[str, Any], target: Target) -> list[Command]:
    """Every command the estate command runs, in order. Only the record sets' zone id comes from an answer."""
    kubectl: list[Command] = [
        Command(("kubectl", "get", "namespaces", "-o", "json"), "namespaces"),
        *_object_queries(plan),
        Command(("kubectl", "get", "deployments", "--all-namespaces", "-l", ISTIOD_SELECTOR, "-o", "json"), "istiod"),
        Command(("kubectl", "get", "configmaps", "--all-namespaces", "-l", "istio.io/rev", "-o", "json"), "mesh config"),
        Command(("kubectl", "get", "daemonsets", "--all-namespaces", "-o", "json"), "daemonsets"),
        Command(("kubectl", "get", "peerauthentications.security.istio.io", "--all-namespaces", "-o", "json"),
                "peer authentications", absent_when=("the server doesn't have a resource type",)),
        Command(("kubectl", "get", "nodes", "-o", "json"), "nodes"),
        Command(("kubectl", "get", "pods", "--all-namespaces", "-l", _selector(target.gateway_selector), "-o", "json"),
                "gateway pods"),
    ]
    service = local_gateway_service(plan)
    if service is not None:
        selector = (service.get("spec") or {}).get("selector") or {}
        namespace = (service.get("metadata") or {}).get("namespace") or "default"
        kubectl.append(Command(("kubectl", "get", "pods", "-n", namespace, "-l", _selector(selector), "-o", "json"),
                               "local gateway pods"))
    if target.argo_namespace:
        kubectl.append(Command(("kubectl", "get", "deployments", "-n", target.argo_namespace, "-o", "json"), "argo"))
        kubectl.append(Command(("kubectl", "get", "configmap", target.argo_configmap, "-n", target.argo_namespace,
                                "--ignore-not-found", "-o", "json", "--show-managed-fields"), "argo config"))
    aws: list[Command] = [
        Command(("aws", "eks", "describe-cluster", "--name", target.cluster_name, "--region", target.region,
                 "--output", "json"), "cluster"),
        Command(("aws", "iam", "list-open-id-connect-providers", "--output", "json"), "oidc providers"),
    ]
    for role in planned_roles(plan):
        aws.append(Command(("aws", "iam", "get-role", "--role-name", role, "--output", "json"), f"role {role}",
                           absent_when=("NoSuchEntity",)))
    for bucket in planned_buckets(plan):
        aws.append(Command(("aws", "s3api", "head-bucket", "--bucket", bucket, "--region", target.region,
                            "--output", "json"), f"bucket {bucket}", absent_when=("(404)", "Not Found", "(403)", "Forbidden")))
    if planned_records(plan):
        aws.append(Command(("aws", "route53", "list-hosted-zones-by-name", "--dns-name", target.zone_name,
                            "--max-items", "1", "--output", "json"), "zone"))
        aws.append(Command(("aws", "route53", "list-resource-record-sets", "--hosted-zone-id", ZONE_ID,
                            "--output", "json"), "records"))
    # The cluster's Karpenter, when the plan has Karpenter GPU pools (analysis.karpenter_estate).
    for argv, key, absent_when in karpenter_commands(plan, target.cluster_name, target.region):
        (kubectl if argv[0] == "kubectl" else aws).append(Command(argv, key, absent_when))
    # A recovery stack's Aurora Global Database: its members and writer (analysis.fleet_recovery).
    from analysis.fleet_recovery import GLOBAL_DATABASE, global_database_query

    database = global_database_query(plan, target.region)
    if database is not None:
        aws.append(Command(database, GLOBAL_DATABASE, absent_when=("GlobalClusterNotFoundFault",)))
    for command in kubectl + aws:
        refuse_writes(command.argv)
    return kubectl + aws


def _resources(plan: Mapping[str, Any], type_: str) -> list[Mapping[str, Any]]:
    return [r for r in plan["resources"] if r["type"] == type_]


def planned_roles(plan: Mapping[str, Any]) -> list[str]:
    """IAM role names the plan creates (the names the program chooses; auto-named roles are unknown before)."""
    return sorted({r["inputs"]["name"] for r in _resources(plan, "aws:iam/role:Role")
                   if isinstance(r["inputs"].get("name"), str) and r["inputs"]["name"] != KNOWN_AFTER_DEPLOY})


def planned_buckets(plan: Mapping[str, Any]) -> list[str]:
    return sorted({r["inputs"]["bucket"] for r in _resources(plan, "aws:s3/bucket:Bucket")
                   if isinstance(r["inputs"].get("bucket"), str) and r["inputs"]["bucket"] != KNOWN_AFTER_DEPLOY})


def planned_records(plan: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(name, type, resource name) of each Route 53 record the plan creates with a name known before deploy."""
    found = []
    for resource in _resources(plan, "aws:route53/record:Record"):
        inputs = resource["inputs"]
        name, type_ = inputs.get("name"), inputs.get("type")
        if isinstance(name, str) and isinstance(type_, str) and KNOWN_AFTER_DEPLOY not in (name, type_):
            found.append((name.rstrip(".").lower(), type_, resource["name"]))
    return sorted(found)


# --- Reading the answers -----------------------------------------------------------------------------


def _json(answer: Answer, what: str) -> Any:
    text = answer.stdout.strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError as error:
        raise EstateError(f"{what}: the answer is not JSON ({error})") from None


def _items(document: Any) -> list[Mapping[str, Any]]:
    if document is None:
        return []
    if isinstance(document, Mapping) and isinstance(document.get("items"), list):
        return [item for item in document["items"] if isinstance(item, Mapping)]
    return [document] if isinstance(document, Mapping) else []


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") if isinstance(obj.get("metadata"), Mapping) else {}


def _containers(obj: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    spec = obj.get("spec") or {}
    pod = (spec.get("template") or {}).get("spec") or spec
    return [c for c in pod.get("containers") or [] if isinstance(c, Mapping)]


def image_tag(image: str) -> str:
    """`v3.7.3` of `quay.io/argoproj/workflow-controller:v3.7.3` (a digest is dropped)."""
    image = image.split("@", 1)[0]
    last = image.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else ""


def _env(container: Mapping[str, Any], name: str) -> Optional[str]:
    for entry in container.get("env") or []:
        if isinstance(entry, Mapping) and entry.get("name") == name:
            value = entry.get("value")
            return str(value) if value is not None else None
    return None


def _flag(args: Iterable[str], name: str) -> Optional[str]:
    """`--name=value` or `--name value`; `true` for a bare boolean flag."""
    args = list(args)
    for i, arg in enumerate(args):
        if arg == f"--{name}":
            following = args[i + 1] if i + 1 < len(args) else ""
            return following if following and not following.startswith("-") else "true"
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
    return None


def _record_objects(plan: Mapping[str, Any], answers: Mapping[str, Answer]) -> tuple[list[dict], list[str]]:
    existing: list[dict] = []
    unknown_types: list[str] = []
    for command in _object_queries(plan):
        answer = answers.get(command.key)
        if answer is None:
            continue
        if answer.returncode != 0:
            unknown_types.append(command.argv[2])
            continue
        group, _, rest = command.key.removeprefix("objects ").partition("/")
        kind, _, namespace = rest.partition(" ")
        if "-o" in command.argv and command.argv[command.argv.index("-o") + 1] == "name":
            for line in answer.stdout.splitlines():
                if line.strip():
                    existing.append({"group": group, "kind": kind, "namespace": namespace,
                                     "name": line.strip().rsplit("/", 1)[-1], "managers": []})
            continue
        for obj in _items(_json(answer, command.shown())):
            metadata = _meta(obj)
            managers = sorted({str(m.get("manager")) for m in metadata.get("managedFields") or []
                               if isinstance(m, Mapping) and m.get("manager")})
            existing.append({"group": group, "kind": kind, "namespace": metadata.get("namespace") or namespace,
                             "name": metadata.get("name"), "managers": managers})
    existing.sort(key=lambda o: (o["group"], o["kind"], o["namespace"], o["name"]))
    return existing, sorted(set(unknown_types))


#: Labels of a namespace the preview compares: Pod Security admission's and the mesh's.
NAMESPACE_LABELS = re.compile(r"^(pod-security\.kubernetes\.io/.+|istio-injection|istio\.io/rev|istio\.io/dataplane-mode)$")


def _record_namespaces(answer: Optional[Answer]) -> dict[str, dict[str, str]]:
    if answer is None:
        return {}
    found = {}
    for obj in _items(_json(answer, "kubectl get namespaces")):
        metadata = _meta(obj)
        labels = metadata.get("labels") or {}
        found[str(metadata.get("name"))] = {k: str(v) for k, v in sorted(labels.items()) if NAMESPACE_LABELS.match(k)}
    return dict(sorted(found.items()))


def _record_mesh(plan: Mapping[str, Any], answers: Mapping[str, Answer]) -> dict[str, Any]:
    istiods = []
    for obj in _items(_json(answers["istiod"], "istiod")) if "istiod" in answers else []:
        metadata = _meta(obj)
        containers = _containers(obj)
        discovery = next((c for c in containers if c.get("name") == "discovery"), containers[0] if containers else {})
        labels = metadata.get("labels") or {}
        istiods.append({
            "namespace": metadata.get("namespace"), "name": metadata.get("name"),
            "revision": str(labels.get("istio.io/rev", "default")),
            "version": image_tag(str(discovery.get("image", ""))),
            # Unset: the injector's default for that version (false up to 1.26, `auto` from 1.27).
            "nativeSidecars": _env(discovery, "ENABLE_NATIVE_SIDECARS"),
        })
    istiods.sort(key=lambda d: (d["revision"], d["namespace"] or "", d["name"] or ""))
    configs = {}
    for obj in _items(_json(answers["mesh config"], "mesh config")) if "mesh config" in answers else []:
        metadata = _meta(obj)
        name = str(metadata.get("name", ""))
        mesh_text = (obj.get("data") or {}).get("mesh")
        if not (name == "istio" or name.startswith("istio-")) or not isinstance(mesh_text, str):
            continue
        try:
            mesh = yaml.safe_load(mesh_text) or {}
        except yaml.YAMLError:
            mesh = {}
        revision = str((metadata.get("labels") or {}).get("istio.io/rev", "default"))
        configs[revision] = {
            "namespace": metadata.get("namespace"), "name": name,
            "rootNamespace": mesh.get("rootNamespace") or metadata.get("namespace"),
            "outboundTrafficPolicy": ((mesh.get("outboundTrafficPolicy") or {}).get("mode") or "ALLOW_ANY"),
            "extensionProviders": sorted(str(p.get("name")) for p in mesh.get("extensionProviders") or []
                                         if isinstance(p, Mapping)),
            "trustDomain": mesh.get("trustDomain") or "cluster.local",
            # The visibility of a Service, VirtualService or DestinationRule that names no exportTo; None: Istio's `*`.
            "defaultExportTo": {key: [str(e) for e in mesh[key]] for key in
                                ("defaultServiceExportTo", "defaultVirtualServiceExportTo", "defaultDestinationRuleExportTo")
                                if isinstance(mesh.get(key), list)},
        }
    daemonsets = {str(_meta(o).get("name")) for o in _items(_json(answers["daemonsets"], "daemonsets"))} \
        if "daemonsets" in answers else set()
    peer = []
    answer = answers.get("peer authentications")
    if answer is not None and answer.returncode == 0:
        for obj in _items(_json(answer, "peer authentications")):
            spec = obj.get("spec") or {}
            metadata = _meta(obj)
            peer.append({"namespace": metadata.get("namespace"), "name": metadata.get("name"),
                         "selector": bool(spec.get("selector")),
                         "mode": ((spec.get("mtls") or {}).get("mode") or "UNSET")})
    peer.sort(key=lambda p: (p["namespace"] or "", p["name"] or ""))
    nodes = sorted({str(((o.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion", ""))
                    for o in _items(_json(answers["nodes"], "nodes"))}) if "nodes" in answers else []
    local = None
    service = local_gateway_service(plan)
    if service is not None and "local gateway pods" in answers:
        pods = _items(_json(answers["local gateway pods"], "local gateway pods"))
        local = {"service": f"{(service.get('metadata') or {}).get('namespace')}/knative-local-gateway",
                 "selector": dict((service.get("spec") or {}).get("selector") or {}),
                 "pods": sorted(str(_meta(p).get("name")) for p in pods)}
    return {
        "istiod": istiods,
        "meshConfig": dict(sorted(configs.items())),
        "cni": CNI_DAEMONSET in daemonsets,
        "ztunnel": ZTUNNEL_DAEMONSET in daemonsets,
        "peerAuthentications": peer,
        "kubeletVersions": nodes,
        "clusterLocalGateway": local,
    }


def _record_gateway(answers: Mapping[str, Answer]) -> list[dict[str, str]]:
    pods = _items(_json(answers["gateway pods"], "gateway pods")) if "gateway pods" in answers else []
    seen = {(str(_meta(p).get("namespace")), str((p.get("spec") or {}).get("serviceAccountName") or "default"))
            for p in pods}
    return [{"namespace": ns, "serviceAccount": sa} for ns, sa in sorted(seen)]


def _argo_instance_id(answers: Mapping[str, Answer]) -> Optional[str]:
    """The controller's `instanceID`: a key of its own, or inside the older single `config` key
    (argoproj/argo-workflows@v3.7.3 config/config.go:56; config/controller.go joins the keys into one document)."""
    answer = answers.get("argo config")
    data = (_json(answer, "argo config") or {}).get("data") or {} if answer is not None else {}
    if "instanceID" in data:
        return str(data["instanceID"]) or None
    try:
        config = yaml.safe_load(data.get("config") or "") or {}
    except yaml.YAMLError:
        config = {}
    value = config.get("instanceID") if isinstance(config, Mapping) else None
    return str(value) if value else None


def _argo_config_keys(answers: Mapping[str, Answer]) -> dict[str, list[str]]:
    """Each data key of the controller's ConfigMap and the field managers that set it (ObjectMeta managedFields,
    `fieldsV1` `f:data` `f:<key>`): a key the program's patch also sets, held by another manager, is a conflict."""
    answer = answers.get("argo config")
    document = (_json(answer, "argo config") or {}) if answer is not None else {}
    keys: dict[str, set[str]] = {str(k): set() for k in (document.get("data") or {})}
    for entry in _meta(document).get("managedFields") or []:
        if not isinstance(entry, Mapping):
            continue
        for field_name in ((entry.get("fieldsV1") or {}).get("f:data") or {}):
            key = str(field_name).removeprefix("f:")
            keys.setdefault(key, set()).add(str(entry.get("manager")))
    return {key: sorted(managers) for key, managers in sorted(keys.items())}


def _record_argo(answers: Mapping[str, Answer]) -> list[dict[str, Any]]:
    controllers = []
    answer = answers.get("argo")
    for obj in _items(_json(answer, "argo deployments")) if answer is not None else []:
        for container in _containers(obj):
            image = str(container.get("image", ""))
            if not image.split("@")[0].split(":")[0].endswith("workflow-controller"):
                continue
            args = [str(a) for a in [*(container.get("command") or []), *(container.get("args") or [])]]
            controllers.append({
                "namespace": _meta(obj).get("namespace"), "name": _meta(obj).get("name"),
                "version": image_tag(image),
                "namespaced": _flag(args, "namespaced") in ("true", "True", "1"),
                "configmap": _flag(args, "configmap") or "workflow-controller-configmap",
            })
    return controllers


def _aws_error(answer: Answer) -> str:
    return answer.stderr.strip().splitlines()[-1] if answer.stderr.strip() else f"exit status {answer.returncode}"


def _record_aws(plan: Mapping[str, Any], answers: Mapping[str, Answer]) -> dict[str, Any]:
    from analysis.fleet_recovery import GLOBAL_DATABASE, record_global_database

    cluster = answers.get("cluster")
    issuer = None
    if cluster is not None and cluster.returncode == 0:
        issuer = ((((_json(cluster, "eks describe-cluster") or {}).get("cluster") or {}).get("identity") or {})
                  .get("oidc") or {}).get("issuer")
    providers = []
    listed = answers.get("oidc providers")
    if listed is not None and listed.returncode == 0:
        providers = sorted(str(p.get("Arn")) for p in (_json(listed, "list-open-id-connect-providers") or {})
                           .get("OpenIDConnectProviderList", []) if isinstance(p, Mapping))
    roles = {}
    for role in planned_roles(plan):
        answer = answers.get(f"role {role}")
        if answer is not None:
            roles[role] = (((_json(answer, f"get-role {role}") or {}).get("Role") or {}).get("Arn")
                           if answer.returncode == 0 else None)
    buckets = {}
    for bucket in planned_buckets(plan):
        answer = answers.get(f"bucket {bucket}")
        if answer is None:
            continue
        if answer.returncode == 0:
            buckets[bucket] = "exists"
        elif "403" in answer.stderr or "Forbidden" in answer.stderr:
            buckets[bucket] = "exists in another account"
        else:
            buckets[bucket] = "absent"
    zone_id, records = None, []
    zone = answers.get("zone")
    if zone is not None and zone.returncode == 0:
        zone_id = zone_id_of(zone)
    listed = answers.get("records")
    if listed is not None and listed.returncode == 0:
        wanted = {(name, type_) for name, type_, _ in planned_records(plan)}
        for record in (_json(listed, "list-resource-record-sets") or {}).get("ResourceRecordSets", []):
            # Route 53 answers names fully qualified, with `*` as `\052`.
            name = str(record.get("Name", "")).replace("\\052", "*").rstrip(".").lower()
            if (name, record.get("Type")) in wanted:
                records.append({"name": name, "type": record.get("Type")})
    return {
        "cluster": {"oidcIssuer": issuer},
        "oidcProviders": providers,
        "iamRoles": dict(sorted(roles.items())),
        "buckets": dict(sorted(buckets.items())),
        "hostedZoneId": zone_id,
        "dnsRecords": sorted(records, key=lambda r: (r["name"], r["type"])),
        **({"globalDatabase": record_global_database(answers[GLOBAL_DATABASE])} if GLOBAL_DATABASE in answers else {}),
    }


def zone_id_of(answer: Answer) -> Optional[str]:
    zones = (_json(answer, "list-hosted-zones-by-name") or {}).get("HostedZones", [])
    return str(zones[0]["Id"]).rsplit("/", 1)[-1] if zones and isinstance(zones[0], Mapping) and zones[0].get("Id") else None


def record(plan: Mapping[str, Any], target: Target, answers: Mapping[str, Answer],
           commands_run: Iterable[Command]) -> dict[str, Any]:
    """The estate file's content from the answers (keyed like `commands`' keys)."""
    objects, unknown_types = _record_objects(plan, answers)
    failed = [c.shown() for c in commands_run
              if c.key in answers and answers[c.key].returncode != 0
              and not any(text in answers[c.key].stderr for text in c.absent_when)]
    return {
        "format": FORMAT,
        "stack": target.stack,
        "commands": [c.shown() for c in commands_run],
        "failed": failed,
        "kubernetes": {
            "existingObjects": objects,
            "missingResourceTypes": unknown_types,
            "namespaces": _record_namespaces(answers.get("namespaces")),
            # The NVIDIA device plugins and the Pod Identity agent, with tolerations (analysis.node_agents).
            "nodeAgents": record_node_agents(_items(_json(answers["daemonsets"], "daemonsets")))
            if "daemonsets" in answers and answers["daemonsets"].returncode == 0 else [],
        },
        "mesh": _record_mesh(plan, answers),
        "gateway": {"pods": _record_gateway(answers)},
        "argo": {"namespace": target.argo_namespace, "controllers": _record_argo(answers),
                 "instanceID": _argo_instance_id(answers), "configmapKeys": _argo_config_keys(answers)},
        "aws": _record_aws(plan, answers),
        **({"karpenter": karpenter} if (karpenter := record_karpenter(plan, answers)) is not None else {}),
    }


def dump_estate(estate: Mapping[str, Any]) -> str:
    return ("# Recorded by `make estate` (read-only: kubectl get, aws describe/list/get/head); "
            "read by `make preview ESTATE=<this file>`.\n"
            + yaml.safe_dump(dict(estate), sort_keys=False, default_flow_style=False, width=1 << 20))


#: Top-level keys and the type each must have.
_SHAPE = {"format": str, "stack": str, "kubernetes": dict, "mesh": dict, "gateway": dict, "argo": dict, "aws": dict}


def load_estate(path: Path) -> dict[str, Any]:
    """The estate file at `path`; EstateError naming the file and what is wrong."""
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as error:
        raise EstateError(f"{path}: cannot be read ({error.strerror}); record it with `make estate STACK=<stack>`") from None
    except yaml.YAMLError as error:
        raise EstateError(f"{path}: not YAML ({error})") from None
    if not isinstance(document, dict):
        raise EstateError(f"{path}: expected an estate mapping written by `make estate`")
    problems = [f"{key} must be a {t.__name__}" for key, t in _SHAPE.items() if not isinstance(document.get(key), t)]
    if document.get("format") != FORMAT:
        problems.append(f"format is {document.get('format')!r}, this program reads {FORMAT!r}")
    if problems:
        raise EstateError(f"{path}: " + "; ".join(problems) + " (record it again with `make estate`)")
    return document


__all__ = ["Answer", "Command", "EstateError", "FORMAT", "Target", "commands", "dump_estate", "load_estate",
           "planned_objects", "record", "refuse_writes"]
