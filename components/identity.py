"""WorkloadIdentity: the cluster's IAM OIDC provider and IRSA roles with scoped trust."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, Optional

import pulumi
import pulumi_aws as aws

from config import Settings
from manifests.iam import irsa_trust_policy, issuer_host_path, s3_access_policy

#: Kubeflow Pipelines' own service accounts that touch the artifact store: the API server (pipeline
#: packages, run artifacts), the UI (artifact previews) and the visualization server.
PIPELINES_SERVICE_ACCOUNTS = ("ml-pipeline", "ml-pipeline-ui", "ml-pipeline-visualizationserver")
#: Prefixes of the pipelines bucket the API server and UI use: pipeline packages and v2 artifacts
#: (the argo key format's first segment is added to these).
PIPELINES_PREFIXES = ("pipelines", "v2")


@dataclass(frozen=True, kw_only=True)
class PlatformRoleArgs:
    """Where the platform's own roles point: the pipelines bucket and who uses it."""

    bucket: pulumi.Input[str]
    kms_key_arn: Optional[str] = None
    kubeflow_namespace: str = "kubeflow"
    argo_namespace: str = "argo"
    argo_service_accounts: Sequence[str] = ("argo-server", "argo-workflow")
    #: Key prefix Argo writes workflow artifacts under (first segment of kubeflow.argo.keyFormat).
    artifact_prefix: str = "artifacts"


@dataclass(frozen=True, kw_only=True)
class WorkloadIdentityArgs:
    #: The cluster's OIDC issuer URL, read from EKS.
    issuer: pulumi.Input[str]
    #: Adopt this provider (IAM allows one per issuer per account) instead of creating one.
    existing_provider_arn: Optional[str] = None
    #: Protect a created provider: deleting it breaks every IRSA role of the cluster at once.
    protect: bool = False
    platform: Optional[PlatformRoleArgs] = None

    @classmethod
    def from_settings(
        cls, settings: Settings, *, issuer: pulumi.Input[str], pipelines_bucket: pulumi.Input[str],
        pipelines_kms_key_arn: Optional[str],
    ) -> "WorkloadIdentityArgs":
        argo = settings.kubeflow.argo
        platform = PlatformRoleArgs(
            bucket=pipelines_bucket, kms_key_arn=pipelines_kms_key_arn, argo_namespace=argo.namespace,
            argo_service_accounts=settings.identity.argo_service_accounts,
            artifact_prefix=argo.key_format.split("/")[0],
        )
        return cls(issuer=issuer, existing_provider_arn=settings.identity.oidc_provider_arn,
                   protect=settings.protect, platform=platform)


class WorkloadIdentity(pulumi.ComponentResource):
    """The IAM OIDC provider for the cluster's issuer, `irsa_role` to create scoped roles, and the
    platform's own roles (pipelines, external Argo)."""

    oidc_provider_arn: pulumi.Output[str]
    issuer: pulumi.Output[str]
    #: Role ARNs of the platform's roles by purpose (pipelines, argo).
    role_arns: dict[str, pulumi.Output[str]]
    #: The same roles by the service accounts that assume them, keyed "<namespace>/<serviceaccount>".
    service_account_roles: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, args: WorkloadIdentityArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("kubeflow-platform:identity:WorkloadIdentity", name, None, opts)
        self._name = name
        self.issuer = pulumi.Output.from_input(args.issuer)
        if args.existing_provider_arn:
            self.oidc_provider_arn = pulumi.Output.from_input(args.existing_provider_arn)
        else:
            provider = aws.iam.OpenIdConnectProvider(
                f"{name}-oidc-provider",
                url=self.issuer.apply(lambda issuer: f"https://{issuer_host_path(issuer)}"),
                client_id_lists=["sts.amazonaws.com"],
                # No thumbprint: IAM verifies the EKS issuer's TLS certificate against its library of
                # trusted root CAs and ignores thumbprints for it, so a pinned one would only go stale.
                opts=pulumi.ResourceOptions(parent=self, protect=args.protect),
            )
            self.oidc_provider_arn = provider.arn
        self.role_arns = {}
        self.service_account_roles = {}
        if args.platform is not None:
            self._platform_roles(args.platform)
        self.register_outputs({"oidcProviderArn": self.oidc_provider_arn, "roleArns": self.role_arns})

    @property
    def stack_outputs(self) -> dict[str, Any]:
        """The OIDC provider IRSA trusts and the role per Kubeflow service account group."""
        return {"oidcProviderArn": self.oidc_provider_arn, "roleArns": self.role_arns}

    def irsa_role(
        self,
        name: str,
        *,
        namespace: str,
        service_accounts: Sequence[str],
        policy: pulumi.Input[dict],
        opts: Optional[pulumi.ResourceOptions] = None,
    ) -> aws.iam.Role:
        """A role only `service_accounts` of `namespace` can assume (IRSA), with `policy` inline.

        The role is `name`, its inline policy `<name>-policy`; both are children of this component unless
        `opts` names another parent. Inline, so the permissions live and die with the role.
        """
        role_opts = pulumi.ResourceOptions.merge(pulumi.ResourceOptions(parent=self), opts)
        subjects = [(namespace, account) for account in service_accounts]
        trust = pulumi.Output.all(self.oidc_provider_arn, self.issuer).apply(
            lambda values: json.dumps(
                irsa_trust_policy(provider_arn=values[0], issuer=values[1], subjects=subjects), sort_keys=True
            )
        )
        role = aws.iam.Role(
            name,
            assume_role_policy=trust,
            description=f"IRSA: {', '.join(f'{namespace}/{a}' for a in service_accounts)} (kubeflow-platform)",
            # IRSA credentials last as long as the role allows; one hour keeps leaked tokens short-lived.
            max_session_duration=3600,
            opts=role_opts,
        )
        aws.iam.RolePolicy(
            f"{name}-policy",
            role=role.id,
            policy=_policy_json(policy),
            opts=role_opts,
        )
        return role

    def _platform_roles(self, platform: PlatformRoleArgs) -> None:
        prefixes = sorted({*PIPELINES_PREFIXES, platform.artifact_prefix})
        pipelines = self.irsa_role(
            f"{self._name}-pipelines",
            namespace=platform.kubeflow_namespace,
            service_accounts=PIPELINES_SERVICE_ACCOUNTS,
            policy=pulumi.Output.from_input(platform.bucket).apply(
                lambda bucket: s3_access_policy(bucket=bucket, prefixes=prefixes, kms_key_arn=platform.kms_key_arn)
            ),
        )
        argo = self.irsa_role(
            f"{self._name}-argo",
            namespace=platform.argo_namespace,
            service_accounts=platform.argo_service_accounts,
            policy=pulumi.Output.from_input(platform.bucket).apply(
                lambda bucket: s3_access_policy(
                    bucket=bucket, prefixes=[platform.artifact_prefix], kms_key_arn=platform.kms_key_arn
                )
            ),
        )
        self.role_arns = {"pipelines": pipelines.arn, "argo": argo.arn}
        # What the Kubeflow component annotates with eks.amazonaws.com/role-arn, keyed "<namespace>/<sa>".
        self.service_account_roles = {
            **{f"{platform.kubeflow_namespace}/{sa}": pipelines.arn for sa in PIPELINES_SERVICE_ACCOUNTS},
            **{f"{platform.argo_namespace}/{sa}": argo.arn for sa in platform.argo_service_accounts},
        }


def _policy_json(policy: pulumi.Input[dict]) -> pulumi.Input[str]:
    """The policy document as IAM reads it. A plain document (every profile's data-lake policy) is
    serialised at once: `Output.from_input` would wrap each of its nested lists and dicts in an Output,
    which at a thousand profiles is a measurable share of the evaluation."""
    if not _holds_outputs(policy):
        return json.dumps(policy, sort_keys=True)
    return pulumi.Output.from_input(policy).apply(lambda document: json.dumps(document, sort_keys=True))


def _holds_outputs(value: object) -> bool:
    if isinstance(value, dict):
        return any(_holds_outputs(item) for item in value.values())
    if isinstance(value, (list, tuple)):
        return any(_holds_outputs(item) for item in value)
    return isinstance(value, (pulumi.Output, Awaitable))
