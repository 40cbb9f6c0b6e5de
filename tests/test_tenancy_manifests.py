"""The pure profile builders: kfam's names and shapes, group expansion, GPU policy, the ARN split."""

from __future__ import annotations

import json

import pytest

from manifests.tenancy import (
    Contributor,
    DataLake,
    MeshPolicy,
    ProfileSpec,
    Taint,
    binding_name,
    kfam_binding_name,
    contributor_roles,
    default_tolerations,
    identity_header_policy,
    manifest,
    namespace_object,
    parse_manifest,
    quota_object,
    role_bound_objects,
    static_objects,
)

MESH = MeshPolicy(
    trusted_principals=("cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account",),
    serving_namespaces=("knative-serving", "kserve", "istio-system"),
    serving_principals=("cluster.local/ns/knative-serving/sa/activator",),
)
LAKE = DataLake(bucket="corp-ml-pipelines", prefix="profiles/ana", region="eu-west-1", argo_key_format="artifacts/{{workflow.name}}")


@pytest.mark.parametrize(
    "user,role,expected",
    [
        ("alice@example.com", "edit", "user-alice-example-com-clusterrole-edit"),
        ("first.last+ml@corp.example.com", "view", "user-first-last-ml-corp-example-com-clusterrole-view"),
        ("Ann_O'Neil@Example.COM", "edit", "user-ann-o-neil-example-com-clusterrole-edit"),
    ],
)
def test_binding_names_are_the_ones_kfam_gives(user, role, expected):
    assert kfam_binding_name(user, role) == expected


@pytest.mark.parametrize(("user", "role"), [("alice@example.com", "edit"), ("first.last+ml@corp.example.com", "view")])
def test_the_stacks_contributor_objects_never_carry_kfams_name(user, role):
    # kfam creates its own RoleBinding and AuthorizationPolicy under its name when the dashboard adds a
    # contributor; the stack's own carry another, so neither writer's create meets the other's object.
    assert binding_name(user, role) == "kubeflow-platform-" + kfam_binding_name(user, role)
    assert binding_name(user, role) != kfam_binding_name(user, role)


def test_group_members_are_expanded_once_with_their_strongest_role_and_without_the_owner():
    groups = {"vision": ["ana@x.io", "ben@x.io", "cy@x.io"], "reviewers": ["ben@x.io", "dee@x.io"]}
    contributors = [
        Contributor(role="view", group="reviewers"),
        Contributor(role="edit", group="vision"),
        Contributor(role="view", user="cy@x.io"),
    ]
    assert contributor_roles("ana@x.io", contributors, groups) == {"ben@x.io": "edit", "cy@x.io": "edit", "dee@x.io": "view"}


def test_default_tolerations_are_in_the_kubernetes_spelling_and_listed_once():
    taints = [
        Taint(key="workload", value="ai-ml", effect="NO_SCHEDULE"),
        Taint(key="nvidia.com/gpu", value="", effect="NO_EXECUTE"),
        Taint(key="workload", value="ai-ml", effect="NO_SCHEDULE"),
        Taint(key="spot", value="true", effect="PREFER_NO_SCHEDULE"),
    ]
    assert default_tolerations(taints) == [
        {"key": "workload", "operator": "Equal", "value": "ai-ml", "effect": "NoSchedule"},
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoExecute"},
        {"key": "spot", "operator": "Equal", "value": "true", "effect": "PreferNoSchedule"},
    ]


def test_a_gpu_profile_gets_default_tolerations_and_its_gpu_quota():
    profile = ProfileSpec(name="ana", owner="ana@x.io", gpu_taints=(Taint(key="workload", value="ai-ml"),), gpus=4)
    annotations = namespace_object(profile, MESH)["metadata"]["annotations"]
    assert json.loads(annotations["scheduler.alpha.kubernetes.io/defaultTolerations"]) == [
        {"key": "workload", "operator": "Equal", "value": "ai-ml", "effect": "NoSchedule"}
    ]
    assert "scheduler.alpha.kubernetes.io/tolerationsWhitelist" not in annotations
    assert quota_object(profile)["spec"]["hard"] == {"requests.nvidia.com/gpu": "4"}


def test_a_profile_without_gpu_access_may_tolerate_nothing_and_request_no_gpu():
    profile = ProfileSpec(name="ben", owner="ben@x.io", cpu="8", memory="32Gi")
    annotations = namespace_object(profile, MESH)["metadata"]["annotations"]
    assert annotations["scheduler.alpha.kubernetes.io/tolerationsWhitelist"] == "[]"
    assert "scheduler.alpha.kubernetes.io/defaultTolerations" not in annotations
    assert quota_object(profile)["spec"]["hard"] == {
        "requests.nvidia.com/gpu": "0", "requests.cpu": "8", "requests.memory": "32Gi"
    }


def test_the_namespace_is_owned_for_adoption_and_joins_the_mesh_by_revision_when_one_is_set():
    profile = ProfileSpec(name="ana", owner="ana@x.io", labels={"team": "vision"})
    default = namespace_object(profile, MESH)["metadata"]
    revisioned = namespace_object(profile, MeshPolicy(**{**MESH.__dict__, "revision": "prod-1-24"}))["metadata"]
    assert default["annotations"]["owner"] == "ana@x.io"
    assert default["labels"] == {"istio-injection": "enabled", "team": "vision"}
    # Istio lets istio-injection win over istio.io/rev, so a revisioned namespace must not carry it.
    assert revisioned["labels"] == {"istio.io/rev": "prod-1-24", "team": "vision"}


def test_without_a_data_lake_the_profile_is_static_and_ordered_after_its_namespace():
    objects = static_objects(ProfileSpec(name="ana", owner="ana@x.io"), MESH)
    profile = next(o for o in objects if o["kind"] == "Profile")
    assert profile["spec"] == {"owner": {"kind": "User", "name": "ana@x.io"}}
    assert profile["metadata"]["annotations"] == {"config.kubernetes.io/depends-on": "/Namespace/ana"}
    assert not [o for o in objects if o["kind"] in ("ServiceAccount", "ConfigMap")]


def test_with_a_data_lake_only_the_role_bound_objects_carry_the_arn():
    profile = ProfileSpec(name="ana", owner="ana@x.io", data_lake=LAKE)
    arn = "arn:aws:iam::111111111111:role/ana-data-lake"
    assert arn not in manifest(static_objects(profile, MESH))
    assert "Profile" not in {o["kind"] for o in static_objects(profile, MESH)}
    bound = role_bound_objects(profile, arn)
    assert bound[0]["spec"]["plugins"] == [
        {"kind": "AwsIamForServiceAccount", "spec": {"awsIamRole": arn, "annotateOnly": True}}
    ]
    runner = next(o for o in bound if o["kind"] == "ServiceAccount")
    assert runner["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": arn}
    with pytest.raises(ValueError):
        role_bound_objects(ProfileSpec(name="ben", owner="ben@x.io"), arn)


def test_pipeline_artifacts_stay_under_the_profiles_prefix():
    objects = {o["metadata"]["name"]: o for o in static_objects(ProfileSpec(name="ana", owner="ana@x.io", data_lake=LAKE), MESH)}
    launcher = objects["kfp-launcher"]["data"]
    assert launcher["defaultPipelineRoot"] == "s3://corp-ml-pipelines/profiles/ana"
    assert json.loads(launcher["providers"])["s3"]["default"]["credentials"] == {"fromEnv": True}
    repositories = objects["artifact-repositories"]
    # Argo's default key is the one the KFP UI reads; the earlier key stays for workflows that resolved it.
    assert repositories["metadata"]["annotations"] == {"workflows.argoproj.io/default-artifact-repository": "artifact-repositories"}
    assert repositories["data"]["artifact-repositories"] == repositories["data"]["default-v1"]
    s3 = json.loads(repositories["data"]["artifact-repositories"])["s3"]
    assert s3["bucket"] == "corp-ml-pipelines" and s3["keyFormat"].startswith("profiles/ana/")
    assert s3["endpoint"] == "s3.amazonaws.com" and s3["region"] == "eu-west-1" and s3["useSDKCreds"] is True


def test_serving_network_policy_opens_only_queue_proxy_ports_of_inference_pods_to_the_serving_system():
    objects = static_objects(ProfileSpec(name="ana", owner="ana@x.io"), MESH)
    (policy,) = [o["spec"] for o in objects if o["kind"] == "NetworkPolicy"]
    assert policy["podSelector"] == {"matchExpressions": [{"key": "serving.kserve.io/inferenceservice", "operator": "Exists"}]}
    same_namespace, serving_system = policy["ingress"]
    assert same_namespace == {"from": [{"podSelector": {}}]}
    assert serving_system["from"][0]["namespaceSelector"]["matchExpressions"][0]["values"] == ["istio-system", "knative-serving", "kserve"]
    assert serving_system["ports"] == [{"protocol": "TCP", "port": p} for p in (8012, 8013, 9090)]


def test_serving_authorization_policies_select_only_kserve_component_pods():
    objects = static_objects(ProfileSpec(name="ana", owner="ana@x.io"), MESH)
    serving = [o for o in objects if o["kind"] == "AuthorizationPolicy" and o["metadata"]["name"].startswith("allow-serving-system")]
    # Without a selector the activator reached ports 8012/8013 of every pod of the profile, notebooks included.
    assert sorted(o["spec"]["selector"]["matchLabels"]["component"] for o in serving) == ["explainer", "predictor", "transformer"]
    for policy in serving:
        assert set(policy["spec"]["selector"]["matchLabels"]) == {"component"}
        proxies, metrics = policy["spec"]["rules"]
        assert proxies["from"][0]["source"]["principals"] == ["cluster.local/ns/knative-serving/sa/activator"]
        assert proxies["to"] == [{"operation": {"ports": ["8012", "8013"]}}]
        assert metrics["from"][0]["source"]["principals"] == ["cluster.local/ns/knative-serving/sa/controller"]
        assert metrics["to"] == [{"operation": {"ports": ["9090"], "methods": ["GET"], "paths": ["/metrics"]}}]
    assert all("selector" in o["spec"] for o in objects if o["kind"] == "AuthorizationPolicy"
               and not o["metadata"]["name"].startswith("user-"))


def _viewer_and_editor_rules(mesh: MeshPolicy) -> tuple[dict, dict]:
    profile = ProfileSpec(name="ana", owner="ana@x.io", contributors={"ben@x.io": "edit", "cy@x.io": "view"})
    policies = {o["metadata"]["annotations"]["user"]: o["spec"]["rules"][0] for o in static_objects(profile, mesh)
                if o["kind"] == "AuthorizationPolicy" and o["metadata"]["name"].startswith("kubeflow-platform-user-")}
    return policies["cy@x.io"], policies["ben@x.io"]


def test_by_default_a_viewer_reaches_the_profiles_pods_as_upstream_kfam_lets_them():
    viewer, editor = _viewer_and_editor_rules(MESH)
    assert viewer["when"][0]["values"] == ["cy@x.io"]
    assert "to" not in viewer and viewer["from"] == editor["from"]


def test_read_only_viewers_are_kept_out_of_notebook_servers():
    viewer, editor = _viewer_and_editor_rules(MeshPolicy(**{**MESH.__dict__, "viewers_read_only": True}))
    assert viewer["to"] == [{"operation": {"notPorts": ["8888"], "notPaths": ["/notebook/*"]}}]
    assert "to" not in editor


def test_the_manifest_keeps_every_value_a_string_where_it_was_one():
    objects = [{"kind": "ResourceQuota", "spec": {"hard": {"requests.nvidia.com/gpu": "0"}}, "data": {"x": "true", "y": "1e3"}}]
    text = manifest(objects)
    assert parse_manifest(text) == objects
    import yaml

    assert list(yaml.safe_load_all(text)) == objects


def test_profile_namespaces_get_the_identity_header_policy_with_the_serving_relays_on_queue_proxy_ports():
    template = {
        "apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
        "metadata": {"name": "kubeflow-identity-header-from-gateway-only", "namespace": "profile"},
        "spec": {"action": "DENY", "rules": [{"from": [{"source": {"notPrincipals": ["gw"]}}],
                                              "when": [{"key": "request.headers[kubeflow-userid]", "values": ["*"]}]}]},
    }
    assert identity_header_policy("ana", MESH) is None
    mesh = MeshPolicy(**{**MESH.__dict__, "identity_header_policy": template})
    policy = identity_header_policy("ana", mesh)
    assert policy["metadata"] == {"name": "kubeflow-identity-header-from-gateway-only", "namespace": "ana"}
    relay = "cluster.local/ns/knative-serving/sa/activator"
    assert [rule["from"][0]["source"] for rule in policy["spec"]["rules"]] == [{"notPrincipals": ["gw", relay]}, {"principals": [relay]}]
    assert policy["spec"]["rules"][1]["to"] == [{"operation": {"notPorts": ["8012", "8013"]}}]
    assert template["metadata"]["namespace"] == "profile" and len(template["spec"]["rules"]) == 1
    assert policy in static_objects(ProfileSpec(name="ana", owner="ana@example.com"), mesh)
