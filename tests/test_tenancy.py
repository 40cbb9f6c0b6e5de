"""Both stacks' profiles under the mock runtime: every generated object is read and checked."""

from __future__ import annotations

import copy
import json

from manifests.tenancy import parse_manifest
from tests.conftest import run_stack
from tests.upstream import manifests_path
from tools.mock_runtime import ProgramRun, Registration, stack_config

CONFIG_GROUP = "kubernetes:yaml/v2:ConfigGroup"
NAMESPACE_PATCH = "kubernetes:core/v1:NamespacePatch"
ROLE = "aws:iam/role:Role"


def tenancy_groups(run: ProgramRun) -> dict[str, Registration]:
    tenancy = run.named("kubeflow-platform:tenancy:Tenancy", "tenancy")
    # Not the group of no profile: who may create profiles at run time (tests/test_profile_registration.py).
    return {r.name: r for r in run.of_type(CONFIG_GROUP) if r.parent == tenancy.urn and r.name != "tenancy-registration"}


def namespace_patches(run: ProgramRun) -> dict[str, Registration]:
    """Profile name -> the NamespacePatch of its kept namespace."""
    tenancy = run.named("kubeflow-platform:tenancy:Tenancy", "tenancy")
    return {r.inputs["metadata"]["name"]: r for r in run.of_type(NAMESPACE_PATCH) if r.parent == tenancy.urn}


def objects_of(group: Registration) -> list[dict]:
    return parse_manifest(group.inputs["yaml"])


def profile_objects(run: ProgramRun) -> dict[str, dict[tuple[str, str], dict]]:
    """Profile name -> (kind, name) -> object, over both groups of each profile."""
    found: dict[str, dict[tuple[str, str], dict]] = {}
    for group in tenancy_groups(run).values():
        profile = group.name.removeprefix("tenancy-").rsplit("-", 1)[0]
        for obj in objects_of(group):
            key = (obj["kind"], obj["metadata"]["name"])
            assert key not in found.setdefault(profile, {}), f"{key} twice in profile {profile}"
            found[profile][key] = obj
    for profile, patch in namespace_patches(run).items():
        key = ("Namespace", profile)
        assert key not in found.setdefault(profile, {}), f"{key} twice in profile {profile}"
        found[profile][key] = patch.inputs
    return found


def tenancy_settings(stack: str) -> dict:
    return stack_config(stack)["kubeflow-platform:tenancy"]


def test_every_profile_gets_its_namespace_profile_quota_and_serving_policies(stack_run):
    objects = profile_objects(stack_run)
    settings = tenancy_settings(stack_run.stack)
    assert set(objects) == {p["name"] for p in settings["profiles"]}
    for profile in settings["profiles"]:
        mine = objects[profile["name"]]
        assert mine[("Profile", profile["name"])]["spec"]["owner"] == {"kind": "User", "name": profile["owner"]}
        namespace = mine[("Namespace", profile["name"])]["metadata"]
        assert namespace["annotations"]["owner"] == profile["owner"]
        assert {("ResourceQuota", "profile-quota"), ("NetworkPolicy", "allow-serving-system"),
                ("AuthorizationPolicy", "allow-serving-system-predictor")} <= set(mine)
        for obj in mine.values():
            if obj["kind"] not in ("Namespace", "Profile"):
                assert obj["metadata"]["namespace"] == profile["name"], obj


def test_each_profile_is_one_group_and_with_irsa_a_data_lake_adds_a_role_and_a_small_group(stack_run):
    groups = tenancy_groups(stack_run)
    roles = {r.name for r in stack_run.of_type(ROLE) if r.name.startswith("tenancy-")}
    irsa = stack_run.exports["identityMechanism"] == "irsa"
    for profile in tenancy_settings(stack_run.stack)["profiles"]:
        name = profile["name"]
        expected = {f"tenancy-{name}-namespace"}
        expected |= {f"tenancy-{name}-profile"} if "dataLake" in profile and irsa else set()
        assert {g for g in groups if g.startswith(f"tenancy-{name}-")} == expected
        assert name in namespace_patches(stack_run)
        assert (f"tenancy-{name}-data-lake" in roles) == ("dataLake" in profile)
    for group in groups.values():
        assert group.provider.split("::")[-2] == f"k8s-{stack_config(stack_run.stack)['kubeflow-platform:cluster']['name']}"
        assert group.inputs["resourcePrefix"] == group.name.rsplit("-", 1)[0]


def test_with_pod_identity_a_profiles_group_waits_for_its_role_and_names_it_nowhere(stack_run):
    if stack_run.exports["identityMechanism"] == "irsa":
        # With IRSA the service accounts' annotation names the role: test_the_role_arn_lives_only_in_the_small_group...
        return
    lakes = [p["name"] for p in tenancy_settings(stack_run.stack)["profiles"] if "dataLake" in p]
    assert lakes, "the stack must have a profile with a data lake to test"
    groups = tenancy_groups(stack_run)
    for name in lakes:
        group = groups[f"tenancy-{name}-namespace"]
        role = stack_run.named(ROLE, f"tenancy-{name}-data-lake")
        policy = stack_run.named("aws:iam/rolePolicy:RolePolicy", f"tenancy-{name}-data-lake-policy")
        associations = [r for r in stack_run.of_type("aws:eks/podIdentityAssociation:PodIdentityAssociation")
                        if r.name.startswith(f"tenancy-{name}-data-lake-")]
        assert {a.inputs["serviceAccount"] for a in associations} == {"default-editor", "pipeline-runner"}
        # No pod of the profile starts before the role, its policy and the associations that serve it.
        assert {role.urn, policy.urn, *(a.urn for a in associations)} <= set(group.dependencies)
        assert "arn:aws:iam::" not in group.inputs["yaml"]
        objects = {(o["kind"], o["metadata"]["name"]): o for o in objects_of(group)}
        assert "plugins" not in objects[("Profile", name)]["spec"]
        assert "annotations" not in objects[("ServiceAccount", "pipeline-runner")]["metadata"]


def test_contributors_get_what_kfam_creates_under_the_stacks_own_name_and_owners_get_nothing_extra(stack_run):
    objects = profile_objects(stack_run)
    settings = tenancy_settings(stack_run.stack)
    groups = {g["name"]: g["members"] for g in settings["groups"]}
    for profile in settings["profiles"]:
        expected: dict[str, str] = {}
        for contributor in profile.get("contributors", []):
            users = [contributor["user"]] if "user" in contributor else groups[contributor["group"]]
            for user in users:
                if user != profile["owner"] and expected.get(user) != "edit":
                    expected[user] = contributor.get("role", "edit")
        bindings = {o["metadata"]["annotations"]["user"]: o for (kind, _), o in objects[profile["name"]].items()
                    if kind == "RoleBinding" and "user" in o["metadata"].get("annotations", {})}
        assert {user: b["metadata"]["annotations"]["role"] for user, b in bindings.items()} == expected
        for user, role in expected.items():
            # kfam's name (user-<email>-clusterrole-<role>) behind the stack's prefix: the dashboard's own
            # binding for the same user is another object, so neither writer's create meets the other's.
            name = "kubeflow-platform-user-" + user.replace("@", "-").replace(".", "-") + f"-clusterrole-{role}"
            binding = objects[profile["name"]][("RoleBinding", name)]
            assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": f"kubeflow-{role}"}
            assert binding["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]
            policy = objects[profile["name"]][("AuthorizationPolicy", name)]
            assert policy["apiVersion"] == "security.istio.io/v1beta1"
            assert policy["metadata"]["annotations"] == {"user": user, "role": role}
            assert policy["spec"]["rules"] == [{
                "from": [{"source": {"principals": [
                    "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account",
                    "cluster.local/ns/kubeflow/sa/ml-pipeline-ui",
                ]}}],
                "when": [{"key": "request.headers[kubeflow-userid]", "values": [user]}],
            }]


def test_gpu_profiles_tolerate_exactly_their_pools_taints_and_the_others_nothing(stack_run):
    config = stack_config(stack_run.stack)
    pools = {p["name"]: p for p in config["kubeflow-platform:gpu"]["pools"]}
    spelling = {"NO_SCHEDULE": "NoSchedule", "NO_EXECUTE": "NoExecute", "PREFER_NO_SCHEDULE": "PreferNoSchedule"}
    objects = profile_objects(stack_run)
    with_gpus = without_gpus = 0
    for profile in config["kubeflow-platform:tenancy"]["profiles"]:
        annotations = objects[profile["name"]][("Namespace", profile["name"])]["metadata"]["annotations"]
        hard = objects[profile["name"]][("ResourceQuota", "profile-quota")]["spec"]["hard"]
        if profile.get("gpuPools"):
            with_gpus += 1
            expected = []
            for pool in profile["gpuPools"]:
                for taint in pools[pool]["taints"]:
                    toleration = {"key": taint["key"], "operator": "Equal", "value": taint["value"], "effect": spelling[taint["effect"]]}
                    if toleration not in expected:
                        expected.append(toleration)
            assert json.loads(annotations["scheduler.alpha.kubernetes.io/defaultTolerations"]) == expected
            assert "scheduler.alpha.kubernetes.io/tolerationsWhitelist" not in annotations
            assert hard["requests.nvidia.com/gpu"] == str(profile["quota"]["gpus"])
        else:
            without_gpus += 1
            assert annotations["scheduler.alpha.kubernetes.io/tolerationsWhitelist"] == "[]"
            assert "scheduler.alpha.kubernetes.io/defaultTolerations" not in annotations
            assert hard["requests.nvidia.com/gpu"] == "0"
    assert with_gpus and without_gpus, "each stack declares profiles with and without GPU access"


def test_namespaces_join_the_mesh_as_the_stack_says(stack_run):
    revision = stack_config(stack_run.stack)["kubeflow-platform:kubeflow"].get("mesh", {}).get("revision")
    for name, objects in profile_objects(stack_run).items():
        labels = objects[("Namespace", name)]["metadata"]["labels"]
        (profile,) = [p for p in tenancy_settings(stack_run.stack)["profiles"] if p["name"] == name]
        mesh = {"istio.io/rev": revision} if revision else {"istio-injection": "enabled"}
        # Bound to the Pod Security policy and marked declared on every data plane (manifests/admission.py).
        mesh.update({"kubeflow-platform/pod-admission": "baseline", "kubeflow-platform/profile": "declared"})
        # istio-init's NET_ADMIN and NET_RAW need privileged (prod's mesh has no CNI; docs/mesh.md).
        data_plane = stack_config(stack_run.stack)["kubeflow-platform:kubeflow"]["mesh"]["dataPlane"]
        if data_plane == "sidecar-init":
            mesh["pod-security.kubernetes.io/enforce"] = "privileged"
        assert labels == {**profile.get("labels", {}), **mesh}


def test_a_data_lake_role_is_trusted_only_by_the_profiles_workloads_and_reaches_only_its_prefix(irsa_run):
    # IRSA's trust by service-account subject; Pod Identity's session-tag trust: tests/test_pod_identity.py.
    config = stack_config(irsa_run.stack)
    prefix = config["kubeflow-platform:artifacts"]["bucketPrefix"]
    lakes = 0
    for profile in config["kubeflow-platform:tenancy"]["profiles"]:
        if "dataLake" not in profile:
            continue
        lakes += 1
        role = irsa_run.named(ROLE, f"tenancy-{profile['name']}-data-lake")
        trust = json.loads(role.inputs["assumeRolePolicy"])
        (statement,) = trust["Statement"]
        subjects = next(v for k, v in statement["Condition"]["StringEquals"].items() if k.endswith(":sub"))
        assert sorted(subjects) == [f"system:serviceaccount:{profile['name']}:default-editor",
                                    f"system:serviceaccount:{profile['name']}:pipeline-runner"]
        # WorkloadIdentity.irsa_role attaches the permissions as the role's one RolePolicy.
        permissions = irsa_run.named("aws:iam/rolePolicy:RolePolicy", f"tenancy-{profile['name']}-data-lake-policy")
        assert permissions.inputs["role"] == role.outputs.get("name", role.inputs.get("name")) or permissions.dependencies
        bucket = f"{prefix}-{profile['dataLake']['bucket']}"
        for statement in json.loads(permissions.inputs["policy"])["Statement"]:
            for resource in [statement["Resource"]] if isinstance(statement["Resource"], str) else statement["Resource"]:
                assert resource.startswith((f"arn:aws:s3:::{bucket}/{profile['dataLake']['prefix']}/", "arn:aws:kms:")) \
                    or resource == f"arn:aws:s3:::{bucket}", resource
    assert lakes


def test_the_role_arn_lives_only_in_the_small_group_that_annotates_the_workloads(irsa_run):
    groups = tenancy_groups(irsa_run)
    for name, group in groups.items():
        if name.endswith(("-namespace", "-retained")):
            assert "arn:aws:iam::" not in group.inputs["yaml"], name
            continue
        profile = name.removeprefix("tenancy-").removesuffix("-profile")
        arn = irsa_run.named(ROLE, f"tenancy-{profile}-data-lake").outputs["arn"]
        objects = {(o["kind"], o["metadata"]["name"]): o for o in objects_of(group)}
        plugin = objects[("Profile", profile)]["spec"]["plugins"]
        assert plugin == [{"kind": "AwsIamForServiceAccount", "spec": {"awsIamRole": arn, "annotateOnly": True}}]
        runner = objects[("ServiceAccount", "pipeline-runner")]
        assert runner["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": arn}
        assert any(d.endswith(f"tenancy-{profile}-namespace") for d in group.dependencies)


def test_pipelines_write_artifacts_under_the_profiles_prefix(stack_run):
    config = stack_config(stack_run.stack)
    objects = profile_objects(stack_run)
    for profile in config["kubeflow-platform:tenancy"]["profiles"]:
        mine = objects[profile["name"]]
        if "dataLake" not in profile:
            assert ("ConfigMap", "kfp-launcher") not in mine and ("ConfigMap", "artifact-repositories") not in mine
            continue
        bucket = f"{config['kubeflow-platform:artifacts']['bucketPrefix']}-{profile['dataLake']['bucket']}"
        root = mine[("ConfigMap", "kfp-launcher")]["data"]["defaultPipelineRoot"]
        assert root == f"s3://{bucket}/{profile['dataLake']['prefix']}"
        s3 = json.loads(mine[("ConfigMap", "artifact-repositories")]["data"]["default-v1"])["s3"]
        assert s3["bucket"] == bucket and s3["keyFormat"].startswith(profile["dataLake"]["prefix"] + "/")


def test_removing_a_user_from_a_group_removes_exactly_that_users_bindings():
    tenancy = copy.deepcopy(tenancy_settings("dev"))
    (vision,) = [g for g in tenancy["groups"] if g["name"] == "vision-team"]
    assert "bob@example.com" in vision["members"]
    vision["members"].remove("bob@example.com")
    before, after = run_stack("dev"), run_stack("dev", {"tenancy": tenancy})

    def registered(run: ProgramRun) -> dict[tuple, object]:
        """Every registered input, the ConfigGroups' objects one by one."""
        found: dict[tuple, object] = {}
        for r in run.resources:
            if r.type == CONFIG_GROUP and "yaml" in r.inputs:
                for obj in parse_manifest(r.inputs["yaml"]):
                    meta = obj["metadata"]
                    found[(r.urn, obj["kind"], meta.get("namespace"), meta["name"])] = obj
                found[(r.urn, "inputs")] = {k: v for k, v in r.inputs.items() if k != "yaml"}
            else:
                found[(r.urn, "inputs")] = r.inputs
        return found

    old, new = registered(before), registered(after)
    removed = sorted(key[1:] for key in old.keys() - new.keys())
    assert removed == [
        ("AuthorizationPolicy", "alice", "kubeflow-platform-user-bob-example-com-clusterrole-edit"),
        ("RoleBinding", "alice", "kubeflow-platform-user-bob-example-com-clusterrole-edit"),
    ]
    assert new.keys() <= old.keys()
    assert [key for key in new if new[key] != old[key]] == []


def test_viewers_read_only_setting_reaches_every_viewers_policy():
    tenancy = copy.deepcopy(tenancy_settings("dev"))
    tenancy["viewersReadOnly"] = True
    objects = profile_objects(run_stack("dev", {"tenancy": tenancy}))
    viewers = [obj for mine in objects.values() for obj in mine.values()
               if obj["kind"] == "AuthorizationPolicy" and obj["metadata"].get("annotations", {}).get("role") == "view"]
    editors = [obj for mine in objects.values() for obj in mine.values()
               if obj["kind"] == "AuthorizationPolicy" and obj["metadata"].get("annotations", {}).get("role") == "edit"]
    assert viewers and editors
    for policy in viewers:
        assert policy["spec"]["rules"][0]["to"] == [{"operation": {"notPorts": ["8888"], "notPaths": ["/notebook/*"]}}]
    for policy in editors:
        assert "to" not in policy["spec"]["rules"][0]


def test_removing_a_profile_leaves_its_namespace_and_its_users_data(stack_run):
    groups, patches = tenancy_groups(stack_run), namespace_patches(stack_run)
    for profile in tenancy_settings(stack_run.stack)["profiles"]:
        name = profile["name"]
        patch, rest = patches[name], groups[f"tenancy-{name}-namespace"]
        # The Namespace alone is retained on delete: the profile's other objects (its access grants among
        # them) go with the profile, its users' notebooks, volumes and runs stay in the cluster.
        assert patch.retain_on_delete is True and not rest.retain_on_delete
        assert "Namespace" not in {o["kind"] for o in objects_of(rest)}
        assert patch.urn in rest.dependencies


def test_a_profile_added_again_patches_its_retained_namespace_instead_of_creating_it(stack_run):
    # A removed profile's namespace stays on the cluster; created again, pulumi-kubernetes would refuse it with
    # AlreadyExists. A server-side apply patch applies onto it (and creates it when absent), with the
    # program's own field manager and force over the fields the stack sets.
    for name, patch in namespace_patches(stack_run).items():
        annotations = patch.inputs["metadata"]["annotations"]
        assert annotations["pulumi.com/patchFieldManager"] == "kubeflow-platform"
        assert annotations["pulumi.com/patchForce"] == "true"
        assert annotations["owner"]
        assert patch.inputs["metadata"]["labels"], name


def test_letting_a_profile_removal_delete_its_namespace_takes_the_explicit_setting():
    kubeflow = dict(stack_config("dev")["kubeflow-platform:kubeflow"], keepCrdsAndNamespaces=False,
                    manifests=str(manifests_path()))
    run = run_stack("dev", {"kubeflow": kubeflow})
    assert all(not g.retain_on_delete for g in tenancy_groups(run).values())
    # Not kept: the stack owns the namespace outright (created, deleted with the profile), no patch.
    assert namespace_patches(run) == {}
    for profile in tenancy_settings("dev")["profiles"]:
        group = tenancy_groups(run)[f"tenancy-{profile['name']}-retained"]
        assert [(o["kind"], o["metadata"]["name"]) for o in objects_of(group)] == [("Namespace", profile["name"])]
