"""IRSA: the OIDC provider of the cluster's issuer, and roles only the named service accounts can assume.

prod uses IRSA and dev EKS Pod Identity (tests/test_pod_identity.py): the IRSA tests run on prod as it is and
on dev with only `identity.mechanism: irsa` set (the `irsa_run` fixture)."""

from __future__ import annotations

import json

import pytest

from tools.plan import kubernetes_objects
from manifests.objects import objects_from_config_group_inputs
from tests.conftest import _stack_kubeflow, irsa_overrides, irsa_settings, run_stack
from tests.upstream import manifests_path
from tests.iam_eval import allows
from tests.plans import evaluated_plan
from tools.mock_runtime import PlatformMocks, stack_config

ROLE = "aws:iam/role:Role"
PROVIDER = "aws:iam/openIdConnectProvider:OpenIdConnectProvider"


def _trust(role) -> dict:
    return json.loads(role.inputs["assumeRolePolicy"])


def _inline_policy(run, role_name: str) -> dict:
    return json.loads(run.named("aws:iam/rolePolicy:RolePolicy", f"{role_name}-policy").inputs["policy"])


def test_the_oidc_provider_is_the_clusters_issuer_without_a_thumbprint(irsa_run):
    provider = irsa_run.named(PROVIDER, "identity-oidc-provider")
    assert provider.inputs["url"] == irsa_run.exports["clusterOidcIssuer"]
    assert provider.inputs["clientIdLists"] == ["sts.amazonaws.com"]
    assert "thumbprintLists" not in provider.inputs
    assert provider.protect is (irsa_run.stack == "prod")
    assert irsa_run.exports["oidcProviderArn"] == provider.outputs["arn"]


def _subjects(role) -> list[str] | str:
    (statement,) = _trust(role)["Statement"]
    return next(v for k, v in statement["Condition"]["StringEquals"].items() if k.endswith(":sub"))


def test_the_pipelines_role_trusts_only_the_api_server_and_the_readers_role_the_ui(irsa_run):
    issuer = irsa_run.exports["clusterOidcIssuer"].removeprefix("https://")
    role = irsa_run.named(ROLE, "identity-pipelines")
    (statement,) = _trust(role)["Statement"]
    assert statement["Principal"] == {"Federated": irsa_run.exports["oidcProviderArn"]}
    assert statement["Condition"]["StringEquals"] == {
        f"{issuer}:sub": "system:serviceaccount:kubeflow:ml-pipeline",
        f"{issuer}:aud": "sts.amazonaws.com",
    }
    assert irsa_run.exports["roleArns"]["pipelines"] == role.outputs["arn"]
    readers = irsa_run.named(ROLE, "identity-pipelines-readers")
    assert _subjects(readers) == [
        "system:serviceaccount:kubeflow:ml-pipeline-ui",
        "system:serviceaccount:kubeflow:ml-pipeline-visualizationserver",
    ]
    assert irsa_run.exports["roleArns"]["pipelines-readers"] == readers.outputs["arn"]


def test_the_pipelines_ui_and_visualization_server_only_read(irsa_run):
    bucket = irsa_run.exports["bucketNames"]["pipelines"]
    readers = _inline_policy(irsa_run, "identity-pipelines-readers")
    writer = _inline_policy(irsa_run, "identity-pipelines")
    for key in ("artifacts/run/main.log", "pipelines/p.yaml", "v2/artifacts/x"):
        assert allows(readers, "s3:GetObject", f"arn:aws:s3:::{bucket}/{key}")
        assert not allows(readers, "s3:PutObject", f"arn:aws:s3:::{bucket}/{key}")
        assert not allows(readers, "s3:DeleteObject", f"arn:aws:s3:::{bucket}/{key}")
        assert allows(writer, "s3:PutObject", f"arn:aws:s3:::{bucket}/{key}")


def test_the_api_server_role_lists_only_its_own_prefixes_where_kfp_does_not_need_head_bucket(irsa_run):
    # KFP 2.16 (Kubeflow 26.03) only warns when HeadBucket is refused (kubeflow/pipelines@2.16.0
    # client_manager.go:956-960): the unconditioned s3:ListBucket, which lists every profile's key names, is gone.
    bucket = f"arn:aws:s3:::{irsa_run.exports['bucketNames']['pipelines']}"
    for role in ("identity-pipelines", "identity-pipelines-readers"):
        policy = _inline_policy(irsa_run, role)
        assert not allows(policy, "s3:ListBucket", bucket), role
        assert allows(policy, "s3:ListBucket", bucket, {"s3:prefix": "pipelines/"}), role
        assert not allows(policy, "s3:ListBucket", bucket, {"s3:prefix": "profiles/alice/"}), role


def test_the_api_server_role_passes_its_bucket_check():
    """Before KFP 2.16 (Kubeflow 1.10.2 here)."""
    # kubeflow/pipelines@2.5.0 client_manager.go:546-551 exits unless minio-go's BucketExists, a HeadBucket
    # (minio/minio-go@v6.0.57 api-stat.go:40-59), succeeds; HeadBucket is authorised by s3:ListBucket, no prefix.
    # On IRSA: dev's Pod Identity is refused at 1.10.2, whose minio-go cannot use it.
    run = run_stack("dev", {"kubeflow": {**_stack_kubeflow("dev"), "version": "1.10.2",
                                         "manifests": str(manifests_path("1.10.2"))}, **irsa_overrides("dev")})
    bucket = f"arn:aws:s3:::{run.exports['bucketNames']['pipelines']}"
    assert allows(_inline_policy(run, "identity-pipelines"), "s3:ListBucket", bucket)
    assert not allows(_inline_policy(run, "identity-pipelines-readers"), "s3:ListBucket", bucket)


def test_the_external_argos_service_accounts_get_no_role_unless_the_stack_asks(stack_run):
    # KFP runs as default-editor in the profile's namespace, never as argo/*; and argo-workflow is not in
    # Argo's own manifests, so a patch of it fails where the enterprise's Argo did not create it.
    assert not any(r.name == "identity-argo" for r in stack_run.of_type(ROLE))
    assert "argo" not in stack_run.exports["roleArns"]
    assert stack_run.of_type("kubernetes:core/v1:ServiceAccountPatch") == []


def test_an_opted_in_argo_service_account_gets_the_argo_role_once_it_exists():
    run = run_stack("dev", {"identity": {"argoServiceAccounts": ["argo-server"]}})
    role = run.named(ROLE, "identity-argo")
    assert _subjects(role) == "system:serviceaccount:argo:argo-server"
    bucket = run.exports["bucketNames"]["pipelines"]
    argo = {s["Sid"]: s for s in _inline_policy(run, "identity-argo")["Statement"]}
    assert argo["ReadWriteObjects"]["Resource"] == [f"arn:aws:s3:::{bucket}/artifacts/*"]
    (patch,) = run.of_type("kubernetes:core/v1:ServiceAccountPatch")
    # Only the role annotation, under the program's own field manager: the account is the enterprise Argo's.
    assert patch.inputs["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": run.exports["roleArns"]["argo"],
                                                       "pulumi.com/patchFieldManager": "kubeflow-platform"}
    assert {role.urn, run.named("aws:iam/rolePolicy:RolePolicy", "identity-argo-policy").urn} <= set(patch.dependencies)


def test_platform_roles_reach_only_their_prefixes_of_the_pipelines_bucket(irsa_run):
    bucket = irsa_run.exports["bucketNames"]["pipelines"]
    prefixes = ["artifacts", "pipelines", "v2"]
    for role, sid in (("identity-pipelines", "ReadWriteObjects"), ("identity-pipelines-readers", "ReadObjects")):
        statements = {s["Sid"]: s for s in _inline_policy(irsa_run, role)["Statement"]}
        assert statements[sid]["Resource"] == [f"arn:aws:s3:::{bucket}/{p}/*" for p in prefixes]
        assert statements["ListOwnPrefixes"]["Condition"] == {
            "StringLike": {"s3:prefix": [v for p in prefixes for v in (f"{p}/", f"{p}/*")]}
        }
        kms = stack_config(irsa_run.stack)["kubeflow-platform:artifacts"]["buckets"][0].get("kmsKeyArn")
        assert ("UseBucketKey" in statements) is bool(kms)
        if kms:
            assert statements["UseBucketKey"]["Resource"] == kms
            assert statements["UseBucketKey"]["Condition"]["StringEquals"] == {"kms:ViaService": "s3.us-west-2.amazonaws.com"}


def test_roles_carry_names_the_program_chose_so_their_arns_are_known_at_preview(irsa_run):
    preview = run_stack(irsa_run.stack, irsa_overrides(irsa_run.stack), preview=True)
    assert {"roleArns", "oidcProviderArn"}.isdisjoint(preview.unknown_exports)
    account = stack_config(irsa_run.stack)["kubeflow-platform:aws"]["allowedAccountIds"][0]
    prefix = f"kubeflow-platform-{irsa_run.stack}"
    assert preview.exports["roleArns"] == {
        "pipelines": f"arn:aws:iam::{account}:role/{prefix}-identity-pipelines",
        "pipelines-readers": f"arn:aws:iam::{account}:role/{prefix}-identity-pipelines-readers",
    }
    for role in irsa_run.of_type(ROLE):
        if role.name.startswith(("identity-", "tenancy-")):
            assert role.inputs["name"].startswith(prefix + "-") and len(role.inputs["name"]) <= 64, role.name
            # The role waits for the OIDC provider its trust policy names.
            assert irsa_run.named(PROVIDER, "identity-oidc-provider").urn in role.dependencies


def test_an_adopted_provider_is_used_and_none_is_created():
    mocks = PlatformMocks(stack_config("dev"))
    existing = f"arn:aws:iam::111111111111:oidc-provider/{mocks.issuer.removeprefix('https://')}"
    run = run_stack("dev", {"identity": {"oidcProviderArn": existing}})
    assert run.of_type(PROVIDER) == []
    assert run.exports["oidcProviderArn"] == existing
    (statement,) = _trust(run.named(ROLE, "identity-pipelines"))["Statement"]
    assert statement["Principal"] == {"Federated": existing}


def test_irsa_roles_can_be_parented_elsewhere_and_keep_their_policy_beside_them():
    # What tenancy does for per-profile roles: call irsa_role with its own parent.
    import pulumi

    from components import identity as identity_module

    created = []
    original = identity_module.WorkloadIdentity._platform_roles

    def platform_roles_and_one_more(self, platform):
        original(self, platform)
        other = pulumi.ComponentResource("test:index:Owner", "owner", opts=pulumi.ResourceOptions(parent=self))
        created.append(self.irsa_role(
            "profile-alice", namespace="alice", service_accounts=["default-editor"],
            policy={"Version": "2012-10-17", "Statement": []}, opts=pulumi.ResourceOptions(parent=other),
        ))

    identity_module.WorkloadIdentity._platform_roles = platform_roles_and_one_more
    try:
        run = run_stack("dev")
    finally:
        identity_module.WorkloadIdentity._platform_roles = original
    role = run.named(ROLE, "profile-alice")
    policy = run.named("aws:iam/rolePolicy:RolePolicy", "profile-alice-policy")
    assert role.parent.endswith("test:index:Owner::owner") and policy.parent == role.parent
    assert role.provider == run.named(ROLE, "identity-pipelines").provider
    assert created


def test_a_plain_policy_and_one_with_outputs_give_the_same_document():
    # A plain document is serialised at once (a thousand profiles' policies would otherwise each become
    # dozens of Outputs); one holding Outputs waits for them. The text IAM receives is the same.
    import pulumi
    from pulumi.runtime.sync_await import _sync_await

    from components.identity import _policy_json

    document = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::b/*"}]}
    assert _policy_json(document) == json.dumps(document, sort_keys=True)
    deferred = {**document, "Statement": [{**document["Statement"][0], "Resource": pulumi.Output.from_input("arn:aws:s3:::b/*")}]}
    later = _policy_json(deferred)
    assert isinstance(later, pulumi.Output)
    assert _sync_await(later.future()) == _policy_json(document)


def _groups_holding(run, kind: str, namespace: str, name: str) -> list:
    found = []
    for group in run.of_type("kubernetes:yaml/v2:ConfigGroup"):
        for obj in objects_from_config_group_inputs(group.inputs):
            metadata = obj.get("metadata") or {}
            if obj.get("kind") == kind and (metadata.get("namespace"), metadata.get("name")) == (namespace, name):
                found.append((group, obj))
    return found


@pytest.mark.parametrize("account,deployment,role", [
    ("ml-pipeline", "ml-pipeline", "identity-pipelines"),
    ("ml-pipeline-ui", "ml-pipeline-ui", "identity-pipelines-readers"),
    ("ml-pipeline-visualizationserver", "ml-pipeline-visualizationserver", "identity-pipelines-readers"),
])
def test_pipeline_workloads_have_their_role_before_their_first_pod(irsa_run, account, deployment, role):
    """The pod identity webhook reads the role from the ServiceAccount when the pod is created, never later
    (aws/amazon-eks-pod-identity-webhook@v0.6.17 deploy/mutatingwebhook.yaml:21); without it the API server's
    bucket check fails and it exits (kubeflow/pipelines@2.5.0 client_manager.go:546-551)."""
    ((group, service_account),) = _groups_holding(irsa_run, "ServiceAccount", "kubeflow", account)
    arn = irsa_run.exports["roleArns"]["pipelines" if role == "identity-pipelines" else "pipelines-readers"]
    assert service_account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == arn
    ((deployment_group, workload),) = _groups_holding(irsa_run, "Deployment", "kubeflow", deployment)
    assert deployment_group.urn == group.urn
    assert workload["spec"]["template"]["spec"]["serviceAccountName"] == account
    # No patch after the fact, and the group waits for the role with its permissions.
    assert irsa_run.of_type("kubernetes:core/v1:ServiceAccountPatch") == []
    role_resource = irsa_run.named(ROLE, role)
    policy = irsa_run.named("aws:iam/rolePolicy:RolePolicy", f"{role}-policy")
    assert {role_resource.urn, policy.urn} <= set(group.dependencies)


def test_the_offline_preview_knows_every_role_annotation_and_profile_object(irsa_run):
    """Role names chosen by the program make the ARNs known at preview: the groups that carry them
    (Kubeflow's core, each data-lake profile's) are previewed in full."""
    plan, _ = evaluated_plan(irsa_run.stack, settings=irsa_settings(irsa_run.stack))
    found = kubernetes_objects(plan)
    assert found.not_expanded == []
    account = stack_config(irsa_run.stack)["kubeflow-platform:aws"]["allowedAccountIds"][0]
    runners = [o.obj for o in found.objects if o.obj.get("kind") == "ServiceAccount"
               and o.obj["metadata"]["name"] == "pipeline-runner" and o.obj["metadata"]["namespace"] != "kubeflow"]
    assert runners, "the data-lake profiles' pipeline-runner accounts"
    for runner in runners:
        namespace = runner["metadata"]["namespace"]
        assert runner["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == (
            f"arn:aws:iam::{account}:role/kubeflow-platform-{irsa_run.stack}-tenancy-{namespace}-data-lake")


def test_kfp_runs_as_default_editor_so_argos_own_accounts_serve_no_run(stack_run):
    # kubeflow/pipelines@2.5.0 template.go:304 sets every run's service account from this key; the profile
    # controller gives default-editor its profile's data-lake role, so runs never need argo/* to have one.
    configs = [o for group in stack_run.of_type("kubernetes:yaml/v2:ConfigGroup")
               for o in objects_from_config_group_inputs(group.inputs)
               if o.get("kind") == "ConfigMap" and "DEFAULTPIPELINERUNNERSERVICEACCOUNT" in (o.get("data") or {})]
    assert [c["data"]["DEFAULTPIPELINERUNNERSERVICEACCOUNT"] for c in configs] == ["default-editor"]
    assert "argo" not in stack_run.exports["roleArns"]
