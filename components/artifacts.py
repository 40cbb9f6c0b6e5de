"""ArtifactStore: S3 artifact buckets with secure defaults."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional

import pulumi
import pulumi_aws as aws

from config import Settings
from manifests.iam import tls_only_bucket_policy


@dataclass(frozen=True, kw_only=True)
class BucketSpec:
    purpose: str
    #: Deterministic, validated name (config ArtifactSettings.names()).
    name: str
    kms_key_arn: Optional[str] = None
    noncurrent_version_days: int = 30


@dataclass(frozen=True, kw_only=True)
class ArtifactStoreArgs:
    buckets: Sequence[BucketSpec]
    #: Let destroy empty the buckets (dev); a protected stack never does (config refuses both together).
    force_destroy: bool = False
    #: Protect the buckets and retain them when the stack or the resource goes away.
    protect: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> "ArtifactStoreArgs":
        names = settings.artifacts.names()
        buckets = [
            BucketSpec(purpose=b.purpose, name=names[b.purpose], kms_key_arn=b.kms_key_arn,
                       noncurrent_version_days=b.noncurrent_version_days)
            for b in settings.artifacts.buckets
        ]
        return cls(buckets=buckets, force_destroy=settings.artifacts.force_destroy, protect=settings.protect)


class ArtifactStore(pulumi.ComponentResource):
    """One bucket per purpose: SSE (KMS optional), versioning, every public access block, bucket owner
    enforced (no ACLs), TLS-only policy and expiry of replaced versions."""

    #: Bucket names by purpose.
    bucket_names: dict[str, pulumi.Output[str]]
    bucket_arns: dict[str, pulumi.Output[str]]
    #: KMS key ARN (or None) by purpose, for the IAM policies of readers and writers.
    kms_key_arns: Mapping[str, Optional[str]]
    #: Each bucket's versioning, by purpose: replication rules are accepted only once versioning is on.
    versioning: dict[str, aws.s3.BucketVersioning]

    def __init__(self, name: str, args: ArtifactStoreArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("kubeflow-platform:artifacts:ArtifactStore", name, None, opts)
        self.bucket_names = {}
        self.bucket_arns = {}
        self.versioning = {}
        self.kms_key_arns = {spec.purpose: spec.kms_key_arn for spec in args.buckets}
        for spec in args.buckets:
            bucket = self._bucket(name, spec, args)
            self.bucket_names[spec.purpose] = bucket.bucket
            self.bucket_arns[spec.purpose] = bucket.arn
        self.register_outputs({"bucketNames": self.bucket_names, "bucketArns": self.bucket_arns})

    @property
    def stack_outputs(self) -> dict[str, Any]:
        """The artifact buckets, by purpose."""
        return {"bucketNames": self.bucket_names}

    def _bucket(self, name: str, spec: BucketSpec, args: ArtifactStoreArgs) -> aws.s3.Bucket:
        prefix = f"{name}-{spec.purpose}"
        bucket = aws.s3.Bucket(
            prefix,
            # Deterministic name: IRSA policies, Argo and Kubeflow config refer to it, and a random suffix
            # would change on every replacement.
            bucket=spec.name,
            force_destroy=args.force_destroy,
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect, retain_on_delete=args.protect),
        )
        # A retained bucket keeps its protections: deleting these resources would strip the public access
        # block, encryption and TLS policy from a bucket that stays behind.
        child = pulumi.ResourceOptions(parent=self, protect=args.protect, retain_on_delete=args.protect)
        # Settings of one bucket conflict when applied at once ("OperationAborted: A conflicting conditional
        # operation is in progress"), so each waits for the previous one.
        ownership = aws.s3.BucketOwnershipControls(
            f"{prefix}-ownership",
            bucket=bucket.id,
            # No ACLs at all: the bucket owner owns every object, whoever wrote it.
            rule={"object_ownership": "BucketOwnerEnforced"},
            opts=child,
        )
        public_access = aws.s3.BucketPublicAccessBlock(
            f"{prefix}-public-access",
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[ownership])),
        )
        if spec.kms_key_arn:
            default = {"sse_algorithm": "aws:kms", "kms_master_key_id": spec.kms_key_arn}
        else:
            default = {"sse_algorithm": "AES256"}
        encryption = aws.s3.BucketServerSideEncryptionConfiguration(
            f"{prefix}-encryption",
            bucket=bucket.id,
            rules=[
                {
                    "apply_server_side_encryption_by_default": default,
                    # S3 Bucket Keys cut KMS requests (and their cost and throttling) by orders of magnitude.
                    "bucket_key_enabled": bool(spec.kms_key_arn),
                }
            ],
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[public_access])),
        )
        versioning = aws.s3.BucketVersioning(
            f"{prefix}-versioning",
            bucket=bucket.id,
            versioning_configuration={"status": "Enabled"},
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[encryption])),
        )
        self.versioning[spec.purpose] = versioning
        aws.s3.BucketPolicy(
            f"{prefix}-tls-only",
            bucket=bucket.id,
            policy=bucket.bucket.apply(lambda b: json.dumps(tls_only_bucket_policy(bucket=b), sort_keys=True)),
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[public_access, versioning])),
        )
        aws.s3.BucketLifecycleConfiguration(
            f"{prefix}-lifecycle",
            bucket=bucket.id,
            rules=[
                {
                    "id": "expire-noncurrent-versions",
                    "status": "Enabled",
                    # An explicit empty-prefix filter: the whole bucket (provider 6+ warns without a filter).
                    "filter": {"prefix": ""},
                    "noncurrent_version_expiration": {"noncurrent_days": spec.noncurrent_version_days},
                    "expiration": {"expired_object_delete_marker": True},
                    "abort_incomplete_multipart_upload": {"days_after_initiation": 7},
                }
            ],
            # Lifecycle rules on versions only act once versioning is on.
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[versioning])),
        )
        return bucket
