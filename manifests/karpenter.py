"""Karpenter v1 objects for a GPU pool: a `karpenter.sh/v1` NodePool and a `karpenter.k8s.aws/v1` EC2NodeClass.

No Pulumi here: plain dicts (and `keep_training_on_its_node`, a transformation of the release) the GPU component registers as custom resources, and the tests validate against
Karpenter's own CRDs (aws/karpenter-provider-aws@v1.14.1 pkg/apis/crds/karpenter.sh_nodepools.yaml and
karpenter.k8s.aws_ec2nodeclasses.yaml). The node IAM role's name is the one value known only at deploy time;
the caller passes it in.

What a pool keeps from its managed node group, so the profiles' tolerations, node selectors and quotas hold:
the same labels (the pool label included) and the same taints on every node, the same instance types,
capacity type, subnets, disk and IMDS rules.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from manifests.objects import Change, TransformResult, object_ref

if TYPE_CHECKING:
    from config.capacity import GpuPoolSettings

NODE_POOL_API = "karpenter.sh/v1"
NODE_CLASS_API = "karpenter.k8s.aws/v1"
NODE_CLASS_GROUP = "karpenter.k8s.aws"
#: Pod annotation Karpenter honours: a node running such a pod is not voluntarily disrupted (consolidation,
#: drift) while the pod runs (kubernetes-sigs/karpenter@v1.14.1 pkg/apis/v1/labels.go, DoNotDisruptAnnotationKey).
DO_NOT_DISRUPT = "karpenter.sh/do-not-disrupt"
#: EKS spelling -> Kubernetes spelling of taint effects (NodePools use Kubernetes' Taint type).
TAINT_EFFECTS = {"NO_SCHEDULE": "NoSchedule", "NO_EXECUTE": "NoExecute", "PREFER_NO_SCHEDULE": "PreferNoSchedule"}
#: EKS managed-node-group capacity types -> Karpenter's `karpenter.sh/capacity-type` values.
CAPACITY_TYPES = {"ON_DEMAND": "on-demand", "SPOT": "spot"}
#: How long a node must be empty before Karpenter removes it: long enough that a pipeline's next GPU step,
#: scheduled seconds after the previous one ends, lands on the same warm node.
CONSOLIDATE_AFTER = "10m"
#: The volume holding images and ephemeral storage per AMI family (AL2023's root, Bottlerocket's data volume).
IMAGE_VOLUME_DEVICE = {"AL2023": "/dev/xvda", "BOTTLEROCKET": "/dev/xvdb"}
#: Tag EKS puts on the cluster security group (docs.aws.amazon.com/eks/latest/userguide/sec-group-reqs.html):
#: the nodes join with the same group the managed node groups get.
CLUSTER_SECURITY_GROUP_TAG = "aws:eks:cluster-name"


def resource_name(pool_name: str) -> str:
    """The NodePool's and EC2NodeClass's name for a pool (cluster-scoped, so unique per cluster)."""
    return f"kubeflow-gpu-{pool_name}"


def node_pool(pool: "GpuPoolSettings", labels: dict[str, str]) -> dict[str, Any]:
    """The pool's NodePool: its labels and taints on every node, GPU instance requirements, a GPU limit of
    maxSize nodes' worth, and disruption that never removes a node while it runs work.

    - `consolidationPolicy: WhenEmpty`: Karpenter never moves running pods to pack nodes (a training job
      evicted from a GPU node loses everything since its last checkpoint); empty nodes go after
      CONSOLIDATE_AFTER. Empty consolidation can still race with a pod scheduled during that wait
      (kubernetes-sigs/karpenter#3185), which the do-not-disrupt pod annotation narrows.
    - `budgets: nodes "1"`: drift (a new AMI) replaces at most one GPU node at a time, like the node groups'
      max_unavailable 1.
    - `expireAfter: Never`: expiry is forceful in v1 (it does not wait for do-not-disrupt pods past the
      termination grace period), so GPU nodes are replaced by drift, never by age.
    """
    arch = "arm64" if "ARM_64" in pool.ami_type else "amd64"
    requirements = [
        {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": list(pool.instance_types)},
        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": [CAPACITY_TYPES[pool.capacity_type]]},
        {"key": "kubernetes.io/arch", "operator": "In", "values": [arch]},
        {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
        {"key": "karpenter.k8s.aws/instance-gpu-manufacturer", "operator": "In", "values": ["nvidia"]},
        {"key": "karpenter.k8s.aws/instance-gpu-count", "operator": "In", "values": [str(pool.gpus_per_node)]},
    ]
    taints = []
    for taint in pool.taints:
        entry = {"key": taint.key, "effect": TAINT_EFFECTS[taint.effect]}
        if taint.value:
            entry["value"] = taint.value
        taints.append(entry)
    return {
        "apiVersion": NODE_POOL_API,
        "kind": "NodePool",
        "metadata": {"name": resource_name(pool.name), "labels": {"app.kubernetes.io/managed-by": "kubeflow-platform"}},
        "spec": {
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {
                    "nodeClassRef": {"group": NODE_CLASS_GROUP, "kind": "EC2NodeClass", "name": resource_name(pool.name)},
                    "requirements": requirements,
                    "taints": taints,
                    "expireAfter": "Never",
                },
            },
            # The node group's maxSize, in GPUs: Karpenter stops starting nodes once the pool's nodes hold this many.
            "limits": {"nvidia.com/gpu": str(pool.max_size * pool.gpus_per_node)},
            "disruption": {
                "consolidationPolicy": "WhenEmpty",
                "consolidateAfter": CONSOLIDATE_AFTER,
                "budgets": [{"nodes": "1"}],
            },
        },
    }


def ec2_node_class(pool: "GpuPoolSettings", *, cluster_name: str, role: Any) -> dict[str, Any]:
    """The pool's EC2NodeClass: the accelerated AMI family of the pool's amiType (Karpenter picks the NVIDIA
    variant for GPU instance types), its subnets, the cluster security group, the node role, an encrypted gp3
    image volume of diskSizeGib, and IMDSv2 with a hop limit of 1 so pods cannot reach the node role."""
    family = pool.ami_type.split("_")[0]
    alias = "al2023@latest" if family == "AL2023" else "bottlerocket@latest"
    return {
        "apiVersion": NODE_CLASS_API,
        "kind": "EC2NodeClass",
        "metadata": {"name": resource_name(pool.name), "labels": {"app.kubernetes.io/managed-by": "kubeflow-platform"}},
        "spec": {
            "role": role,
            "amiSelectorTerms": [{"alias": alias}],
            "subnetSelectorTerms": [{"id": subnet} for subnet in pool.subnet_ids],
            "securityGroupSelectorTerms": [{"tags": {CLUSTER_SECURITY_GROUP_TAG: cluster_name}}],
            "metadataOptions": {
                "httpEndpoint": "enabled",
                "httpProtocolIPv6": "disabled",
                "httpPutResponseHopLimit": 1,
                "httpTokens": "required",
            },
            "blockDeviceMappings": [{
                "deviceName": IMAGE_VOLUME_DEVICE[family],
                "ebs": {"volumeSize": f"{pool.disk_size_gib}Gi", "volumeType": "gp3", "encrypted": True,
                        "deleteOnTermination": True},
            }],
            "tags": {"kubeflow-platform/gpu-pool": pool.name},
        },
    }


def keep_training_on_its_node(objects: list[dict]) -> TransformResult:
    """`karpenter.sh/do-not-disrupt: "true"` on the pod templates of every ClusterTrainingRuntime, so Karpenter does
    not voluntarily disrupt (consolidate, drift) a node while a training pod runs on it. The Trainer controller builds
    each TrainJob's JobSet from its runtime's `spec.template.spec` as it is (kubeflow/trainer@v2.1.0
    pkg/runtime/core/trainingruntime.go:146-153), so the pod template's annotations reach the pods. Only when a
    GPU pool is Karpenter's: without Karpenter the annotation means nothing."""
    result, changes = [], []
    for obj in objects:
        if obj.get("kind") != "ClusterTrainingRuntime":
            result.append(obj)
            continue
        copied = copy.deepcopy(obj)
        jobs = (((copied.get("spec") or {}).get("template") or {}).get("spec") or {}).get("replicatedJobs") or []
        touched = 0
        for job in jobs:
            pod = ((job.get("template") or {}).get("spec") or {}).get("template")
            if not isinstance(pod, dict):
                continue
            annotations = pod.setdefault("metadata", {}).setdefault("annotations", {})
            if annotations.get(DO_NOT_DISRUPT) != "true":
                annotations[DO_NOT_DISRUPT] = "true"
                touched += 1
        if touched:
            changes.append(Change(object_ref(copied), f"{DO_NOT_DISRUPT}: \"true\" on {touched} replicated job pod templates"))
            result.append(copied)
        else:
            result.append(obj)
    return TransformResult(result, tuple(changes))
