"""Settings: everything a stack file says, validated at load before any resource is registered.

`load()` reads the project's stack configuration, converts each top-level key into its frozen dataclass
and runs every check, collecting all problems. Secrets are read with `Config.get_secret` and stay
`pulumi.Output` secrets: their values are never read by the program itself.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
import types
import typing
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import pulumi
import yaml
from pulumi.runtime import config as runtime_config

from config.access import (GATEWAY_OPTION_KEYS, REPLACED_UPSTREAM_COMPONENT, AuthSettings, ProfileSettings, TenancySettings,
                           data_lake_overlaps, tenancy_parts)
from config.capacity import ArtifactSettings, GpuSettings, IdentitySettings, capacity_cross_checks
from config.edge import CertificateSettings, DnsSettings, IngressSettings, edge_cross_checks
from config.fleet import KUBEFLOW_STACK_KEYS, FleetSettings, GlobalSettings
from config.kubeflow import KubeflowSettings
from config import tenancy_stacks
from config.loader import Problems, camel, from_raw, keys_of, setting
from manifests.iam import PIPELINES_PREFIXES
from config.platform import AwsSettings, ClusterSettings
from manifests import yaml_loader
from config.recovery import RecoverySettings, recovery_cross_checks
from manifests.guardrails import GuardrailParams
from manifests.identity import IdentityHeaderOptions, gateway_principal, validate_identity_options

PROJECT = "kubeflow-platform"
#: Where the program's files are (Pulumi.yaml, __main__.py): files a setting names are read relative to it.
PROGRAM_DIR = Path(__file__).resolve().parent.parent

#: Secret top-level keys: set with `pulumi config set --secret <key> <value>`. When each is required is
#: `_missing_secrets` below; Pulumi.yaml declares only those every stack needs (the CLI requires what it declares).
SECRET_KEYS: Mapping[str, str] = {
    "authClientSecret": "OIDC client secret of Kubeflow at the enterprise issuer. Required on every stack.",
    "authCookieSecret": "Key oauth2-proxy signs its session cookies with (16, 24 or 32 bytes). Required with auth.proxy oauth2-proxy.",
    "databasePassword": "Password of kubeflow.database.user at the external MySQL. Required when kubeflow.database is set.",
    "objectStoreAccessKeyId": "Access key id pipelines use with kubeflow.objectStore.staticKeys (Kubeflow 1.11.0 only). Required with staticKeys.",
    "objectStoreSecretAccessKey": "Secret access key that goes with objectStoreAccessKeyId. Required with staticKeys.",
}


class SettingsError(pulumi.RunError):
    """Every problem found in the stack configuration, one per line.

    A `pulumi.RunError`: the engine reports a user's configuration mistake as its message alone, no traceback.
    """

    def __init__(self, stack: str, problems: list[str]) -> None:
        self.stack = stack
        self.problems = problems
        lines = "\n".join(f"  - {line}" for line in problems)
        super().__init__(
            f"stack {stack!r} has {len(problems)} configuration problem{'s' if len(problems) != 1 else ''} "
            f"(keys under {PROJECT}: in Pulumi.{stack}.yaml):\n{lines}"
        )


@dataclass(frozen=True, kw_only=True)
class Secrets:
    """Secret settings, as Pulumi secret Outputs (None when not configured)."""

    auth_client_secret: Optional[pulumi.Output[str]] = None
    auth_cookie_secret: Optional[pulumi.Output[str]] = None
    database_password: Optional[pulumi.Output[str]] = None
    object_store_access_key_id: Optional[pulumi.Output[str]] = None
    object_store_secret_access_key: Optional[pulumi.Output[str]] = None


@dataclass(frozen=True, kw_only=True)
class Settings:
    aws: AwsSettings = setting()
    """Account, region and default tags."""
    cluster: ClusterSettings = setting()
    """The existing EKS cluster."""
    protect: bool = setting(False)
    """Protect state-bearing resources (hosted zone, OIDC provider, buckets) and retain buckets on delete."""
    dns: DnsSettings = setting()
    """Route 53 zone and host names."""
    certificate: CertificateSettings = setting(CertificateSettings())
    """ACM certificate for the hosts."""
    ingress: IngressSettings = setting()
    """The mesh's ingress gateway behind an NLB, and the central Gateway."""
    identity: IdentitySettings = setting(IdentitySettings())
    """IAM OIDC provider for IRSA."""
    artifacts: ArtifactSettings = setting()
    """S3 artifact buckets."""
    gpu: GpuSettings = setting(GpuSettings())
    """GPU node pools."""
    kubeflow: KubeflowSettings = setting()
    """Upstream Kubeflow and how it is fitted in."""
    auth: AuthSettings = setting()
    """SSO at the gateway and the trusted identity header."""
    tenancy: TenancySettings = setting(TenancySettings())
    """Users, groups and profiles."""
    fleet: FleetSettings = setting(FleetSettings())
    """This stack's role in a fleet of regional stacks and a global stack (see docs/fleet.md); unset: stand-alone."""
    recovery: RecoverySettings = setting(RecoverySettings())
    """Active/passive recovery across two regions: this stack's role, its peer, replication and the global database (docs/failover.md)."""
    secrets: Secrets = dataclasses.field(default=Secrets(), metadata={"internal": True})
    """Secret settings (top-level secret keys, see SECRET_KEYS)."""
    other_parts: Optional[tenancy_stacks.OtherParts] = dataclasses.field(default=None, metadata={"internal": True})
    """On a tenancy stack: what it keeps of its platform's profiles in other parts (tenancy.profiles holds its own)."""

    @property
    def tenancy_part(self) -> Optional[str]:
        """On a tenancy stack, the part of its platform's profiles it holds (tenancy.part); None on a platform stack."""
        return None if self.tenancy.platform is None else str(self.tenancy.part)

    def profiles_created(self) -> tuple[ProfileSettings, ...]:
        """The profiles whose objects this stack creates: all of them, none on a platform stack that places them in
        tenancy stacks (tenancy.stacks), a tenancy stack its part."""
        if self.other_parts is not None:
            return self.tenancy.profiles  # its part alone was read (config.tenancy_stacks.own_part)
        if self.tenancy.platform is not None:
            names = set(tenancy_parts(self.tenancy).get(str(self.tenancy.part), ()))
            return tuple(profile for profile in self.tenancy.profiles if profile.name in names)
        if self.tenancy.stacks is not None:
            return ()
        return self.tenancy.profiles

    def identity_options(self) -> IdentityHeaderOptions:
        """How the gateway sets the trusted identity headers: auth settings on the ingress gateway's workload."""
        return self.auth.identity_options(
            gateway_namespace=self.ingress.namespace,
            gateway_selector=types.MappingProxyType(dict(self.ingress.selector)),
            istio_version=self.kubeflow.mesh.istio_version,
            login_domains=self.login_domains(),
        )

    def login_domains(self) -> tuple[str, ...]:
        """Domains whose every one-label host is behind the login: the serving domain, unless
        auth.openModelEndpoints opens the model endpoints."""
        if self.dns.serving_domain is None or self.auth.open_model_endpoints:
            return ()
        return (self.dns.serving_domain.rstrip(".").lower(),)

    def trusted_principals(self) -> tuple[str, ...]:
        """Whose kubeflow-userid contributors' policies trust: `tenancy.trustedPrincipals`, or what kfam would
        name for this mesh, the gateway's principal and the pipelines UI's (kubeflow/kubeflow@v1.10.0
        components/access-management/kfam/bindings.go:79-86)."""
        if self.tenancy.trusted_principals:
            return self.tenancy.trusted_principals
        options = self.identity_options()
        return gateway_principal(options), f"{options.trust_domain}/ns/{self.kubeflow.namespace}/sa/ml-pipeline-ui"

    def guardrail_params(self, cluster_oidc_issuer: str, namespaces_outside_mesh: tuple[str, ...] = ()) -> GuardrailParams:
        """What this stack's guardrails are checked against (manifests.guardrails): its approved mirror, its
        gateway, its mesh; `namespaces_outside_mesh` are the components' own, each kept out for a reason."""
        return GuardrailParams(
            mirror=self.kubeflow.images.mirror if self.kubeflow.images is not None else "",
            gateway_service=f"{self.ingress.namespace}/{self.ingress.service_name}",
            cluster_oidc_issuer=cluster_oidc_issuer,
            mesh_revision=self.kubeflow.mesh.revision,
            namespaces_outside_mesh=frozenset(namespaces_outside_mesh),
        )

    def _machine_identities_granted(self) -> Iterator[tuple[str, str]]:
        # A machine identity is let in only to act as its user; a user no profile grants would be refused by every
        # backend, so the stack says where it may work (kfam binds users one by one, as for people).
        granted = {profile.owner for profile in self.tenancy.profiles} | {
            contributor.user for profile in self.tenancy.profiles for contributor in profile.contributors if contributor.user
        } | (self.other_parts.granted if self.other_parts is not None else frozenset())
        for i, issuer in enumerate(self.auth.extra_issuers):
            if issuer.machine_identity is None:
                continue
            user = issuer.machine_identity.user
            key = f"auth.extraIssuers[{i}].machineIdentity.user"
            if user not in self.tenancy.users:
                yield key, f"{user!r} is not listed under tenancy.users; list it there and grant it a profile"
            elif user not in granted:
                yield key, (
                    f"{user!r} is a contributor of no profile: add it under tenancy.profiles[].contributors"
                    " (role edit to run pipelines), or its tokens reach nothing"
                )

    def _tenancy_part_problems(self) -> Iterator[tuple[str, str]]:
        tenancy = self.tenancy
        if tenancy.platform is None:
            return
        if self.other_parts is not None:
            yield from self._across_parts_problems(self.other_parts)
            return  # its part was found among the platform's (config.tenancy_stacks.own_part)
        if tenancy.stacks is None:
            yield "tenancy.platform", (f"{tenancy.platform} places no profiles in tenancy stacks: set tenancy.stacks on it"
                                       " (by count or by group), or remove tenancy.platform and tenancy.part here")
            return
        parts = tenancy_parts(tenancy)
        if str(tenancy.part) not in parts:
            shown = ", ".join(list(parts)[:20]) + (", ..." if len(parts) > 20 else "")
            yield "tenancy.part", (f"{str(tenancy.part)!r} is not a part of {tenancy.platform} (tenancy.stacks by "
                                   f"{tenancy.stacks.by}): its parts are {shown or 'none, it lists no profiles'}")

    def _across_parts_problems(self, other: tenancy_stacks.OtherParts) -> Iterator[tuple[str, str]]:
        """This part's profiles against the other parts' (the rules of TenancySettings.cross_check that compare
        profiles; the data lakes are compared with the others' in cross_check)."""
        for i, profile in enumerate(self.tenancy.profiles):
            if profile.name in other.names:
                yield f"tenancy.profiles[{i}].name", (
                    f"{profile.name!r} is listed twice: a profile in {other.names[profile.name]} has this name too; "
                    "give each profile a name of its own")
            if profile.owner in other.owners:
                yield f"tenancy.profiles[{i}].owner", (
                    f"{profile.owner!r} already owns another profile (in {other.owners[profile.owner]})")

    def cross_check(self) -> Iterator[tuple[str, str]]:
        yield from self._tenancy_part_problems()
        yield from edge_cross_checks(self.dns, self.certificate)
        yield from self._fleet_problems()
        yield from recovery_cross_checks(self)
        yield from capacity_cross_checks(
            region=self.aws.region, cluster_name=self.cluster.name, protect=self.protect,
            artifacts=self.artifacts, gpu=self.gpu, identity=self.identity, kubeflow_version=self.kubeflow.version,
        )
        # Auth's own keys are checked by AuthSettings; here only what the identity options take from other areas.
        for line in validate_identity_options(self.identity_options()):
            key, _, message = line.partition(": ")
            if key in GATEWAY_OPTION_KEYS:
                yield GATEWAY_OPTION_KEYS[key], message
        if self.dns.serving_domain is not None and "knative" in self.kubeflow.exclude:
            # The program sets the serving domain in Knative's own ConfigMaps; an excluded Knative is the
            # enterprise's, whose config-domain would keep promising other hosts than the gateway serves.
            yield "dns.servingDomain", (
                "is set but kubeflow.exclude removes knative, whose config-domain it is written into; "
                "remove knative from kubeflow.exclude or unset dns.servingDomain"
            )
        gateway = gateway_principal(self.identity_options())
        # Istio reads a `cluster.local` principal as one of the mesh's own trust domain (bundle.go:68-73).
        spellings = {gateway, "cluster.local/" + gateway.split("/", 1)[1]}
        if self.tenancy.trusted_principals and not spellings & set(self.tenancy.trusted_principals):
            yield "tenancy.trustedPrincipals", (
                f"does not name the ingress gateway's principal {gateway!r} (auth.trustDomain, ingress.namespace, "
                "auth.gatewayServiceAccount): contributors could not reach their profiles through the gateway; "
                "add it, or leave trustedPrincipals out to use the gateway's and the pipelines UI's"
            )
        replaced = REPLACED_UPSTREAM_COMPONENT[self.auth.proxy]
        if replaced not in self.kubeflow.exclude:
            yield "kubeflow.exclude", (
                f"add {replaced!r}: auth deploys its own {self.auth.proxy} for auth.issuerUrl, and upstream's copy "
                "comes with Dex settings and publicly known client and cookie secrets"
            )
        yield from self._machine_identities_granted()
        pools = {pool.name: pool for pool in self.gpu.pools}
        buckets = {bucket.purpose for bucket in self.artifacts.buckets}
        reserved = self._namespaces_profiles_must_not_take()
        yield from self.tenancy.tenant_principals(reserved, self.other_parts.names if self.other_parts is not None else ())
        if self.auth.lowercase:
            yield from self._upper_case_emails()
        for i, profile in enumerate(self.tenancy.profiles):
            if profile.name in reserved or profile.name.startswith("kube-"):
                # The profile's namespace is applied (and deleted with the profile) by this program.
                yield f"tenancy.profiles[{i}].name", f"{profile.name!r} is a platform namespace, not a profile's"
            for j, pool in enumerate(profile.gpu_pools):
                if pool not in pools:
                    known = ", ".join(sorted(pools)) or "none configured"
                    yield f"tenancy.profiles[{i}].gpuPools[{j}]", f"{pool!r} is not a gpu.pools name ({known})"
            if profile.quota.gpus and not profile.gpu_pools:
                yield f"tenancy.profiles[{i}].quota.gpus", "a GPU quota needs gpuPools the profile may use"
            capacity = sum(pools[p].max_size * pools[p].gpus_per_node for p in profile.gpu_pools if p in pools)
            if profile.gpu_pools and all(p in pools for p in profile.gpu_pools) and profile.quota.gpus > capacity:
                yield f"tenancy.profiles[{i}].quota.gpus", (
                    f"{profile.quota.gpus} is more than its pools can ever offer ({capacity}: maxSize x gpusPerNode)"
                )
            lake = profile.data_lake
            stack_bucket_names = set(self.artifacts.names().values())
            if lake is not None and lake.bucket not in buckets and lake.bucket not in stack_bucket_names:
                if "." not in lake.bucket and "-" not in lake.bucket and lake.bucket not in self.tenancy.data_lake_buckets:
                    yield f"tenancy.profiles[{i}].dataLake.bucket", (
                        f"{lake.bucket!r} is neither an artifacts.buckets purpose ({', '.join(sorted(buckets))}) "
                        "nor a bucket name"
                    )
                elif lake.bucket not in self.tenancy.data_lake_buckets:
                    # The profile's role gets read and write on the prefix of whatever bucket is named: an
                    # account's audit logs or another team's data must not be one typo away.
                    yield f"tenancy.profiles[{i}].dataLake.bucket", (
                        f"{lake.bucket!r} is not a bucket of this stack; a profile's role would read and write its "
                        "prefix there: list the data lake's buckets the profiles may use under tenancy.dataLakeBuckets, "
                        f"or use a purpose of artifacts.buckets ({', '.join(sorted(buckets))})"
                    )
        yield from self._self_service_problems(pools)
        names = self.artifacts.names()
        # The platform's own prefixes of the pipelines bucket (components.identity): KFP's packages and v2
        # artifacts, and Argo's artifacts (the first segment of kubeflow.argo.keyFormat).
        platform_prefixes = {**PIPELINES_PREFIXES, self.kubeflow.argo.key_format.split("/")[0]: "Argo workflow artifacts and logs"}
        for key, message in data_lake_overlaps(self.tenancy.profiles, bucket_names=names,
                                               platform_bucket=names.get("pipelines", ""),
                                               platform_prefixes=platform_prefixes,
                                               elsewhere=self.other_parts.lakes if self.other_parts is not None else ()):
            yield f"tenancy.{key}", message

    def _fleet_problems(self) -> Iterator[tuple[str, str]]:
        fleet = self.fleet
        if fleet.role != "regional" or fleet.host is None:
            return
        if fleet.host == self.dns.host:
            # The login's callback is on dns.host: on the global host it would land in whichever region answers.
            yield "dns.host", (f"is the fleet's global host {fleet.host!r}; give the region a host of its own (like "
                               f"kubeflow.{self.aws.region}.{self.dns.zone_name}) and list the global host in dns.extraHosts")
        elif fleet.host not in self.dns.extra_hosts:
            yield "dns.extraHosts", f"add the fleet's global host {fleet.host!r} (fleet.host): the region serves it too"

    def _self_service_problems(self, pools: dict) -> Iterator[tuple[str, str]]:
        service = self.tenancy.self_service
        template = service.template
        for j, pool in enumerate(template.gpu_pools):
            if pool not in pools:
                known = ", ".join(sorted(pools)) or "none configured"
                yield f"tenancy.selfService.template.gpuPools[{j}]", f"{pool!r} is not a gpu.pools name ({known})"
        if template.quota.gpus and not template.gpu_pools:
            yield "tenancy.selfService.template.quota.gpus", "a GPU quota needs gpuPools the profiles may use"
        if template.gpu_pools and not template.quota.gpus:
            yield "tenancy.selfService.template.quota.gpus", "gpuPools without a GPU quota would let the profiles onto GPU nodes yet allow them no GPU"
        if not service.enabled and (service.name_prefix or template != type(template)()):
            yield "tenancy.selfService.emailDomains", "namePrefix and template take effect only with emailDomains: list the domains whose users may create a profile"
        if service.enabled and service.template_engine is None:
            yield "tenancy.selfService.templateEngine", (
                "required with emailDomains: the API server alone cannot create the template's quota and policies in a "
                "namespace made at run time; set kyverno (the cluster must run Kyverno) or leave self-service off")
        if service.enabled and self.auth.user_id_prefix:
            yield "tenancy.selfService.emailDomains", (
                f"auth.userIdPrefix {self.auth.user_id_prefix!r} is not supported with self-service: the dashboard names the "
                "owner by the prefixed id, which the profile policy cannot tell from an email")

    def _namespaces_profiles_must_not_take(self) -> set[str]:
        return {
            "default", "kubeflow", "istio-system", "cert-manager", "auth", "oauth2-proxy", "knative-serving", "kserve",
            self.ingress.namespace, self.ingress.gateway_namespace, self.kubeflow.argo.namespace,
            self.kubeflow.namespace, self.kubeflow.system_namespace, *self.tenancy.serving.system_namespaces,
        }

    def _upper_case_emails(self) -> Iterator[tuple[str, str]]:
        # kubeflow-userid arrives lower-cased (auth.lowercase), and owners, RoleBindings and policies match it exactly.
        def check(path: str, email: str | None) -> Iterator[tuple[str, str]]:
            if email is not None and email != email.lower():
                yield path, f"{email!r} must be written in lower case, as auth.lowercase delivers kubeflow-userid"

        tenancy = self.tenancy
        for i, user in enumerate(tenancy.users):
            yield from check(f"tenancy.users[{i}]", user)
        for i, group in enumerate(tenancy.groups):
            for j, member in enumerate(group.members):
                yield from check(f"tenancy.groups[{i}].members[{j}]", member)
        for i, profile in enumerate(tenancy.profiles):
            yield from check(f"tenancy.profiles[{i}].owner", profile.owner)
            for j, contributor in enumerate(profile.contributors):
                yield from check(f"tenancy.profiles[{i}].contributors[{j}].user", contributor.user)


def settings_keys() -> dict[str, Any]:
    """Top-level config keys and their fields (secrets excluded)."""
    return keys_of(Settings)


def _raw_value(text: Any, hint: Any) -> Any:
    # Stack files hold structured values; `pulumi config set` stores scalars as strings.
    if not isinstance(text, str) or hint is str or hint == Optional[str]:
        return text
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than Python's json decoder goes
        return text


def parse(raw: Mapping[str, Any], secrets: Secrets, present_secrets: set[str], stack: str,
          plaintext_secrets: Iterable[str] = (), stack_problems: Iterable[tuple[str, str]] = ()) -> Settings:
    """Builds Settings from raw top-level values; raises SettingsError with every problem.

    `plaintext_secrets`: secret keys the stack configuration holds in clear instead of encrypted;
    `stack_problems`: what was found before parsing (a tenancy stack's, config.tenancy_stacks).
    """
    problems = Problems()
    for key, message in stack_problems:
        problems.add(key, message)
    for key in sorted(plaintext_secrets):
        # The value would sit in clear in Pulumi.<stack>.yaml, in the repository and every copy of it.
        problems.add(key, f"is written in clear in the stack file; remove it and run `pulumi config set --secret {key} <value>`")
    wrapper = {k: v for k, v in raw.items() if v is not None}
    fleet = wrapper.get("fleet")
    if isinstance(fleet, Mapping) and fleet.get("role") == "global":
        return _parse_global(wrapper, secrets, present_secrets, stack, problems)
    wrapper = _with_tenancy_file(wrapper, problems)
    other_parts = None
    if tenancy_stacks.is_tenancy_stack(wrapper.get("tenancy")):
        # A tenancy stack checks its own part's profiles in full, and of the others what the rules across parts need.
        tenancy, other_parts = tenancy_stacks.own_part(wrapper["tenancy"])
        wrapper = {**wrapper, "tenancy": tenancy}
    if other_parts is None:
        settings = from_raw(Settings, wrapper, "", problems)
    else:
        found = Problems()
        settings = from_raw(Settings, wrapper, "", found, internal={"other_parts": other_parts})
        # Its profiles' paths as in the platform's stack file, where they are fixed.
        for line in found.lines:
            problems.lines.append(_PROFILE_PATH.sub(
                lambda match: f"tenancy.profiles[{other_parts.indices[int(match.group(1))]}]", line))
    if settings is not None:
        settings = _with_secrets(_follow_namespace(settings, wrapper), secrets)
        for key, message in _missing_secrets(settings, present_secrets):
            problems.add(key, message)
    if problems:
        raise SettingsError(stack, problems.lines)
    return settings


_PROFILE_PATH = re.compile(r"\btenancy\.profiles\[(\d+)\]")


def _parse_global(raw: dict[str, Any], secrets: Secrets, present: set[str], stack: str, problems: Problems) -> GlobalSettings:
    """A global stack: its AWS account and region, protection and fleet settings; no Kubeflow setting may be set."""
    for key in sorted(set(raw) - set(settings_keys())):
        problems.add(key, f"unknown key; a global stack takes {', '.join(sorted(set(settings_keys()) - set(KUBEFLOW_STACK_KEYS)))}")
    for key in KUBEFLOW_STACK_KEYS:
        if raw.get(key) not in (None, {}, []):
            problems.add(key, "is not used by a global stack (fleet.role global creates no cluster objects); "
                              "remove it from the stack file")
    aws = from_raw(AwsSettings, raw.get("aws"), "aws", problems)
    fleet = from_raw(FleetSettings, raw.get("fleet"), "fleet", problems)
    protect = from_raw(_Protect, {"protect": raw.get("protect", False)}, "", problems)
    if "authCookieSecret" not in present:
        problems.add("authCookieSecret", "is required on the global stack: every region's login signs its cookies with "
                                         "it; set it with `pulumi config set --secret authCookieSecret <value>`")
    if problems:
        raise SettingsError(stack, problems.lines)
    return GlobalSettings(stack=stack, aws=aws, protect=protect.protect, fleet=fleet, cookie_secret=secrets.auth_cookie_secret)


@dataclass(frozen=True, kw_only=True)
class _Protect:
    protect: bool = setting(False)


def _program_dir() -> Path:
    """The directory of the program being run (where its Pulumi.yaml is), else this repository's."""
    running = getattr(sys.modules.get("__main__"), "__file__", None)
    if running and Path(running).name == "__main__.py" and (Path(running).parent / "Pulumi.yaml").is_file():
        return Path(running).resolve().parent
    return PROGRAM_DIR


def _with_tenancy_file(raw: dict[str, Any], problems: Problems) -> dict[str, Any]:
    """`tenancy.file`: the tenancy settings read from a file of the repository, so every region of a fleet has the
    same profiles, contributors, quotas and policies; keys written beside `file` in the stack file are refused."""
    tenancy = raw.get("tenancy")
    if not isinstance(tenancy, Mapping) or tenancy.get("file") is None:
        return raw
    name = tenancy["file"]
    if not isinstance(name, str):
        return raw  # the loader names the key and the type it expected
    path = _program_dir() / name
    try:
        document = yaml_loader.load_all(path.read_bytes())
    except OSError as error:
        problems.add("tenancy.file", f"cannot read {name!r} (relative to the program's directory): {error.strerror}")
        return {**raw, "tenancy": {}}
    except (yaml.YAMLError, ValueError, RecursionError) as error:
        problems.add("tenancy.file", f"{name!r} is not valid YAML: {error}")
        return {**raw, "tenancy": {}}
    content = document[0] if len(document) == 1 else None
    if not isinstance(content, Mapping):
        problems.add("tenancy.file", f"{name!r} must hold one mapping of tenancy settings (users, groups, profiles, ...)")
        return {**raw, "tenancy": {}}
    both = sorted(set(content) & (set(tenancy) - {"file"}))
    for key in both:
        problems.add(f"tenancy.{key}", f"is set in the stack file and in {name!r}; keep it in one place")
    if "file" in content:
        problems.add("tenancy.file", f"{name!r} names another file; a tenancy file holds the settings themselves")
    return {**raw, "tenancy": {**content, **{k: v for k, v in tenancy.items() if k not in both}}}


def _follow_namespace(settings: Settings, raw: dict[str, Any]) -> Settings:
    """The gateway's and the central Secret's namespace follow kubeflow.namespace unless they are set."""
    namespace = settings.kubeflow.namespace
    ingress, kubeflow = raw.get("ingress") or {}, raw.get("kubeflow") or {}
    if "gatewayNamespace" not in ingress:
        settings = dataclasses.replace(settings, ingress=dataclasses.replace(settings.ingress, gateway_namespace=namespace))
    if "centralSecretNamespace" not in kubeflow:
        settings = dataclasses.replace(settings, kubeflow=dataclasses.replace(settings.kubeflow, central_secret_namespace=namespace))
    return settings


def _with_secrets(settings: Settings, secrets: Secrets) -> Settings:
    return dataclasses.replace(settings, secrets=secrets)


def _missing_secrets(settings: Settings, present: set[str]) -> Iterator[tuple[str, str]]:
    def missing(key: str, why: str) -> tuple[str, str]:
        return key, f"is required {why}; set it with `pulumi config set --secret {key} <value>`"

    if "authClientSecret" not in present:
        yield missing("authClientSecret", f"for the OIDC client {settings.auth.client_id!r}")
    if settings.auth.proxy == "oauth2-proxy" and "authCookieSecret" not in present:
        yield missing("authCookieSecret", "to sign oauth2-proxy's session cookies")
    if settings.kubeflow.database is not None and "databasePassword" not in present:
        yield missing("databasePassword", "because kubeflow.database is configured")
    if settings.kubeflow.object_store.static_keys:
        if settings.kubeflow.database is None:
            yield ("kubeflow.objectStore.staticKeys", "applies only to the external stores (kubeflow.database); "
                   "the bundled object store has its own keys: remove it")
        for key in ("objectStoreAccessKeyId", "objectStoreSecretAccessKey"):
            if key not in present:
                yield missing(key, "because kubeflow.objectStore.staticKeys is true")


def load(stack: Optional[str] = None) -> Settings:
    """Reads and validates the current stack's configuration."""
    stack = stack or pulumi.get_stack()
    cfg = pulumi.Config(PROJECT)
    hints = typing.get_type_hints(Settings)
    raw: dict[str, Any] = {}
    for key, f in settings_keys().items():
        raw[key] = _raw_value(cfg.get(key), hints[f.name])
    for key in _configured_keys():
        if key not in raw and key not in SECRET_KEYS:
            raw[key] = _raw_value(cfg.get(key), Any)
    stack_problems: list[tuple[str, str]] = []
    if tenancy_stacks.is_tenancy_stack(raw.get("tenancy")):
        # A tenancy stack: its profiles are its platform stack's, read from that stack's file.
        raw, stack_problems = tenancy_stacks.tenancy_stack_raw(stack, raw, list(settings_keys()))
    present = {key for key in SECRET_KEYS if runtime_config.get_config(f"{PROJECT}:{key}") is not None}
    plaintext = {key for key in present if not runtime_config.is_config_secret(f"{PROJECT}:{key}")}
    secrets = Secrets(
        auth_client_secret=cfg.get_secret("authClientSecret"),
        auth_cookie_secret=cfg.get_secret("authCookieSecret"),
        database_password=cfg.get_secret("databasePassword"),
        object_store_access_key_id=cfg.get_secret("objectStoreAccessKeyId"),
        object_store_secret_access_key=cfg.get_secret("objectStoreSecretAccessKey"),
    )
    return parse(raw, secrets, present, stack, plaintext_secrets=plaintext, stack_problems=stack_problems)


def _configured_keys() -> set[str]:
    """Every key under this project's namespace, so unknown ones can be reported."""
    names = set(runtime_config.CONFIG.get())
    names.update((runtime_config.get_config_env() or {}).keys())
    prefix = f"{PROJECT}:"
    return {name[len(prefix):] for name in names if name.startswith(prefix)}


__all__ = ["GlobalSettings", "PROJECT", "SECRET_KEYS", "Secrets", "Settings", "SettingsError", "camel", "load", "parse"]
