"""GPU node groups: EKS spelling for EKS, Kubernetes spelling for the autoscaler, scale from zero, and
warm capacity that real work pre-empts."""

from __future__ import annotations

from tools.mock_runtime import stack_config

NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
TAG = "aws:autoscaling/tag:Tag"
CA = "k8s.io/cluster-autoscaler"


def _pools(stack: str) -> list[dict]:
    """The stack's pools that managed node groups provision (gpu.provisioner, a pool's own first)."""
    gpu = stack_config(stack)["kubeflow-platform:gpu"]
    default = gpu.get("provisioner", "nodeGroups")
    return [pool for pool in gpu["pools"] if pool.get("provisioner", default) == "nodeGroups"]


def _cluster(stack: str) -> str:
    return stack_config(stack)["kubeflow-platform:cluster"]["name"]


def test_one_node_group_per_pool_with_the_eks_spelling(stack_run):
    cluster = _cluster(stack_run.stack)
    # Only the node-group pools have node groups (dev's pools are Karpenter's, tests/test_karpenter.py).
    assert len(stack_run.of_type(NODE_GROUP)) == len(_pools(stack_run.stack))
    for pool in _pools(stack_run.stack):
        group = stack_run.named(NODE_GROUP, f"gpu-{pool['name']}")
        inputs = group.inputs
        assert inputs["clusterName"] == cluster
        assert inputs["nodeGroupName"] == f"{cluster}-{pool['name']}"
        assert inputs["instanceTypes"] == pool["instanceTypes"]
        assert inputs["capacityType"] == pool["capacityType"]
        assert inputs["amiType"] == pool["amiType"]
        assert inputs["subnetIds"] == pool["subnetIds"]
        assert inputs["scalingConfig"] == {"minSize": pool["minSize"], "maxSize": pool["maxSize"], "desiredSize": pool["desiredSize"]}
        assert inputs["labels"] == {**pool["labels"], "kubeflow-platform/gpu-pool": pool["name"]}
        assert inputs["taints"] == [
            {"key": t["key"], "value": t["value"], "effect": t["effect"]} for t in pool["taints"]
        ]
        assert all(t["effect"] in ("NO_SCHEDULE", "NO_EXECUTE", "PREFER_NO_SCHEDULE") for t in inputs["taints"])


def test_pulumi_up_never_undoes_the_autoscaler(stack_run):
    for group in stack_run.of_type(NODE_GROUP):
        assert group.ignore_changes == ["scalingConfig.desiredSize"]


def test_the_node_role_joins_pulls_images_and_leaves_the_cni_to_aws_node_when_it_has_its_own_role(stack_run):
    role = stack_run.named("aws:iam/role:Role", "gpu-node-role")
    attachments = stack_run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    # Pull only, not ReadOnly's describe and list; the CNI policy only where the stack says aws-node takes it from
    # the node role (dev), as pods on these nodes would get no address without it there.
    cni = () if stack_run.stack == "prod" else ("arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy",)
    assert {a.inputs["policyArn"] for a in attachments} == {
        "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
        "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryPullOnly",
        *cni,
    }
    assert all(role.outputs["arn"].endswith(f":role/{a.inputs['role']}") for a in attachments)
    for group in stack_run.of_type(NODE_GROUP):
        assert group.inputs["nodeRoleArn"] == role.outputs["arn"]
        assert {a.urn for a in attachments} <= set(group.dependencies)


def test_a_cluster_whose_vpc_cni_has_its_own_role_gives_the_node_role_no_cni_policy():
    from tests.conftest import run_stack

    gpu = dict(stack_config("dev")["kubeflow-platform:gpu"], vpcCniHasOwnRole=True)
    run = run_stack("dev", {"gpu": gpu})
    policies = {a.inputs["policyArn"] for a in run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")}
    assert "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy" not in policies
    assert "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy" in policies


def test_pods_on_gpu_nodes_cannot_reach_the_node_roles_credentials(stack_run):
    # IMDSv2 only, hop limit 1: a pod is one hop behind the node, so its token request never comes back.
    templates = {t.urn: t for t in stack_run.of_type("aws:ec2/launchTemplate:LaunchTemplate")}
    for pool in _pools(stack_run.stack):
        group = stack_run.named(NODE_GROUP, f"gpu-{pool['name']}")
        template = stack_run.named("aws:ec2/launchTemplate:LaunchTemplate", f"gpu-{pool['name']}-launch-template")
        assert template.urn in templates and template.urn in group.dependencies
        # The template's id as the mock runtime gives it, and its latest version: a change rolls the nodes.
        assert group.inputs["launchTemplate"] == {"id": f"{template.name}-id", "version": "1"}
        assert template.inputs["metadataOptions"] == {"httpEndpoint": "enabled", "httpTokens": "required", "httpPutResponseHopLimit": 1}
        # The disk moves into the template (EKS refuses both); AL2023 keeps images on its root volume.
        assert "diskSize" not in group.inputs
        (volume,) = template.inputs["blockDeviceMappings"]
        assert volume["deviceName"] == "/dev/xvda"
        assert volume["ebs"]["volumeSize"] == pool.get("diskSizeGib", 100)
        assert volume["ebs"]["encrypted"] == "true"


def test_the_autoscaling_group_carries_the_node_template_so_pools_scale_from_zero(stack_run):
    cluster = _cluster(stack_run.stack)
    for pool in _pools(stack_run.stack):
        group = stack_run.named(NODE_GROUP, f"gpu-{pool['name']}")
        asg = group.outputs["resources"][0]["autoscalingGroups"][0]["name"]
        tags = {
            t.inputs["tag"]["key"]: t.inputs["tag"]
            for t in stack_run.of_type(TAG)
            if t.inputs["autoscalingGroupName"] == asg
        }
        expected = {
            f"{CA}/enabled": "true",
            f"{CA}/{cluster}": "owned",
            **{f"{CA}/node-template/label/{k}": v for k, v in pool["labels"].items()},
            f"{CA}/node-template/label/kubeflow-platform/gpu-pool": pool["name"],
            **{f"{CA}/node-template/taint/{t['key']}": f"{t['value']}:NoSchedule" for t in pool["taints"]},
            f"{CA}/node-template/resources/nvidia.com/gpu": str(pool["gpusPerNode"]),
        }
        assert {k: v["value"] for k, v in tags.items()} == expected
        assert all(v["propagateAtLaunch"] is False for v in tags.values())
        assert stack_run.exports["autoscalingGroupNames"][pool["name"]] == asg
        assert stack_run.exports["nodeGroupNames"][pool["name"]] == f"{cluster}-{pool['name']}"


def test_warm_nodes_are_held_by_pre_emptible_placeholders_pinned_to_their_pool(stack_run):
    warm = [p for p in _pools(stack_run.stack) if p.get("warmNodes")]
    deployments = [d for d in stack_run.of_type("kubernetes:apps/v1:Deployment") if d.name.endswith("-placeholder")]
    assert len(deployments) == len(warm)
    if not warm:
        assert stack_run.of_type("kubernetes:scheduling.k8s.io/v1:PriorityClass") == []
        return
    (priority,) = stack_run.of_type("kubernetes:scheduling.k8s.io/v1:PriorityClass")
    # Below every real pod (0), at or above cluster-autoscaler's expendable cutoff (-10).
    assert -10 <= priority.inputs["value"] < 0
    assert priority.inputs["preemptionPolicy"] == "Never" and priority.inputs["globalDefault"] is False
    for pool in warm:
        spec = stack_run.named("kubernetes:apps/v1:Deployment", f"gpu-{pool['name']}-placeholder").inputs["spec"]
        assert spec["replicas"] == pool["warmNodes"]
        pod = spec["template"]["spec"]
        assert pod["priorityClassName"] == priority.inputs["metadata"]["name"]
        assert pod["nodeSelector"] == {"kubeflow-platform/gpu-pool": pool["name"]}
        assert pod["tolerations"] == [
            {"key": t["key"], "operator": "Equal", "value": t["value"], "effect": "NoSchedule"} for t in pool["taints"]
        ]
        (container,) = pod["containers"]
        assert container["resources"]["requests"]["nvidia.com/gpu"] == "1"
        assert container["image"] == "registry.example.com/kubeflow/registry.k8s.io/pause:3.10"
        (term,) = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert term["topologyKey"] == "kubernetes.io/hostname"


def test_gpu_pools_need_an_explicit_choice_about_the_cni_policy():
    # No silent default that leaves AmazonEKS_CNI_Policy on the GPU node role.
    from tests.test_red_team_findings import settings_problems

    problems = settings_problems("dev", lambda raw: raw["gpu"].pop("vpcCniHasOwnRole"))
    assert any(p.startswith("gpu.vpcCniHasOwnRole: required with GPU pools") for p in problems), problems
    assert not any("vpcCniHasOwnRole" in p for p in settings_problems("dev", lambda raw: raw.update(gpu={"pools": []})))


def test_the_prod_stack_gives_its_gpu_node_role_no_cni_policy():
    from tests.conftest import run_stack

    run = run_stack("prod")
    policies = {a.inputs["policyArn"] for a in run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")}
    assert "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy" not in policies
