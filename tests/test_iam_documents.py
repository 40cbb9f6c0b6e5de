"""The IAM documents as AWS evaluates them: who may assume a role, and what a role may touch."""

from __future__ import annotations

import pytest

from manifests.iam import (
    ROLE_NAME_LIMIT, annotate_service_accounts, irsa_trust_policy, issuer_host_path, oidc_provider_arn, role_arn, role_name,
    s3_access_policy, tls_only_bucket_policy,
)
from tests.iam_eval import allows

ISSUER = "https://oidc.eks.us-west-2.amazonaws.com/id/ABCDEF0123456789"
PROVIDER = "arn:aws:iam::111111111111:oidc-provider/oidc.eks.us-west-2.amazonaws.com/id/ABCDEF0123456789"
HOST = "oidc.eks.us-west-2.amazonaws.com/id/ABCDEF0123456789"


def test_trust_is_pinned_to_the_service_account_and_the_sts_audience():
    policy = irsa_trust_policy(provider_arn=PROVIDER, issuer=ISSUER, subjects=[("kubeflow", "ml-pipeline")])
    (statement,) = policy["Statement"]
    assert policy["Version"] == "2012-10-17"
    assert statement["Effect"] == "Allow"
    assert statement["Principal"] == {"Federated": PROVIDER}
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Condition"] == {
        "StringEquals": {f"{HOST}:sub": "system:serviceaccount:kubeflow:ml-pipeline", f"{HOST}:aud": "sts.amazonaws.com"}
    }


def test_several_service_accounts_are_a_list_and_never_a_wildcard():
    policy = irsa_trust_policy(
        provider_arn=PROVIDER, issuer=HOST, subjects=[("argo", "argo-server"), ("argo", "argo-workflow"), ("argo", "argo-server")]
    )
    condition = policy["Statement"][0]["Condition"]
    assert "StringLike" not in condition
    assert condition["StringEquals"][f"{HOST}:sub"] == [
        "system:serviceaccount:argo:argo-server",
        "system:serviceaccount:argo:argo-workflow",
    ]


@pytest.mark.parametrize("issuer", [ISSUER, HOST, ISSUER + "/"])
def test_the_condition_key_is_the_issuer_without_scheme(issuer):
    assert issuer_host_path(issuer) == HOST


def test_a_provider_of_another_issuer_is_refused():
    other = PROVIDER.replace("ABCDEF0123456789", "0000000000000000")
    with pytest.raises(ValueError, match="not the one for the issuer"):
        irsa_trust_policy(provider_arn=other, issuer=ISSUER, subjects=[("kubeflow", "ml-pipeline")])


def test_a_role_without_subjects_is_refused():
    with pytest.raises(ValueError, match="at least one"):
        irsa_trust_policy(provider_arn=PROVIDER, issuer=ISSUER, subjects=[])


def _by_sid(policy: dict) -> dict:
    return {s["Sid"]: s for s in policy["Statement"]}


def test_s3_access_lists_and_touches_only_its_prefixes():
    policy = _by_sid(s3_access_policy(bucket="example-ml-dev-pipelines", prefixes=["artifacts/", "/pipelines"]))
    listing = policy["ListOwnPrefixes"]
    assert listing["Action"] == "s3:ListBucket"
    assert listing["Resource"] == "arn:aws:s3:::example-ml-dev-pipelines"
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["artifacts/", "artifacts/*", "pipelines/", "pipelines/*"]}}
    objects = policy["ReadWriteObjects"]
    assert objects["Resource"] == [
        "arn:aws:s3:::example-ml-dev-pipelines/artifacts/*",
        "arn:aws:s3:::example-ml-dev-pipelines/pipelines/*",
    ]
    assert {"s3:GetObject", "s3:PutObject", "s3:DeleteObject"} <= set(objects["Action"])
    assert not any(a.endswith("*") for s in policy.values() for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"]))
    assert "UseBucketKey" not in policy


KEY = "arn:aws:kms:us-west-2:222222222222:key/6f1c2a9e-3b4d-4e5f-8a7b-9c0d1e2f3a4b"
#: What S3 sends KMS for an object of bucket `b` with S3 Bucket Keys on: the bucket's ARN as encryption context.
VIA_S3 = {"kms:ViaService": "s3.us-west-2.amazonaws.com", "kms:EncryptionContext:aws:s3:arn": "arn:aws:s3:::b"}


def test_read_only_access_cannot_write_and_only_decrypts():
    policy = s3_access_policy(bucket="b", prefixes=["profiles/carol"], read_only=True, kms_key_arn=KEY, region="us-west-2")
    assert set(_by_sid(policy)["ReadObjects"]["Action"]) == {"s3:GetObject", "s3:GetObjectVersion"}
    assert not allows(policy, "s3:PutObject", "arn:aws:s3:::b/profiles/carol/x")
    assert allows(policy, "kms:Decrypt", KEY, VIA_S3)
    assert not allows(policy, "kms:GenerateDataKey", KEY, VIA_S3)


def test_writers_of_a_kms_bucket_may_generate_data_keys():
    policy = s3_access_policy(bucket="b", prefixes=["p"], kms_key_arn=KEY, region="us-west-2")
    assert allows(policy, "kms:GenerateDataKey", KEY, VIA_S3)
    # Without S3 Bucket Keys S3 names the object instead.
    assert allows(policy, "kms:Decrypt", KEY, {**VIA_S3, "kms:EncryptionContext:aws:s3:arn": "arn:aws:s3:::b/p/run/out.csv"})


@pytest.mark.parametrize("request_context", [
    {},  # the key used directly (kms:Decrypt from the CLI, or any other client)
    {"kms:ViaService": "ec2.us-west-2.amazonaws.com", "kms:EncryptionContext:aws:s3:arn": "arn:aws:s3:::b"},
    {"kms:ViaService": "s3.us-east-1.amazonaws.com", "kms:EncryptionContext:aws:s3:arn": "arn:aws:s3:::b"},
    {"kms:ViaService": "s3.us-west-2.amazonaws.com", "kms:EncryptionContext:aws:s3:arn": "arn:aws:s3:::b-models"},
    {"kms:ViaService": "s3.us-west-2.amazonaws.com", "kms:EncryptionContext:aws:s3:arn": "arn:aws:s3:::b/q/secret"},
], ids=["directly", "through another service", "through S3 elsewhere", "for another bucket", "for another prefix"])
def test_a_shared_bucket_key_serves_a_role_only_through_s3_for_its_own_bucket(request_context):
    policy = s3_access_policy(bucket="b", prefixes=["p"], kms_key_arn=KEY, region="us-west-2")
    assert not allows(policy, "kms:Decrypt", KEY, request_context)


def test_a_kms_grant_needs_the_region_it_is_bound_to():
    with pytest.raises(ValueError, match="region"):
        s3_access_policy(bucket="b", prefixes=["p"], kms_key_arn=KEY)


def test_a_prefix_that_is_a_stem_of_another_lists_none_of_its_keys():
    # profiles/al and profiles/alice: S3 lists every key starting with the requested prefix.
    policy = s3_access_policy(bucket="b", prefixes=["profiles/al"])
    bucket = "arn:aws:s3:::b"
    assert allows(policy, "s3:ListBucket", bucket, {"s3:prefix": "profiles/al/"})
    assert allows(policy, "s3:ListBucket", bucket, {"s3:prefix": "profiles/al/run1/"})
    assert not allows(policy, "s3:ListBucket", bucket, {"s3:prefix": "profiles/al"})
    assert not allows(policy, "s3:ListBucket", bucket, {"s3:prefix": "profiles/alice/"})
    assert not allows(policy, "s3:ListBucket", bucket, {"s3:prefix": ""})


def test_head_bucket_is_allowed_only_to_a_role_that_checks_the_bucket():
    # HeadBucket is authorised by s3:ListBucket and carries no s3:prefix (a condition on an absent key is false).
    bucket = "arn:aws:s3:::b"
    scoped = s3_access_policy(bucket="b", prefixes=["pipelines", "v2"])
    assert not allows(scoped, "s3:ListBucket", bucket)
    checking = s3_access_policy(bucket="b", prefixes=["pipelines", "v2"], bucket_check=True)
    assert allows(checking, "s3:ListBucket", bucket)
    # It still reads and writes nothing outside its prefixes.
    assert not allows(checking, "s3:GetObject", "arn:aws:s3:::b/profiles/alice/data.csv")


def test_role_names_are_deterministic_distinct_and_within_iams_limit():
    assert role_name("kubeflow-platform-dev", "identity-pipelines") == "kubeflow-platform-dev-identity-pipelines"
    long_a = role_name("kubeflow-platform-prod", "tenancy-" + "a" * 60 + "-data-lake")
    long_b = role_name("kubeflow-platform-prod", "tenancy-" + "a" * 59 + "b-data-lake")
    assert len(long_a) <= ROLE_NAME_LIMIT and len(long_b) <= ROLE_NAME_LIMIT
    assert long_a != long_b
    assert long_a == role_name("kubeflow-platform-prod", "tenancy-" + "a" * 60 + "-data-lake")
    assert role_arn("111111111111", "r") == "arn:aws:iam::111111111111:role/r"
    assert oidc_provider_arn("111111111111", ISSUER) == PROVIDER
    with pytest.raises(ValueError):
        role_arn("", "r")


def test_service_accounts_named_get_their_role_and_nothing_else_changes():
    objects = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "ml-pipeline", "namespace": "kubeflow"}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "other", "namespace": "kubeflow",
                                                                   "annotations": {"a": "b"}}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ml-pipeline", "namespace": "kubeflow"}},
    ]
    annotated = annotate_service_accounts(objects, {"kubeflow/ml-pipeline": "arn:aws:iam::1:role/r"})
    assert annotated[0]["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/r"}
    assert annotated[1:] == objects[1:]
    assert "annotations" not in objects[0]["metadata"]


@pytest.mark.parametrize("prefixes", [[], [""], ["/"], ["profiles/*"]])
def test_whole_bucket_or_wildcard_prefixes_are_refused(prefixes):
    with pytest.raises(ValueError):
        s3_access_policy(bucket="b", prefixes=prefixes)


def test_the_bucket_policy_denies_every_request_without_tls():
    (statement,) = tls_only_bucket_policy(bucket="example-ml-prod-models")["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Principal"] == "*"
    assert statement["Action"] == "s3:*"
    assert statement["Resource"] == ["arn:aws:s3:::example-ml-prod-models", "arn:aws:s3:::example-ml-prod-models/*"]
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
