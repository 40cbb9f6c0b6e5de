"""Who may use Kubeflow: SSO at the gateway, and the data scientists' profiles."""

from __future__ import annotations

import re
import types
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Optional, Union

from config import checks
from config.loader import setting
from manifests.identity import (
    OPTION_KEYS,
    IdentityHeaderOptions,
    JwtIssuer,
    issuer_url_problems,
    validate_identity_options,
)

# Istio's SPIFFE-derived principal of a workload: <trust domain>/ns/<namespace>/sa/<service account>.
_PRINCIPAL = re.compile(r"^[a-z0-9.-]+/ns/[a-z0-9]([-a-z0-9]*[a-z0-9])?/sa/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
# Kubernetes resource quantities, as the Profile CRD and ResourceQuota accept them (like 64, 500m, 256Gi).
_QUANTITY = re.compile(r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$")
#: Pod Security admission's namespace labels (https://kubernetes.io/docs/concepts/security/pod-security-admission/).
POD_SECURITY_LABEL_PREFIX = "pod-security.kubernetes.io/"
#: Namespace labels and annotations the platform sets on every profile namespace; a profile may not override them.
PLATFORM_NAMESPACE_KEYS = (
    "owner",
    "istio-injection",
    "istio.io/rev",
    "scheduler.alpha.kubernetes.io/defaultTolerations",
    "scheduler.alpha.kubernetes.io/tolerationsWhitelist",
    # Bind the Pod Security policy and mark a declared namespace (manifests/admission.py).
    "kubeflow-platform/pod-admission",
    "kubeflow-platform/profile",
)


def _principals(values: tuple[str, ...]) -> Optional[str]:
    for value in values:
        if not _PRINCIPAL.match(value):
            return f"{value!r} is not an Istio principal (like cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account)"
    return None


def _quantity(value: str) -> Optional[str]:
    if not _QUANTITY.match(value):
        return f"{value!r} is not a Kubernetes quantity (like 64, 500m or 256Gi)"
    return None


@dataclass(frozen=True, kw_only=True)
class MachineIdentitySettings:
    user: str = setting(check=checks.email)
    """Kubeflow user id the machine acts as (like ci-ml-pipelines@machines.example.com); list it under tenancy.users and grant it a profile as a contributor."""


@dataclass(frozen=True, kw_only=True)
class IssuerSettings:
    issuer: str = setting()
    """OIDC issuer URL whose JWTs the gateway verifies (RequestAuthentication); exactly the tokens' `iss`."""
    jwks_uri: Optional[str] = setting(None)
    """Key set URL when it is not discoverable from the issuer."""
    audiences: tuple[str, ...] = setting(())
    """Accepted audiences; required (without one Istio accepts a token minted for any relying party)."""
    user_claim: Optional[str] = setting(None)
    """Claim that becomes kubeflow-userid (like email), held to auth.emailDomains; unset: set machineIdentity."""
    groups_claim: Optional[str] = setting(None)
    """Claim that becomes kubeflow-groups (like groups; a list arrives comma-separated)."""
    required_claims: Mapping[str, tuple[str, ...]] = setting(types.MappingProxyType({}))
    """Claims a token must carry, each at one of the listed values (exact, prefix* or *suffix), like repository_owner: [example-org]."""
    machine_identity: Optional[MachineIdentitySettings] = setting(None)
    """The Kubeflow user a token of this issuer stands for, when it names no user (a CI system)."""
    require_verified_email: bool = setting(True)
    """Refuse a token whose email_verified claim is present and not true (as the login does)."""


@dataclass(frozen=True, kw_only=True)
class AuthSettings:
    issuer_url: str = setting()
    """The enterprise OIDC issuer users log in with (no Dex in between)."""
    client_id: str = setting(check=checks.not_empty)
    """OIDC client id of Kubeflow; the client secret is the secret `authClientSecret`."""
    proxy: Literal["oauth2-proxy", "authservice"] = setting("oauth2-proxy")
    """Auth proxy behind the gateway's ext-authz: oauth2-proxy (Kubeflow 1.9+) or authservice (older)."""
    extension_provider: str = setting("kubeflow-auth", check=checks.dns1123_label)
    """Name of the meshConfig extensionProvider for the proxy (exported as authExtensionProvider for the mesh owner)."""
    scopes: tuple[str, ...] = setting(("openid", "email", "profile", "groups"), check=checks.unique("scope"))
    """OIDC scopes the proxy asks the issuer for; openid is required."""
    email_domains: tuple[str, ...] = setting(("*",), check=checks.unique("domain"))
    """Email domains allowed to log in (* any user of the issuer; Profiles still decide who sees what)."""
    proxy_image: Optional[str] = setting(None)
    """Image of the proxy (default: the oauth2-proxy image the Kubeflow release pins); pulled through kubeflow.images when configured."""
    user_source_header: str = setting("x-auth-request-email")
    """Header the auth proxy sets after login; kubeflow-userid is set from it and nothing else."""
    groups_source_header: str = setting("x-auth-request-groups")
    """Header the auth proxy sets with the user's groups; kubeflow-groups is set from it."""
    user_header: str = setting("kubeflow-userid")
    """Header Kubeflow reads the user id from (USERID_HEADER of its web apps)."""
    groups_header: str = setting("kubeflow-groups")
    """Header Kubeflow reads the user's groups from."""
    user_id_prefix: str = setting("")
    """Prefix put before the user id in kubeflow-userid (as upstream's userid-prefix)."""
    lowercase: bool = setting(True)
    """Lower-case the user id, so Profile owners match whatever case the IdP sends."""
    extra_issuers: tuple[IssuerSettings, ...] = setting(())
    """Further OIDC issuers whose tokens machine clients may present."""
    service_account_audiences: tuple[str, ...] = setting(("pipelines.kubeflow.org",))
    """Audiences a cluster service-account token must carry at the gateway (KFP's projected-token audience)."""
    gateway_service_account: str = setting("istio-ingressgateway-service-account")
    """Service account of the ingress gateway pods: the only caller trusted to send kubeflow-userid."""
    trust_domain: str = setting("cluster.local")
    """The mesh's trust domain (meshConfig.trustDomain), the start of every workload principal."""
    open_model_endpoints: bool = setting(False)
    """Serve InferenceServices at *.<dns.servingDomain> without the login or a token (false: behind them, as upstream)."""

    def identity_options(self, **gateway: Any) -> IdentityHeaderOptions:
        """The identity header options these settings describe; `gateway` sets the gateway's fields."""
        return IdentityHeaderOptions(
            user_source_header=self.user_source_header,
            groups_source_header=self.groups_source_header,
            user_header=self.user_header,
            groups_header=self.groups_header,
            lowercase_user=self.lowercase,
            user_id_prefix=self.user_id_prefix,
            extra_issuers=tuple(
                JwtIssuer(
                    issuer=issuer.issuer,
                    jwks_uri=issuer.jwks_uri,
                    audiences=issuer.audiences,
                    user_claim=issuer.user_claim,
                    groups_claim=issuer.groups_claim,
                    required_claims=issuer.required_claims,
                    machine_user=issuer.machine_identity.user if issuer.machine_identity else None,
                    email_domains=self.email_domains,
                    require_verified_email=issuer.require_verified_email,
                )
                for issuer in self.extra_issuers
            ),
            gateway_service_account=self.gateway_service_account,
            trust_domain=self.trust_domain,
            **gateway,
        )

    def cross_check(self) -> Iterator[tuple[str, str]]:
        # The same rules the gateway objects are built with, so a stack that loads also builds. Options of
        # other areas (the gateway's namespace, selector, Istio version) are checked by Settings.cross_check.
        for line in issuer_url_problems(self.issuer_url, "issuerUrl"):
            yield _split_problem(line)
        for line in validate_identity_options(self.identity_options()):
            key, message = _split_problem(line)
            if key.startswith(AUTH_PREFIX) and key.split("[")[0] not in GATEWAY_OPTION_KEYS:
                yield key[len(AUTH_PREFIX):], message
        if "openid" not in self.scopes:
            yield "scopes", "must include 'openid'; without it the issuer returns no ID token"
        if not self.service_account_audiences:
            yield "serviceAccountAudiences", (
                "required: without one the gateway accepts every pod's service-account and IRSA token of the cluster"
                " (Kubeflow Pipelines' projected tokens carry pipelines.kubeflow.org)"
            )
        for index, audience in enumerate(self.service_account_audiences):
            if not audience.strip():
                yield f"serviceAccountAudiences[{index}]", "must not be empty"
            elif audience in SHARED_TOKEN_AUDIENCES:
                yield f"serviceAccountAudiences[{index}]", (
                    f"{audience!r} is {SHARED_TOKEN_AUDIENCES[audience]}: every such pod's token would pass the gateway;"
                    " use an audience only Kubeflow's clients request (like pipelines.kubeflow.org)"
                )
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in self.client_id):
            yield "clientId", "contains a control character (a newline?); it is written into the auth proxy's configuration"
        for index, issuer in enumerate(self.extra_issuers):
            user = issuer.machine_identity.user.lower() if issuer.machine_identity else ""
            if user and "*" not in self.email_domains and _login_domain_admits(self.email_domains, user):
                yield f"extraIssuers[{index}].machineIdentity.user", (
                    f"{issuer.machine_identity.user!r} is inside auth.emailDomains: a person who logs in with that address"
                    " would act as the machine; pick a domain no one logs in with (like machines.example.com)"
                )


AUTH_PREFIX = "auth."


def _login_domain_admits(email_domains: Sequence[str], user: str) -> bool:
    """Whether the login (oauth2-proxy's email_domains: `example.com` exactly, `.example.com` or `*.example.com`
    its subdomains, oauth2-proxy@v7.7.1 validator.go:115-124) lets a person with address `user` in."""
    domain = user.rpartition("@")[2]
    for allowed in (d.lower() for d in email_domains):
        if allowed.startswith(("*.", ".")):
            if domain.endswith("." + allowed.lstrip("*").lstrip(".")):
                return True
        elif domain == allowed:
            return True
    return False

#: Token audiences that pods of the cluster carry for other purposes: EKS's IRSA web-identity tokens
#: (https://docs.aws.amazon.com/eks/latest/userguide/pod-configuration.html) and the API server's own.
SHARED_TOKEN_AUDIENCES = {
    "sts.amazonaws.com": "the audience of every IRSA (web identity) token in the cluster",
    "https://kubernetes.default.svc": "the API server's audience, which every pod's default token carries",
    "https://kubernetes.default.svc.cluster.local": "the API server's audience, which every pod's default token carries",
}

#: Identity options that come from other areas, and the keys they are configured under there.
GATEWAY_OPTION_KEYS = {
    OPTION_KEYS["gateway_namespace"]: "ingress.namespace",
    OPTION_KEYS["gateway_selector"]: "ingress.selector",
    OPTION_KEYS["istio_version"]: "kubeflow.mesh.istioVersion",
}

#: The upstream component each proxy replaces: Auth deploys its own, configured for the enterprise issuer.
REPLACED_UPSTREAM_COMPONENT = {"oauth2-proxy": "oauth2-proxy", "authservice": "authservice"}


def _split_problem(line: str) -> tuple[str, str]:
    key, _, message = line.partition(": ")
    return key, message


@dataclass(frozen=True, kw_only=True)
class GroupSettings:
    name: str = setting(check=checks.dns1123_label)
    """Group name used in profiles' contributors."""
    members: tuple[str, ...] = setting((), check=(checks.emails, checks.unique("member")))
    """Users in the group (emails, each also listed under users)."""
    claim: Optional[str] = setting(None)
    """IdP group claim value this group stands for (kubeflow-groups); recorded, members grant the access."""

    def cross_check(self) -> Iterator[tuple[str, str]]:
        if not self.members:
            # kfam, and the RoleBindings and AuthorizationPolicies it reads, bind one user each; Istio cannot
            # match one value inside the comma-separated kubeflow-groups header, so a claim alone grants nothing.
            yield "members", (
                "a group needs its members: Kubeflow's access management binds users one by one, "
                "so a group grants access only through the members listed here"
            )


@dataclass(frozen=True, kw_only=True)
class ContributorSettings:
    user: Optional[str] = setting(None, check=checks.email)
    """A user (email) who may work in the profile."""
    group: Optional[str] = setting(None)
    """A group whose members may work in the profile."""
    role: Literal["edit", "view"] = setting("edit")
    """kubeflow-edit or kubeflow-view."""

    def cross_check(self) -> Iterator[tuple[str, str]]:
        if (self.user is None) == (self.group is None):
            yield "", "name exactly one of user or group"


@dataclass(frozen=True, kw_only=True)
class DataLakeSettings:
    bucket: str = setting(check=checks.not_empty)
    """Bucket purpose from artifacts.buckets (like pipelines) or an existing bucket name."""
    prefix: str = setting(check=(checks.not_empty, checks.s3_key_prefix))
    """Key prefix the profile's workloads may read and write; no other profile's, nor the platform's (v2, pipelines, Argo's), may contain it or lie inside it."""


def data_lake_overlaps(
    profiles: Sequence["ProfileSettings"], *, bucket_names: Mapping[str, str], platform_bucket: str,
    platform_prefixes: Mapping[str, str], elsewhere: Sequence[tuple[str, str, str]] = (),
) -> Iterator[tuple[str, str]]:
    """Data-lake prefixes that share keys: equal or nested prefixes in one bucket, among the profiles or with
    the platform's own prefixes (`platform_prefixes`: prefix -> whose) of the pipelines bucket. Each profile
    involved gets its own line (paths under `tenancy.`), so every problem shows at once. `elsewhere`: data lakes
    of profiles checked elsewhere (a tenancy stack's other parts), as (who, bucket, prefix): compared with, never
    reported on.

    Each profile's role reaches `<prefix>/*`: a prefix inside another's hands one profile the other's data.
    """
    lakes: list[tuple[str, str, str]] = []  # (path, bucket, prefix); after the first `reported`, elsewhere's (who, ...)
    for i, profile in enumerate(profiles):
        lake = profile.data_lake
        if lake is None or not lake.prefix.strip("/"):
            continue
        bucket = bucket_names.get(lake.bucket, lake.bucket)
        lakes.append((f"profiles[{i}].dataLake.prefix", bucket, lake.prefix.strip("/")))
    reported = len(lakes)
    for who, bucket, prefix in elsewhere:
        if prefix.strip("/"):
            lakes.append((who, bucket_names.get(bucket, bucket), prefix.strip("/")))

    def overlap(a: str, b: str) -> Optional[str]:
        if a == b:
            return "is the same prefix as"
        if a.startswith(b + "/"):
            return "lies inside"
        if b.startswith(a + "/"):
            return "contains"
        return None

    def ancestors(prefix: str) -> Iterator[str]:
        parts = prefix.split("/")
        for end in range(1, len(parts)):
            yield "/".join(parts[:end])

    # Indexed by bucket and prefix, so thousands of profiles cost one pass, not one pass per profile.
    same: dict[tuple[str, str], list[int]] = {}
    below: dict[tuple[str, str], list[int]] = {}
    for index, (_, bucket, prefix) in enumerate(lakes):
        same.setdefault((bucket, prefix), []).append(index)
        for ancestor in ancestors(prefix):
            below.setdefault((bucket, ancestor), []).append(index)
    for index, (path, bucket, prefix) in enumerate(lakes[:reported]):
        others = set(same.get((bucket, prefix), ())) | set(below.get((bucket, prefix), ()))
        for ancestor in ancestors(prefix):
            others.update(same.get((bucket, ancestor), ()))
        for other_index in sorted(others - {index}):
            other_path, _, other = lakes[other_index]
            if other_path == path:
                continue
            relation = overlap(prefix, other)
            if relation:
                whose = other_path if other_index >= reported else f"tenancy.{other_path.removesuffix('.prefix')}"
                yield path, (f"{prefix!r} {relation} {other!r} of {whose} "
                             f"in bucket {bucket!r}; each profile's role reaches its whole prefix, so give each a "
                             "prefix of its own (like profiles/<name>)")
        if bucket == platform_bucket:
            for platform_prefix, whose in sorted(platform_prefixes.items()):
                relation = overlap(prefix, platform_prefix)
                if relation:
                    yield path, (f"{prefix!r} {relation} the platform's prefix {platform_prefix!r} ({whose}) of "
                                 f"bucket {bucket!r}; choose a prefix outside it (like profiles/<name>)")


@dataclass(frozen=True, kw_only=True)
class QuotaSettings:
    gpus: int = setting(0, check=checks.between(0, 1024))
    """GPUs the profile's pods may request in total (nvidia.com/gpu)."""
    cpu: Optional[str] = setting(None, check=(_quantity, checks.non_negative_quantity))
    """CPU requests the profile may hold (like 64)."""
    memory: Optional[str] = setting(None, check=(_quantity, checks.non_negative_quantity))
    """Memory requests the profile may hold (like 256Gi)."""


@dataclass(frozen=True, kw_only=True)
class ProfileSettings:
    name: str = setting(check=checks.dns1123_label)
    """Profile and namespace name."""
    owner: str = setting(check=checks.email)
    """Owner's email (must be listed under users)."""
    contributors: tuple[ContributorSettings, ...] = setting(())
    """Users or groups who may work in the profile."""
    gpu_pools: tuple[str, ...] = setting(())
    """GPU pools (gpu.pools[].name) whose taints the profile's pods tolerate."""
    quota: QuotaSettings = setting(QuotaSettings())
    """Resource quota of the namespace."""
    labels: Mapping[str, str] = setting(types.MappingProxyType({}), check=checks.labels)
    """Extra namespace labels."""
    annotations: Mapping[str, str] = setting(types.MappingProxyType({}), check=checks.annotation_keys)
    """Extra namespace annotations."""
    data_lake: Optional[DataLakeSettings] = setting(None)
    """Bucket prefix the profile's workloads reach with short-lived IRSA credentials."""

    def cross_check(self) -> Iterator[tuple[str, str]]:
        # One entry per user or group: two would bind both roles, and which one the user meant is unknown.
        listed: dict[tuple[str, str], int] = {}
        for j, contributor in enumerate(self.contributors):
            who = ("user", contributor.user) if contributor.user is not None else ("group", contributor.group or "")
            if who in listed:
                first = self.contributors[listed[who]]
                yield f"contributors[{j}].{who[0]}", (
                    f"{who[1]!r} is already listed at contributors[{listed[who]}]"
                    + (f" with role {first.role!r}; keep the one role it should have" if first.role != contributor.role else "")
                )
            listed.setdefault(who, j)
        for where, values in (("labels", self.labels), ("annotations", self.annotations)):
            for key in values:
                if key in PLATFORM_NAMESPACE_KEYS:
                    yield f"{where}.{key}", "is set by the platform (mesh membership, GPU tolerations, ownership)"
                elif key.startswith(POD_SECURITY_LABEL_PREFIX):
                    yield f"{where}.{key}", (
                        "the platform sets the profile's Pod Security level; a profile's own would override it"
                        " (enforce: privileged lets its pods run privileged, on the host's network and files), so remove it"
                    )
        if self.gpu_pools and not self.quota.gpus:
            yield "quota.gpus", "gpuPools without a GPU quota would let the profile onto GPU nodes yet allow it no GPU"


@dataclass(frozen=True, kw_only=True)
class ServingSettings:
    system_namespaces: tuple[str, ...] = setting(("knative-serving", "kserve"), check=checks.unique("namespace"))
    """Namespaces of Knative Serving and KServe whose pods may reach inference services (the ingress namespace too)."""
    principals: tuple[str, ...] = setting(
        ("cluster.local/ns/knative-serving/sa/activator", "cluster.local/ns/istio-system/sa/cluster-local-gateway-service-account"),
        check=_principals,
    )
    """Istio principals admitted to inference services' queue-proxy ports (Knative's activator, the cluster-local gateway)."""
    metrics_principals: tuple[str, ...] = setting(("cluster.local/ns/knative-serving/sa/controller",), check=_principals)
    """Istio principals admitted to queue-proxy's metrics on inference services (port 9090, GET /metrics: Knative's autoscaler)."""


#: A domain as self-service matches it: lower-case DNS name, no wildcard (the gateway matches it exactly).
_DOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+$")


def _domains(values: tuple[str, ...]) -> Optional[str]:
    for value in values:
        if not _DOMAIN.match(value):
            return f"{value!r} is not a lower-case email domain (like example.com; no wildcard, no @)"
    return None


def _name_prefix(value: str) -> Optional[str]:
    if value and not re.match(r"^[a-z0-9]([-a-z0-9]*[-a-z0-9])?$", value):
        return f"{value!r} must be lower-case letters, digits and '-', starting with a letter or digit (like u-)"
    return None


@dataclass(frozen=True, kw_only=True)
class SelfServiceTemplate:
    gpu_pools: tuple[str, ...] = setting(())
    """GPU pools (gpu.pools[].name) a self-service profile's pods may tolerate; empty: no GPU access."""
    quota: QuotaSettings = setting(QuotaSettings())
    """Resource quota of every self-service profile's namespace."""


@dataclass(frozen=True, kw_only=True)
class SelfServiceSettings:
    email_domains: tuple[str, ...] = setting((), check=(_domains, checks.unique("domain")))
    """Email domains whose users may create one profile of their own in the dashboard; empty (the default): nobody may, the dashboard's create call is refused at the gateway."""
    name_prefix: str = setting("", check=_name_prefix)
    """A self-service profile is named <namePrefix><the local part of its owner's email> (alice@example.com: u-alice with prefix u-)."""
    template: SelfServiceTemplate = setting(SelfServiceTemplate())
    """GPU access and quota every self-service profile gets, enforced by the cluster when the profile is created."""
    template_engine: Optional[Literal["kyverno"]] = setting(None)
    """What creates the template's quota and policies in each new profile namespace (kyverno: a generate ClusterPolicy); required with emailDomains."""

    @property
    def enabled(self) -> bool:
        return bool(self.email_domains)


#: A tenancy stack's platform: the fully qualified stack name `pulumi.StackReference` takes (<organization>/<project>/<stack>).
_PLATFORM_STACK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/kubeflow-platform/[A-Za-z0-9_.-]+$")


def _platform_stack(value: str) -> Optional[str]:
    if not _PLATFORM_STACK.match(value):
        return (f"{value!r} is not a stack of this project as StackReference names one: "
                "<organization>/kubeflow-platform/<stack> (like organization/kubeflow-platform/dev)")
    return None


@dataclass(frozen=True, kw_only=True)
class TenancyStacksSettings:
    by: Literal["count", "group"] = setting()
    """How profiles are placed in tenancy stacks: count (in the listed order, `size` per stack, parts 1, 2, ...) or group (by the value of the namespace label `label`, which names the part)."""
    size: Optional[int] = setting(None, check=checks.between(1, 5000))
    """With by count: profiles per tenancy stack (the last takes the rest)."""
    label: Optional[str] = setting(None, check=checks.label_key)
    """With by group: the profiles' label (tenancy.profiles[].labels) whose value names each profile's part."""

    def cross_check(self) -> Iterator[tuple[str, str]]:
        if self.by == "count" and self.size is None:
            yield "size", "required with by count: how many profiles each tenancy stack holds (like 1000)"
        if self.by == "count" and self.label is not None:
            yield "label", "applies only with by group; remove it"
        if self.by == "group" and self.label is None:
            yield "label", "required with by group: the profiles' label whose value names their tenancy stack (like team)"
        if self.by == "group" and self.size is not None:
            yield "size", "applies only with by count; remove it"


@dataclass(frozen=True, kw_only=True)
class TenancySettings:
    file: Optional[str] = setting(None)
    """A YAML file of the repository (relative to Pulumi.yaml) holding these tenancy settings, so the stacks of a fleet share one definition; keys it holds may not be repeated beside it."""
    users: tuple[str, ...] = setting((), check=(checks.emails, checks.unique("user")))
    """Every data scientist, by email."""
    groups: tuple[GroupSettings, ...] = setting(())
    """Named groups of users."""
    profiles: tuple[ProfileSettings, ...] = setting(())
    """One Profile (namespace) per data scientist or team."""
    trusted_principals: tuple[str, ...] = setting((), check=_principals)
    """Principals whose kubeflow-userid contributors' policies trust (kfam's ISTIO_INGRESS_GATEWAY_PRINCIPAL, KFP_UI_PRINCIPAL); empty: the ingress gateway's (auth.trustDomain, ingress.namespace, auth.gatewayServiceAccount) and the pipelines UI's."""
    serving: ServingSettings = setting(ServingSettings())
    """Who may reach the profiles' inference services besides their owners and contributors."""
    viewers_read_only: bool = setting(False)
    """Keep role view contributors out of the profile's notebook servers (upstream kfam lets them in, where code runs as default-editor)."""
    self_service: SelfServiceSettings = setting(SelfServiceSettings())
    """Profiles users create themselves in the dashboard (off unless emailDomains is set); see docs/profiles.md."""
    data_lake_buckets: tuple[str, ...] = setting((), check=checks.unique("bucket"))
    """Existing buckets outside this stack that profiles' dataLake.bucket may name (the organisation's data lake); no other bucket is accepted."""
    stacks: Optional[TenancyStacksSettings] = setting(None)
    """Place the profiles in tenancy stacks of their own (by count or by group) instead of this stack; see docs/profiles.md."""
    platform: Optional[str] = setting(None, check=_platform_stack)
    """On a tenancy stack: the platform stack whose profiles it holds part of (<organization>/kubeflow-platform/<stack>); its users, groups and profiles are read from that stack's file."""
    part: Optional[Union[int, str]] = setting(None)
    """On a tenancy stack: which part of the platform's tenancy.stacks it holds (1, 2, ... by count; the label's value by group)."""

    def cross_check(self) -> Iterator[tuple[str, str]]:
        users = set(self.users)
        group_names = [g.name for g in self.groups]
        for i, group in enumerate(self.groups):
            if group_names.index(group.name) != i:
                yield f"groups[{i}].name", f"{group.name!r} is listed twice"
            for j, member in enumerate(group.members):
                if member not in users:
                    yield f"groups[{i}].members[{j}]", f"{member!r} is not listed under tenancy.users"
        seen_names: set[str] = set()
        seen_owners: set[str] = set()
        for i, profile in enumerate(self.profiles):
            if profile.name in seen_names:
                yield f"profiles[{i}].name", f"{profile.name!r} is listed twice"
            seen_names.add(profile.name)
            if profile.owner in seen_owners:
                yield f"profiles[{i}].owner", f"{profile.owner!r} already owns another profile"
            seen_owners.add(profile.owner)
            if profile.owner not in users:
                yield f"profiles[{i}].owner", f"{profile.owner!r} is not listed under tenancy.users"
            for j, contributor in enumerate(profile.contributors):
                if contributor.user is not None and contributor.user not in users:
                    yield f"profiles[{i}].contributors[{j}].user", f"{contributor.user!r} is not listed under tenancy.users"
                if contributor.group is not None and contributor.group not in group_names:
                    yield f"profiles[{i}].contributors[{j}].group", f"{contributor.group!r} is not listed under tenancy.groups"
        if self.stacks is not None and self.stacks.by == "group" and self.stacks.label is not None:
            for i, profile in enumerate(self.profiles):
                if self.stacks.label not in profile.labels:
                    yield f"profiles[{i}].labels", (
                        f"has no {self.stacks.label!r} label, whose value names the profile's tenancy stack "
                        "(tenancy.stacks.by group); add it")
        if (self.platform is None) != (self.part is None):
            yield "platform" if self.platform is None else "part", (
                "a tenancy stack names both its platform stack (platform) and its part (part)")

    def tenant_principals(self, reserved: set[str], elsewhere: Iterable[str] = ()) -> Iterator[tuple[str, str]]:
        """Principals in a profile's namespace among those the policies trust (run from Settings.cross_check:
        a profile that takes a platform namespace, `reserved`, is reported as such and not again here);
        `elsewhere`: names of profiles not listed here (a tenancy stack's other parts)."""
        profiles = ({profile.name for profile in self.profiles} | set(elsewhere)) - reserved
        # A principal in a profile namespace is a workload the profile's users and their code control.
        for key, principals, power in (
            ("trustedPrincipals", self.trusted_principals, "could send kubeflow-userid as any user to every profile"),
            ("serving.principals", self.serving.principals, "would reach every profile's inference services"),
            ("serving.metricsPrincipals", self.serving.metrics_principals, "would read every profile's model metrics"),
        ):
            for j, principal in enumerate(principals):
                namespace = principal.split("/ns/", 1)[-1].split("/", 1)[0]
                if namespace in profiles and not namespace.startswith("kube-"):
                    yield f"tenancy.{key}[{j}]", (
                        f"{principal!r} is a service account of profile {namespace!r}: its pods run its users' code and"
                        f" {power}; name the platform's own workloads only"
                    )


def tenancy_parts(tenancy: TenancySettings) -> dict[str, tuple[str, ...]]:
    """Profile names per tenancy stack part, as tenancy.stacks places them (empty without it): by count, parts
    "1", "2", ... of `size` profiles in the listed order; by group, one part per value of the label."""
    stacks = tenancy.stacks
    if stacks is None:
        return {}
    names = [profile.name for profile in tenancy.profiles]
    if stacks.by == "count":
        size = stacks.size or len(names) or 1
        return {str(n + 1): tuple(names[start:start + size]) for n, start in enumerate(range(0, len(names), size))}
    parts: dict[str, list[str]] = {}
    for profile in tenancy.profiles:
        value = profile.labels.get(stacks.label or "")
        if value is not None:
            parts.setdefault(value, []).append(profile.name)
    return {part: tuple(members) for part, members in sorted(parts.items())}
