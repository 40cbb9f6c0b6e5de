"""The node agents the GPU pools and Pod Identity depend on, as the estate records them, and the checks on them.

Pure Python over the estate's DaemonSets and the plan:

- an NVIDIA device plugin must run on GPU nodes, so it must tolerate every taint a GPU pool puts on them; without
  it the nodes advertise no `nvidia.com/gpu` and Karpenter never marks its nodes initialized
  (aws/karpenter-provider-aws@v1.14.1 website/content/en/preview/concepts/scheduling.md, "accelerators");
- with Pod Identity associations, the `eks-pod-identity-agent` DaemonSet (the EKS add-on) must run: it is what
  serves the credentials (docs.aws.amazon.com/eks/latest/userguide/pod-id-agent-setup.html).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

#: DaemonSet names of the NVIDIA device plugin: its Helm chart's and the GPU operator's.
DEVICE_PLUGIN_NAMES = ("nvidia-device-plugin", "nvidia-device-plugin-daemonset")
POD_IDENTITY_AGENT = "eks-pod-identity-agent"
ASSOCIATION = "aws:eks/podIdentityAssociation:PodIdentityAssociation"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
NODE_POOL = "kubernetes:karpenter.sh/v1:NodePool"
_EFFECTS = {"NO_SCHEDULE": "NoSchedule", "NO_EXECUTE": "NoExecute", "PREFER_NO_SCHEDULE": "PreferNoSchedule"}


def record_node_agents(daemonsets: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The DaemonSets these checks read (device plugins, the Pod Identity agent), with their pods' tolerations."""
    found = []
    for obj in daemonsets:
        metadata = obj.get("metadata") or {}
        name = str(metadata.get("name", ""))
        if not (name.startswith("nvidia-device-plugin") or name == POD_IDENTITY_AGENT):
            continue
        spec = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
        found.append({"namespace": metadata.get("namespace"), "name": name,
                      "tolerations": [dict(t) for t in spec.get("tolerations") or [] if isinstance(t, Mapping)]})
    return sorted(found, key=lambda d: (str(d["namespace"]), d["name"]))


def tolerates(tolerations: list[Mapping[str, Any]], taint: Mapping[str, str]) -> bool:
    """Kubernetes' rule: a toleration matches a taint by key (an empty key with Exists matches every key), by
    value unless the operator is Exists, and by effect unless the toleration's effect is empty."""
    for toleration in tolerations:
        operator = toleration.get("operator") or "Equal"
        key = toleration.get("key") or ""
        if key and key != taint.get("key"):
            continue
        if not key and operator != "Exists":
            continue
        if operator == "Equal" and (toleration.get("value") or "") != (taint.get("value") or ""):
            continue
        if toleration.get("effect") and toleration.get("effect") != taint.get("effect"):
            continue
        return True
    return False


def gpu_taints(plan: Mapping[str, Any]) -> list[tuple[str, dict[str, str]]]:
    """(pool resource, taint in Kubernetes spelling) of every GPU node group and Karpenter NodePool in the plan."""
    found = []
    for resource in plan.get("resources") or []:
        inputs = resource.get("inputs") or {}
        if resource.get("type") == NODE_GROUP:
            for taint in inputs.get("taints") or []:
                found.append((resource.get("name"), {"key": taint.get("key"), "value": taint.get("value") or "",
                                                     "effect": _EFFECTS.get(taint.get("effect"), taint.get("effect"))}))
        elif resource.get("type") == NODE_POOL:
            template = ((inputs.get("spec") or {}).get("template") or {}).get("spec") or {}
            for taint in template.get("taints") or []:
                found.append((resource.get("name"), {"key": taint.get("key"), "value": taint.get("value") or "",
                                                     "effect": taint.get("effect")}))
    return found


def node_agent_problems(estate: Mapping[str, Any], plan: Mapping[str, Any]) -> Iterator[str]:
    """What the recorded DaemonSets lack for the plan's GPU pools and Pod Identity associations. Estates recorded
    before the DaemonSets were kept (no `nodeAgents`) are not judged."""
    agents = (estate.get("kubernetes") or {}).get("nodeAgents")
    if agents is None:
        return
    if any(r.get("type") == ASSOCIATION for r in plan.get("resources") or []) and not any(
            a["name"] == POD_IDENTITY_AGENT for a in agents):
        yield (f"identity.mechanism is podIdentity but no {POD_IDENTITY_AGENT} DaemonSet runs: install the EKS add-on "
               f"{POD_IDENTITY_AGENT} (aws eks create-addon --addon-name {POD_IDENTITY_AGENT}) before `pulumi up`")
    plugins = [a for a in agents if a["name"].startswith("nvidia-device-plugin")]
    taints = gpu_taints(plan)
    if taints and not plugins:
        yield ("no NVIDIA device plugin DaemonSet runs: GPU nodes would advertise no nvidia.com/gpu (and Karpenter's "
               "would never be initialized); install it tolerating the GPU pools' taints")
        return
    for pool, taint in taints:
        if not any(tolerates(p["tolerations"], taint) for p in plugins):
            names = ", ".join(f"{p['namespace']}/{p['name']}" for p in plugins)
            yield (f"{pool}: no NVIDIA device plugin ({names}) tolerates the taint {taint['key']}={taint['value']}:"
                   f"{taint['effect']}, so it never runs on those GPU nodes; add the toleration to its DaemonSet")
