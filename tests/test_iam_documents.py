"""The IAM documents as AWS evaluates them: who may assume a role, and what a role may touch."""

from __future__ import annotations

import pytest

from manifests.iam import irsa_trust_policy, issuer_host_path, s3_access_policy, tls_only_bucket_policy

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
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["artifacts", "artifacts/*", "pipelines", "pipelines/*"]}}
    objects = policy["ReadWriteObjects"]
    assert objects["Resource"] == [
        "arn:aws:s3:::example-ml-dev-pipelines/artifacts/*",
        "arn:aws:s3:::example-ml-dev-pipelines/pipelines/*",
    ]
    assert {"s3:GetObject", "s3:PutObject", "s3:DeleteObject"} <= set(objects["Action"])
    assert not any(a.endswith("*") for s in policy.values() for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"]))
    assert "UseBucketKey" not in policy


def test_read_only_access_cannot_write_and_only_decrypts():
    key = "arn:aws:kms:us-west-2:222222222222:key/6f1c2a9e-3b4d-4e5f-8a7b-9c0d1e2f3a4b"
    policy = _by_sid(s3_access_policy(bucket="b-models", prefixes=["profiles/carol"], read_only=True, kms_key_arn=key))
    assert set(policy["ReadObjects"]["Action"]) == {"s3:GetObject", "s3:GetObjectVersion"}
    assert policy["UseBucketKey"] == {"Sid": "UseBucketKey", "Effect": "Allow", "Action": ["kms:Decrypt"], "Resource": key}


def test_writers_of_a_kms_bucket_may_generate_data_keys():
    key = "arn:aws:kms:us-west-2:222222222222:key/6f1c2a9e-3b4d-4e5f-8a7b-9c0d1e2f3a4b"
    policy = _by_sid(s3_access_policy(bucket="b", prefixes=["p"], kms_key_arn=key))
    assert policy["UseBucketKey"]["Action"] == ["kms:Decrypt", "kms:GenerateDataKey"]


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
