"""S3 buckets: deterministic names, encryption, versioning, no public access, no ACLs, TLS only, and
protection that differs between dev and prod."""

from __future__ import annotations

import json

from tools.mock_runtime import stack_config

S3 = "aws:s3/"


def _artifacts(stack: str) -> dict:
    return stack_config(stack)["kubeflow-platform:artifacts"]


def test_buckets_have_deterministic_names_and_are_exported(stack_run):
    artifacts = _artifacts(stack_run.stack)
    expected = {b["purpose"]: f"{artifacts['bucketPrefix']}-{b['purpose']}" for b in artifacts["buckets"]}
    buckets = {r.name.removeprefix("artifacts-"): r.inputs["bucket"] for r in stack_run.of_type(f"{S3}bucket:Bucket")}
    assert buckets == expected == stack_run.exports["bucketNames"]


def test_every_bucket_blocks_public_access_and_acls_and_refuses_plain_http(stack_run):
    for bucket in stack_run.of_type(f"{S3}bucket:Bucket"):
        name = bucket.name
        block = stack_run.named(f"{S3}bucketPublicAccessBlock:BucketPublicAccessBlock", f"{name}-public-access")
        assert {k: block.inputs[k] for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")} == {
            "blockPublicAcls": True, "blockPublicPolicy": True, "ignorePublicAcls": True, "restrictPublicBuckets": True,
        }
        ownership = stack_run.named(f"{S3}bucketOwnershipControls:BucketOwnershipControls", f"{name}-ownership")
        assert ownership.inputs["rule"] == {"objectOwnership": "BucketOwnerEnforced"}
        policy = json.loads(stack_run.named(f"{S3}bucketPolicy:BucketPolicy", f"{name}-tls-only").inputs["policy"])
        (deny,) = policy["Statement"]
        assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        assert deny["Resource"] == [bucket.outputs["arn"], bucket.outputs["arn"] + "/*"]
        # S3 refuses concurrent configuration changes of one bucket: the policy waits for the block.
        assert block.urn in stack_run.named(f"{S3}bucketPolicy:BucketPolicy", f"{name}-tls-only").dependencies


def test_encryption_uses_the_configured_kms_key_or_s3_managed_keys(stack_run):
    for spec in _artifacts(stack_run.stack)["buckets"]:
        encryption = stack_run.named(
            f"{S3}bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
            f"artifacts-{spec['purpose']}-encryption",
        )
        (rule,) = encryption.inputs["rules"]
        if spec.get("kmsKeyArn"):
            assert rule["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": spec["kmsKeyArn"]}
            assert rule["bucketKeyEnabled"] is True
        else:
            assert rule["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "AES256"}


def test_versions_are_kept_and_replaced_ones_expire(stack_run):
    for spec in _artifacts(stack_run.stack)["buckets"]:
        name = f"artifacts-{spec['purpose']}"
        versioning = stack_run.named(f"{S3}bucketVersioning:BucketVersioning", f"{name}-versioning")
        assert versioning.inputs["versioningConfiguration"] == {"status": "Enabled"}
        lifecycle = stack_run.named(f"{S3}bucketLifecycleConfiguration:BucketLifecycleConfiguration", f"{name}-lifecycle")
        (rule,) = lifecycle.inputs["rules"]
        assert rule["status"] == "Enabled"
        assert rule["noncurrentVersionExpiration"] == {"noncurrentDays": spec.get("noncurrentVersionDays", 30)}
        assert versioning.urn in lifecycle.dependencies


def test_prod_buckets_are_protected_and_retained_dev_buckets_may_be_emptied(stack_run):
    prod = stack_run.stack == "prod"
    assert _artifacts(stack_run.stack)["forceDestroy"] is (not prod)
    settings_types = [r for r in stack_run.resources if r.type.startswith(S3)]
    assert settings_types
    for resource in settings_types:
        assert resource.protect is prod, resource.name
        assert resource.retain_on_delete is prod, resource.name
    for bucket in stack_run.of_type(f"{S3}bucket:Bucket"):
        assert bucket.inputs["forceDestroy"] is (not prod)


def test_only_non_deprecated_s3_resources_are_used(stack_run):
    assert not [r.type for r in stack_run.resources if r.type.startswith(S3) and r.type.endswith("V2")]
