"""What switching identity.mechanism or a GPU pool's provisioner does to a live cluster, read from two plans.

Pure Python over plan dicts (`make preview` output), used by the upgrade plan (analysis/upgrade.py):

- IRSA -> Pod Identity: the roles keep their names and ARNs, but their trust changes in place from the
  cluster's OIDC provider to pods.eks.amazonaws.com. A running pod keeps what the IRSA webhook injected when it
  was created (AWS_ROLE_ARN, AWS_WEB_IDENTITY_TOKEN_FILE), and the Pod Identity webhook sets a pod up only when it
  is created too; so until it is restarted, the pod goes on calling AssumeRoleWithWebIdentity, which the new
  trust refuses at its next credential refresh (at most the role's one-hour session later).
- Pod Identity -> IRSA: the associations are deleted; running pods keep asking the agent, which no longer
  serves them, until they are restarted with the annotation.
- A pool moving between a managed node group and Karpenter: the node group is deleted (EKS drains its nodes,
  evicting running GPU pods) while Karpenter starts new nodes for what is pending.
- A Karpenter pool's pinned AMI moving (gpu.pools[].amiAlias): every node of the pool has drifted and is replaced.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from analysis.upgrade import Finding

ASSOCIATION = "aws:eks/podIdentityAssociation:PodIdentityAssociation"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
NODE_POOL = "kubernetes:karpenter.sh/v1:NodePool"
#: Both webhooks mutate pods on CREATE only (aws/amazon-eks-pod-identity-webhook@v0.6.17 deploy/mutatingwebhook.yaml:21-24).
WEBHOOK_SOURCE = "aws/amazon-eks-pod-identity-webhook@v0.6.17 deploy/mutatingwebhook.yaml:21-24"
DELETE_NODEGROUP_SOURCE = "https://docs.aws.amazon.com/eks/latest/userguide/delete-managed-node-group.html"
NODE_CLASS = "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass"
#: An EC2NodeClass's amiSelectorTerms is a drift field: nodes on the old AMI are drifted and replaced.
DRIFT_SOURCE = "aws/karpenter-provider-aws@v1.14.1 website/content/en/preview/concepts/disruption.md:155-171"


def mechanism(plan: Mapping[str, Any]) -> str:
    """The plan's identity mechanism: its export, else (plans from before the setting) `irsa`, or
    `podIdentity` when it registers associations."""
    exported = (plan.get("outputs") or {}).get("identityMechanism")
    if isinstance(exported, str):
        return exported
    return "podIdentity" if any(r.get("type") == ASSOCIATION for r in plan.get("resources") or []) else "irsa"


def _workloads_with_roles(plan: Mapping[str, Any]) -> list[str]:
    roles = (plan.get("outputs") or {}).get("roleArns") or {}
    return sorted(roles)


def _pools(plan: Mapping[str, Any], type_: str, suffix: str) -> set[str]:
    """Pool names of the GPU component's node groups (`gpu-<pool>`) or NodePools (`gpu-<pool>-node-pool`)."""
    names = set()
    for resource in plan.get("resources") or []:
        name = str(resource.get("name", ""))
        if resource.get("type") == type_ and name.startswith("gpu-") and name.endswith(suffix):
            names.add(name.removeprefix("gpu-").removesuffix(suffix))
    return names


def _ami_aliases(plan: Mapping[str, Any]) -> dict[str, str]:
    """Pool name -> the alias its EC2NodeClass (`gpu-<pool>-node-class`) selects."""
    aliases = {}
    for resource in plan.get("resources") or []:
        name = str(resource.get("name", ""))
        if resource.get("type") == NODE_CLASS and name.startswith("gpu-") and name.endswith("-node-class"):
            terms = ((resource.get("inputs") or {}).get("spec") or {}).get("amiSelectorTerms") or []
            aliases[name.removeprefix("gpu-").removesuffix("-node-class")] = ",".join(
                str(t.get("alias")) for t in terms if isinstance(t, Mapping))
    return aliases


def switch_findings(source: Mapping[str, Any], target: Mapping[str, Any]) -> list[Finding]:
    """Findings for an identity mechanism switch and for pools changing provisioner between the plans."""
    findings = []
    before, after = mechanism(source), mechanism(target)
    if before != after:
        roles = ", ".join(_workloads_with_roles(target)) or "every role"
        if after == "podIdentity":
            what = (f"IRSA -> Pod Identity: the roles ({roles} and each data-lake profile's) change trust in place to "
                    "pods.eks.amazonaws.com and the eks.amazonaws.com/role-arn annotations go. Running pods keep the IRSA "
                    "credentials they were created with and lose them at their next refresh (within an hour): restart "
                    "them right after `pulumi up` (kubectl rollout restart of the Kubeflow deployments, the profiles' "
                    "notebooks; runs in progress fail at their next S3 call). Install the eks-pod-identity-agent add-on first")
        else:
            what = ("Pod Identity -> IRSA: the associations are deleted and the roles trust the cluster's OIDC provider "
                    "again. Running pods keep asking the Pod Identity agent, which no longer serves them: restart them "
                    "after `pulumi up` so the IRSA webhook sets them up from the annotation")
        findings.append(Finding("identity-mechanism", f"identity.mechanism {before} -> {after}", what, WEBHOOK_SOURCE))
    groups_before = _pools(source, NODE_GROUP, "")
    karpenter_after = _pools(target, NODE_POOL, "-node-pool")
    for pool in sorted(groups_before & karpenter_after):
        findings.append(Finding(
            "gpu-provisioner", f"gpu pool {pool} nodeGroups -> karpenter",
            "the managed node group is deleted: EKS drains its nodes, evicting running GPU pods (training loses what "
            "it has not checkpointed), while Karpenter starts nodes for what is pending. Drain the pool's work first; "
            "the warm placeholders move to Karpenter's nodes by themselves", DELETE_NODEGROUP_SOURCE))
    karpenter_before = _pools(source, NODE_POOL, "-node-pool")
    groups_after = _pools(target, NODE_GROUP, "")
    for pool in sorted(karpenter_before & groups_after):
        findings.append(Finding(
            "gpu-provisioner", f"gpu pool {pool} karpenter -> nodeGroups",
            "the NodePool is deleted: Karpenter removes every node it started for the pool, evicting running GPU "
            "pods, while the new node group starts from its minSize. Drain the pool's work first",
            "https://karpenter.sh/docs/concepts/disruption/"))
    aliases_before, aliases_after = _ami_aliases(source), _ami_aliases(target)
    for pool in sorted(set(aliases_before) & set(aliases_after)):
        if aliases_before[pool] != aliases_after[pool]:
            findings.append(Finding(
                "gpu-ami", f"gpu pool {pool} amiAlias {aliases_before[pool]} -> {aliases_after[pool]}",
                "every node of the pool is on the old AMI, so Karpenter marks it drifted and replaces it, one node at a "
                "time (the NodePool's budget); a node running a pod marked karpenter.sh/do-not-disrupt (training, Katib "
                "trials, pipeline steps) waits until that pod ends, other GPU pods are evicted. Move the alias when the "
                "pool is quiet", DRIFT_SOURCE))
    return findings
