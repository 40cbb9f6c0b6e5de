"""The fleet: several stacks of this program, one Kubeflow per region and a global stack for what they share.

`fleet.role` chooses what a stack is:
- absent (the default): a stand-alone Kubeflow, as every stack was before fleets;
- `regional`: a complete Kubeflow on its own cluster, database and buckets, that also serves the fleet's global host
  and reads the session cookie secret from the global stack (so a failover signs no one out);
- `global`: no cluster objects; the Route 53 records of the global host (failover or latency) to each region's
  load balancer, read through stack references, and the values every region must share.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, Optional

from config import checks
from config.loader import setting
from config.platform import AwsSettings

PROJECT = "kubeflow-platform"
# A Pulumi organization or stack name: letters, digits, '-', '_' and '.' (the service's rule for stack names).
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
#: The keys a global stack leaves to its default: it creates no cluster objects (Pulumi.yaml defaults them to {},
#: so the Pulumi CLI accepts the global stack's file without them).
KUBEFLOW_STACK_KEYS = ("cluster", "dns", "certificate", "ingress", "identity", "artifacts", "gpu", "kubeflow", "auth", "tenancy", "recovery")
#: The stack output the regions read from the global stack.
GLOBAL_COOKIE_SECRET_OUTPUT = "authCookieSecret"


def _name(value: str) -> Optional[str]:
    if not _NAME.match(value):
        return f"{value!r} is not a Pulumi organization or stack name (letters, digits, '-', '_', '.')"
    return None


def stack_reference_name(organization: str, stack: str) -> str:
    """The fully qualified name a StackReference takes: `<organization>/<project>/<stack>`."""
    return f"{organization}/{PROJECT}/{stack}"


@dataclass(frozen=True, kw_only=True)
class FleetRegionSettings:
    stack: str = setting(check=_name)
    """Name of the regional stack (like prod-us-west-2); its fleet.role must be regional."""
    failover: Optional[Literal["PRIMARY", "SECONDARY"]] = setting(None)
    """With routing failover: PRIMARY (answers while healthy) or SECONDARY (answers when PRIMARY is not)."""


@dataclass(frozen=True, kw_only=True)
class FleetHealthCheckSettings:
    enabled: bool = setting(True)
    """Check each regional host from Route 53's health checkers, which reach only public endpoints: false for internal load balancers, whose records then follow the NLB's own target health (evaluateTargetHealth)."""
    path: str = setting("/")
    """Path Route 53 requests on each regional host over HTTPS; a 2xx or 3xx answer (the login redirect) is healthy."""
    port: int = setting(443, check=checks.between(1, 65535))
    """Port of the regional load balancer's listener the health check connects to."""
    failure_threshold: int = setting(3, check=checks.between(1, 10))
    """Consecutive failed checks before a region is unhealthy (Route 53 accepts 1 to 10)."""
    request_interval: Literal[10, 30] = setting(30)
    """Seconds between two checks from each checker (Route 53 accepts 10 or 30)."""

    def cross_check(self) -> Iterator[tuple[str, str]]:
        if not self.path.startswith("/"):
            yield "path", f"{self.path!r} must start with '/'"


@dataclass(frozen=True, kw_only=True)
class FleetSettings:
    role: Optional[Literal["regional", "global"]] = setting(None)
    """What this stack is in a fleet: regional (a Kubeflow per region) or global (the shared DNS name and secrets); unset: a stand-alone stack."""
    organization: Optional[str] = setting(None, check=_name)
    """Pulumi organization of the fleet's stacks; stack references name `<organization>/kubeflow-platform/<stack>`."""
    global_: Optional[str] = setting(None, check=_name)
    """Regional stacks: the global stack's name, whose authCookieSecret output the region's login uses."""
    host: Optional[str] = setting(None, check=checks.dns_name)
    """The global host users open (like kubeflow.ml.example.com); regional stacks list it in dns.extraHosts, the global stack writes its records."""
    zone_name: Optional[str] = setting(None, check=checks.dns_name)
    """Global stack: the public Route 53 zone holding fleet.host."""
    routing: Literal["failover", "latency"] = setting("failover")
    """Global stack: failover (active/passive, a PRIMARY and a SECONDARY region) or latency (active/active, the nearest healthy region)."""
    regions: tuple[FleetRegionSettings, ...] = setting(())
    """Global stack: the regional stacks the global host leads to."""
    health_check: FleetHealthCheckSettings = setting(FleetHealthCheckSettings())
    """Global stack: how Route 53 checks each regional host."""

    def cross_check(self) -> Iterator[tuple[str, str]]:
        if self.role is None:
            for key, value in (("organization", self.organization), ("global", self.global_), ("host", self.host),
                               ("zoneName", self.zone_name)):
                if value is not None:
                    yield key, "applies only to a fleet's stacks: set fleet.role (regional or global), or remove it"
            if self.regions:
                yield "regions", "applies only to the global stack: set fleet.role global, or remove it"
            return
        if self.organization is None:
            yield "organization", "is required with fleet.role: the Pulumi organization the fleet's stacks live in"
        if self.host is None:
            yield "host", "is required with fleet.role: the global host users open (like kubeflow.ml.example.com)"
        if self.role == "regional":
            if self.global_ is None:
                yield "global", "is required with fleet.role regional: the global stack's name (like global)"
            for key, value in (("zoneName", self.zone_name),):
                if value is not None:
                    yield key, "applies only to the global stack (a regional stack's zone is dns.zoneName)"
            if self.regions:
                yield "regions", "applies only to the global stack; remove it here"
            return
        yield from self._global_problems()

    def _global_problems(self) -> Iterator[tuple[str, str]]:
        if self.global_ is not None:
            yield "global", "applies only to a regional stack; remove it from the global stack"
        if self.zone_name is None:
            yield "zoneName", "is required with fleet.role global: the public hosted zone of fleet.host"
        elif self.host is not None:
            zone = self.zone_name.rstrip(".")
            if not (self.host.rstrip(".") == zone or self.host.rstrip(".").endswith("." + zone)):
                yield "host", f"{self.host!r} is not inside the hosted zone {zone!r} (fleet.zoneName)"
        if len(self.regions) < 2:
            yield "regions", "a global stack leads to at least two regional stacks; list them as {stack: <name>}"
        stacks = [region.stack for region in self.regions]
        for i, region in enumerate(self.regions):
            if stacks.index(region.stack) != i:
                yield f"regions[{i}].stack", f"{region.stack!r} is listed twice"
            if self.routing == "latency" and region.failover is not None:
                yield f"regions[{i}].failover", "applies only to routing failover; remove it for latency routing"
            if self.routing == "failover" and region.failover is None:
                yield f"regions[{i}].failover", "is required with routing failover: PRIMARY or SECONDARY"
        if self.routing == "failover" and self.regions:
            roles = [region.failover for region in self.regions]
            if roles.count("PRIMARY") != 1 or roles.count("SECONDARY") != 1 or len(roles) != 2:
                # Route 53 failover routing answers with one PRIMARY and one SECONDARY record per name and type.
                yield "regions", ("failover routing takes exactly two regions, one PRIMARY and one SECONDARY; "
                                  "use routing latency for more than two")


@dataclass(frozen=True, kw_only=True)
class GlobalSettings:
    """A global stack's settings: what it shares across the fleet, and where its Route 53 calls go."""

    stack: str
    aws: AwsSettings
    protect: bool
    fleet: FleetSettings
    #: The fleet's session cookie secret (the global stack's authCookieSecret), a Pulumi secret Output.
    cookie_secret: Any = None

