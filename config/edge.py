"""The public edge: DNS records, the TLS certificate and the mesh's ingress gateway behind an NLB."""

from __future__ import annotations

import ipaddress
import re
import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal, Optional

from config import checks
from config.loader import setting

#: ACM: "the first domain name ... cannot exceed 64 octets, including periods" (it becomes the subject CN).
ACM_FIRST_NAME_LIMIT = 64
#: ACM's hard ceiling on names per certificate (the default quota is 10 and can be raised to 100).
ACM_NAMES_LIMIT = 100
#: A DNS name is at most 253 characters; servingDomain leaves room for one 63-character label and its dot.
SERVING_DOMAIN_LIMIT = 253 - 64
#: The AWS Load Balancer Controller attaches at most five front-end security groups to an NLB.
NLB_SECURITY_GROUPS_LIMIT = 5


@dataclass(frozen=True, kw_only=True)
class DnsSettings:
    zone_name: str = setting(check=checks.dns_name)
    """Public Route 53 hosted zone that holds the Kubeflow host (like example.com)."""
    host: str = setting(check=checks.dns_name)
    """Host name users open (like kubeflow.example.com); must lie inside zoneName."""
    extra_hosts: tuple[str, ...] = setting((), check=(checks.dns_names, checks.unique("host")))
    """Further host names routed to the same gateway, each inside zoneName; the login's cookies then cover their shared parent domain."""
    create_zone: bool = setting(False)
    """Create the hosted zone instead of looking it up; its name servers are exported for delegation."""
    records: Literal["route53", "external-dns"] = setting("route53")
    """Who writes the alias records: this program (route53) or the cluster's external-dns."""
    serving_domain: Optional[str] = setting(None, check=checks.dns_name)
    """Domain InferenceServices are served under, as <name>-<namespace>.<servingDomain> (inside zoneName); unset: only inside the cluster."""

    @property
    def hosts(self) -> tuple[str, ...]:
        return (self.host, *self.extra_hosts)

    @property
    def serving_hosts(self) -> tuple[str, ...]:
        """The wildcard the gateway, the certificate and the records cover for Knative's and KServe's routes
        (one label under servingDomain: a wildcard certificate covers no deeper name); empty when unset."""
        return (f"*.{self.serving_domain.rstrip('.')}",) if self.serving_domain else ()

    def cross_check(self) -> Iterator[tuple[str, str]]:
        zone = self.zone_name.rstrip(".")
        for key, host in [("host", self.host)] + [(f"extraHosts[{i}]", h) for i, h in enumerate(self.extra_hosts)]:
            if not (host.rstrip(".") == zone or host.rstrip(".").endswith("." + zone)):
                yield key, f"{host!r} is not inside the hosted zone {zone!r} (dns.zoneName)"
        if self.host in self.extra_hosts:
            yield "extraHosts", f"{self.host!r} is already dns.host"
        if self.serving_domain is not None:
            yield from self._serving_domain_problems(zone)
        if len(self.host.rstrip(".")) > ACM_FIRST_NAME_LIMIT:
            # ACM puts the first name in the certificate's subject CN, which X.509 caps at 64 octets.
            yield "host", (
                f"{self.host!r} is {len(self.host.rstrip('.'))} characters; ACM refuses a certificate whose first "
                f"name is longer than {ACM_FIRST_NAME_LIMIT}"
            )

    def _serving_domain_problems(self, zone: str) -> Iterator[tuple[str, str]]:
        domain = self.serving_domain.rstrip(".")
        if not (domain == zone or domain.endswith("." + zone)):
            # Its wildcard's alias and certificate validation records go into this zone.
            yield "servingDomain", f"{self.serving_domain!r} is not inside the hosted zone {zone!r} (dns.zoneName)"
        for key, host in [("host", self.host)] + [(f"extraHosts[{i}]", h) for i, h in enumerate(self.extra_hosts)]:
            host = host.rstrip(".")
            if host == domain:
                yield "servingDomain", (
                    f"{self.serving_domain!r} is dns.{key}; InferenceServices need a domain of their own, "
                    f"like serving.{zone}"
                )
            elif host.partition(".")[2] == domain:
                # An InferenceService `<name>-<namespace>` could then claim a Kubeflow host on the shared Gateway.
                yield "servingDomain", (
                    f"dns.{key} {host!r} lies directly under {self.serving_domain!r}, where InferenceService "
                    f"hosts are made; give them a domain of their own, like serving.{zone}"
                )
        if len(domain) > SERVING_DOMAIN_LIMIT:
            # Knative refuses a route whose host is not a valid DNS name (at most 253 characters), and the
            # host is `<name>-predictor-<namespace>.<servingDomain>`.
            yield "servingDomain", (
                f"{self.serving_domain!r} is {len(domain)} characters; at most {SERVING_DOMAIN_LIMIT} leave "
                "room for a 63-character InferenceService label in front of it"
            )


@dataclass(frozen=True, kw_only=True)
class CertificateSettings:
    subject_alternative_names: tuple[str, ...] = setting(
        (), check=(checks.dns_names_with_wildcards, checks.unique("name"))
    )
    """Names the ACM certificate covers besides the hosts (wildcards like *.example.com allowed)."""


#: The NLB's predefined security policies that accept only TLS 1.2 and 1.3
#: (https://docs.aws.amazon.com/elasticloadbalancing/latest/network/describe-ssl-policies.html); the others
#: (ELBSecurityPolicy-2016-08, -TLS13-1-0-*, -TLS13-1-1-*, -TLS-1-1-*, -FS-2018-06, ...) also accept 1.0 or 1.1.
_TLS12_NLB_POLICY = re.compile(r"^ELBSecurityPolicy-(TLS13-1-[23]|TLS-1-2|FS-1-2)-[A-Za-z0-9-]+$")
#: Ports the Istio proxy listens on for itself (https://istio.io/v1.24/docs/ops/deployment/application-requirements/,
#: "Ports used by Istio").
ISTIO_PROXY_PORTS = types.MappingProxyType({
    15000: "admin", 15001: "outbound", 15004: "debug", 15006: "inbound", 15008: "HBONE tunnel", 15009: "HBONE",
    15020: "merged metrics", 15021: "health check", 15053: "DNS", 15090: "Envoy metrics",
})


@dataclass(frozen=True, kw_only=True)
class IngressSettings:
    mode: Literal["patch", "create"] = setting("patch")
    """patch: annotate the mesh's existing gateway Service (server-side apply); create: create it."""
    namespace: str = setting("istio-system", check=checks.dns1123_label)
    """Namespace of the mesh's ingress gateway Service and pods."""
    service_name: str = setting("istio-ingressgateway", check=checks.dns1123_label)
    """Name of the ingress gateway Service."""
    selector: Mapping[str, str] = setting(types.MappingProxyType({"istio": "ingressgateway"}), check=checks.labels)
    """Pod labels of the ingress gateway pods (the Gateway and the identity filter select them)."""
    load_balancer_type: Literal["nlb"] = setting("nlb")
    """Load balancer kind in front of the gateway; only an NLB (AWS Load Balancer Controller) is supported."""
    scheme: Literal["internet-facing", "internal"] = setting("internet-facing")
    """Whether the NLB has public addresses or only addresses inside the VPC."""
    source_cidrs: tuple[str, ...] = setting((), check=checks.cidrs)
    """Client address ranges allowed through the NLB (the organisation's ranges)."""
    security_groups: tuple[str, ...] = setting((), check=(checks.security_groups, checks.unique("security group")))
    """Front-end security groups for the NLB instead of sourceCidrs; their rules are managed outside."""
    gateway_namespace: str = setting("kubeflow", check=checks.dns1123_label)
    """Namespace of the central Istio Gateway every Kubeflow VirtualService binds to (unset: kubeflow.namespace)."""
    gateway_name: str = setting("kubeflow-gateway", check=checks.dns1123_label)
    """Name of the central Istio Gateway."""
    ip_address_type: Literal["ipv4", "dualstack"] = setting("ipv4")
    """NLB address family; dualstack gives it IPv6 addresses too (its subnets need IPv6 ranges), so AAAA records answer."""
    http_target_port: int = setting(8080, check=checks.between(1, 65535))
    """Container port of the gateway pods' plain-HTTP listener; TLS ends at the NLB and port 443 forwards here."""
    ssl_policy: str = setting("ELBSecurityPolicy-TLS13-1-2-2021-06", check=checks.not_empty)
    """NLB TLS security policy of the 443 listener (TLS 1.2 and 1.3 only by default)."""

    def cross_check(self) -> Iterator[tuple[str, str]]:
        if len(self.security_groups) > NLB_SECURITY_GROUPS_LIMIT:
            yield "securityGroups", f"an NLB takes at most {NLB_SECURITY_GROUPS_LIMIT} security groups"
        if self.ip_address_type == "ipv4":
            for i, cidr in enumerate(self.source_cidrs):
                if ipaddress.ip_network(cidr).version == 6:
                    yield f"sourceCidrs[{i}]", f"{cidr!r} is IPv6 but ipAddressType is ipv4; set ipAddressType: dualstack"
        if not self.source_cidrs and not self.security_groups:
            yield "sourceCidrs", "name the organisation's CIDR ranges or securityGroups; an open NLB is refused"
        if self.source_cidrs and self.security_groups:
            yield "securityGroups", "use either sourceCidrs or securityGroups, not both"
        if not self.selector:
            yield "selector", "must name at least one label of the gateway pods"
        if not _TLS12_NLB_POLICY.match(self.ssl_policy):
            yield "sslPolicy", (
                f"{self.ssl_policy!r} is not one of the NLB's TLS 1.2+ security policies (those named"
                " ELBSecurityPolicy-TLS13-1-2-*, -TLS13-1-3-*, -TLS-1-2-* or -FS-1-2-*); older ones also accept"
                " TLS 1.0 or 1.1: use ELBSecurityPolicy-TLS13-1-2-2021-06"
            )
        if self.http_target_port in ISTIO_PROXY_PORTS:
            yield "httpTargetPort", (
                f"{self.http_target_port} is the Istio proxy's own {ISTIO_PROXY_PORTS[self.http_target_port]} port, not"
                " the gateway's HTTP listener; traffic would skip Kubeflow's routes and policies (use the port of the"
                " Gateway's HTTP server, like 8080)"
            )


def edge_cross_checks(dns: DnsSettings, certificate: CertificateSettings) -> Iterator[tuple[str, str]]:
    """Rules across dns and certificate (run from Settings.cross_check, paths from the top)."""
    zone = dns.zone_name.rstrip(".")
    for i, name in enumerate(certificate.subject_alternative_names):
        base = name.rstrip(".").removeprefix("*.")
        if not (base == zone or base.endswith("." + zone)):
            # The DNS validation record must go into the zone this program writes to.
            yield f"certificate.subjectAlternativeNames[{i}]", (
                f"{name!r} is not inside the hosted zone {zone!r} (dns.zoneName), so it cannot be validated there"
            )
    names = set(dns.hosts) | set(certificate.subject_alternative_names) | set(dns.serving_hosts)
    if len(names) > ACM_NAMES_LIMIT:
        yield "certificate.subjectAlternativeNames", f"{len(names)} names with the hosts; ACM allows at most {ACM_NAMES_LIMIT}"
