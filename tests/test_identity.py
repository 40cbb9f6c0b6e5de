"""IRSA: the OIDC provider of the cluster's issuer, and roles only the named service accounts can assume."""

from __future__ import annotations

import json

from tests.conftest import run_stack
from tools.mock_runtime import PlatformMocks, stack_config

ROLE = "aws:iam/role:Role"
PROVIDER = "aws:iam/openIdConnectProvider:OpenIdConnectProvider"


def _trust(role) -> dict:
    return json.loads(role.inputs["assumeRolePolicy"])


def _inline_policy(run, role_name: str) -> dict:
    return json.loads(run.named("aws:iam/rolePolicy:RolePolicy", f"{role_name}-policy").inputs["policy"])


def test_the_oidc_provider_is_the_clusters_issuer_without_a_thumbprint(stack_run):
    provider = stack_run.named(PROVIDER, "identity-oidc-provider")
    assert provider.inputs["url"] == stack_run.exports["clusterOidcIssuer"]
    assert provider.inputs["clientIdLists"] == ["sts.amazonaws.com"]
    assert "thumbprintLists" not in provider.inputs
    assert provider.protect is (stack_run.stack == "prod")
    assert stack_run.exports["oidcProviderArn"] == provider.outputs["arn"]


def test_the_pipelines_role_trusts_only_kubeflow_pipelines_service_accounts(stack_run):
    issuer = stack_run.exports["clusterOidcIssuer"].removeprefix("https://")
    role = stack_run.named(ROLE, "identity-pipelines")
    (statement,) = _trust(role)["Statement"]
    assert statement["Principal"] == {"Federated": stack_run.exports["oidcProviderArn"]}
    assert statement["Condition"]["StringEquals"] == {
        f"{issuer}:sub": [
            "system:serviceaccount:kubeflow:ml-pipeline",
            "system:serviceaccount:kubeflow:ml-pipeline-ui",
            "system:serviceaccount:kubeflow:ml-pipeline-visualizationserver",
        ],
        f"{issuer}:aud": "sts.amazonaws.com",
    }
    assert stack_run.exports["roleArns"]["pipelines"] == role.outputs["arn"]


def test_the_argo_role_trusts_the_configured_argo_namespace(stack_run):
    config = stack_config(stack_run.stack)
    namespace = config["kubeflow-platform:kubeflow"]["argo"]["namespace"]
    accounts = config["kubeflow-platform:identity"]["argoServiceAccounts"]
    (statement,) = _trust(stack_run.named(ROLE, "identity-argo"))["Statement"]
    subjects = next(v for k, v in statement["Condition"]["StringEquals"].items() if k.endswith(":sub"))
    assert subjects == [f"system:serviceaccount:{namespace}:{a}" for a in accounts]


def test_platform_roles_reach_only_their_prefixes_of_the_pipelines_bucket(stack_run):
    bucket = stack_run.exports["bucketNames"]["pipelines"]
    pipelines = {s["Sid"]: s for s in _inline_policy(stack_run, "identity-pipelines")["Statement"]}
    assert pipelines["ReadWriteObjects"]["Resource"] == [
        f"arn:aws:s3:::{bucket}/artifacts/*", f"arn:aws:s3:::{bucket}/pipelines/*", f"arn:aws:s3:::{bucket}/v2/*",
    ]
    argo = {s["Sid"]: s for s in _inline_policy(stack_run, "identity-argo")["Statement"]}
    assert argo["ReadWriteObjects"]["Resource"] == [f"arn:aws:s3:::{bucket}/artifacts/*"]
    assert argo["ListOwnPrefixes"]["Condition"] == {"StringLike": {"s3:prefix": ["artifacts", "artifacts/*"]}}
    kms = stack_config(stack_run.stack)["kubeflow-platform:artifacts"]["buckets"][0].get("kmsKeyArn")
    assert ("UseBucketKey" in argo) is bool(kms)
    if kms:
        assert argo["UseBucketKey"]["Resource"] == kms


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
