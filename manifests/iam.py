"""IAM policy documents as plain data: IRSA trust, least-privilege S3 access, TLS-only bucket policies.

No Pulumi here: components serialise these with `json.dumps` inside an `apply`, and the tests read them
as dicts. Documents follow the IAM policy grammar (docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_grammar.html).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

POLICY_VERSION = "2012-10-17"
#: The audience EKS Pod Identity Webhook puts into projected service account tokens for IRSA.
STS_AUDIENCE = "sts.amazonaws.com"

_READ_OBJECT_ACTIONS = ("s3:GetObject", "s3:GetObjectVersion")
_WRITE_OBJECT_ACTIONS = (
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
)


def issuer_host_path(issuer: str) -> str:
    """`https://oidc.eks.<region>.amazonaws.com/id/<ID>` -> `oidc.eks.<region>.amazonaws.com/id/<ID>`.

    IAM condition keys of a web identity provider are its URL without the scheme.
    """
    host_path = issuer.strip()
    for scheme in ("https://", "http://"):
        if host_path.startswith(scheme):
            host_path = host_path[len(scheme):]
    host_path = host_path.rstrip("/")
    if not host_path or " " in host_path:
        raise ValueError(f"{issuer!r} is not an OIDC issuer URL")
    return host_path


def irsa_trust_policy(*, provider_arn: str, issuer: str, subjects: Sequence[tuple[str, str]]) -> dict:
    """Trust policy letting exactly `subjects` ((namespace, service account) pairs) assume a role via IRSA.

    `StringEquals` on both `:sub` and `:aud`: `StringLike` with wildcards would let any service account
    whose name matches assume the role, and leaving out `:aud` accepts tokens minted for other audiences.
    """
    host_path = issuer_host_path(issuer)
    provider_resource = provider_arn.split(":", 5)[-1]
    if not provider_arn.startswith("arn:") or not provider_resource.startswith("oidc-provider/"):
        raise ValueError(f"{provider_arn!r} is not an IAM OIDC provider ARN")
    if provider_resource.removeprefix("oidc-provider/") != host_path:
        # An adopted provider of another cluster (or account) would make every role unassumable.
        raise ValueError(f"the OIDC provider {provider_arn!r} is not the one for the issuer {host_path!r}")
    if not subjects:
        raise ValueError("an IRSA role needs at least one (namespace, service account)")
    names: list[str] = []
    for namespace, service_account in subjects:
        if not namespace or not service_account or ":" in namespace + service_account:
            raise ValueError(f"({namespace!r}, {service_account!r}) is not a namespace and service account name")
        name = f"system:serviceaccount:{namespace}:{service_account}"
        if name not in names:
            names.append(name)
    return {
        "Version": POLICY_VERSION,
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": provider_arn},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {
                        f"{host_path}:sub": names[0] if len(names) == 1 else names,
                        f"{host_path}:aud": STS_AUDIENCE,
                    }
                },
            }
        ],
    }


def _prefix(prefix: str) -> str:
    cleaned = prefix.strip("/")
    if not cleaned or "*" in cleaned or "?" in cleaned:
        # An empty prefix would grant the whole bucket; wildcards would widen the grant silently.
        raise ValueError(f"{prefix!r} is not a key prefix (non-empty, no wildcards)")
    return cleaned


def s3_access_policy(
    *, bucket: str, prefixes: Sequence[str], read_only: bool = False, kms_key_arn: Optional[str] = None
) -> dict:
    """Least-privilege S3 access to `prefixes` of `bucket` (and the KMS key that encrypts it, if any)."""
    if not bucket:
        raise ValueError("a bucket name is required")
    if not prefixes:
        raise ValueError("at least one prefix is required; whole-bucket access is not least privilege")
    cleaned = sorted({_prefix(p) for p in prefixes})
    bucket_arn = f"arn:aws:s3:::{bucket}"
    statements: list[dict[str, Any]] = [
        {
            "Sid": "ListOwnPrefixes",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": bucket_arn,
            # Without the condition ListBucket shows every key in the bucket, other tenants' included.
            "Condition": {"StringLike": {"s3:prefix": [v for p in cleaned for v in (p, f"{p}/*")]}},
        },
        {
            # minio-go (used by Kubeflow Pipelines and Argo) asks for the bucket's region first.
            "Sid": "FindBucketRegion",
            "Effect": "Allow",
            "Action": "s3:GetBucketLocation",
            "Resource": bucket_arn,
        },
        {
            "Sid": "ReadObjects" if read_only else "ReadWriteObjects",
            "Effect": "Allow",
            "Action": list(_READ_OBJECT_ACTIONS if read_only else _READ_OBJECT_ACTIONS + _WRITE_OBJECT_ACTIONS),
            "Resource": [f"{bucket_arn}/{p}/*" for p in cleaned],
        },
    ]
    if kms_key_arn:
        statements.append(
            {
                "Sid": "UseBucketKey",
                "Effect": "Allow",
                # Reading SSE-KMS objects needs Decrypt; writing them needs GenerateDataKey too.
                "Action": ["kms:Decrypt"] if read_only else ["kms:Decrypt", "kms:GenerateDataKey"],
                "Resource": kms_key_arn,
            }
        )
    return {"Version": POLICY_VERSION, "Statement": statements}


def tls_only_bucket_policy(*, bucket: str) -> dict:
    """Bucket policy refusing every request not made over TLS (AWS Security Hub control S3.5)."""
    bucket_arn = f"arn:aws:s3:::{bucket}"
    return {
        "Version": POLICY_VERSION,
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [bucket_arn, f"{bucket_arn}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }


def assume_role_policy(*, service: str) -> dict:
    """Trust policy for an AWS service principal (like ec2.amazonaws.com for node roles)."""
    return {
        "Version": POLICY_VERSION,
        "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
    }
