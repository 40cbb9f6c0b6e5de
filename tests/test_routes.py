"""Istio route visibility (analysis/routes.py): Istio's own cases, then what both stacks emit.

The model's cases are istio/istio@1.24.6 pilot/pkg/model/push_context_test.go TestVirtualServiceWithExportTo
(lines 2599-2744) and the "resolve shortname" case of TestInitVirtualService (lines 2746-3040), with the
same objects and the same expected answers.
"""

from __future__ import annotations

import pytest

from analysis.routes import (
    ISTIO_DEFAULT_EXPORT_TO, MESH_GATEWAY, PRIVATE, PUBLIC, gateway_names, resolve_gateway_name,
    routes_hidden_from_gateway, virtual_services_for_gateway,
)
from tests.conftest import STACKS
from tests.test_contracts import SUPPORTED_RELEASES, objects_of
from tools.mock_runtime import stack_config


def _service(name, namespace, hosts, gateways=None, export_to=None, destinations=()):
    spec = {"hosts": list(hosts)}
    if gateways is not None:
        spec["gateways"] = list(gateways)
    if export_to is not None:
        spec["exportTo"] = list(export_to)
    if destinations:
        spec["http"] = [{"route": [{"destination": {"host": host}}]} for host in destinations]
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


# TestVirtualServiceWithExportTo: mesh config with root namespace zzz and no export defaults.
_GATEWAY = "default/gateway"
_EXPORT_TO_RULES = [
    _service("rule1", "test1", ["rule1.com"], export_to=[".", "ns1"]),
    _service("rule2", "test2", ["rule2.com"], export_to=["test2", "ns1", "test1"]),
    _service("rule2Gw", "test2", ["rule2gw.com"], gateways=[_GATEWAY, MESH_GATEWAY], export_to=["test2", "ns1", "test1"]),
    _service("rule3", "test3", ["rule3.com"], gateways=[MESH_GATEWAY], export_to=["test1", "test2", "*"]),
    _service("rule3Gw", "test3", ["rule3gw.com"], gateways=[_GATEWAY], export_to=["test1", "test2", "*"]),
    _service("zzz", "zzz", ["rootNS.com"]),
]


@pytest.mark.parametrize(
    ("proxy_namespace", "gateway", "want_hosts"),
    [
        ("test1", MESH_GATEWAY, ["rule1.com", "rule2.com", "rule2gw.com", "rule3.com", "rootNS.com"]),
        ("test2", MESH_GATEWAY, ["rule2.com", "rule2gw.com", "rule3.com", "rootNS.com"]),
        ("ns1", MESH_GATEWAY, ["rule1.com", "rule2.com", "rule2gw.com", "rule3.com", "rootNS.com"]),
        ("random", MESH_GATEWAY, ["rule3.com", "rootNS.com"]),
        ("test1", _GATEWAY, ["rule2gw.com", "rule3gw.com"]),
        ("test2", _GATEWAY, ["rule2gw.com", "rule3gw.com"]),
        ("ns1", _GATEWAY, ["rule2gw.com", "rule3gw.com"]),
        ("random", _GATEWAY, ["rule3gw.com"]),
    ],
)
def test_istio_virtual_service_with_export_to_cases(proxy_namespace, gateway, want_hosts):
    # Istio's test feeds its store in another order; the index sorts by creation time, name, namespace.
    given = virtual_services_for_gateway(reversed(_EXPORT_TO_RULES), proxy_namespace, gateway)
    assert [host for service in given for host in service["spec"]["hosts"]] == want_hosts


def test_istio_init_virtual_service_resolves_short_gateway_names():
    gateway = "ns1/gateway"
    services = [
        _service("root", "ns1", ["*.org"], gateways=["gateway"], export_to=["*"], destinations=["delegate.ns2"]),
        _service("delegate", "ns2", [], gateways=[gateway], export_to=["*"], destinations=["delegate.ns2"]),
        _service("public", "ns3", ["*.org"], gateways=[gateway], destinations=["public.ns3"]),
        _service("private", "ns1", ["*.org"], gateways=[gateway], export_to=[".", "ns2"], destinations=["private.ns1"]),
        _service("invisible", "ns5", ["*.org"], gateways=["gateway", "mesh"], destinations=["invisible.ns5"]),
        _service("matchNs1FromDifferentNamespace", "ns5", ["*.org"], gateways=[gateway], destinations=["match-ns1.ns5"]),
        _service("matchNs1-without-explicit-gateway-namespace", "ns1", ["*.org"], gateways=["gateway"],
                 export_to=[".", "ns3"], destinations=["match-ns1.ns1"]),
        _service("matchNs7", "ns7", ["*.org"], gateways=[gateway], destinations=["match-ns7.ns7"]),
    ]
    given = virtual_services_for_gateway(services, "ns1", gateway)
    hosts = [route["destination"]["host"] for s in given for rule in s["spec"]["http"] for route in rule["route"]]
    # Istio's list: the delegate's host arrives through its root, which is what the model returns.
    assert hosts == ["match-ns1.ns1", "private.ns1", "match-ns1.ns5", "match-ns7.ns7", "public.ns3", "delegate.ns2"]
    assert gateway_names(services[4]) == ["ns5/gateway", MESH_GATEWAY]


@pytest.mark.parametrize(
    ("reference", "namespace", "resolved"),
    [("gw", "ns", "ns/gw"), ("./gw", "ns", "ns/gw"), ("other/gw", "ns", "other/gw"),
     ("gw.other.svc.cluster.local", "ns", "other/gw"), ("gw.other", "ns", "other/gw"), ("mesh", "ns", "mesh")],
)
def test_gateway_references_resolve_as_istio_does(reference, namespace, resolved):
    assert resolve_gateway_name(reference, namespace) == resolved


def test_a_dot_export_hides_a_route_from_gateway_pods_in_another_namespace():
    route = _service("ui", "kubeflow", ["kubeflow.example.com"], gateways=["kubeflow/kubeflow-gateway"], export_to=["."])
    assert routes_hidden_from_gateway([route], "istio-system", "kubeflow/kubeflow-gateway") == ["kubeflow/ui"]
    route["spec"]["exportTo"] = [".", "istio-system"]
    assert routes_hidden_from_gateway([route], "istio-system", "kubeflow/kubeflow-gateway") == []
    assert routes_hidden_from_gateway([route], "profile-a", "kubeflow/kubeflow-gateway") == ["kubeflow/ui"]


def test_a_route_without_export_to_follows_the_mesh_default():
    route = _service("oauth2-proxy", "oauth2-proxy", ["kubeflow.example.com"], gateways=["kubeflow/kubeflow-gateway"])
    assert routes_hidden_from_gateway([route], "istio-system", "kubeflow/kubeflow-gateway", ISTIO_DEFAULT_EXPORT_TO) == []
    assert routes_hidden_from_gateway([route], "istio-system", "kubeflow/kubeflow-gateway", (PRIVATE,)) != []


# ------------------------------------------------------------------------------- what the stacks emit


@pytest.mark.parametrize("release", SUPPORTED_RELEASES)
@pytest.mark.parametrize("stack", STACKS)
def test_gateway_pods_see_every_kubeflow_route(stack, release):
    ingress = stack_config(stack)["kubeflow-platform:ingress"]
    central = f"{ingress.get('gatewayNamespace', 'kubeflow')}/{ingress['gatewayName']}"
    pods_namespace = ingress["namespace"]
    services = [obj for obj in objects_of(stack, release) if obj["kind"] == "VirtualService"]
    bound = [s for s in services if central in gateway_names(s)]
    # The upstream UIs and APIs, and the auth proxy's own /oauth2/ route.
    assert len(bound) >= 10
    assert "oauth2-proxy/oauth2-proxy" in {f"{s['metadata']['namespace']}/{s['metadata']['name']}" for s in bound}
    # Whatever the mesh owner sets as defaultVirtualServiceExportTo.
    for default in (ISTIO_DEFAULT_EXPORT_TO, (PRIVATE,)):
        assert routes_hidden_from_gateway(services, pods_namespace, central, default) == []
    for service in bound:
        export_to = service["spec"].get("exportTo") or []
        assert PUBLIC not in export_to, service["metadata"]
        # Nobody else's sidecars: only the route's own namespace and the gateway pods'.
        assert set(export_to) <= {PRIVATE, service["metadata"]["namespace"], pods_namespace}, service["metadata"]
