"""WorkloadIdentity: the cluster's IAM OIDC provider and IRSA roles with scoped trust.

STAND-IN: the AWS components branch owns this component. This minimal version exists only so the tenancy
branch runs: it has that branch's interface (`oidc_provider_arn`, `irsa_role(...)`) and is replaced by it
at merge.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Optional

import pulumi
import pulumi_aws as aws

from manifests.iam import irsa_trust_policy


class WorkloadIdentity(pulumi.ComponentResource):
    """The cluster's IAM OIDC provider and IRSA roles with scoped trust."""

    oidc_provider_arn: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        oidc_issuer: Optional[pulumi.Input[str]] = None,
        opts: Optional[pulumi.ResourceOptions] = None,
    ) -> None:
        super().__init__("kubeflow-platform:identity:WorkloadIdentity", name, None, opts)
        self._name = name
        self._issuer = pulumi.Output.from_input(oidc_issuer or "")
        provider = aws.iam.OpenIdConnectProvider(
            f"{name}-oidc-provider",
            url=self._issuer,
            client_id_lists=["sts.amazonaws.com"],
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.oidc_provider_arn = provider.arn
        self.register_outputs({"oidcProviderArn": self.oidc_provider_arn})

    def irsa_role(
        self,
        name: str,
        *,
        namespace: str,
        service_accounts: Sequence[str],
        policy: pulumi.Input[dict],
        opts: Optional[pulumi.ResourceOptions] = None,
    ) -> aws.iam.Role:
        """A role only these service accounts of `namespace` may assume, with `policy` inline."""
        trust = pulumi.Output.all(self.oidc_provider_arn, self._issuer).apply(
            lambda values: json.dumps(
                irsa_trust_policy(
                    provider_arn=values[0], issuer=values[1], subjects=[(namespace, sa) for sa in service_accounts]
                ),
                sort_keys=True,
            )
        )
        return aws.iam.Role(
            name,
            assume_role_policy=trust,
            inline_policies=[
                aws.iam.RoleInlinePolicyArgs(
                    name="access", policy=pulumi.Output.from_input(policy).apply(lambda p: json.dumps(p, sort_keys=True))
                )
            ],
            opts=pulumi.ResourceOptions.merge(pulumi.ResourceOptions(parent=self), opts),
        )
