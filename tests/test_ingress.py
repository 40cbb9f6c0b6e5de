"""The gateway Service as an NLB of the AWS Load Balancer Controller, and the central Gateway."""

from __future__ import annotations

import pulumi
import pytest

from components.ingress import takeover_refusal
from tests.conftest import run_stack
from tools.mock_runtime import PlatformMocks, stack_config

PATCH = "kubernetes:core/v1:ServicePatch"
LB = "service.beta.kubernetes.io/"


def _ingress(stack: str) -> dict:
    return dict(stack_config(stack)["kubeflow-platform:ingress"])


def test_the_existing_gateway_service_gets_exactly_the_nlb_annotations(stack_run):
    ingress = _ingress(stack_run.stack)
    patch = stack_run.named(PATCH, "ingress-service")
    annotations = patch.inputs["metadata"]["annotations"]
    assert annotations == {
        f"{LB}aws-load-balancer-type": "external",
        f"{LB}aws-load-balancer-nlb-target-type": "ip",
        f"{LB}aws-load-balancer-scheme": ingress["scheme"],
        f"{LB}aws-load-balancer-ip-address-type": "ipv4",
        f"{LB}aws-load-balancer-ssl-cert": stack_run.exports["certificateArn"],
        f"{LB}aws-load-balancer-ssl-ports": "443",
        f"{LB}aws-load-balancer-ssl-negotiation-policy": "ELBSecurityPolicy-TLS13-1-2-2021-06",
        f"{LB}aws-load-balancer-backend-protocol": "tcp",
        f"{LB}aws-load-balancer-healthcheck-protocol": "http",
        f"{LB}aws-load-balancer-healthcheck-port": "15021",
        f"{LB}aws-load-balancer-healthcheck-path": "/healthz/ready",
        "pulumi.com/patchForce": "true",
        "pulumi.com/patchFieldManager": "kubeflow-platform",
    }
    assert all(isinstance(v, str) for v in annotations.values())
    assert patch.inputs["metadata"]["name"] == ingress["serviceName"]
    assert patch.inputs["metadata"]["namespace"] == ingress["namespace"]


def test_the_patch_restricts_sources_and_forwards_tls_to_the_plain_http_port(stack_run):
    spec = stack_run.named(PATCH, "ingress-service").inputs["spec"]
    assert spec["type"] == "LoadBalancer"
    assert spec["loadBalancerSourceRanges"] == _ingress(stack_run.stack)["sourceCidrs"]
    assert spec["ports"] == [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 8080}]
    assert stack_run.exports["loadBalancerHostname"].endswith(".elb.us-west-2.amazonaws.com")


def test_security_groups_replace_source_ranges_and_backend_rules_are_managed():
    ingress = {**_ingress("dev"), "sourceCidrs": [], "securityGroups": ["sg-0123456789abcdef0", "sg-0fedcba9876543210"]}
    patch = run_stack("dev", {"ingress": ingress}).named(PATCH, "ingress-service")
    annotations = patch.inputs["metadata"]["annotations"]
    assert annotations[f"{LB}aws-load-balancer-security-groups"] == "sg-0123456789abcdef0,sg-0fedcba9876543210"
    assert annotations[f"{LB}aws-load-balancer-manage-backend-security-group-rules"] == "true"
    assert "loadBalancerSourceRanges" not in patch.inputs["spec"]


def test_create_mode_creates_a_service_that_is_replaced_rather_than_flipped():
    run = run_stack("dev", {"ingress": {**_ingress("dev"), "mode": "create"}})
    assert run.of_type(PATCH) == []
    service = run.named("kubernetes:core/v1:Service", "ingress-service")
    assert service.inputs["spec"]["loadBalancerClass"] == "service.k8s.aws/nlb"
    assert service.inputs["spec"]["selector"] == {"istio": "ingressgateway"}
    assert {p["port"]: p["targetPort"] for p in service.inputs["spec"]["ports"]} == {80: 8080, 443: 8080, 15021: 15021}
    assert "pulumi.com/patchForce" not in service.inputs["metadata"]["annotations"]
    assert service.delete_before_replace is True
    assert set(service.replace_on_changes) == {
        "spec.loadBalancerClass",
        f'metadata.annotations["{LB}aws-load-balancer-type"]',
    }


@pytest.mark.parametrize(
    "spec,annotations,refused",
    [
        ({"type": "LoadBalancer"}, {}, True),  # the in-tree controller made a Classic ELB
        ({"type": "LoadBalancer"}, {f"{LB}aws-load-balancer-type": "nlb"}, True),  # in-tree NLB
        ({"type": "LoadBalancer", "loadBalancerClass": "example.com/other"}, {}, True),
        ({"type": "LoadBalancer", "loadBalancerClass": "service.k8s.aws/nlb"}, {}, False),
        ({"type": "LoadBalancer"}, {f"{LB}aws-load-balancer-type": "external"}, False),  # our previous run
        ({"type": "ClusterIP"}, {}, False),
    ],
)
def test_taking_over_a_load_balancer_of_another_controller_is_refused(spec, annotations, refused):
    message = takeover_refusal(
        where="Service istio-system/istio-ingressgateway",
        service_type=spec["type"],
        load_balancer_class=spec.get("loadBalancerClass"),
        type_annotation=annotations.get(f"{LB}aws-load-balancer-type"),
        current_load_balancer="a1b2.elb.amazonaws.com",
    )
    assert (message is not None) is refused
    if refused:
        assert "leaks that load balancer" in message and "a1b2.elb.amazonaws.com" in message


def test_a_run_against_an_in_tree_load_balancer_fails_before_patching(monkeypatch):
    original = PlatformMocks.existing_service

    def classic_elb(self, namespace, name):
        service = original(self, namespace, name)
        del service["spec"]["loadBalancerClass"]
        return service

    monkeypatch.setattr(PlatformMocks, "existing_service", classic_elb)
    with pytest.raises(Exception) as caught:
        run_stack("dev")
    assert "Handing it to the AWS Load Balancer Controller in place leaks" in str(caught.value)


def test_the_central_gateway_serves_the_hosts_on_port_80(stack_run):
    ingress, dns = _ingress(stack_run.stack), stack_config(stack_run.stack)["kubeflow-platform:dns"]
    gateway = stack_run.named("kubernetes:networking.istio.io/v1:Gateway", "ingress-gateway")
    assert gateway.inputs["metadata"] == {"name": ingress["gatewayName"], "namespace": ingress.get("gatewayNamespace", "kubeflow")}
    assert gateway.inputs["spec"]["selector"] == {"istio": "ingressgateway"}
    (server,) = gateway.inputs["spec"]["servers"]
    assert server["port"] == {"number": 80, "name": "http", "protocol": "HTTP"}
    assert server["hosts"] == [dns["host"], *dns.get("extraHosts", []), f"*.{dns['servingDomain']}"]
