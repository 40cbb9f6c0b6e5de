"""The fleet check: a global stack and its regional stacks, held together over their saved plans.

Each stack previews alone (its own checks and mesh trace); what no stack can see alone is checked here, from the
plans `make fleet` writes: each rule is a function over the fleet's plans that returns its problems, each naming
both stacks involved. `RULES` is a plain list, so further rules (a standby region held, replication pairs) are
appended beside these.

Why two regions must never write one store (read at 26.03's versions): every KFP API server migrates the schema at
start (kubeflow/pipelines 2.16.0 backend/src/apiserver/client_manager/client_manager.go:570-584); runs are bound to
the cluster whose Workflow exists (resource_manager.go:644-700); two ML Metadata servers initialising one empty
database fail (kubeflow/pipelines#12086); Katib's observation_logs are keyed by trial name only (kubeflow/katib
v0.19.0 pkg/db/v1beta1/mysql/init.go:35-36), so one cluster deletes the other's logs.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Optional

from analysis import fleet_recovery

#: Outputs a regional stack exports for the fleet (components/fleet.py), and the global stack's.
REGION_OUTPUT = "fleetRegion"
TENANCY_OUTPUT = "fleetTenancy"
GLOBAL_OUTPUT = "fleetGlobal"
REDIRECT_URIS_OUTPUT = "oidcRedirectUris"
#: What the global stack reads from each region through its stack reference.
READ_FROM_REGIONS = (REGION_OUTPUT, "loadBalancerHostname")
#: What a region reads from the global stack.
READ_FROM_GLOBAL = ("authCookieSecret",)
#: The databases the program points Kubeflow's stores at on kubeflow.database (manifests/stores.py).
DATABASES = ("mlpipeline", "metadb", "cachedb", "katib")


@dataclass(frozen=True)
class Fleet:
    """The global stack's name and every stack's saved plan (plan.json as data), regions in the global's order."""

    global_stack: str
    plans: Mapping[str, Mapping[str, Any]]

    @property
    def global_plan(self) -> Mapping[str, Any]:
        return self.plans[self.global_stack]

    @property
    def global_outputs(self) -> Mapping[str, Any]:
        return self.global_plan.get("outputs") or {}

    @property
    def region_stacks(self) -> list[str]:
        declared = (self.global_outputs.get(GLOBAL_OUTPUT) or {}).get("regions") or []
        return [str(region.get("stack")) for region in declared if isinstance(region, Mapping)]

    def region(self, stack: str) -> Mapping[str, Any]:
        """The region's `fleetRegion` output ({} when it has none)."""
        told = ((self.plans.get(stack) or {}).get("outputs") or {}).get(REGION_OUTPUT)
        return told if isinstance(told, Mapping) else {}

    def present_regions(self) -> list[str]:
        return [stack for stack in self.region_stacks if self.region(stack)]


Rule = Callable[[Fleet], Iterable[str]]


def references_resolve(fleet: Fleet) -> Iterator[str]:
    """Each stack the global stack names has a saved plan and exports what the global stack reads; each region names
    this global stack and organization, and read the global stack's saved preview (not its own first-up fallback)."""
    global_ = fleet.global_outputs.get(GLOBAL_OUTPUT)
    if not isinstance(global_, Mapping):
        yield f"{fleet.global_stack}: exports no {GLOBAL_OUTPUT}; is it a global stack (fleet.role global)?"
        return
    organization = {str(r.get("reference", "")).split("/")[0] for r in global_.get("regions") or [] if isinstance(r, Mapping)}
    for stack in fleet.region_stacks:
        plan = fleet.plans.get(stack)
        if plan is None:
            yield f"{fleet.global_stack} -> {stack}: the global stack reads {stack}, which has no saved preview"
            continue
        outputs = plan.get("outputs") or {}
        missing = [name for name in READ_FROM_REGIONS if name not in outputs]
        if missing:
            yield (f"{fleet.global_stack} -> {stack}: reads {', '.join(missing)}, which {stack} does not export "
                   "(a regional stack has fleet.role regional)")
            continue
        told = fleet.region(stack)
        if told.get("global") != fleet.global_stack:
            yield (f"{stack} -> {fleet.global_stack}: {stack} names {told.get('global')!r} as its global stack (fleet.global), "
                   f"but {fleet.global_stack} leads to it")
        if told.get("organization") not in organization:
            yield (f"{stack} -> {fleet.global_stack}: {stack}'s fleet.organization {told.get('organization')!r} is not "
                   f"the one {fleet.global_stack} references it in ({', '.join(sorted(organization))})")
        references = [r for r in plan.get("stackReferences") or [] if r.get("stack") == fleet.global_stack]
        if not references:
            yield f"{stack} -> {fleet.global_stack}: {stack} does not read {fleet.global_stack}'s cookie secret"
        elif not all(r.get("resolved") for r in references):
            yield (f"{stack} -> {fleet.global_stack}: {stack} was previewed before {fleet.global_stack} had a saved "
                   f"preview, so it signs with its own cookie secret; preview {stack} again")
        elif any(name not in fleet.global_outputs for name in READ_FROM_GLOBAL):
            yield (f"{stack} -> {fleet.global_stack}: reads {', '.join(READ_FROM_GLOBAL)}, which {fleet.global_stack} "
                   "does not export (set its authCookieSecret)")


def hosts_agree(fleet: Fleet) -> Iterator[str]:
    """Every region serves the global host, none under another's host, none names the global host as its own."""
    host = (fleet.global_outputs.get(GLOBAL_OUTPUT) or {}).get("host")
    for stack in fleet.present_regions():
        told = fleet.region(stack)
        if told.get("globalHost") != host:
            yield (f"{stack} and {fleet.global_stack}: {stack}'s fleet.host {told.get('globalHost')!r} is not the global "
                   f"host {host!r}")
        if host not in (told.get("hosts") or []):
            yield f"{stack} and {fleet.global_stack}: {stack} does not serve the global host {host!r} (dns.extraHosts)"
    for a, b in itertools.combinations(fleet.present_regions(), 2):
        shared = sorted(set(fleet.region(a).get("hosts") or []) & set(fleet.region(b).get("hosts") or []) - {host})
        if shared:
            yield f"{a} and {b}: both serve {', '.join(shared)}; each region's own hosts are its alone (their records are)"


def health_checks_reach_the_regions(fleet: Fleet) -> Iterator[str]:
    """Route 53's health checkers connect from the internet: they cannot reach an internal load balancer, so with
    health checks on, such a region would always be unhealthy (and failover records would never answer with it)."""
    if not (fleet.global_outputs.get(GLOBAL_OUTPUT) or {}).get("healthChecks"):
        return
    for stack in fleet.present_regions():
        if fleet.region(stack).get("loadBalancerScheme") == "internal":
            yield (f"{stack} and {fleet.global_stack}: {stack}'s load balancer is internal, which Route 53's health "
                   f"checkers cannot reach; set fleet.healthCheck.enabled false on {fleet.global_stack} (the records then "
                   "follow the load balancer's own target health) or make the load balancer internet-facing")


def certificate_names_agree(fleet: Fleet) -> Iterator[str]:
    """Each region's certificate carries the names the global stack says it must: the global host and its own."""
    wanted = (fleet.global_outputs.get(GLOBAL_OUTPUT) or {}).get("certificateNames") or {}
    for stack in fleet.present_regions():
        carried = set(fleet.region(stack).get("certificateNames") or [])
        missing = [name for name in wanted.get(stack) or [] if name not in carried]
        if missing:
            yield (f"{stack} and {fleet.global_stack}: {stack}'s certificate lacks {', '.join(missing)}, which "
                   f"{fleet.global_stack} routes to it; TLS for those names would fail there")


def redirect_uris_agree(fleet: Fleet) -> Iterator[str]:
    """One OIDC client: every region uses the same issuer and client id, and the global stack's redirect URI list
    (what the IdP registers) is exactly the regions' callbacks."""
    registered = set(fleet.global_outputs.get(REDIRECT_URIS_OUTPUT) or [])
    callbacks = {stack: fleet.region(stack).get("redirectUrl") for stack in fleet.present_regions()}
    for stack, callback in callbacks.items():
        if callback not in registered:
            yield (f"{stack} and {fleet.global_stack}: {stack}'s login callback {callback!r} is not among the redirect URIs "
                   f"{fleet.global_stack} exports for the IdP")
    for extra in sorted(registered - set(callbacks.values())):
        yield f"{fleet.global_stack}: exports the redirect URI {extra!r}, which no region's login uses"
    for a, b in itertools.combinations(fleet.present_regions(), 2):
        auth_a, auth_b = fleet.region(a).get("auth") or {}, fleet.region(b).get("auth") or {}
        for key in ("issuerUrl", "clientId", "proxy"):
            if auth_a.get(key) != auth_b.get(key):
                yield (f"{a} and {b}: auth.{key} differs ({auth_a.get(key)!r}, {auth_b.get(key)!r}); the fleet has one "
                       "OIDC client, and a session made in one region must be read in the other")


def stores_are_not_shared(fleet: Fleet) -> Iterator[str]:
    """No two stacks write one store: the same bucket, or the same database server (the program's databases,
    mlpipeline, metadb, cachedb and katib, have fixed names on it)."""
    for a, b in itertools.combinations(fleet.present_regions(), 2):
        buckets_a = {name: purpose for purpose, name in (fleet.region(a).get("buckets") or {}).items()}
        buckets_b = {name: purpose for purpose, name in (fleet.region(b).get("buckets") or {}).items()}
        for name in sorted(set(buckets_a) & set(buckets_b)):
            yield (f"{a} and {b}: both write the bucket {name!r} ({a}'s {buckets_a[name]}, {b}'s {buckets_b[name]}); "
                   "give each region its own artifacts.bucketPrefix")
        db_a, db_b = fleet.region(a).get("database"), fleet.region(b).get("database")
        if isinstance(db_a, Mapping) and isinstance(db_b, Mapping) and _server(db_a) == _server(db_b):
            yield (f"{a} and {b}: both write the databases {', '.join(DATABASES)} on {_server(db_a)} (kubeflow.database); "
                   "every KFP API server migrates the schema at start and Katib's logs are keyed by trial name only: "
                   "give each region its own database")


def _server(database: Mapping[str, Any]) -> str:
    return f"{str(database.get('host', '')).lower().rstrip('.')}:{database.get('port')}"


def profiles_are_identical(fleet: Fleet) -> Iterator[str]:
    """Every region applies the same tenancy: profiles, contributors, quotas, groups, users and policies."""
    regions = fleet.present_regions()
    tenancies = {stack: ((fleet.plans[stack].get("outputs") or {}).get(TENANCY_OUTPUT) or {}) for stack in regions}
    for a, b in itertools.combinations(regions, 2):
        yield from _tenancy_differences(a, tenancies[a], b, tenancies[b])


def _tenancy_differences(a: str, ta: Mapping[str, Any], b: str, tb: Mapping[str, Any]) -> Iterator[str]:
    profiles_a = {p.get("name"): p for p in ta.get("profiles") or [] if isinstance(p, Mapping)}
    profiles_b = {p.get("name"): p for p in tb.get("profiles") or [] if isinstance(p, Mapping)}
    for name in sorted(set(profiles_a) - set(profiles_b), key=str):
        yield f"{a} and {b}: profile {name!r} exists in {a} only; every region must have the same profiles (tenancy.file)"
    for name in sorted(set(profiles_b) - set(profiles_a), key=str):
        yield f"{a} and {b}: profile {name!r} exists in {b} only; every region must have the same profiles (tenancy.file)"
    for name in sorted(set(profiles_a) & set(profiles_b), key=str):
        fields = sorted(key for key in set(profiles_a[name]) | set(profiles_b[name])
                        if profiles_a[name].get(key) != profiles_b[name].get(key))
        if fields:
            yield (f"{a} and {b}: profile {name!r} differs in {', '.join(fields)}; every region must apply the same "
                   "definition (tenancy.file)")
    for key in sorted((set(ta) | set(tb)) - {"profiles"}):
        if _canonical(ta.get(key)) != _canonical(tb.get(key)):
            yield f"{a} and {b}: tenancy.{key} differs; every region must apply the same definition (tenancy.file)"


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def identity_trust_covers_each_cluster(fleet: Fleet) -> Iterator[str]:
    """IRSA: every role a region's pods assume trusts that region's own cluster's issuer (a second cluster needs its
    issuer in the trust, and another region's issuer lets that cluster's pods in). Pod Identity trusts the EKS service
    principal for any cluster (pods.eks.amazonaws.com), so there is nothing per cluster to cover."""
    issuers = {stack: _issuer_host(fleet.region(stack).get("clusterOidcIssuer")) for stack in fleet.present_regions()}
    owner_of = {issuer: stack for stack, issuer in issuers.items() if issuer}
    for stack in fleet.present_regions():
        own = issuers[stack]
        for role, trusted in _web_identity_trusts(fleet.plans[stack]):
            for issuer in sorted(trusted - {own}):
                other = owner_of.get(issuer)
                whose = f"{other}'s cluster" if other else "no cluster of the fleet"
                yield (f"{stack} and {other or fleet.global_stack}: {stack}'s role {role!r} trusts the issuer {issuer} "
                       f"({whose}), not {stack}'s own cluster {own}")
            if own and own not in trusted:
                yield (f"{stack}: role {role!r} does not trust {stack}'s own cluster issuer {own}; its pods could not "
                       "assume it")


def _issuer_host(issuer: Any) -> str:
    return str(issuer or "").removeprefix("https://").rstrip("/")


def _web_identity_trusts(plan: Mapping[str, Any]) -> Iterator[tuple[str, set[str]]]:
    """(role name, the OIDC issuers its trust policy names) for every IAM role assumed with a web identity."""
    for resource in plan.get("resources") or []:
        if resource.get("type") != "aws:iam/role:Role":
            continue
        document = (resource.get("inputs") or {}).get("assumeRolePolicy")
        if isinstance(document, str):
            try:
                document = json.loads(document)
            except ValueError:
                continue
        if not isinstance(document, Mapping):
            continue
        trusted: set[str] = set()
        web_identity = False
        for statement in document.get("Statement") or []:
            actions = statement.get("Action")
            actions = actions if isinstance(actions, list) else [actions]
            if "sts:AssumeRoleWithWebIdentity" not in actions:
                continue
            web_identity = True
            federated = (statement.get("Principal") or {}).get("Federated")
            for arn in federated if isinstance(federated, list) else [federated]:
                if isinstance(arn, str) and ":oidc-provider/" in arn:
                    trusted.add(arn.split(":oidc-provider/", 1)[1])
            for condition in (statement.get("Condition") or {}).values():
                if isinstance(condition, Mapping):
                    trusted.update(key.rsplit(":", 1)[0] for key in condition if key.endswith((":sub", ":aud")))
        if web_identity:
            yield str(resource.get("name")), trusted


#: The fleet check's rules, in the order their problems are listed.
RULES: list[Rule] = [
    references_resolve,
    hosts_agree,
    health_checks_reach_the_regions,
    certificate_names_agree,
    redirect_uris_agree,
    stores_are_not_shared,
    profiles_are_identical,
    identity_trust_covers_each_cluster,
]


def _over_regions(rule: Callable[[Mapping[str, Mapping[str, Any]]], Iterable[str]]) -> Rule:
    """A rule over the regions' plans alone (analysis.fleet_recovery's), as a fleet rule under its own name."""
    def over(fleet: Fleet) -> Iterable[str]:
        return rule({stack: fleet.plans[stack] for stack in fleet.present_regions()})
    over.__name__ = rule.__name__
    return over


# Recovery's rules (analysis.fleet_recovery): one primary per global database, replication pairs that point at each
# other, a standby's store writers held. Its own store-sharing rule is left out: stores_are_not_shared holds it here.
RULES += [_over_regions(rule) for rule in fleet_recovery.RULES if rule is not fleet_recovery.no_two_stacks_write_one_store]


def failover_primary_is_the_recovery_primary(fleet: Fleet) -> Iterator[str]:
    """With failover routing, Route 53 answers with the PRIMARY region while its load balancer is healthy, and a
    standby's is (its UIs keep serving): a PRIMARY that is a recovery standby sends every user to held stores. The
    global stack's failover roles follow recovery.mode at each switchover (docs/failover.md)."""
    global_ = fleet.global_outputs.get(GLOBAL_OUTPUT) or {}
    if global_.get("routing") != "failover":
        return
    modes = {stack: fleet_recovery.recovery_of(fleet.plans[stack]).get("mode") for stack in fleet.present_regions()}
    primaries = [stack for stack, mode in modes.items() if mode == "primary"]
    for region in global_.get("regions") or []:
        stack = region.get("stack") if isinstance(region, Mapping) else None
        if region.get("failover") == "PRIMARY" and modes.get(stack) == "standby":
            writer = f"{' and '.join(primaries)} {'is' if len(primaries) == 1 else 'are'} recovery primary" if primaries \
                else "no region is recovery primary"
            yield (f"{fleet.global_stack} and {stack}: {fleet.global_stack} answers the global host with {stack} (its "
                   f"fleet.regions failover PRIMARY), which is a recovery standby whose store writers are held; {writer}: "
                   f"make the recovery primary the PRIMARY on {fleet.global_stack}")


RULES.append(failover_primary_is_the_recovery_primary)


def check(fleet: Fleet, rules: Optional[list[Rule]] = None) -> list[str]:
    """Every problem every rule finds, each prefixed with its rule's name."""
    problems: list[str] = []
    for rule in RULES if rules is None else rules:
        problems += [f"{rule.__name__}: {problem}" for problem in rule(fleet)]
    return problems
