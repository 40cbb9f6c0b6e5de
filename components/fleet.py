"""The fleet's two sides: the global stack's component, and what a regional stack reads from and tells it.

GlobalFleet (fleet.role global) registers no cluster object. For the global host it writes Route 53 records to
each region's load balancer, read from the regional stack through a StackReference: failover alias records
(PRIMARY, SECONDARY) for active/passive, latency alias records for active/active, each with a health check of
the region's own host. It exports what every region must share: the OIDC client's redirect URIs (for the
enterprise's IdP registration), the certificate names each region carries, and the one session cookie secret.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional

import pulumi
import pulumi_aws as aws

from config import Settings
from config.loader import camel
from config.fleet import GLOBAL_COOKIE_SECRET_OUTPUT, GlobalSettings, stack_reference_name

#: Route 53 record types written for the global host, as components.dns writes them for a stack's own hosts.
RECORD_TYPES = ("A", "AAAA")


@dataclass(frozen=True, kw_only=True)
class FleetRegionArgs:
    stack: str
    #: The StackReference name, `<organization>/kubeflow-platform/<stack>`.
    reference: str
    failover: Optional[str]


@dataclass(frozen=True, kw_only=True)
class GlobalFleetArgs:
    host: str
    zone_name: str
    routing: str
    regions: Sequence[FleetRegionArgs]
    health_check: bool
    health_check_path: str
    health_check_port: int
    failure_threshold: int
    request_interval: int
    cookie_secret: Optional[pulumi.Output[str]]

    @classmethod
    def from_settings(cls, settings: GlobalSettings, cookie_secret: Optional[pulumi.Output[str]]) -> "GlobalFleetArgs":
        fleet = settings.fleet
        assert fleet.organization is not None and fleet.host is not None and fleet.zone_name is not None  # config checked
        return cls(
            host=fleet.host, zone_name=fleet.zone_name, routing=fleet.routing,
            regions=[FleetRegionArgs(stack=r.stack, reference=stack_reference_name(fleet.organization, r.stack),
                                     failover=r.failover) for r in fleet.regions],
            health_check=fleet.health_check.enabled, health_check_path=fleet.health_check.path, health_check_port=fleet.health_check.port,
            failure_threshold=fleet.health_check.failure_threshold,
            request_interval=fleet.health_check.request_interval, cookie_secret=cookie_secret,
        )


class GlobalFleet(pulumi.ComponentResource):
    """The global host's Route 53 records and health checks, and the values the fleet's regions share."""

    #: Per regional stack, what it told the fleet (its `fleetRegion` output).
    regions: dict[str, pulumi.Output[Any]]
    redirect_uris: pulumi.Output[list[str]]
    certificate_names: pulumi.Output[dict[str, list[str]]]

    def __init__(self, name: str, args: GlobalFleetArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("kubeflow-platform:fleet:GlobalFleet", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        zone = aws.route53.get_zone_output(name=args.zone_name, private_zone=False,
                                           opts=pulumi.InvokeOutputOptions(parent=self))
        self._args = args
        self.regions = {}
        self.record_names: list[str] = []
        for region in args.regions:
            reference = pulumi.StackReference(f"{name}-{region.stack}", stack_name=region.reference, opts=child)
            # require_output: a region that exports none of these is not a regional stack of this program.
            told = reference.require_output("fleetRegion")
            self.regions[region.stack] = told
            load_balancer = reference.require_output("loadBalancerHostname")
            # Alias records need the canonical hosted zone id of NLBs in the region's own region.
            nlb_zone = aws.lb.get_hosted_zone_id_output(load_balancer_type="network", region=told["region"],
                                                        opts=pulumi.InvokeOutputOptions(parent=self))
            # Route 53 checks the region's own host over HTTPS with SNI; 2xx and 3xx are healthy, and an
            # unauthenticated request gets the login's redirect (a 302), so no path needs to be left open. Its
            # checkers are on the internet: an internal load balancer is judged by its own target health instead.
            health = None if not args.health_check else aws.route53.HealthCheck(
                f"{name}-{region.stack}-health",
                type="HTTPS",
                fqdn=told["host"],
                port=args.health_check_port,
                resource_path=args.health_check_path,
                enable_sni=True,
                failure_threshold=args.failure_threshold,
                request_interval=args.request_interval,
                tags={"Name": f"kubeflow {region.stack}"},
                opts=child,
            )
            for record_type in RECORD_TYPES:
                routing: dict[str, Any] = (
                    {"failover_routing_policies": [aws.route53.RecordFailoverRoutingPolicyArgs(type=region.failover)]}
                    if args.routing == "failover" else
                    {"latency_routing_policies": [aws.route53.RecordLatencyRoutingPolicyArgs(region=told["region"])]}
                )
                aws.route53.Record(
                    f"{name}-{region.stack}-{record_type.lower()}",
                    zone_id=zone.zone_id,
                    name=args.host,
                    type=record_type,
                    # One record per region for the same name and type, told apart by the set identifier.
                    set_identifier=region.stack,
                    health_check_id=health.id if health is not None else None,
                    aliases=[aws.route53.RecordAliasArgs(name=load_balancer, zone_id=nlb_zone.id, evaluate_target_health=True)],
                    opts=child,
                    **routing,
                )
        told_all = pulumi.Output.all(**self.regions) if self.regions else pulumi.Output.from_input({})
        self.redirect_uris = told_all.apply(
            lambda told: sorted({str(t.get("redirectUrl")) for t in told.values() if isinstance(t, Mapping)}))
        self.certificate_names = told_all.apply(
            lambda told: {stack: [args.host, str(t.get("host"))] for stack, t in told.items() if isinstance(t, Mapping)})
        self.register_outputs({"redirectUris": self.redirect_uris, "certificateNames": self.certificate_names})

    @property
    def stack_outputs(self) -> dict[str, Any]:
        """What the IdP's registration and the regions read: the fleet's plan, the redirect URIs, the cookie secret."""
        args = self._args
        outputs: dict[str, Any] = {
            "fleetGlobal": {
                "host": args.host, "zoneName": args.zone_name, "routing": args.routing,
                "regions": [{"stack": r.stack, "reference": r.reference, "failover": r.failover} for r in args.regions],
                "healthChecks": args.health_check,
                # What each region's certificate must name: the global host and the region's own host.
                "certificateNames": self.certificate_names,
            },
            # Register these at the enterprise's IdP for the one OIDC client every region uses.
            "oidcRedirectUris": self.redirect_uris,
        }
        if args.cookie_secret is not None:
            outputs[GLOBAL_COOKIE_SECRET_OUTPUT] = pulumi.Output.secret(args.cookie_secret)
        return outputs


def regional_settings(settings: Settings) -> Settings:
    """A regional stack's settings with the session cookie secret the global stack exports (`authCookieSecret`), so
    every region signs and reads the same cookies and a failover signs no one out. Until the global stack has been
    deployed (its first `pulumi up` follows the regions', docs/fleet.md) it exports nothing, and the region signs
    with its own authCookieSecret; the region's next `pulumi up` moves it to the fleet's. Other stacks: unchanged."""
    fleet = settings.fleet
    if fleet.role != "regional" or settings.auth.proxy != "oauth2-proxy":
        return settings
    assert fleet.organization is not None and fleet.global_ is not None  # config checked
    reference = pulumi.StackReference(f"fleet-{fleet.global_}", stack_name=stack_reference_name(fleet.organization, fleet.global_))
    shared = reference.get_output(GLOBAL_COOKIE_SECRET_OUTPUT)
    own = settings.secrets.auth_cookie_secret
    cookie = pulumi.Output.secret(pulumi.Output.all(shared, own).apply(lambda values: values[0] if values[0] is not None else values[1]))
    return dataclasses.replace(settings, secrets=dataclasses.replace(settings.secrets, auth_cookie_secret=cookie))


def _plain(value: Any) -> Any:
    """Settings as JSON data (frozen dataclasses, read-only mappings and tuples), keys as the stack file spells them."""
    if dataclasses.is_dataclass(value):
        return {camel(f.name): _plain(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def fleet_region_exports(settings: Settings, *, certificate_names: Sequence[str], redirect_url: pulumi.Input[str],
                         cluster_oidc_issuer: pulumi.Input[str]) -> dict[str, Any]:
    """A regional stack's outputs for the global stack and the fleet check; none for a stand-alone stack.

    `fleetRegion` holds only values known at preview, so the global stack's preview can read it; `fleetTenancy` is the
    tenancy definition the region applies, which every region of the fleet must share."""
    if settings.fleet.role != "regional":
        return {}
    database = settings.kubeflow.database
    region = {
        "stack": pulumi.get_stack(),
        "organization": settings.fleet.organization,
        "global": settings.fleet.global_,
        "globalHost": settings.fleet.host,
        "region": settings.aws.region,
        "accounts": list(settings.aws.allowed_account_ids),
        "cluster": settings.cluster.name,
        "clusterOidcIssuer": cluster_oidc_issuer,
        "host": settings.dns.host,
        "hosts": list(settings.dns.hosts),
        "loadBalancerScheme": settings.ingress.scheme,
        "certificateNames": list(certificate_names),
        "redirectUrl": redirect_url,
        "auth": {"issuerUrl": settings.auth.issuer_url, "clientId": settings.auth.client_id, "proxy": settings.auth.proxy},
        "buckets": dict(settings.artifacts.names()),
        "database": {"host": database.host, "port": database.port} if database is not None else None,
        "identityMechanism": settings.identity.mechanism,
        "kubeflowVersion": settings.kubeflow.version,
    }
    tenancy = _plain(settings.tenancy)
    tenancy.pop("file", None)
    return {"fleetRegion": region, "fleetTenancy": tenancy}
