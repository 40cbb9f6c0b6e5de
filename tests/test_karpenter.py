"""Karpenter GPU pools (gpu.provisioner: karpenter): schema-valid NodePools and EC2NodeClasses with the node
group's taints and labels, GPU limits, disruption that leaves running work alone, IMDSv2, warm capacity."""

from __future__ import annotations

import copy
import os
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

from config.capacity import GpuPoolSettings, GpuSettings, TaintSettings
from manifests import guardrails
from manifests.guardrails import PlannedResource
from manifests.karpenter import DO_NOT_DISRUPT, ec2_node_class, keep_training_on_its_node, node_pool, resource_name
from tests.conftest import shared_run
from tools.mock_runtime import stack_config

NODE_POOL = "kubernetes:karpenter.sh/v1:NodePool"
NODE_CLASS = "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass"
#: The Karpenter release whose CRDs the objects are checked against.
KARPENTER_TAG = "v1.14.1"
#: A git directory of aws/karpenter-provider-aws (a bare clone will do): with it the full CRD schemas are used.
_MIRROR = Path(os.environ.get("KARPENTER_SOURCE", "/nonexistent"))
#: What the objects rely on, restated from the CRDs at KARPENTER_TAG for machines without Karpenter's source
#: (aws/karpenter-provider-aws@v1.14.1 pkg/apis/crds/karpenter.sh_nodepools.yaml,
#: karpenter.k8s.aws_ec2nodeclasses.yaml): required fields and the enums the program sets.
_RESTATED = {
    "NodePool": {
        "type": "object", "required": ["template"],
        "properties": {
            "template": {"type": "object", "required": ["spec"], "properties": {"spec": {
                "type": "object", "required": ["nodeClassRef", "requirements"],
                "properties": {
                    "nodeClassRef": {"type": "object", "required": ["group", "kind", "name"]},
                    "taints": {"type": "array", "items": {"type": "object", "required": ["effect", "key"], "properties": {
                        "effect": {"enum": ["NoSchedule", "PreferNoSchedule", "NoExecute"]}}}},
                    "expireAfter": {"type": "string", "pattern": r"^(([0-9]+(s|m|h))+|Never)$"},
                }}}},
            "disruption": {"type": "object", "properties": {
                "consolidationPolicy": {"enum": ["WhenEmpty", "WhenEmptyOrUnderutilized", "Balanced"]},
                "consolidateAfter": {"type": "string", "pattern": r"^(([0-9]+(s|m|h))+|Never)$"}}},
        },
    },
    "EC2NodeClass": {
        "type": "object", "required": ["amiSelectorTerms", "securityGroupSelectorTerms", "subnetSelectorTerms"],
        "properties": {"metadataOptions": {"type": "object", "properties": {
            "httpTokens": {"enum": ["required", "optional"]},
            "httpPutResponseHopLimit": {"type": "integer", "minimum": 1, "maximum": 64}}}},
    },
}
_CRD_FILES = {"NodePool": "karpenter.sh_nodepools.yaml", "EC2NodeClass": "karpenter.k8s.aws_ec2nodeclasses.yaml"}


def _spec_schema(kind: str) -> dict:
    """The CRD's openAPIV3Schema of `spec`, read from Karpenter's source at KARPENTER_TAG when it is on this
    machine, else the restated facts above."""
    if (_MIRROR / "HEAD").exists():
        text = subprocess.run(["git", "-C", str(_MIRROR), "show", f"{KARPENTER_TAG}:pkg/apis/crds/{_CRD_FILES[kind]}"],
                              capture_output=True, text=True, check=False).stdout
        if text:
            (version,) = [v for v in yaml.safe_load(text)["spec"]["versions"] if v["name"] == "v1"]
            return version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return _RESTATED[kind]


POOL = GpuPoolSettings(
    name="a100", instance_types=("p4d.24xlarge",), subnet_ids=("subnet-0a1b2c3d4e5f60001", "subnet-0a1b2c3d4e5f60002"),
    max_size=3, gpus_per_node=8, capacity_type="SPOT", labels={"workload": "training"},
    taints=(TaintSettings(key="nvidia.com/gpu", value="", effect="NO_SCHEDULE"),
            TaintSettings(key="workload", value="training", effect="NO_EXECUTE")),
)


def _dev_pool() -> dict:
    (pool,) = stack_config("dev")["kubeflow-platform:gpu"]["pools"]
    return pool


@pytest.mark.parametrize("kind,make", [
    ("NodePool", lambda: node_pool(POOL, {"workload": "training"})),
    ("EC2NodeClass", lambda: ec2_node_class(POOL, cluster_name="ml-dev", role="node-role")),
])
def test_the_objects_are_valid_against_karpenters_crds(kind, make):
    obj = make()
    jsonschema.validate(obj["spec"], _spec_schema(kind))
    # The same schema refuses a wrong value: the validation can fail.
    broken = copy.deepcopy(obj)
    if kind == "NodePool":
        broken["spec"]["disruption"]["consolidationPolicy"] = "WhenIdle"
    else:
        broken["spec"]["metadataOptions"]["httpTokens"] = "sometimes"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken["spec"], _spec_schema(kind))


def test_the_dev_stack_registers_schema_valid_objects_for_its_karpenter_pool():
    run = shared_run("dev")
    pool = _dev_pool()
    nodes = run.named(NODE_POOL, f"gpu-{pool['name']}-node-pool")
    node_class = run.named(NODE_CLASS, f"gpu-{pool['name']}-node-class")
    jsonschema.validate(nodes.inputs["spec"], _spec_schema("NodePool"))
    # The role is the node role's name, known at deploy; the mock runtime gives it a value.
    jsonschema.validate(node_class.inputs["spec"], _spec_schema("EC2NodeClass"))
    assert node_class.urn in nodes.dependencies
    assert not run.of_type("aws:eks/nodeGroup:NodeGroup")
    assert run.exports["karpenterNodePoolNames"] == {pool["name"]: resource_name(pool["name"])}
    access = run.named("aws:eks/accessEntry:AccessEntry", "gpu-karpenter-node-access")
    assert access.inputs["type"] == "EC2_LINUX" and access.urn in node_class.dependencies


def test_karpenter_nodes_carry_the_taints_the_profiles_tolerate_and_the_node_groups_labels():
    run = shared_run("dev")
    pool = _dev_pool()
    template = run.named(NODE_POOL, f"gpu-{pool['name']}-node-pool").inputs["spec"]["template"]
    assert template["metadata"]["labels"] == {**pool["labels"], "kubeflow-platform/gpu-pool": pool["name"]}
    taints = template["spec"]["taints"]
    assert taints == [{"key": t["key"], "value": t["value"], "effect": "NoSchedule"} for t in pool["taints"]]
    # What the placeholder pods tolerate is what profiles' GPU pods tolerate (components.gpu.tolerations).
    placeholder = [d for d in run.of_type("kubernetes:apps/v1:Deployment") if d.name.endswith("-placeholder")]
    for deployment in placeholder:
        tolerations = deployment.inputs["spec"]["template"]["spec"]["tolerations"]
        for taint in taints:
            assert any(t["key"] == taint["key"] and t["effect"] == taint["effect"]
                       and t.get("value", "") in ("", taint.get("value", "")) for t in tolerations)


def test_gpu_requirements_and_limits_follow_the_pool():
    spec = node_pool(POOL, {"workload": "training"})["spec"]
    requirements = {r["key"]: r["values"] for r in spec["template"]["spec"]["requirements"]}
    assert requirements["node.kubernetes.io/instance-type"] == ["p4d.24xlarge"]
    assert requirements["karpenter.sh/capacity-type"] == ["spot"]
    assert requirements["karpenter.k8s.aws/instance-gpu-count"] == ["8"]
    assert requirements["karpenter.k8s.aws/instance-gpu-manufacturer"] == ["nvidia"]
    assert requirements["kubernetes.io/arch"] == ["amd64"]
    # maxSize nodes of 8 GPUs each.
    assert spec["limits"] == {"nvidia.com/gpu": "24"}


def test_disruption_never_consolidates_running_work_and_nodes_never_expire():
    spec = node_pool(POOL, {})["spec"]
    assert spec["disruption"]["consolidationPolicy"] == "WhenEmpty"
    assert spec["disruption"]["budgets"] == [{"nodes": "1"}]
    assert spec["template"]["spec"]["expireAfter"] == "Never"


def test_pods_on_karpenter_nodes_cannot_reach_the_node_roles_credentials():
    spec = ec2_node_class(POOL, cluster_name="ml-dev", role="node-role")["spec"]
    assert spec["metadataOptions"]["httpTokens"] == "required"
    assert spec["metadataOptions"]["httpPutResponseHopLimit"] == 1
    (volume,) = spec["blockDeviceMappings"]
    assert volume["ebs"]["encrypted"] is True and volume["ebs"]["volumeSize"] == "100Gi"
    assert spec["subnetSelectorTerms"] == [{"id": s} for s in POOL.subnet_ids]
    # Pinned by default to an AL2023 release: `latest` would drift every node to each new AMI.
    assert spec["amiSelectorTerms"] == [{"alias": "al2023@v20260724"}]


def test_a_pool_may_override_the_stacks_provisioner_and_karpenter_refuses_a_minimum():
    gpu = GpuSettings(provisioner="karpenter", pools=(POOL,), vpc_cni_has_own_role=True)
    assert gpu.pool_provisioner(POOL) == "karpenter"
    own = GpuPoolSettings(**{**POOL.__dict__, "provisioner": "nodeGroups", "min_size": 1})
    assert GpuSettings(provisioner="karpenter", pools=(own,), vpc_cni_has_own_role=True).pool_provisioner(own) == "nodeGroups"
    assert list(GpuSettings(provisioner="karpenter", pools=(own,), vpc_cni_has_own_role=True).cross_check()) == []
    minimum = GpuPoolSettings(**{**POOL.__dict__, "min_size": 1})
    problems = list(GpuSettings(provisioner="karpenter", pools=(minimum,), vpc_cni_has_own_role=True).cross_check())
    assert [path for path, _ in problems] == ["pools[0].minSize"]


def test_the_gpu_guardrail_refuses_an_untainted_karpenter_gpu_pool():
    spec = node_pool(POOL, {})["spec"]
    spec["template"]["spec"]["taints"] = []
    found = guardrails.gpu_node_group_tainted_and_labelled(PlannedResource(type=NODE_POOL, name="p", props={"spec": spec}))
    assert any("no NoSchedule or NoExecute taint" in m for m in found)
    assert any("template labels are empty" in m for m in found)


def _runtime_pod_templates(objects: list[dict]) -> list[dict]:
    return [job["template"]["spec"]["template"] for obj in objects if obj.get("kind") == "ClusterTrainingRuntime"
            for job in obj["spec"]["template"]["spec"]["replicatedJobs"]]


def test_training_pods_are_marked_do_not_disrupt_only_where_a_pool_is_karpenters():
    from manifests.objects import objects_from_config_group_inputs

    def runtimes(run) -> list[dict]:
        objects = [obj for group in run.of_type("kubernetes:yaml/v2:ConfigGroup")
                   for obj in objects_from_config_group_inputs(group.inputs)]
        return _runtime_pod_templates(objects)

    dev, prod = runtimes(shared_run("dev")), runtimes(shared_run("prod"))
    assert dev and prod
    assert all(t["metadata"]["annotations"][DO_NOT_DISRUPT] == "true" for t in dev)
    assert not any(DO_NOT_DISRUPT in ((t.get("metadata") or {}).get("annotations") or {}) for t in prod)


def test_the_do_not_disrupt_step_leaves_other_objects_and_annotations_alone():
    runtime = {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "ClusterTrainingRuntime", "metadata": {"name": "t"},
               "spec": {"template": {"spec": {"replicatedJobs": [
                   {"name": "node", "template": {"spec": {"template": {"metadata": {"annotations": {"a": "b"}},
                                                                       "spec": {"containers": []}}}}}]}}}}
    other = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "n"}}
    result = keep_training_on_its_node([runtime, other])
    (template,) = _runtime_pod_templates(result.objects)
    assert template["metadata"]["annotations"] == {"a": "b", DO_NOT_DISRUPT: "true"}
    assert result.objects[1] is other and len(result.changes) == 1
    assert "annotations" in runtime["spec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["metadata"]
    assert DO_NOT_DISRUPT not in runtime["spec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["metadata"]["annotations"]


def _emitted(run) -> list[dict]:
    """The run's Kubernetes objects, the external Argo's ConfigMap patch (kind ConfigMapPatch) among them."""
    from tests.test_contracts import emitted_objects

    return emitted_objects(run)


def _trial_pod_templates(objects: list[dict]) -> list[dict]:
    from manifests.karpenter import KATIB_TRIAL_TEMPLATES, _pod_templates_in

    (configmap,) = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == KATIB_TRIAL_TEMPLATES]
    return [t for text in configmap["data"].values() for t in _pod_templates_in(yaml.safe_load(text))]


def _workflow_pod_annotations(objects: list[dict]) -> dict:
    (configmap,) = [o for o in objects if o["kind"] in ("ConfigMap", "ConfigMapPatch")
                    and "artifactRepository" in (o.get("data") or {})]
    defaults = yaml.safe_load(configmap["data"].get("workflowDefaults") or "{}") or {}
    return ((defaults.get("spec") or {}).get("podMetadata") or {}).get("annotations") or {}


def test_katib_trials_and_every_pipeline_step_are_marked_do_not_disrupt_only_where_a_pool_is_karpenters():
    dev, prod = _emitted(shared_run("dev")), _emitted(shared_run("prod"))
    trials = _trial_pod_templates(dev)
    assert trials and all(t["metadata"]["annotations"][DO_NOT_DISRUPT] == "true" for t in trials)
    # KFP's steps are the external Argo's workflow pods: its workflowDefaults put the annotation on each.
    assert _workflow_pod_annotations(dev) == {DO_NOT_DISRUPT: "true"}
    assert not any(DO_NOT_DISRUPT in ((t.get("metadata") or {}).get("annotations") or {}) for t in _trial_pod_templates(prod))
    assert _workflow_pod_annotations(prod) == {}


def test_the_workflow_default_keeps_the_workflows_service_account_and_other_keys():
    configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "workflow-controller-configmap", "namespace": "argo"},
                 "data": {"artifactRepository": "s3: {}\n",
                          "workflowDefaults": yaml.safe_dump({"spec": {"serviceAccountName": "argo-workflow",
                                                                       "podMetadata": {"annotations": {"a": "b"}}}})}}
    result = keep_training_on_its_node([configmap])
    (changed,) = result.objects
    defaults = yaml.safe_load(changed["data"]["workflowDefaults"])
    assert defaults == {"spec": {"serviceAccountName": "argo-workflow",
                                 "podMetadata": {"annotations": {"a": "b", DO_NOT_DISRUPT: "true"}}}}
    assert changed["data"]["artifactRepository"] == "s3: {}\n" and len(result.changes) == 1
    assert "a" in yaml.safe_load(configmap["data"]["workflowDefaults"])["spec"]["podMetadata"]["annotations"]
    assert DO_NOT_DISRUPT not in configmap["data"]["workflowDefaults"]
    # Marked once: a second pass changes nothing.
    assert keep_training_on_its_node(result.objects).changes == ()


# ------------------------------------------------------------------------------------- the pinned AMI


def _load(stack: str, **changes):
    """The stack's settings with `changes` (top-level key -> function of its raw value) applied."""
    import config

    raw = {key.split(":", 1)[1]: copy.deepcopy(value) for key, value in stack_config(stack).items()}
    for key, change in changes.items():
        raw[key] = change(raw.get(key))
    return config.parse(raw, config.Secrets(), set(config.SECRET_KEYS), stack)


def _with_pool(**pool_changes):
    def change(gpu):
        gpu["pools"][0].update(pool_changes)
        return gpu
    return change


def _as_karpenter(gpu):
    gpu["provisioner"] = "karpenter"
    for pool in gpu["pools"]:
        pool.update(minSize=0, desiredSize=0)
    return gpu


def test_the_dev_pool_pins_its_ami_release_in_the_ec2nodeclass():
    (node_class,) = [r for r in shared_run("dev").resources if r.type == NODE_CLASS]
    assert node_class.inputs["spec"]["amiSelectorTerms"] == [{"alias": _dev_pool()["amiAlias"]}]
    assert _dev_pool()["amiAlias"] == "al2023@v20260724"


@pytest.mark.parametrize("alias,expected", [
    ("al2023", "is not a Karpenter AMI alias: al2023@vYYYYMMDD"),
    ("al2023@20260724", "is not a Karpenter AMI alias"),
    ("al2023@v20261399", "v20261399 is not a release date (vYYYYMMDD)"),
    ("windows2022@latest", "is not a Karpenter AMI alias"),
    ("bottlerocket@v20260724", "Bottlerocket releases are vX.Y.Z, like bottlerocket@v1.26.0"),
    ("bottlerocket@v1.26.0", "'bottlerocket@v1.26.0' is a bottlerocket AMI but amiType is AL2023_x86_64_NVIDIA; pin a release of al2023, like amiAlias: al2023@v20260724"),
])
def test_a_malformed_or_mismatched_ami_alias_is_refused_naming_the_pool_and_the_fix(alias, expected):
    import config

    with pytest.raises(config.SettingsError) as refused:
        _load("dev", gpu=_with_pool(amiAlias=alias))
    assert "gpu.pools[0].amiAlias" in str(refused.value) and expected in str(refused.value)


def test_latest_is_refused_on_a_protected_stack_and_allowed_on_dev():
    import config

    assert _load("dev", gpu=_with_pool(amiAlias="al2023@latest")).gpu.pools[0].ami_alias == "al2023@latest"
    with pytest.raises(config.SettingsError) as refused:
        _load("prod", gpu=lambda gpu: _as_karpenter(_with_pool(amiAlias="al2023@latest")(gpu)))
    message = str(refused.value)
    assert "gpu.pools[0].amiAlias: al2023@latest replaces every node of the pool whenever AWS releases an AMI" in message
    assert "protect: true" in message and "like amiAlias: al2023@v20260724" in message
    # prod's node groups ignore the alias; pinned, the same Karpenter prod loads.
    assert _load("prod", gpu=_as_karpenter).gpu.pools[0].ami_alias == "al2023@v20260724"


# ----------------------------------------------------------------------------------- the node role


def test_the_program_creates_the_node_role_and_its_access_entry_unless_the_stack_names_karpenters():
    own = shared_run("dev")
    (node_class,) = [r for r in own.resources if r.type == NODE_CLASS]
    (entry,) = [r for r in own.resources if r.type == "aws:eks/accessEntry:AccessEntry" and "karpenter-node" in r.name]
    assert entry.inputs["type"] == "EC2_LINUX"
    roles = [r for r in own.resources if r.type == "aws:iam/role:Role" and r.name.endswith("-node-role")]
    assert len(roles) == 1
    gpu = copy.deepcopy(stack_config("dev")["kubeflow-platform:gpu"])
    gpu["karpenterNodeRole"] = "KarpenterNodeRole-ml-dev"
    named = shared_run("dev", {"gpu": gpu})
    (node_class,) = [r for r in named.resources if r.type == NODE_CLASS]
    assert node_class.inputs["spec"]["role"] == "KarpenterNodeRole-ml-dev"
    # dev's one pool is Karpenter's: no role of the program's, and the named role's access is the cluster's.
    assert not [r for r in named.resources if r.type == "aws:iam/role:Role" and r.name.endswith("-node-role")]
    assert not [r for r in named.resources if r.type == "aws:eks/accessEntry:AccessEntry"]


def test_a_node_role_given_as_an_arn_is_refused_naming_the_name_to_give():
    import config

    with pytest.raises(config.SettingsError) as refused:
        _load("dev", gpu=lambda gpu: {**gpu, "karpenterNodeRole": "arn:aws:iam::111111111111:role/KarpenterNodeRole-ml-dev"})
    assert "gpu.karpenterNodeRole" in str(refused.value) and "takes the role's name (the part after :role/)" in str(refused.value)
