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

import yaml

# Katib's trial templates and how pod templates are found in them, as the mesh step reads them.
from manifests.mesh import KATIB_TRIAL_TEMPLATES, _pod_templates_in
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
    """The pool's EC2NodeClass: the pinned AMI release of the pool's amiAlias, of its amiType's family (Karpenter
    picks the NVIDIA variant for GPU instance types), its subnets, the cluster security group, the node role, an encrypted gp3
    image volume of diskSizeGib, and IMDSv2 with a hop limit of 1 so pods cannot reach the node role."""
    family = pool.ami_type.split("_")[0]
    # Pinned (gpu.pools[].amiAlias): an alias of `latest` drifts every node when AWS releases an AMI.
    alias = pool.ami_alias
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


def _marked(template: dict) -> bool:
    annotations = template.setdefault("metadata", {}).setdefault("annotations", {})
    if annotations.get(DO_NOT_DISRUPT) == "true":
        return False
    annotations[DO_NOT_DISRUPT] = "true"
    return True


def _runtime(obj: dict) -> tuple[dict, str] | None:
    copied = copy.deepcopy(obj)
    jobs = (((copied.get("spec") or {}).get("template") or {}).get("spec") or {}).get("replicatedJobs") or []
    pods = [pod for job in jobs if isinstance(pod := ((job.get("template") or {}).get("spec") or {}).get("template"), dict)]
    touched = sum(_marked(pod) for pod in pods)
    return (copied, f"{DO_NOT_DISRUPT}: \"true\" on {touched} replicated job pod templates") if touched else None


def _trial_templates(obj: dict) -> tuple[dict, str] | None:
    copied = copy.deepcopy(obj)
    touched = []
    for key, text in sorted((copied.get("data") or {}).items()):
        try:
            document = yaml.safe_load(text) if isinstance(text, str) else None
        except yaml.YAMLError:
            continue  # not a manifest; schema validation and review catch it
        if sum(_marked(template) for template in _pod_templates_in(document)):
            copied["data"][key] = yaml.safe_dump(document, sort_keys=False, default_flow_style=False)
            touched.append(key)
    return (copied, f"data {touched}: trial pod annotation {DO_NOT_DISRUPT}: \"true\"") if touched else None


def _workflow_defaults(obj: dict) -> tuple[dict, str] | None:
    data = obj.get("data") or {}
    try:
        defaults = yaml.safe_load(data.get("workflowDefaults") or "") or {}
    except yaml.YAMLError:
        return None  # the controller would refuse it too; left for review
    if not isinstance(defaults, dict):
        return None
    spec = defaults.setdefault("spec", {})
    annotations = spec.setdefault("podMetadata", {}).setdefault("annotations", {})
    if annotations.get(DO_NOT_DISRUPT) == "true":
        return None
    annotations[DO_NOT_DISRUPT] = "true"
    copied = copy.deepcopy(obj)
    copied["data"]["workflowDefaults"] = yaml.safe_dump(defaults, sort_keys=False)
    return copied, f"data.workflowDefaults: spec.podMetadata.annotations {DO_NOT_DISRUPT}: \"true\" (every workflow pod)"


def keep_training_on_its_node(objects: list[dict]) -> TransformResult:
    """`karpenter.sh/do-not-disrupt: "true"` on the pods that may land on a Karpenter GPU pool, so Karpenter does not
    voluntarily disrupt (consolidate, drift) a node while one runs (aws/karpenter-provider-aws@v1.14.1
    website/content/en/preview/concepts/disruption.md:376-399). Only when a GPU pool is Karpenter's: without
    Karpenter the annotation means nothing.

    - Trainer: every ClusterTrainingRuntime's pod templates. The Trainer controller builds each TrainJob's JobSet from
      its runtime's `spec.template.spec` as it is (kubeflow/trainer@v2.1.0 pkg/runtime/core/trainingruntime.go:146-153).
    - Katib: the Job pod templates of the `trial-templates` ConfigMap, which trials are made from.
    - KFP: every step of a run is an Argo workflow pod. The workflow controller's `workflowDefaults` are merged
      under each Workflow (argoproj/argo-workflows@v3.7.3 config/config.go:84-85; workflow/util/merge.go:12-34, a
      strategic merge, so KFP's own `spec.podMetadata` annotations and this one both stay), and
      `spec.podMetadata.annotations` go on every pod of the workflow (pkg/apis/workflow/v1alpha1/workflow_types.go:418-419;
      workflow/controller/workflowpod.go:750-753). The controller's ConfigMap is the one holding
      `artifactRepository`: upstream's bundled one, or the patch of the organisation's (manifests.argo), where the
      default covers the organisation's other workflows too.
    """
    result, changes = [], []
    for obj in objects:
        kind, name = obj.get("kind"), (obj.get("metadata") or {}).get("name")
        marked = None
        if kind == "ClusterTrainingRuntime":
            marked = _runtime(obj)
        elif kind == "ConfigMap" and name == KATIB_TRIAL_TEMPLATES:
            marked = _trial_templates(obj)
        elif kind == "ConfigMap" and "artifactRepository" in (obj.get("data") or {}):
            marked = _workflow_defaults(obj)
        if marked is None:
            result.append(obj)
            continue
        copied, what = marked
        changes.append(Change(object_ref(copied), what))
        result.append(copied)
    return TransformResult(result, tuple(changes))
