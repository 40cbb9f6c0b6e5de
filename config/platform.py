"""Where the platform runs: AWS account and region, the existing EKS cluster, lifecycle protection."""

from __future__ import annotations

import re
import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Optional

from config import checks
from config.loader import setting

# EKS CreateCluster: "can contain only alphanumeric characters (case-sensitive), hyphens, and underscores.
# It must start with an alphanumeric character and can't be longer than 100 characters"
# (docs.aws.amazon.com/eks/latest/APIReference/API_CreateCluster.html).
EKS_CLUSTER_NAME = re.compile(r"^[0-9A-Za-z][A-Za-z0-9_-]{0,99}$")


@dataclass(frozen=True, kw_only=True)
class AwsSettings:
    region: str = setting(check=checks.aws_region)
    """AWS region of the cluster; the certificate, load balancer and buckets are created here too."""
    allowed_account_ids: tuple[str, ...] = setting((), check=checks.account_ids)
    """Refuse to run with credentials of any other account (empty: any account)."""
    default_tags: Mapping[str, str] = setting(types.MappingProxyType({}))
    """Tags put on every AWS resource through the provider's default tags."""

    def cross_check(self) -> Iterator[tuple[str, str]]:
        for key, value in self.default_tags.items():
            # AWS tag limits: keys up to 128 characters, values up to 256, no aws: prefix.
            if not key or len(key) > 128 or key.lower().startswith("aws:"):
                yield f"defaultTags.{key}", "tag keys are 1 to 128 characters and must not start with 'aws:'"
            if len(value) > 256:
                yield f"defaultTags.{key}", "tag values are at most 256 characters"


@dataclass(frozen=True, kw_only=True)
class ClusterSettings:
    name: str = setting(check=checks.not_empty)
    """Name of the existing EKS cluster; its endpoint, CA and OIDC issuer are read from AWS."""

    def cross_check(self) -> Iterator[tuple[str, str]]:
        if self.name and not EKS_CLUSTER_NAME.match(self.name):
            yield "name", (f"{self.name[:40]!r}{'...' if len(self.name) > 40 else ''} ({len(self.name)} characters) is not "
                           "an EKS cluster name: 1 to 100 letters, digits, '-' and '_', starting with a letter or digit")
    kubeconfig_context: Optional[str] = setting(None)
    """Use this context of the local kubeconfig instead of an `aws eks get-token` kubeconfig."""
    aws_profile: Optional[str] = setting(None)
    """AWS CLI profile the generated kubeconfig passes to `aws eks get-token` (default: the environment's)."""
