"""IAM policy documents for IRSA, as plain dicts (no Pulumi).

STAND-IN: the AWS components branch owns this module; this minimal version exists only so the tenancy
branch runs. It has exactly that branch's signatures and is replaced by it at merge.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional


def irsa_trust_policy(*, provider_arn: str, issuer: str, subjects: Sequence[tuple[str, str]]) -> dict:
    """Trust for AssumeRoleWithWebIdentity by exactly these (namespace, service account) pairs."""
    host = issuer.removeprefix("https://")
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": provider_arn},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {
                        f"{host}:aud": "sts.amazonaws.com",
                        f"{host}:sub": [f"system:serviceaccount:{ns}:{sa}" for ns, sa in subjects],
                    }
                },
            }
        ],
    }


def s3_access_policy(
    *, bucket: str, prefixes: Sequence[str], read_only: bool = False, kms_key_arn: Optional[str] = None
) -> dict:
    """Object access under the prefixes of one bucket, and listing limited to them."""
    keys = [f"arn:aws:s3:::{bucket}/{p.strip('/')}/*" for p in prefixes]
    actions = ["s3:GetObject"] if read_only else ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    statements: list[dict] = [
        {"Effect": "Allow", "Action": actions, "Resource": keys},
        {
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": f"arn:aws:s3:::{bucket}",
            "Condition": {"StringLike": {"s3:prefix": [f"{p.strip('/')}/*" for p in prefixes]}},
        },
    ]
    if kms_key_arn:
        statements.append({"Effect": "Allow", "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": kms_key_arn})
    return {"Version": "2012-10-17", "Statement": statements}
