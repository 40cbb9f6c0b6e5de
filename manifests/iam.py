"""IAM policy documents as plain data: IRSA trust, least-privilege S3 access, TLS-only bucket policies.

No Pulumi here: components serialise these with `json.dumps` inside an `apply`, and the tests read them
as dicts. Documents follow the IAM policy grammar (docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_grammar.html).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any, Optional

POLICY_VERSION = "2012-10-17"
#: Prefixes of the pipelines bucket the platform's own roles use, and what each holds: pipeline packages
#: (the API server's ObjectStoreConfig.PipelinePath) and v2 artifacts (the default pipeline root).
PIPELINES_PREFIXES = {"pipelines": "KFP pipeline packages", "v2": "KFP v2 artifacts, the default pipeline root"}
#: IAM role names: at most 64 characters of letters, digits and `+=,.@_-`
#: (docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html, "IAM name requirements").
ROLE_NAME_LIMIT = 64
_ROLE_NAME_CHARS = re.compile(r"[^\w+=,.@-]")
#: The annotation the EKS pod identity webhook reads from a pod's service account when the pod is created
#: (aws/amazon-eks-pod-identity-webhook@v0.6.17 README.md:56, 67; deploy/mutatingwebhook.yaml:21-24 admits pod CREATE only).
IRSA_ROLE_ANNOTATION = "eks.amazonaws.com/role-arn"
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


def role_name(prefix: str, purpose: str) -> str:
    """The IAM name of a role the program creates: `<prefix>-<purpose>`, chosen by the program so the role's
    ARN is known before it exists (at preview, from the account id), and so the ServiceAccount can carry it
    from its first apply. Names over IAM's 64 characters are cut and end in a short digest of the whole
    name, so two long names stay distinct and the same input always gives the same name."""
    name = _ROLE_NAME_CHARS.sub("-", f"{prefix}-{purpose}")
    if len(name) <= ROLE_NAME_LIMIT:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    keep = ROLE_NAME_LIMIT - len(digest) - 1
    return f"{name[:keep].rstrip('-')}-{digest}"


def role_arn(account_id: str, name: str) -> str:
    """`arn:aws:iam::<account>:role/<name>`: IAM's ARN of a role at the root path."""
    if not re.fullmatch(r"\d{12}", account_id or ""):
        raise ValueError(f"{account_id!r} is not an AWS account id")
    return f"arn:aws:iam::{account_id}:role/{name}"


def oidc_provider_arn(account_id: str, issuer: str) -> str:
    """The ARN IAM gives the OIDC provider of `issuer`: its URL without the scheme after `oidc-provider/`."""
    if not re.fullmatch(r"\d{12}", account_id or ""):
        raise ValueError(f"{account_id!r} is not an AWS account id")
    return f"arn:aws:iam::{account_id}:oidc-provider/{issuer_host_path(issuer)}"


def annotate_service_accounts(objects: Sequence[dict], roles: Mapping[str, str]) -> list[dict]:
    """`objects` with `eks.amazonaws.com/role-arn` on each ServiceAccount named in `roles`
    (`"<namespace>/<name>"` -> role ARN). The webhook reads the annotation only when a pod is created, so
    it travels on the ServiceAccount itself, applied with (and before) the workloads that use it. Objects
    not named are returned as they are; the named ones are copies."""
    result = []
    for obj in objects:
        metadata = obj.get("metadata") or {}
        key = f"{metadata.get('namespace')}/{metadata.get('name')}"
        if obj.get("kind") == "ServiceAccount" and key in roles:
            annotations = {**(metadata.get("annotations") or {}), IRSA_ROLE_ANNOTATION: roles[key]}
            obj = {**obj, "metadata": {**metadata, "annotations": annotations}}
        result.append(obj)
    return result


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
    *, bucket: str, prefixes: Sequence[str], read_only: bool = False, kms_key_arn: Optional[str] = None,
    region: Optional[str] = None, bucket_check: bool = False,
) -> dict:
    """Least-privilege S3 access to `prefixes` of `bucket` (and the KMS key that encrypts it, if any).

    `bucket_check` adds HeadBucket for a client that checks the bucket exists before anything else (the
    KFP API server); `region` is the bucket's, required with `kms_key_arn` to bind the key to S3 there.
    """
    if not bucket:
        raise ValueError("a bucket name is required")
    if not prefixes:
        raise ValueError("at least one prefix is required; whole-bucket access is not least privilege")
    if kms_key_arn and not region:
        raise ValueError("the bucket's region is required to bind its KMS key to S3 (kms:ViaService)")
    cleaned = sorted({_prefix(p) for p in prefixes})
    bucket_arn = f"arn:aws:s3:::{bucket}"
    statements: list[dict[str, Any]] = [
        {
            "Sid": "ListOwnPrefixes",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": bucket_arn,
            # Without the condition ListBucket shows every key in the bucket, other tenants' included. The
            # trailing slash matters: `p` alone would let `Prefix=profiles/al` list profiles/alice/... too.
            "Condition": {"StringLike": {"s3:prefix": [v for p in cleaned for v in (f"{p}/", f"{p}/*")]}},
        },
        {
            # minio-go (used by Kubeflow Pipelines and Argo) asks for the bucket's region first.
            "Sid": "FindBucketRegion",
            "Effect": "Allow",
            "Action": "s3:GetBucketLocation",
            "Resource": bucket_arn,
        },
    ]
    if bucket_check:
        statements.append(
            {
                # HeadBucket is authorised by s3:ListBucket (docs.aws.amazon.com/AmazonS3/latest/API/API_HeadBucket.html)
                # and carries no s3:prefix, so the prefix-scoped grant above answers it with 403. The KFP API
                # server exits on that (kubeflow/pipelines@2.5.0 backend/src/apiserver/client_manager/
                # client_manager.go:546-551: minio-go v6.0.57 BucketExists is `HEAD /<bucket>`, api-stat.go:40-59;
                # the same in 2.15.0). KFP 2.16.0 asks HeadBucket through the AWS SDK and only warns when refused
                # (@2.16.0 client_manager.go:956-960, 1121-1131), so there the grant keeps its start clean.
                # This lets the holder list the bucket's key names, never read the objects outside its prefixes.
                "Sid": "CheckBucketExists",
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": bucket_arn,
            }
        )
    statements.append(
        {
            "Sid": "ReadObjects" if read_only else "ReadWriteObjects",
            "Effect": "Allow",
            "Action": list(_READ_OBJECT_ACTIONS if read_only else _READ_OBJECT_ACTIONS + _WRITE_OBJECT_ACTIONS),
            "Resource": [f"{bucket_arn}/{p}/*" for p in cleaned],
        }
    )
    if kms_key_arn:
        statements.append(
            {
                "Sid": "UseBucketKey",
                "Effect": "Allow",
                # Reading SSE-KMS objects needs Decrypt; writing them needs GenerateDataKey too.
                "Action": ["kms:Decrypt"] if read_only else ["kms:Decrypt", "kms:GenerateDataKey"],
                "Resource": kms_key_arn,
                # The key may be shared by several buckets and other services: only through S3 in the bucket's
                # region (docs.aws.amazon.com/kms/latest/developerguide/conditions-kms.html#conditions-kms-via-service),
                # and only for this bucket's objects: S3 puts `aws:s3:arn` into the encryption context, the bucket's
                # ARN with S3 Bucket Keys on and the object's otherwise
                # (docs.aws.amazon.com/AmazonS3/latest/userguide/UsingKMSEncryption.html#encryption-context).
                "Condition": {
                    "StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"},
                    "StringLike": {
                        "kms:EncryptionContext:aws:s3:arn": [bucket_arn, *(f"{bucket_arn}/{p}/*" for p in cleaned)]
                    },
                },
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
