"""WorkloadIdentity: roles for the cluster's workloads with scoped trust and names the program chooses, served by
IRSA (the cluster's IAM OIDC provider) or by EKS Pod Identity associations (identity.mechanism)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, Optional

import pulumi
import pulumi_aws as aws

from config import Settings
from manifests.pod_identity import AGENT_ADDON, pod_identity_trust_policy, scoped_to_session
from manifests.iam import PIPELINES_PREFIXES, irsa_trust_policy, issuer_host_path, oidc_provider_arn, role_arn, role_name, s3_access_policy

#: The Kubeflow Pipelines API server's service account: it writes pipeline packages and run artifacts, and
#: checks the bucket exists before it serves (kubeflow/pipelines@2.5.0 backend/src/apiserver/client_manager/
#: client_manager.go:546-551).
PIPELINES_WRITER_SERVICE_ACCOUNTS = ("ml-pipeline",)
#: Service accounts of the pipelines UI (artifact previews, logs) and the visualization server: they only
#: read, and the UI faces every user, so they get a read-only role of their own.
PIPELINES_READER_SERVICE_ACCOUNTS = ("ml-pipeline-ui", "ml-pipeline-visualizationserver")
PIPELINES_SERVICE_ACCOUNTS = PIPELINES_WRITER_SERVICE_ACCOUNTS + PIPELINES_READER_SERVICE_ACCOUNTS


@dataclass(frozen=True, kw_only=True)
class PlatformRoleArgs:
    """Where the platform's own roles point: the pipelines bucket and who uses it."""

    bucket: pulumi.Input[str]
    #: The buckets' region (binds the KMS key to S3 there).
    region: str
    kms_key_arn: Optional[str] = None
    kubeflow_namespace: str = "kubeflow"
    argo_namespace: str = "argo"
    #: Service accounts of the external Argo to give the `argo` role; none unless the stack opts in
    #: (identity.argoServiceAccounts): they are not the program's, and may not exist.
    argo_service_accounts: Sequence[str] = ()
    #: Key prefix Argo writes workflow artifacts under (first segment of kubeflow.argo.keyFormat).
    artifact_prefix: str = "artifacts"
    #: Whether the KFP API server needs HeadBucket to start (before KFP 2.16): an s3:ListBucket without a prefix
    #: condition, which also lists every profile's key names (manifests.release_changes.api_server_needs_head_bucket).
    bucket_check: bool = True


@dataclass(frozen=True, kw_only=True)
class WorkloadIdentityArgs:
    #: The cluster's OIDC issuer URL, read from EKS.
    issuer: pulumi.Input[str]
    #: The account the roles are created in (from sts:GetCallerIdentity, known at preview).
    account_id: pulumi.Input[str]
    #: Start of every role name this program creates (unique per stack): `<project>-<stack>`.
    role_name_prefix: str
    #: Adopt this provider (IAM allows one per issuer per account) instead of creating one.
    existing_provider_arn: Optional[str] = None
    #: Protect a created provider: deleting it breaks every IRSA role of the cluster at once.
    protect: bool = False
    platform: Optional[PlatformRoleArgs] = None
    #: `irsa` or `podIdentity` (identity.mechanism).
    mechanism: str = "irsa"
    #: The cluster Pod Identity associations are created in, and whose name the sessions are tagged with.
    cluster_name: str = ""

    @classmethod
    def from_settings(
        cls, settings: Settings, *, issuer: pulumi.Input[str], account_id: pulumi.Input[str],
        pipelines_bucket: pulumi.Input[str], pipelines_kms_key_arn: Optional[str], api_server_checks_bucket: bool = True,
    ) -> "WorkloadIdentityArgs":
        argo = settings.kubeflow.argo
        platform = PlatformRoleArgs(
            bucket=pipelines_bucket, region=settings.aws.region, kms_key_arn=pipelines_kms_key_arn,
            argo_namespace=argo.namespace, argo_service_accounts=settings.identity.argo_service_accounts,
            artifact_prefix=argo.key_format.split("/")[0], bucket_check=api_server_checks_bucket,
            kubeflow_namespace=settings.kubeflow.namespace,
        )
        return cls(issuer=issuer, account_id=account_id,
                   role_name_prefix=f"{pulumi.get_project()}-{pulumi.get_stack()}",
                   existing_provider_arn=settings.identity.oidc_provider_arn,
                   protect=settings.protect, platform=platform,
                   mechanism=settings.identity.mechanism, cluster_name=settings.cluster.name)


@dataclass(frozen=True)
class IrsaRole:
    """A workload role, its inline policy, and its ARN as the program names it (known before the role exists);
    with Pod Identity, also the associations that serve it to its service accounts."""

    role: aws.iam.Role
    policy: aws.iam.RolePolicy
    arn: pulumi.Output[str]
    associations: tuple[pulumi.Resource, ...] = ()

    @property
    def ready(self) -> list[pulumi.Resource]:
        """What a workload using the role waits for: the role with its permissions (and its associations: the
        Pod Identity webhook, like IRSA's, sets a pod's credentials up only when the pod is created)."""
        return [self.role, self.policy, *self.associations]


class WorkloadIdentity(pulumi.ComponentResource):
    """The IAM OIDC provider for the cluster's issuer, `irsa_role` to create scoped roles, and the
    platform's own roles (pipelines writer and readers, and the external Argo's on request)."""

    oidc_provider_arn: pulumi.Output[str]
    issuer: pulumi.Output[str]
    #: Role ARNs of the platform's roles by purpose (pipelines, pipelines-readers, argo).
    role_arns: dict[str, pulumi.Output[str]]
    #: The same roles by the service accounts that assume them, keyed "<namespace>/<serviceaccount>".
    service_account_roles: dict[str, pulumi.Output[str]]
    #: The roles and policies behind `service_account_roles`: what their workloads must wait for.
    service_account_roles_ready: list[pulumi.Resource]

    def __init__(self, name: str, args: WorkloadIdentityArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("kubeflow-platform:identity:WorkloadIdentity", name, None, opts)
        self._name = name
        self._role_name_prefix = args.role_name_prefix
        self._account_id = pulumi.Output.from_input(args.account_id)
        self.issuer = pulumi.Output.from_input(args.issuer)
        self._provider: list[pulumi.Resource] = []
        self.mechanism = args.mechanism
        self._cluster_name = args.cluster_name
        #: Every Pod Identity association this component made (empty with IRSA).
        self.associations: list[aws.eks.PodIdentityAssociation] = []
        self.agent_addon_version: Optional[pulumi.Output[str]] = None
        if args.mechanism == "podIdentity":
            # No OIDC provider: Pod Identity trusts an AWS service principal. The agent add-on must run on the
            # cluster (it serves the credentials at 169.254.170.23); reading it fails the preview when it is absent.
            self.oidc_provider_arn = pulumi.Output.from_input("")
            self.agent_addon_version = aws.eks.get_addon_output(
                cluster_name=args.cluster_name, addon_name=AGENT_ADDON, opts=pulumi.InvokeOutputOptions(parent=self),
            ).addon_version
        elif args.existing_provider_arn:
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
            # IAM's ARN for the issuer's provider, known at preview (the trust policies and the guardrail that
            # checks them need no deploy); the roles wait for the provider itself.
            self.oidc_provider_arn = pulumi.Output.all(self._account_id, self.issuer).apply(
                lambda values: oidc_provider_arn(values[0], values[1])
            )
            self._provider = [provider]
        self.role_arns = {}
        self.service_account_roles = {}
        self.service_account_roles_ready = []
        if args.platform is not None:
            self._platform_roles(args.platform)
        self.register_outputs({"oidcProviderArn": self.oidc_provider_arn, "roleArns": self.role_arns})

    @property
    def annotates_service_accounts(self) -> bool:
        """Whether workloads find their role through the eks.amazonaws.com/role-arn annotation (IRSA)."""
        return self.mechanism == "irsa"

    @property
    def stack_outputs(self) -> dict[str, Any]:
        """The OIDC provider IRSA trusts (empty with Pod Identity), the mechanism, and the role per Kubeflow
        service account group."""
        return {"oidcProviderArn": self.oidc_provider_arn, "identityMechanism": self.mechanism,
                "roleArns": self.role_arns}

    def role_arn_of(self, name: str) -> pulumi.Output[str]:
        """The ARN of the role `irsa_role(name, ...)` creates, from the account and the name the program chooses,
        without the role: known before it is registered."""
        iam_name = role_name(self._role_name_prefix, name)
        return self._account_id.apply(lambda account: role_arn(account, iam_name))

    def irsa_role(
        self,
        name: str,
        *,
        namespace: str,
        service_accounts: Sequence[str],
        policy: pulumi.Input[dict],
        opts: Optional[pulumi.ResourceOptions] = None,
    ) -> IrsaRole:
        """A role only `service_accounts` of `namespace` can assume (IRSA, or Pod Identity with
        identity.mechanism podIdentity), with `policy` inline.

        The role is `name`, its inline policy `<name>-policy`; both are children of this component unless
        `opts` names another parent. Inline, so the permissions live and die with the role. Its IAM name is
        `<project>-<stack>-<name>` (manifests.iam.role_name), so its ARN is known before it exists and a
        ServiceAccount can carry it from its first apply.

        With Pod Identity the trust names the pods.eks.amazonaws.com principal with session-tag conditions,
        `policy` holds only for sessions tagged with this namespace and cluster, and one
        `aws.eks.PodIdentityAssociation` per service account (`<name>-<account>`) serves the role.
        """
        role_opts = pulumi.ResourceOptions.merge(pulumi.ResourceOptions(parent=self), opts)
        subjects = [(namespace, account) for account in service_accounts]
        if self.mechanism == "podIdentity":
            return self._pod_identity_role(name, namespace=namespace, service_accounts=service_accounts,
                                           policy=policy, role_opts=role_opts)
        trust = pulumi.Output.all(self.oidc_provider_arn, self.issuer).apply(
            lambda values: json.dumps(
                irsa_trust_policy(provider_arn=values[0], issuer=values[1], subjects=subjects), sort_keys=True
            )
        )
        iam_name = role_name(self._role_name_prefix, name)
        role = aws.iam.Role(
            name,
            name=iam_name,
            assume_role_policy=trust,
            description=f"IRSA: {', '.join(f'{namespace}/{a}' for a in service_accounts)} (kubeflow-platform)",
            # IRSA credentials last as long as the role allows; one hour keeps leaked tokens short-lived.
            max_session_duration=3600,
            opts=pulumi.ResourceOptions.merge(role_opts, pulumi.ResourceOptions(depends_on=self._provider)),
        )
        policy_resource = aws.iam.RolePolicy(
            f"{name}-policy",
            role=role.id,
            policy=_policy_json(policy),
            opts=role_opts,
        )
        return IrsaRole(role=role, policy=policy_resource, arn=self.role_arn_of(name))

    def _pod_identity_role(
        self, name: str, *, namespace: str, service_accounts: Sequence[str], policy: pulumi.Input[dict],
        role_opts: pulumi.ResourceOptions,
    ) -> IrsaRole:
        subjects = [(namespace, account) for account in service_accounts]
        trust = json.dumps(pod_identity_trust_policy(cluster_name=self._cluster_name, subjects=subjects), sort_keys=True)
        iam_name = role_name(self._role_name_prefix, name)
        role = aws.iam.Role(
            name,
            name=iam_name,
            assume_role_policy=trust,
            description=f"EKS Pod Identity: {', '.join(f'{namespace}/{a}' for a in service_accounts)} (kubeflow-platform)",
            max_session_duration=3600,
            opts=role_opts,
        )
        scoped: pulumi.Input[dict]
        if _holds_outputs(policy):
            scoped = pulumi.Output.from_input(policy).apply(
                lambda document: scoped_to_session(document, cluster_name=self._cluster_name, namespace=namespace))
        else:
            scoped = scoped_to_session(policy, cluster_name=self._cluster_name, namespace=namespace)  # type: ignore[arg-type]
        policy_resource = aws.iam.RolePolicy(f"{name}-policy", role=role.id, policy=_policy_json(scoped), opts=role_opts)
        associations = tuple(
            aws.eks.PodIdentityAssociation(
                f"{name}-{account}",
                cluster_name=self._cluster_name,
                namespace=namespace,
                service_account=account,
                role_arn=role.arn,
                # The association waits for the permissions, so a pod never gets a role that can do nothing yet.
                opts=pulumi.ResourceOptions.merge(role_opts, pulumi.ResourceOptions(depends_on=[policy_resource])),
            )
            for account in service_accounts
        )
        self.associations += associations
        return IrsaRole(role=role, policy=policy_resource, arn=self.role_arn_of(name), associations=associations)

    def _platform_roles(self, platform: PlatformRoleArgs) -> None:
        # The API server's and the UI's prefixes (the argo key format's first segment added).
        prefixes = sorted({*PIPELINES_PREFIXES, platform.artifact_prefix})
        bucket = pulumi.Output.from_input(platform.bucket)
        pipelines = self.irsa_role(
            f"{self._name}-pipelines",
            namespace=platform.kubeflow_namespace,
            service_accounts=PIPELINES_WRITER_SERVICE_ACCOUNTS,
            policy=bucket.apply(lambda name: s3_access_policy(
                bucket=name, prefixes=prefixes, kms_key_arn=platform.kms_key_arn, region=platform.region,
                bucket_check=platform.bucket_check,
            )),
        )
        readers = self.irsa_role(
            f"{self._name}-pipelines-readers",
            namespace=platform.kubeflow_namespace,
            service_accounts=PIPELINES_READER_SERVICE_ACCOUNTS,
            policy=bucket.apply(lambda name: s3_access_policy(
                bucket=name, prefixes=prefixes, read_only=True, kms_key_arn=platform.kms_key_arn,
                region=platform.region,
            )),
        )
        self.role_arns = {"pipelines": pipelines.arn, "pipelines-readers": readers.arn}
        # What the Kubeflow component puts on the service accounts as eks.amazonaws.com/role-arn (with Pod
        # Identity nothing is annotated: the associations name the service accounts, and the group holding each
        # waits for them through service_account_roles_ready).
        self.service_account_roles = {
            **{f"{platform.kubeflow_namespace}/{sa}": pipelines.arn for sa in PIPELINES_WRITER_SERVICE_ACCOUNTS},
            **{f"{platform.kubeflow_namespace}/{sa}": readers.arn for sa in PIPELINES_READER_SERVICE_ACCOUNTS},
        }
        self.service_account_roles_ready = [*pipelines.ready, *readers.ready]
        if platform.argo_service_accounts:
            argo = self.irsa_role(
                f"{self._name}-argo",
                namespace=platform.argo_namespace,
                service_accounts=platform.argo_service_accounts,
                policy=bucket.apply(lambda name: s3_access_policy(
                    bucket=name, prefixes=[platform.artifact_prefix], kms_key_arn=platform.kms_key_arn,
                    region=platform.region,
                )),
            )
            self.role_arns["argo"] = argo.arn
            self.service_account_roles.update(
                {f"{platform.argo_namespace}/{sa}": argo.arn for sa in platform.argo_service_accounts}
            )
            self.service_account_roles_ready += argo.ready


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
