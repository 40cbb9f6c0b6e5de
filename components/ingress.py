"""IngressGateway: the mesh's istio-ingressgateway Service behind an NLB, and the central Gateway."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

import pulumi
import pulumi_kubernetes as k8s

from config import Settings

_LB = "service.beta.kubernetes.io/"
#: The AWS Load Balancer Controller's class; the in-tree cloud provider ignores Services carrying it.
LBC_CLASS = "service.k8s.aws/nlb"
#: Values of the type annotation the in-tree controller leaves to the AWS Load Balancer Controller.
LBC_TYPES = ("external", "nlb-ip")
HTTPS_PORT = 443
#: Istio's readiness endpoint on every gateway pod; the NLB health-checks it instead of the traffic port.
ISTIO_STATUS_PORT = 15021
#: Field manager of the patch: a stable name, so ownership of the fields survives provider upgrades.
FIELD_MANAGER = "kubeflow-platform"


@dataclass(frozen=True, kw_only=True)
class IngressGatewayArgs:
    mode: Literal["patch", "create"]
    namespace: str
    service_name: str
    selector: Mapping[str, str]
    scheme: Literal["internet-facing", "internal"]
    ip_address_type: Literal["ipv4", "dualstack"] = "ipv4"
    source_cidrs: Sequence[str] = ()
    security_groups: Sequence[str] = ()
    http_target_port: int = 8080
    ssl_policy: str = "ELBSecurityPolicy-TLS13-1-2-2021-06"
    certificate_arn: pulumi.Input[str]
    hosts: Sequence[str]
    #: `*.<dns.servingDomain>`: the hosts Knative and KServe give InferenceServices' routes on this Gateway.
    serving_hosts: Sequence[str] = ()
    #: Set the external-dns hostname annotation (dns.records: external-dns).
    external_dns: bool = False
    gateway_namespace: str
    gateway_name: str
    #: Istio minor version of the mesh, like "1.24": networking.istio.io/v1 exists from 1.22.
    istio_version: str = "1.24"
    #: What must exist before the Gateway (the namespace it lives in comes with upstream Kubeflow).
    gateway_depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)

    @classmethod
    def from_settings(
        cls, settings: Settings, *, certificate_arn: pulumi.Input[str], gateway_depends_on: Sequence[pulumi.Resource] = ()
    ) -> "IngressGatewayArgs":
        ingress = settings.ingress
        return cls(
            mode=ingress.mode, namespace=ingress.namespace, service_name=ingress.service_name,
            selector=ingress.selector, scheme=ingress.scheme, ip_address_type=ingress.ip_address_type,
            source_cidrs=ingress.source_cidrs, security_groups=ingress.security_groups,
            http_target_port=ingress.http_target_port, ssl_policy=ingress.ssl_policy,
            certificate_arn=certificate_arn, hosts=settings.dns.hosts, serving_hosts=settings.dns.serving_hosts,
            external_dns=settings.dns.records == "external-dns",
            gateway_namespace=ingress.gateway_namespace, gateway_name=ingress.gateway_name,
            istio_version=settings.kubeflow.mesh.istio_version, gateway_depends_on=tuple(gateway_depends_on),
        )


def nlb_annotations(args: IngressGatewayArgs, certificate_arn: str) -> dict[str, str]:
    """Service annotations for an NLB from the AWS Load Balancer Controller; every value a string
    (the controller and the API server refuse anything else)."""
    annotations = {
        f"{_LB}aws-load-balancer-type": "external",
        # ip targets: traffic goes straight to the gateway pods, no extra node hop, works on Fargate.
        f"{_LB}aws-load-balancer-nlb-target-type": "ip",
        f"{_LB}aws-load-balancer-scheme": args.scheme,
        f"{_LB}aws-load-balancer-ip-address-type": args.ip_address_type,
        f"{_LB}aws-load-balancer-ssl-cert": certificate_arn,
        f"{_LB}aws-load-balancer-ssl-ports": str(HTTPS_PORT),
        f"{_LB}aws-load-balancer-ssl-negotiation-policy": args.ssl_policy,
        # TLS ends at the NLB; the gateway pods get plain TCP.
        f"{_LB}aws-load-balancer-backend-protocol": "tcp",
        f"{_LB}aws-load-balancer-healthcheck-protocol": "http",
        f"{_LB}aws-load-balancer-healthcheck-port": str(ISTIO_STATUS_PORT),
        f"{_LB}aws-load-balancer-healthcheck-path": "/healthz/ready",
    }
    if args.security_groups:
        annotations[f"{_LB}aws-load-balancer-security-groups"] = ",".join(args.security_groups)
        # With explicit front-end groups the controller only adds rules when told to: it then lets those
        # groups reach the gateway pods' ENIs; the groups' own inbound rules stay with their owners.
        annotations[f"{_LB}aws-load-balancer-manage-backend-security-group-rules"] = "true"
    if args.external_dns:
        annotations["external-dns.alpha.kubernetes.io/hostname"] = ",".join([*args.hosts, *args.serving_hosts])
    return annotations


def takeover_refusal(
    *, where: str, service_type: Optional[str], load_balancer_class: Optional[str],
    type_annotation: Optional[str], current_load_balancer: Optional[str],
) -> Optional[str]:
    """Why annotating this existing Service for the AWS Load Balancer Controller would leak a load
    balancer, or None when it is safe.

    The controller's docs (guide/service/nlb): do not add or change aws-load-balancer-type on an existing
    Service; the in-tree controller stops managing it and the load balancer it made is never deleted.
    """
    if service_type != "LoadBalancer":
        return None  # no load balancer yet: the annotations are in place before one is made
    if load_balancer_class == LBC_CLASS or (load_balancer_class is None and type_annotation in LBC_TYPES):
        return None
    owner = (
        f"loadBalancerClass {load_balancer_class}"
        if load_balancer_class
        else f"the in-tree cloud controller (aws-load-balancer-type {type_annotation!r})"
    )
    return (
        f"{where} is a LoadBalancer Service managed by {owner}"
        + (f" with load balancer {current_load_balancer}" if current_load_balancer else "")
        + ". Handing it to the AWS Load Balancer Controller in place leaks that load balancer. Delete the "
        "Service (or set it to type ClusterIP) and let the mesh recreate it, or use ingress.mode: create; "
        "then run again."
    )


def _field(value: Any, name: str) -> Any:
    """`name` (snake_case) of an output value: Output.all hands over plain dicts, a single Output typed objects."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        head, *rest = name.split("_")
        camel = head + "".join(part.title() for part in rest)
        return value[name] if name in value else dict.get(value, camel)
    return getattr(value, name, None)


def status_hostname(status: Any) -> Optional[str]:
    """`status.loadBalancer.ingress[0].hostname` of a Service (or ServicePatch) output, if any."""
    ingress = _field(_field(status, "load_balancer"), "ingress") or []
    return _field(ingress[0], "hostname") if ingress else None


def istio_api_version(istio_version: str) -> str:
    minor = int(istio_version.split(".")[1])
    return "networking.istio.io/v1" if minor >= 22 else "networking.istio.io/v1beta1"


class IngressGateway(pulumi.ComponentResource):
    """The mesh's gateway Service as an NLB (patched, or created) and the central Istio Gateway."""

    #: DNS name of the NLB (what the alias records point at).
    load_balancer_hostname: pulumi.Output[str]
    #: `<namespace>/<name>` of the central Gateway every Kubeflow VirtualService binds to.
    gateway: str

    def __init__(self, name: str, args: IngressGatewayArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("kubeflow-platform:ingress:IngressGateway", name, None, opts)
        where = f"Service {args.namespace}/{args.service_name}"
        annotations = pulumi.Output.from_input(args.certificate_arn).apply(lambda arn: nlb_annotations(args, arn))
        https = {"name": "https", "port": HTTPS_PORT, "protocol": "TCP", "target_port": args.http_target_port}
        spec: dict[str, Any] = {"type": "LoadBalancer"}
        if args.source_cidrs:
            # The spec field, not the annotation: the controller prefers the field, so an annotation would be
            # ignored on a Service whose field the mesh install already set.
            spec["load_balancer_source_ranges"] = list(args.source_cidrs)

        if args.mode == "patch":
            existing = k8s.core.v1.Service.get(
                f"{name}-existing", f"{args.namespace}/{args.service_name}", opts=pulumi.ResourceOptions(parent=self)
            )

            def refuse_or_annotate(values: list[Any]) -> dict[str, str]:
                metadata, existing_spec, existing_status, wanted = values
                refusal = takeover_refusal(
                    where=where,
                    service_type=_field(existing_spec, "type"),
                    load_balancer_class=_field(existing_spec, "load_balancer_class"),
                    type_annotation=(_field(metadata, "annotations") or {}).get(f"{_LB}aws-load-balancer-type"),
                    current_load_balancer=status_hostname(existing_status),
                )
                if refusal:
                    raise pulumi.RunError(refusal)
                # patchForce: the mesh's installer owns these fields too; without force the first apply
                # fails on the conflict. The fixed field manager keeps ownership stable across runs.
                return {**wanted, "pulumi.com/patchForce": "true", "pulumi.com/patchFieldManager": FIELD_MANAGER}

            service = k8s.core.v1.ServicePatch(
                f"{name}-service",
                metadata=k8s.meta.v1.ObjectMetaPatchArgs(
                    name=args.service_name,
                    namespace=args.namespace,
                    annotations=pulumi.Output.all(
                        existing.metadata, existing.spec, existing.status, annotations
                    ).apply(refuse_or_annotate),
                ),
                spec=k8s.core.v1.ServiceSpecPatchArgs(
                    **spec, ports=[k8s.core.v1.ServicePortPatchArgs(**https)]
                ),
                opts=pulumi.ResourceOptions(parent=self),
            )
            status = pulumi.Output.all(service.status, existing.status)
        else:
            service = k8s.core.v1.Service(
                f"{name}-service",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=args.service_name, namespace=args.namespace, annotations=annotations
                ),
                spec=k8s.core.v1.ServiceSpecArgs(
                    **spec,
                    # The class is immutable once set, so the API server itself refuses a later switch to
                    # another load balancer controller.
                    load_balancer_class=LBC_CLASS,
                    selector=dict(args.selector),
                    ports=[
                        k8s.core.v1.ServicePortArgs(name="http2", port=80, protocol="TCP", target_port=args.http_target_port),
                        k8s.core.v1.ServicePortArgs(**https),
                        k8s.core.v1.ServicePortArgs(name="status-port", port=ISTIO_STATUS_PORT, protocol="TCP", target_port=ISTIO_STATUS_PORT),
                    ],
                ),
                opts=pulumi.ResourceOptions(
                    parent=self,
                    # A different controller or class must come with a new Service (deleted first: the name
                    # is fixed), so the old controller deletes its load balancer instead of leaking it.
                    replace_on_changes=[
                        "spec.loadBalancerClass",
                        f'metadata.annotations["{_LB}aws-load-balancer-type"]',
                    ],
                    delete_before_replace=True,
                ),
            )
            status = pulumi.Output.all(service.status, None)

        def hostname(statuses: list[Any]) -> str:
            for found in statuses:
                if status_hostname(found):
                    return status_hostname(found)
            raise pulumi.RunError(
                f"{where} has no load balancer hostname yet: the AWS Load Balancer Controller is still "
                "provisioning the NLB (or failed: kubectl describe service shows its events); run again shortly"
            )

        self.load_balancer_hostname = status.apply(hostname)

        self.gateway = f"{args.gateway_namespace}/{args.gateway_name}"
        k8s.apiextensions.CustomResource(
            f"{name}-gateway",
            api_version=istio_api_version(args.istio_version),
            kind="Gateway",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=args.gateway_name, namespace=args.gateway_namespace),
            spec={
                "selector": dict(args.selector),
                "servers": [
                    {
                        # Port 80 of the gateway Service (target http_target_port): TLS already ended at the
                        # NLB, which also forwards its 443 listener there.
                        "port": {"number": 80, "name": "http", "protocol": "HTTP"},
                        # net-istio marks a Knative route ready only once these pods answer a probe with the
                        # route's host (knative-extensions/net-istio@knative-v1.16.0 pkg/reconciler/ingress/
                        # lister.go:62-100, ingress.go:254-270): the serving wildcard must be served here.
                        "hosts": [*args.hosts, *args.serving_hosts],
                    }
                ],
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.gateway_depends_on)),
        )
        self.register_outputs({"loadBalancerHostname": self.load_balancer_hostname, "gateway": self.gateway})

    @property
    def stack_outputs(self) -> dict[str, Any]:
        """The load balancer host the DNS aliases point at."""
        return {"loadBalancerHostname": self.load_balancer_hostname}
