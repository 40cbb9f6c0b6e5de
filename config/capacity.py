"""AWS capacity the platform owns: workload identity, artifact buckets and GPU node pools."""

from __future__ import annotations

import re
import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal, Optional

from config import checks
from config.loader import setting
from config.platform import EKS_CLUSTER_NAME
from manifests.pod_identity import pod_identity_refusal

# S3 bucket naming rules (docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html).
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# EKS refuses these label prefixes on managed node groups.
RESERVED_LABEL_PREFIXES = ("kubernetes.io/", "k8s.io/", "eks.amazonaws.com/")
#: Label this program puts on every GPU node so placeholder pods and profiles can pin to one pool.
POOL_LABEL = "kubeflow-platform/gpu-pool"
# EKS CreateNodegroup: label keys and values 1..63 characters (the whole key, prefix included, unlike
# Kubernetes), taint keys 1..63, taint values 0..63, at most 50 taints; node group names 1..63.
EKS_LABEL_LIMIT = 63
EKS_TAINTS_LIMIT = 50
EKS_NODEGROUP_NAME = re.compile(r"^[0-9A-Za-z][A-Za-z0-9_-]{0,62}$")
#: EKS service quota "Nodes per managed node group", 450 (docs.aws.amazon.com/eks/latest/userguide/service-quotas.html);
#: NodegroupScalingConfig.maxSize refers to it ("For information about the maximum number that you can specify,
#: see Amazon EKS service quotas", docs.aws.amazon.com/eks/latest/APIReference/API_NodegroupScalingConfig.html).
EKS_NODES_PER_NODE_GROUP = 450
# EC2 families with NVIDIA GPUs (g4ad is AMD); Graviton ones (g5g) end in "g" and need an ARM_64 AMI.
#: Karpenter's EKS-optimised AMI aliases, `family@version` (aws/karpenter-provider-aws@v1.14.1
#: pkg/apis/v1/ec2nodeclass.go:238-244): AL2023 releases are dated (`v20260724`, an awslabs/amazon-eks-ami tag),
#: Bottlerocket's semantic (`v1.26.0`); `latest` drifts every node to each new release.
AMI_ALIAS = re.compile(r"^(?P<family>al2023|bottlerocket)@(?P<version>latest|v\d{8}|v\d+\.\d+\.\d+)$")
#: The AL2023 release a Karpenter pool pins unless it says otherwise (awslabs/amazon-eks-ami tag v20260724).
DEFAULT_AMI_ALIAS = "al2023@v20260724"
#: The alias family of each amiType family.
AMI_ALIAS_FAMILY = {"AL2023": "al2023", "BOTTLEROCKET": "bottlerocket"}
_ALIAS_EXAMPLE = {"al2023": "al2023@v20260724", "bottlerocket": "bottlerocket@v1.26.0"}


def karpenter_ami_alias(value: str) -> Optional[str]:
    match = AMI_ALIAS.match(value)
    if not match:
        return (f"{value!r} is not a Karpenter AMI alias: al2023@vYYYYMMDD (an amazon-eks-ami release), "
                "bottlerocket@vX.Y.Z (a Bottlerocket release) or <family>@latest")
    version = match["version"]
    if match["family"] == "al2023" and version.startswith("v") and "." not in version:
        month, day = int(version[5:7]), int(version[7:9])
        if not (1 <= month <= 12 and 1 <= day <= 31):
            return f"{value!r}: {version} is not a release date (vYYYYMMDD)"
    if match["family"] == "bottlerocket" and re.fullmatch(r"v\d{8}", version):
        return f"{value!r}: Bottlerocket releases are vX.Y.Z, like {_ALIAS_EXAMPLE['bottlerocket']}"
    return None


#: IAM role names: up to 64 of letters, digits and +=,.@_- (docs.aws.amazon.com/IAM/latest/APIReference/API_CreateRole.html).
_IAM_ROLE_NAME = re.compile(r"^[\w+=,.@-]{1,64}$")


def karpenter_node_role_name(value: str) -> Optional[str]:
    if value.startswith("arn:"):
        return f"{value!r} is an ARN; the EC2NodeClass takes the role's name (the part after :role/), like KarpenterNodeRole-ml-dev"
    if not _IAM_ROLE_NAME.match(value):
        return f"{value!r} is not an IAM role name (1 to 64 letters, digits and +=,.@_-)"
    return None


_NVIDIA_FAMILY = re.compile(r"^(p\d+[a-z]*(-[a-z0-9]+)?|g\d+[a-z]*|gr\d+[a-z]*)$")
_ARM_FAMILY = re.compile(r"^g\d+g$")


def bucket_name(value: str) -> Optional[str]:
    if not _BUCKET.match(value) or ".." in value or value.startswith("xn--") or value.endswith("-s3alias"):
        return (
            f"{value!r} is not a valid S3 bucket name: 3 to 63 lower-case letters, digits, '.' and '-', "
            "starting and ending with a letter or digit"
        )
    if re.match(r"^\d+\.\d+\.\d+\.\d+$", value):
        return f"{value!r} looks like an IP address, which S3 refuses as a bucket name"
    return None


@dataclass(frozen=True, kw_only=True)
class IdentitySettings:
    mechanism: Literal["irsa", "podIdentity"] = setting("irsa")
    """How pods get their IAM role: `irsa` (the cluster's OIDC provider and the eks.amazonaws.com/role-arn annotation) or `podIdentity` (EKS Pod Identity associations, roles trusting pods.eks.amazonaws.com with session-tag conditions; needs the eks-pod-identity-agent add-on and Kubeflow 26.03 or 1.11.0)."""
    oidc_provider_arn: Optional[str] = setting(None, check=checks.arn("iam", "oidc-provider/"))
    """Adopt this existing IAM OIDC provider for the cluster's issuer instead of creating one."""
    argo_service_accounts: tuple[str, ...] = setting((), check=checks.unique("service account"))
    """Opt-in: existing service accounts in kubeflow.argo.namespace to give an IRSA role on the Argo artifact prefix (patched, not created); KFP runs never use them."""

    def cross_check(self) -> Iterator[tuple[str, str]]:
        for i, account in enumerate(self.argo_service_accounts):
            message = checks.dns1123_label(account)
            if message:
                yield f"argoServiceAccounts[{i}]", message


@dataclass(frozen=True, kw_only=True)
class BucketSettings:
    purpose: str = setting(check=checks.dns1123_label)
    """What the bucket stores (pipelines, models, ...); part of its deterministic name."""
    kms_key_arn: Optional[str] = setting(None, check=checks.arn("kms", "key/"))
    """Encrypt with this customer-managed KMS key instead of S3-managed keys."""
    noncurrent_version_days: int = setting(30, check=checks.between(1, 3650))
    """Days a replaced object version is kept before it expires."""


@dataclass(frozen=True, kw_only=True)
class ArtifactSettings:
    bucket_prefix: str = setting(check=bucket_name)
    """Start of every bucket name; the name is `<bucketPrefix>-<purpose>`, so it must be globally unique."""
    buckets: tuple[BucketSettings, ...] = setting((BucketSettings(purpose="pipelines"),))
    """The buckets to create; `pipelines` holds pipeline artifacts and the profiles' prefixes."""
    force_destroy: bool = setting(False)
    """Let `pulumi destroy` delete buckets that still hold objects (dev only)."""

    def names(self) -> dict[str, str]:
        return {b.purpose: f"{self.bucket_prefix}-{b.purpose}" for b in self.buckets}

    def cross_check(self) -> Iterator[tuple[str, str]]:
        purposes = [b.purpose for b in self.buckets]
        # The pipelines bucket always exists: a prefix that cannot form its name is the prefix's fault.
        prefix_message = bucket_name(f"{self.bucket_prefix}-pipelines")
        if prefix_message:
            yield "bucketPrefix", f"gives the bucket name {prefix_message}"
        for i, bucket in enumerate(self.buckets):
            message = bucket_name(f"{self.bucket_prefix}-{bucket.purpose}")
            if message and not prefix_message:
                yield f"buckets[{i}].purpose", f"gives the bucket name {message}"
            if purposes.count(bucket.purpose) > 1:
                yield f"buckets[{i}].purpose", f"{bucket.purpose!r} is listed twice"
        if "pipelines" not in purposes:
            yield "buckets", "a bucket with purpose 'pipelines' is required for pipeline artifacts"


@dataclass(frozen=True, kw_only=True)
class TaintSettings:
    key: str = setting(check=checks.not_empty)
    """Taint key (like nvidia.com/gpu)."""
    value: str = setting("")
    """Taint value (like present); may be empty."""
    effect: Literal["NO_SCHEDULE", "NO_EXECUTE", "PREFER_NO_SCHEDULE"] = setting("NO_SCHEDULE")
    """Taint effect in the EKS API spelling."""

    def cross_check(self) -> Iterator[tuple[str, str]]:
        message = checks.label_key(self.key)
        if message:
            yield "key", message.replace("label key", "taint key")
        if len(self.key) > EKS_LABEL_LIMIT:
            yield "key", f"EKS taint keys are at most {EKS_LABEL_LIMIT} characters, prefix included"
        if len(self.value) > EKS_LABEL_LIMIT:
            yield "value", f"taint values are at most {EKS_LABEL_LIMIT} characters"


@dataclass(frozen=True, kw_only=True)
class GpuPoolSettings:
    name: str = setting(check=checks.dns1123_label)
    """Pool name; the node group is `<cluster>-<name>`."""
    instance_types: tuple[str, ...] = setting(check=checks.not_empty)
    """EC2 GPU instance types, like g5.xlarge (several give the autoscaler choice)."""
    capacity_type: Literal["ON_DEMAND", "SPOT"] = setting("ON_DEMAND")
    """On-demand or spot capacity."""
    ami_type: Literal[
        "AL2023_x86_64_NVIDIA", "AL2023_ARM_64_NVIDIA", "BOTTLEROCKET_x86_64_NVIDIA", "BOTTLEROCKET_ARM_64_NVIDIA"
    ] = setting("AL2023_x86_64_NVIDIA")
    """EKS-optimised accelerated AMI family."""
    subnet_ids: tuple[str, ...] = setting(check=(checks.not_empty, checks.subnets))
    """Private subnets the nodes start in (one per availability zone)."""
    min_size: int = setting(0, check=checks.between(0, EKS_NODES_PER_NODE_GROUP))
    """Fewest nodes; 0 lets the pool scale to zero when idle."""
    desired_size: int = setting(0, check=checks.between(0, EKS_NODES_PER_NODE_GROUP))
    """Nodes at creation; afterwards the cluster autoscaler owns it and `pulumi up` leaves it alone."""
    max_size: int = setting(check=checks.between(1, EKS_NODES_PER_NODE_GROUP))
    """Most nodes the autoscaler may start."""
    disk_size_gib: int = setting(100, check=checks.between(20, 16384))
    """Root volume size of each node in GiB (images of GPU frameworks are large)."""
    gpus_per_node: int = setting(1, check=checks.between(1, 16))
    """GPUs each instance type has; tells the autoscaler what a node from zero will offer."""
    labels: Mapping[str, str] = setting(types.MappingProxyType({}), check=checks.labels)
    """Node labels (like workload: ai-ml); kubernetes.io/, k8s.io/ and eks.amazonaws.com/ are refused by EKS."""
    taints: tuple[TaintSettings, ...] = setting(())
    """Taints that keep everything but GPU work off these nodes."""
    warm_nodes: int = setting(0, check=checks.between(0, EKS_NODES_PER_NODE_GROUP))
    """Nodes kept ready by low-priority placeholder pods, pre-empted by real work (hides the cold start)."""
    provisioner: Optional[Literal["nodeGroups", "karpenter"]] = setting(None)
    """Who starts this pool's nodes, overriding gpu.provisioner: `nodeGroups` (an EKS managed node group) or `karpenter` (a Karpenter NodePool and EC2NodeClass)."""
    ami_alias: str = setting(DEFAULT_AMI_ALIAS, check=karpenter_ami_alias)
    """Karpenter pools: the EC2NodeClass's AMI, `family@version` with the family of amiType and a pinned release (`al2023@v20260724`, `bottlerocket@v1.26.0`); `<family>@latest` replaces every node at each new AMI release and is refused with protect: true."""

    def cross_check(self) -> Iterator[tuple[str, str]]:
        if self.max_size < self.min_size:
            yield "maxSize", f"{self.max_size} is below minSize {self.min_size}"
        elif not self.min_size <= self.desired_size <= self.max_size:
            yield "desiredSize", f"{self.desired_size} is outside minSize..maxSize ({self.min_size}..{self.max_size})"
        if self.warm_nodes > self.max_size:
            yield "warmNodes", f"{self.warm_nodes} is above maxSize {self.max_size}"
        if len(self.taints) > EKS_TAINTS_LIMIT:
            yield "taints", f"EKS allows at most {EKS_TAINTS_LIMIT} taints per node group"
        for key, value in self.labels.items():
            if len(key) > EKS_LABEL_LIMIT:
                yield f"labels.{key}", f"EKS label keys are at most {EKS_LABEL_LIMIT} characters, prefix included"
            if not value:
                yield f"labels.{key}", "EKS refuses empty label values"
            if key == POOL_LABEL:
                yield f"labels.{key}", "is set by this program to the pool name"
            if any(key.startswith(p) or ("/" in key and key.split("/")[0].endswith("." + p.rstrip("/"))) for p in RESERVED_LABEL_PREFIXES):
                yield f"labels.{key}", "EKS refuses labels under kubernetes.io/, k8s.io/ and eks.amazonaws.com/"
        if not self.taints:
            yield "taints", "GPU pools must be tainted so only workloads that tolerate the taint land there"
        keys = [t.key for t in self.taints]
        if len(set(keys)) != len(keys):
            # cluster-autoscaler's node-template/taint/<key> tag holds one taint per key.
            yield "taints", "a taint key is listed twice; the autoscaler's node template holds one taint per key"
        arm = "ARM_64" in self.ami_type
        for i, instance_type in enumerate(self.instance_types):
            family, dot, size = instance_type.partition(".")
            if not dot or not size:
                yield f"instanceTypes[{i}]", f"{instance_type!r} is not an EC2 instance type (like g5.xlarge)"
            elif not _NVIDIA_FAMILY.match(family) or family == "g4ad":
                yield f"instanceTypes[{i}]", f"{instance_type!r} has no NVIDIA GPU (families like g5, g6e, p4d, p5)"
            elif bool(_ARM_FAMILY.match(family)) != arm:
                yield f"instanceTypes[{i}]", (
                    f"{instance_type!r} is {'Graviton (ARM)' if not arm else 'x86'} but amiType is {self.ami_type}"
                )


@dataclass(frozen=True, kw_only=True)
class GpuSettings:
    pools: tuple[GpuPoolSettings, ...] = setting(())
    """GPU node pools on the existing cluster."""
    provisioner: Literal["nodeGroups", "karpenter"] = setting("nodeGroups")
    """Who starts GPU nodes unless a pool says otherwise: `nodeGroups` (EKS managed node groups and the cluster autoscaler) or `karpenter` (karpenter.sh/v1 NodePools and karpenter.k8s.aws/v1 EC2NodeClasses; the cluster's Karpenter v1 controller starts the nodes)."""

    def pool_provisioner(self, pool: GpuPoolSettings) -> str:
        """The provisioner of `pool`: its own, else the stack's."""
        return pool.provisioner or self.provisioner
    karpenter_node_role: Optional[str] = setting(None, check=karpenter_node_role_name)
    """Karpenter pools: the IAM role name their EC2NodeClass gives nodes, one the cluster's Karpenter is set up for (its controller may iam:PassRole it; it has an EC2_LINUX access entry or an aws-auth mapping). Unset: the program creates the GPU node role and its access entry, and the controller's policy must allow iam:PassRole on that role."""
    vpc_cni_has_own_role: Optional[bool] = setting(None)
    """Whether the cluster's VPC CNI (aws-node) has its own IRSA role with AmazonEKS_CNI_Policy (true: the GPU node role goes without it); required with pools."""

    def cross_check(self) -> Iterator[tuple[str, str]]:
        names = [p.name for p in self.pools]
        for i, name in enumerate(names):
            if names.index(name) != i:
                yield f"pools[{i}].name", f"{name!r} is listed twice"
        for i, pool in enumerate(self.pools):
            family = AMI_ALIAS_FAMILY.get(pool.ami_type.split("_")[0])
            alias_family = pool.ami_alias.split("@")[0]
            if self.pool_provisioner(pool) == "karpenter" and AMI_ALIAS.match(pool.ami_alias) and alias_family != family:
                yield f"pools[{i}].amiAlias", (
                    f"{pool.ami_alias!r} is a {alias_family} AMI but amiType is {pool.ami_type}; pin a release of {family}, "
                    f"like amiAlias: {_ALIAS_EXAMPLE.get(family or '', '<family>@<version>')}"
                )
            if self.pool_provisioner(pool) == "karpenter" and pool.min_size:
                # Karpenter has no minimum: it starts nodes for pending pods and removes empty ones.
                yield f"pools[{i}].minSize", (
                    f"{pool.min_size} cannot be kept by Karpenter, which starts nodes only for pending pods; "
                    "set minSize: 0 and warmNodes to keep nodes ready"
                )
        if self.pools and self.vpc_cni_has_own_role is None:
            # No default either way: false hands every pod on a GPU node (hostNetwork aside, through the node's
            # credentials) the CNI policy's network-interface writes; true on a cluster whose aws-node uses the node
            # role leaves the GPU nodes without pod addresses (docs.aws.amazon.com/eks/latest/userguide/cni-iam-role.html).
            yield "vpcCniHasOwnRole", (
                "required with GPU pools: true when aws-node has its own IRSA role (kubectl -n kube-system get sa aws-node"
                " -o jsonpath='{.metadata.annotations.eks\\.amazonaws\\.com/role-arn}' prints one; AWS's recommendation),"
                " so the GPU node role goes without AmazonEKS_CNI_Policy; false when aws-node uses the node role"
            )


def capacity_cross_checks(
    *, region: str, cluster_name: str, protect: bool, artifacts: ArtifactSettings, gpu: GpuSettings,
    identity: Optional[IdentitySettings] = None, kubeflow_version: Optional[str] = None,
) -> Iterator[tuple[str, str]]:
    """Rules across areas (run from Settings.cross_check, paths from the top)."""
    if identity is not None and identity.mechanism == "podIdentity":
        if identity.oidc_provider_arn:
            yield "identity.oidcProviderArn", "is for IRSA; with identity.mechanism: podIdentity no OIDC provider is used, remove it"
        if kubeflow_version is not None:
            refusal = pod_identity_refusal(kubeflow_version)
            if refusal:
                yield "identity.mechanism", refusal
    for i, pool in enumerate(gpu.pools):
        if protect and gpu.pool_provisioner(pool) == "karpenter" and pool.ami_alias.endswith("@latest"):
            # Karpenter drifts every node to a new AMI as it is released (aws/karpenter-provider-aws@v1.14.1
            # pkg/apis/v1/ec2nodeclass.go:242): on a protected stack a release would replace GPU nodes unreviewed.
            family = pool.ami_alias.split("@")[0]
            yield f"gpu.pools[{i}].amiAlias", (
                f"{pool.ami_alias} replaces every node of the pool whenever AWS releases an AMI, which a protected "
                f"stack (protect: true) does not allow; pin a release, like amiAlias: {_ALIAS_EXAMPLE.get(family, DEFAULT_AMI_ALIAS)}, "
                "and move it forward in a reviewed change"
            )
    if protect and artifacts.force_destroy:
        yield "artifacts.forceDestroy", "contradicts protect: true; a protected stack never empties its buckets"
    for i, bucket in enumerate(artifacts.buckets):
        if bucket.kms_key_arn and bucket.kms_key_arn.split(":")[3] != region:
            # SSE-KMS needs the key in the bucket's region.
            yield f"artifacts.buckets[{i}].kmsKeyArn", f"the key is in {bucket.kms_key_arn.split(':')[3]!r}, the buckets in {region!r}"
    # The cluster exists, so a valid name of it is a given and a pool name is what to shorten; a name EKS
    # could never have given a cluster is the mistake itself (reported on platform's cluster.name check).
    if EKS_CLUSTER_NAME.match(cluster_name):
        for i, pool in enumerate(gpu.pools):
            name = node_group_name(cluster_name, pool.name)
            if not EKS_NODEGROUP_NAME.match(name):
                yield f"gpu.pools[{i}].name", (
                    f"gives the node group name {name!r}; EKS allows 1 to 63 letters, digits, '-' and '_', so with "
                    f"cluster.name {cluster_name!r} a pool name may have at most {max(0, 62 - len(cluster_name))} characters"
                )


def node_group_name(cluster_name: str, pool_name: str) -> str:
    return f"{cluster_name}-{pool_name}"
