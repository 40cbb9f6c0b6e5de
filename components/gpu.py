"""GpuNodePools: GPU capacity per pool, as EKS managed node groups (with autoscaler tags) or Karpenter NodePools and
EC2NodeClasses (gpu.provisioner), with the same labels and taints either way, and warm capacity."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from config import Settings
from config.capacity import POOL_LABEL, GpuPoolSettings, node_group_name
from config.kubeflow import image_mirror_options
from manifests.iam import assume_role_policy
from manifests.images import mirror_image
from manifests.karpenter import ec2_node_class, node_pool

#: AWS managed policies every EKS node role needs: join the cluster, and pull images from ECR. Pull only
#: (GetAuthorizationToken, BatchGetImage, GetDownloadUrlForLayer, BatchCheckLayerAvailability), not ReadOnly's
#: describe and list (docs.aws.amazon.com/eks/latest/userguide/create-node-role.html). Its `Resource: "*"` stays:
#: the add-ons' images (aws-node, kube-proxy, the NVIDIA plugin's) come from AWS-owned registries that differ
#: by region, so no repository list written here would stay right.
NODE_POLICIES = ("AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryPullOnly")
#: What the VPC CNI (aws-node, on every node) needs to give pods addresses. AWS recommends it on aws-node's own
#: IRSA role (docs.aws.amazon.com/eks/latest/userguide/cni-iam-role.html); on the node role it lets anything that
#: reaches the node's credentials change any network interface of the account.
CNI_POLICY = "AmazonEKS_CNI_Policy"
#: IMDSv2 only, with a response hop limit of 1: a pod (one network hop behind the node) gets no token, so
#: it cannot read the node role's credentials (docs.aws.amazon.com/AWSEC2/latest/UserGuide/configuring-IMDS-existing-instances.html).
IMDS_OPTIONS = {"http_endpoint": "enabled", "http_tokens": "required", "http_put_response_hop_limit": 1}
#: The volume that holds images and pods' ephemeral storage: AL2023's root, Bottlerocket's data volume (its
#: root /dev/xvda is the read-only OS image).
IMAGE_VOLUME_DEVICE = {"AL2023": "/dev/xvda", "BOTTLEROCKET": "/dev/xvdb"}
_CA = "k8s.io/cluster-autoscaler"
#: EKS spelling -> Kubernetes spelling of taint effects.
TAINT_EFFECTS = {"NO_SCHEDULE": "NoSchedule", "NO_EXECUTE": "NoExecute", "PREFER_NO_SCHEDULE": "PreferNoSchedule"}
#: Image of the placeholder pods: they only hold a GPU, so the smallest image there is.
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
#: Negative, so any real pod pre-empts the placeholders, but not below cluster-autoscaler's
#: --expendable-pods-priority-cutoff (-10): pods under it never trigger a scale-up, so the warm nodes
#: would never be started.
PLACEHOLDER_PRIORITY = -1


@dataclass(frozen=True, kw_only=True)
class GpuNodePoolsArgs:
    cluster_name: str
    pools: Sequence[GpuPoolSettings]
    #: The cluster's aws-node has its own IRSA role: the node role goes without the CNI policy.
    vpc_cni_has_own_role: bool = False
    #: Image of the warm-capacity placeholder pods (the pause image, from the internal mirror).
    placeholder_image: str = PAUSE_IMAGE
    #: Namespace of the placeholder pods (created when a pool has warm nodes).
    warm_namespace: str = "gpu-warm-capacity"
    #: Pool name -> `nodeGroups` or `karpenter` (gpu.provisioner, a pool's own provisioner first).
    provisioners: Mapping[str, str] = field(default_factory=dict)
    #: The node role Karpenter pools use (gpu.karpenterNodeRole); None: the program's own GPU node role.
    karpenter_node_role: Optional[str] = None

    @classmethod
    def from_settings(cls, settings: Settings) -> "GpuNodePoolsArgs":
        # The same mirror rules as every Kubeflow image, so the guardrail that checks them holds here too.
        mirror = image_mirror_options(settings.kubeflow.images)
        image = mirror_image(PAUSE_IMAGE, mirror.rules, mirror.default_mirror) or PAUSE_IMAGE
        return cls(cluster_name=settings.cluster.name, pools=settings.gpu.pools, placeholder_image=image,
                   vpc_cni_has_own_role=bool(settings.gpu.vpc_cni_has_own_role),
                   provisioners={pool.name: settings.gpu.pool_provisioner(pool) for pool in settings.gpu.pools},
                   karpenter_node_role=settings.gpu.karpenter_node_role)


def autoscaler_tags(cluster_name: str, pool: GpuPoolSettings) -> dict[str, str]:
    """Tags cluster-autoscaler reads from the node group's Auto Scaling group: auto-discovery, and the
    node template it assumes for a group at zero nodes (labels, taints, GPUs), without which it never
    starts the first node for a pod that asks for a GPU or tolerates the taint."""
    tags = {f"{_CA}/enabled": "true", f"{_CA}/{cluster_name}": "owned"}
    for key, value in pool_labels(pool).items():
        tags[f"{_CA}/node-template/label/{key}"] = value
    for taint in pool.taints:
        tags[f"{_CA}/node-template/taint/{taint.key}"] = f"{taint.value}:{TAINT_EFFECTS[taint.effect]}"
    tags[f"{_CA}/node-template/resources/nvidia.com/gpu"] = str(pool.gpus_per_node)
    return tags


def pool_labels(pool: GpuPoolSettings) -> dict[str, str]:
    return {**pool.labels, POOL_LABEL: pool.name}


def tolerations(pool: GpuPoolSettings) -> list[dict[str, str]]:
    """Tolerations (Kubernetes spelling) of exactly the pool's taints."""
    result = []
    for taint in pool.taints:
        toleration = {"key": taint.key, "effect": TAINT_EFFECTS[taint.effect]}
        toleration.update({"operator": "Equal", "value": taint.value} if taint.value else {"operator": "Exists"})
        result.append(toleration)
    return result


class GpuNodePools(pulumi.ComponentResource):
    """One managed node group per pool, their autoscaler tags and optional warm capacity.

    Needs both providers (opts.providers): node groups on AWS, placeholder pods on the cluster.
    """

    #: EKS node group names by pool name.
    node_group_names: dict[str, pulumi.Output[str]]
    #: Auto Scaling group names by pool name (EKS creates one per node group).
    autoscaling_group_names: dict[str, pulumi.Output[str]]
    node_role_arn: Optional[pulumi.Output[str]]
    #: Namespaces deliberately outside the mesh (the guardrails' allow-list): the warm-capacity one, if any.
    namespaces_outside_mesh: tuple[str, ...]

    def __init__(self, name: str, args: GpuNodePoolsArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("kubeflow-platform:gpu:GpuNodePools", name, None, opts)
        self.node_group_names = {}
        self.autoscaling_group_names = {}
        self.node_role_arn = None
        self.namespaces_outside_mesh = ()
        #: Karpenter NodePool names by pool name (pools whose provisioner is karpenter).
        self.node_pool_names: dict[str, pulumi.Output[str]] = {}
        if args.pools:
            karpenter = [pool for pool in args.pools if args.provisioners.get(pool.name) == "karpenter"]
            # A node role of the cluster's Karpenter serves its pools as it is (its controller may pass it, it can
            # join the cluster); the program's own role is made only for what needs it.
            own_role = len(karpenter) < len(args.pools) or not args.karpenter_node_role
            role, attachments = self._node_role(name, args) if own_role else (None, [])
            self.node_role_arn = role.arn if role is not None else None
            access = self._karpenter_access(name, args, role) if karpenter and not args.karpenter_node_role else []
            for pool in args.pools:
                if pool in karpenter:
                    node_role = args.karpenter_node_role or role.name
                    self._karpenter_pool(name, args, pool, node_role, [*attachments, *access])
                else:
                    self._pool(name, args, pool, role, attachments)
            if any(pool.warm_nodes for pool in args.pools):
                self._warm_capacity(name, args)
        self.register_outputs(
            {"nodeGroupNames": self.node_group_names, "autoscalingGroupNames": self.autoscaling_group_names,
             "karpenterNodePoolNames": self.node_pool_names}
        )

    @property
    def stack_outputs(self) -> dict[str, Any]:
        """The node groups and their Auto Scaling groups (for the cluster autoscaler and dashboards), and the
        Karpenter NodePools of pools Karpenter provisions."""
        return {"nodeGroupNames": self.node_group_names, "autoscalingGroupNames": self.autoscaling_group_names,
                "karpenterNodePoolNames": self.node_pool_names}

    def _karpenter_access(self, name: str, args: GpuNodePoolsArgs, role: aws.iam.Role) -> list[pulumi.Resource]:
        """An EKS access entry for the node role: EKS makes one itself for a managed node group's role, but
        not for instances Karpenter starts, which could not join the cluster without it
        (docs.aws.amazon.com/eks/latest/userguide/creating-access-entries.html, type EC2_LINUX)."""
        return [aws.eks.AccessEntry(
            f"{name}-karpenter-node-access",
            cluster_name=args.cluster_name,
            principal_arn=role.arn,
            type="EC2_LINUX",
            opts=pulumi.ResourceOptions(parent=self),
        )]

    def _karpenter_pool(
        self, name: str, args: GpuNodePoolsArgs, pool: GpuPoolSettings, role: pulumi.Input[str],
        depends_on: list[pulumi.Resource],
    ) -> None:
        """The pool's EC2NodeClass (naming node role `role`) and NodePool (manifests.karpenter); the cluster's
        Karpenter v1 controller starts the nodes. The NodePool follows its class, so Karpenter never sees a pool
        without one."""
        node_class = ec2_node_class(pool, cluster_name=args.cluster_name, role=role)
        node_class_resource = k8s.apiextensions.CustomResource(
            f"{name}-{pool.name}-node-class",
            api_version=node_class["apiVersion"], kind=node_class["kind"],
            metadata=node_class["metadata"], spec=node_class["spec"],
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on),
        )
        nodes = node_pool(pool, pool_labels(pool))
        k8s.apiextensions.CustomResource(
            f"{name}-{pool.name}-node-pool",
            api_version=nodes["apiVersion"], kind=nodes["kind"], metadata=nodes["metadata"], spec=nodes["spec"],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[node_class_resource]),
        )
        self.node_pool_names[pool.name] = pulumi.Output.from_input(nodes["metadata"]["name"])

    def _node_role(self, name: str, args: GpuNodePoolsArgs) -> tuple[aws.iam.Role, list[aws.iam.RolePolicyAttachment]]:
        partition = aws.get_partition_output(opts=pulumi.InvokeOutputOptions(parent=self)).partition
        role = aws.iam.Role(
            f"{name}-node-role",
            assume_role_policy=json.dumps(assume_role_policy(service="ec2.amazonaws.com"), sort_keys=True),
            description="EKS GPU node groups (kubeflow-platform)",
            opts=pulumi.ResourceOptions(parent=self),
        )
        attachments = [
            aws.iam.RolePolicyAttachment(
                f"{name}-node-role-{policy}",
                role=role.id,
                policy_arn=partition.apply(lambda p, policy=policy: f"arn:{p}:iam::aws:policy/{policy}"),
                opts=pulumi.ResourceOptions(parent=self),
            )
            for policy in (*NODE_POLICIES, *(() if args.vpc_cni_has_own_role else (CNI_POLICY,)))
        ]
        return role, attachments

    def _pool(
        self,
        name: str,
        args: GpuNodePoolsArgs,
        pool: GpuPoolSettings,
        role: aws.iam.Role,
        attachments: list[aws.iam.RolePolicyAttachment],
    ) -> None:
        launch_template = aws.ec2.LaunchTemplate(
            f"{name}-{pool.name}-launch-template",
            description=f"GPU pool {pool.name}: IMDSv2 only, unreachable from pods (kubeflow-platform)",
            metadata_options=IMDS_OPTIONS,
            # With a launch template EKS takes the disk from it and refuses the node group's disk_size.
            block_device_mappings=[{
                "device_name": IMAGE_VOLUME_DEVICE[pool.ami_type.split("_")[0]],
                "ebs": {"volume_size": pool.disk_size_gib, "volume_type": "gp3", "encrypted": "true",
                        "delete_on_termination": "true"},
            }],
            opts=pulumi.ResourceOptions(parent=self),
        )
        group = aws.eks.NodeGroup(
            f"{name}-{pool.name}",
            cluster_name=args.cluster_name,
            node_group_name=node_group_name(args.cluster_name, pool.name),
            node_role_arn=role.arn,
            subnet_ids=list(pool.subnet_ids),
            instance_types=list(pool.instance_types),
            capacity_type=pool.capacity_type,
            ami_type=pool.ami_type,
            launch_template={"id": launch_template.id, "version": launch_template.latest_version.apply(str)},
            scaling_config={"min_size": pool.min_size, "max_size": pool.max_size, "desired_size": pool.desired_size},
            labels=pool_labels(pool),
            taints=[{"key": t.key, "value": t.value or None, "effect": t.effect} for t in pool.taints],
            # One node at a time on AMI updates: GPU nodes are few and expensive to start.
            update_config={"max_unavailable": 1},
            opts=pulumi.ResourceOptions(
                parent=self,
                # Nodes cannot join without the policies, and deleting them first strands the nodes.
                depends_on=attachments,
                # cluster-autoscaler owns the desired size after creation; `pulumi up` must not undo it.
                ignore_changes=["scalingConfig.desiredSize"],
                # The name is fixed (others select nodes by it), so a replacement must delete first.
                delete_before_replace=True,
            ),
        )
        asg_name = group.resources.apply(lambda resources: resources[0].autoscaling_groups[0].name)
        # Tags on a managed node group do not reach its Auto Scaling group, so each tag is set on the
        # group itself; not propagated to instances, they are only for the autoscaler.
        for key, value in autoscaler_tags(args.cluster_name, pool).items():
            aws.autoscaling.Tag(
                f"{name}-{pool.name}-asg-tag-{key.removeprefix(_CA + '/').replace('/', '.')}",
                autoscaling_group_name=asg_name,
                tag={"key": key, "value": value, "propagate_at_launch": False},
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.node_group_names[pool.name] = group.node_group_name
        self.autoscaling_group_names[pool.name] = asg_name

    def _warm_capacity(self, name: str, args: GpuNodePoolsArgs) -> None:
        """The cluster-autoscaler "overprovisioning" pattern: low-priority pause pods hold one GPU on each
        warm node; a real GPU pod pre-empts one at once (no 8-minute cold start) and the evicted
        placeholder, now pending, makes the autoscaler start the next node in the background."""
        # Outside the mesh: a placeholder serves no traffic, and a sidecar's requests would hold CPU and memory
        # on the GPU node that real work needs. The pods opt out too, should a mesh label ever be added.
        self.namespaces_outside_mesh = (args.warm_namespace,)
        namespace = k8s.core.v1.Namespace(
            f"{name}-warm-namespace",
            metadata={"name": args.warm_namespace, "labels": {"app.kubernetes.io/managed-by": "kubeflow-platform"}},
            opts=pulumi.ResourceOptions(parent=self),
        )
        priority = k8s.scheduling.v1.PriorityClass(
            f"{name}-placeholder-priority",
            metadata={"name": "gpu-placeholder"},
            value=PLACEHOLDER_PRIORITY,
            global_default=False,
            # Placeholders wait for a node; they never evict anything themselves.
            preemption_policy="Never",
            description="Placeholder pods keeping GPU nodes warm; every real pod pre-empts them.",
            opts=pulumi.ResourceOptions(parent=self),
        )
        for pool in args.pools:
            if not pool.warm_nodes:
                continue
            labels = {"app.kubernetes.io/name": "gpu-placeholder", POOL_LABEL: pool.name}
            k8s.apps.v1.Deployment(
                f"{name}-{pool.name}-placeholder",
                metadata={"name": f"gpu-placeholder-{pool.name}", "namespace": namespace.metadata.name},
                spec={
                    "replicas": pool.warm_nodes,
                    "selector": {"match_labels": labels},
                    "template": {
                        "metadata": {"labels": labels, "annotations": {"sidecar.istio.io/inject": "false"}},
                        "spec": {
                            "priority_class_name": priority.metadata.name,
                            # pause calls no API and writes nothing.
                            "automount_service_account_token": False,
                            "security_context": {"run_as_non_root": True, "seccomp_profile": {"type": "RuntimeDefault"}},
                            "termination_grace_period_seconds": 0,
                            "node_selector": {POOL_LABEL: pool.name},
                            "tolerations": tolerations(pool),
                            # One placeholder per node, so N placeholders keep N nodes (the other GPUs of a
                            # warm node stay free for real work without any pre-emption).
                            "affinity": {
                                "pod_anti_affinity": {
                                    "required_during_scheduling_ignored_during_execution": [
                                        {"label_selector": {"match_labels": labels}, "topology_key": "kubernetes.io/hostname"}
                                    ]
                                }
                            },
                            "containers": [
                                {
                                    "name": "pause",
                                    "image": args.placeholder_image,
                                    "resources": {
                                        "requests": {"nvidia.com/gpu": "1", "cpu": "10m", "memory": "16Mi"},
                                        "limits": {"nvidia.com/gpu": "1", "cpu": "10m", "memory": "16Mi"},
                                    },
                                    "security_context": {
                                        "read_only_root_filesystem": True,
                                        "allow_privilege_escalation": False,
                                        "run_as_non_root": True,
                                        "run_as_user": 65535,
                                        "capabilities": {"drop": ["ALL"]},
                                    },
                                }
                            ],
                        },
                    },
                },
                opts=pulumi.ResourceOptions(parent=self),
            )
