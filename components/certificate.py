"""Certificate: the ACM certificate for the hosts, validated through Route 53 DNS records."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

import pulumi
import pulumi_aws as aws

from config import Settings


@dataclass(frozen=True, kw_only=True)
class CertificateArgs:
    #: The first host becomes the certificate's domain name, the rest and `extra_names` its SANs.
    hosts: Sequence[str]
    #: Further names (wildcards allowed), like *.example.com.
    extra_names: Sequence[str] = ()
    #: Zone the validation records go into.
    zone_id: pulumi.Input[str]

    @classmethod
    def from_settings(cls, settings: Settings, *, zone_id: pulumi.Input[str]) -> "CertificateArgs":
        # The serving wildcard covers every InferenceService host (`<name>-<namespace>.<servingDomain>`).
        return cls(hosts=settings.dns.hosts, zone_id=zone_id,
                   extra_names=(*settings.certificate.subject_alternative_names, *settings.dns.serving_hosts))


def validation_domains(names: Sequence[str]) -> dict[str, list[str]]:
    """Names grouped by the validation record they share: `*.example.com` and `example.com` need one record."""
    grouped: dict[str, list[str]] = {}
    for name in names:
        grouped.setdefault(name.removeprefix("*."), []).append(name)
    return grouped


class Certificate(pulumi.ComponentResource):
    """ACM certificate for the hosts; `certificate_arn` resolves only once ACM has issued it.

    It is created with the stack's regional provider: an NLB only takes certificates from its own region.
    """

    #: ARN of the issued certificate (from the CertificateValidation, so users of it wait for issuance).
    certificate_arn: pulumi.Output[str]
    #: Every name the certificate covers.
    domain_names: list[str]

    def __init__(self, name: str, args: CertificateArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("kubeflow-platform:certificate:Certificate", name, None, opts)
        primary, *rest = args.hosts
        # ACM keeps a name given twice as a perpetual diff; each name once, in a stable order.
        sans = list(dict.fromkeys(n for n in [*rest, *args.extra_names] if n != primary))
        self.domain_names = [primary, *sans]
        certificate = aws.acm.Certificate(
            f"{name}-certificate",
            domain_name=primary,
            subject_alternative_names=sans,
            validation_method="DNS",
            key_algorithm="RSA_2048",
            # The NLB listener keeps using the old certificate until the new one is issued (Pulumi
            # creates the replacement first), so a change of names does not break TLS.
            opts=pulumi.ResourceOptions(parent=self),
        )
        fqdns = []
        for base, names in validation_domains(self.domain_names).items():
            option = certificate.domain_validation_options.apply(
                lambda options, domain=names[0]: next(o for o in options if o.domain_name == domain)
            )
            record = aws.route53.Record(
                f"{name}-validation-{base}",
                zone_id=args.zone_id,
                name=option.resource_record_name,
                type=option.resource_record_type,
                records=[option.resource_record_value],
                ttl=300,
                # ACM derives the record from account and name, so a previous certificate for the same
                # name (another stack, a re-creation) already wrote it: take it over.
                allow_overwrite=True,
                opts=pulumi.ResourceOptions(parent=self),
            )
            fqdns.append(record.fqdn)
        validation = aws.acm.CertificateValidation(
            f"{name}-validation",
            certificate_arn=certificate.arn,
            validation_record_fqdns=fqdns,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.certificate_arn = validation.certificate_arn
        self.register_outputs({"certificateArn": self.certificate_arn, "domainNames": self.domain_names})

    @property
    def stack_outputs(self) -> dict[str, Any]:
        """The validated certificate the load balancer terminates TLS with."""
        return {"certificateArn": self.certificate_arn}
