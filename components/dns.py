"""Dns: the public Route 53 zone (looked up or created) and alias records from the hosts to the NLB."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Optional

import pulumi
import pulumi_aws as aws

from config import Settings


@dataclass(frozen=True, kw_only=True)
class DnsArgs:
    zone_name: str
    #: Every host users open; each gets an A and an AAAA alias record.
    hosts: Sequence[str]
    #: `*.<dns.servingDomain>`: InferenceServices' hosts, aliased to the same NLB.
    serving_hosts: Sequence[str] = ()
    create_zone: bool = False
    #: route53: this program writes the records; external-dns: the Service annotation asks external-dns to.
    records: Literal["route53", "external-dns"] = "route53"
    #: Protect a created zone: deleting it loses the delegation the parent zone points at.
    protect: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> "DnsArgs":
        dns = settings.dns
        # A fleet's global host is served here too, but its records are the global stack's (failover or latency).
        hosts = tuple(host for host in dns.hosts if settings.fleet.role != "regional" or host != settings.fleet.host)
        return cls(zone_name=dns.zone_name, hosts=hosts, serving_hosts=dns.serving_hosts,
                   create_zone=dns.create_zone, records=dns.records, protect=settings.protect)


class Dns(pulumi.ComponentResource):
    """The hosted zone and, once the load balancer exists, alias records to it.

    The zone is needed before the certificate (validation records) and the records after the ingress
    gateway (the NLB's name), so the records come from `alias_to_load_balancer`, called later.
    """

    zone_id: pulumi.Output[str]
    #: Name servers to delegate to from the parent zone (only when the zone is created here).
    name_servers: pulumi.Output[list[str]]
    #: Fully qualified names of the records this program wrote (empty when external-dns writes them).
    record_names: pulumi.Output[list[str]]

    def __init__(self, name: str, args: DnsArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("kubeflow-platform:dns:Dns", name, None, opts)
        self._name = name
        self._args = args
        if args.create_zone:
            zone = aws.route53.Zone(
                f"{name}-zone",
                name=args.zone_name,
                comment="Kubeflow hosts (kubeflow-platform)",
                # Never empty a zone on delete: it may hold records others added after delegation.
                force_destroy=False,
                opts=pulumi.ResourceOptions(parent=self, protect=args.protect),
            )
            self.zone_id = zone.zone_id
            self.name_servers = zone.name_servers
        else:
            found = aws.route53.get_zone_output(
                name=args.zone_name, private_zone=False, opts=pulumi.InvokeOutputOptions(parent=self)
            )
            self.zone_id = found.zone_id
            self.name_servers = found.name_servers
        self.record_names = pulumi.Output.from_input([])
        self.register_outputs({"zoneId": self.zone_id, "nameServers": self.name_servers})

    @property
    def stack_outputs(self) -> dict[str, Any]:
        """The zone (its name servers to delegate from the parent zone) and the record names users type."""
        return {"zoneId": self.zone_id, "zoneNameServers": self.name_servers, "dnsRecordNames": self.record_names}

    def alias_to_load_balancer(self, load_balancer_hostname: pulumi.Input[str]) -> list[aws.route53.Record]:
        """A and AAAA alias records for every host and the serving wildcard to the NLB; none when external-dns
        writes them. Route 53 answers a wildcard for any name below it that has no record of its own."""
        if self._args.records == "external-dns":
            return []
        # Alias records need the canonical hosted zone id of the load balancer kind: the NLB one differs
        # from the ALB/Classic one in every region, and Route 53 refuses an alias with the wrong one.
        nlb_zone = aws.lb.get_hosted_zone_id_output(
            load_balancer_type="network", opts=pulumi.InvokeOutputOptions(parent=self)
        )
        records = []
        for host in (*self._args.hosts, *self._args.serving_hosts):
            for record_type in ("A", "AAAA"):
                records.append(
                    aws.route53.Record(
                        f"{self._name}-{host.replace('*', 'wildcard')}-{record_type.lower()}",
                        zone_id=self.zone_id,
                        name=host,
                        type=record_type,
                        aliases=[
                            aws.route53.RecordAliasArgs(
                                name=load_balancer_hostname,
                                zone_id=nlb_zone.id,
                                evaluate_target_health=True,
                            )
                        ],
                        # A record left behind by a previous install (or external-dns) is taken over
                        # instead of failing the update with "already exists".
                        allow_overwrite=True,
                        opts=pulumi.ResourceOptions(parent=self),
                    )
                )
        self.record_names = pulumi.Output.all(*[r.fqdn for r in records]).apply(lambda names: sorted(set(names)))
        return records
