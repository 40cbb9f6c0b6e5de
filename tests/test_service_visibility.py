"""Which services a proxy holds, and what it does with one it does not, on the stacks' own plans: a Service's
`networking.istio.io/exportTo` and the mesh's defaultServiceExportTo (istio/istio@1.28.0 pilot/pkg/model/
push_context.go:1080-1097 IsServiceVisible), a Sidecar's egress listeners and their ports (sidecar.go:429-500,
678-800), and the outbound traffic policy, the Sidecar's over the mesh's (sidecar.go:332-340): REGISTRY_ONLY is the
BlackHoleCluster's 502, ALLOW_ANY the PassthroughCluster, plaintext past the caller's sidecar."""

from __future__ import annotations

from dataclasses import replace

import pytest

from analysis import trace as t
from tests.plans import evaluated_plan, plan_with

DASHBOARD = "http://centraldashboard.kubeflow.svc.cluster.local/"


@pytest.fixture(scope="module")
def plans():
    return {stack: evaluated_plan(stack)[0] for stack in ("dev", "prod")}


def _model(plan, *objects, export_to=None, service_default=None):
    model = t.model_from_plan(plan_with(plan, *objects, name_prefix="visibility"))
    if service_default is not None:  # a mesh config whose defaultServiceExportTo is not Istio's `*`
        model = t.MeshModel(model.objects, replace(model.settings, default_service_export_to=tuple(service_default)))
    if export_to is not None:
        dashboard = next(s for s in model.kind("Service") if t._name(s) == "centraldashboard" and t._ns(s) == "kubeflow")
        dashboard["metadata"].setdefault("annotations", {})[t.SERVICE_EXPORT_TO] = export_to
    return model


def _sidecar(name, namespace, egress, **spec):
    return {"apiVersion": "networking.istio.io/v1", "kind": "Sidecar", "metadata": {"name": name, "namespace": namespace},
            "spec": {"egress": egress, **spec}}


def _hop(traced, step):
    return next((h for h in traced.hops if h.step == step), None)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_a_service_not_exported_to_the_gateways_namespace_is_a_503_there(plans, stack):
    host = t.model_from_plan(plans[stack]).settings.hosts[0]
    hidden = t.trace_request(_model(plans[stack], export_to="kubeflow"), f"https://{host}/", t.browser("alice@example.com"))
    assert not hidden.reached and hidden.status == 503
    assert hidden.refused_at.decided_by == "Service kubeflow/centraldashboard" and "not exported to istio-system" in hidden.refused_at.why
    # Exported to the gateway's namespace by name (and with spaces, as istiod trims them): reached.
    shown = t.trace_request(_model(plans[stack], export_to="kubeflow, istio-system"), f"https://{host}/",
                            t.browser("alice@example.com"))
    assert shown.reached, t.render(shown)


def test_a_mesh_whose_services_default_to_private_hides_kubeflow_from_its_gateway(plans):
    host = t.model_from_plan(plans["dev"]).settings.hosts[0]
    model = _model(plans["dev"], service_default=["."])
    assert model.settings.default_service_export_to == (".",)
    traced = t.trace_request(model, f"https://{host}/", t.browser("alice@example.com"))
    assert not traced.reached and traced.status == 503 and "exportTo ['.']" in traced.refused_at.why
    # A Service that names its own exportTo is not subject to the default.
    traced = t.trace_request(_model(plans["dev"], export_to="*", service_default=["."]), f"https://{host}/",
                             t.browser("alice@example.com"))
    assert traced.reached


def test_an_in_mesh_caller_the_service_is_hidden_from_falls_to_the_outbound_policy(plans):
    # A pod of kubeflow itself (which its NetworkPolicies admit), the dashboard exported to the gateway's namespace only.
    neighbour = t.workload("kubeflow", "probe", {"app": "probe"})
    # prod is REGISTRY_ONLY: the BlackHoleCluster.
    traced = t.trace_request(_model(plans["prod"], export_to="istio-system"), DASHBOARD, neighbour)
    assert not traced.reached and traced.status == 502 and traced.refused_at.step == "Sidecar"
    assert "not exported to kubeflow" in traced.refused_at.why and "REGISTRY_ONLY" in traced.refused_at.why
    # dev is ALLOW_ANY: the PassthroughCluster, so the destination sees plaintext without a peer identity.
    traced = t.trace_request(_model(plans["dev"], export_to="istio-system"), DASHBOARD, neighbour)
    assert "PassthroughCluster" in _hop(traced, "Sidecar").why
    assert "the caller sends plaintext" in _hop(traced, "PeerAuthentication").why
    # Visible to its own namespace (`.`), the same call goes through the caller's sidecar with mTLS.
    traced = t.trace_request(_model(plans["dev"], export_to="."), DASHBOARD, neighbour)
    assert _hop(traced, "Sidecar") is None and "sends mTLS" in _hop(traced, "PeerAuthentication").why


def test_a_sidecar_that_does_not_import_the_service_follows_its_own_outbound_policy(plans):
    neighbour = t.workload("kubeflow", "probe", {"app": "probe"})
    elsewhere = _sidecar("elsewhere-only", "kubeflow", [{"hosts": ["istio-system/*"]}])
    traced = t.trace_request(_model(plans["prod"], elsewhere), DASHBOARD, neighbour)
    assert traced.status == 502 and "egress hosts do not import" in traced.refused_at.why
    assert "meshConfig.outboundTrafficPolicy" in traced.refused_at.decided_by
    # On dev (ALLOW_ANY) the Sidecar's own policy decides; `{}` is REGISTRY_ONLY, the proto's zero value.
    strict = _sidecar("elsewhere-only", "kubeflow", [{"hosts": ["istio-system/*"]}], outboundTrafficPolicy={})
    traced = t.trace_request(_model(plans["dev"], strict), DASHBOARD, neighbour)
    assert traced.status == 502 and traced.refused_at.decided_by.endswith("Sidecar kubeflow/elsewhere-only")
    allow = _sidecar("elsewhere-only", "kubeflow", [{"hosts": ["istio-system/*"]}], outboundTrafficPolicy={"mode": "ALLOW_ANY"})
    traced = t.trace_request(_model(plans["prod"], allow), DASHBOARD, neighbour)
    assert "PassthroughCluster" in _hop(traced, "Sidecar").why
    # prod is STRICT: the passthrough's plaintext is reset at the dashboard's sidecar.
    assert not traced.reached and traced.refused_at.step == "PeerAuthentication"


def test_the_egress_listener_of_the_requests_port_decides_before_the_catch_all(plans):
    # centraldashboard's Service port is 80: a listener bound to 80 that imports only istio-system's services takes it.
    neighbour = t.workload("kubeflow", "probe", {"app": "probe"})
    port_80 = _sidecar("ports", "kubeflow", [{"port": {"number": 80, "protocol": "HTTP", "name": "http"}, "hosts": ["istio-system/*"]},
                                             {"hosts": ["*/*"]}])
    traced = t.trace_request(_model(plans["prod"], port_80), DASHBOARD, neighbour)
    assert traced.status == 502 and "on port 80" in traced.refused_at.why
    # A listener bound to another port leaves port 80 to the catch-all, which imports everything.
    port_81 = _sidecar("ports", "kubeflow", [{"port": {"number": 81, "protocol": "HTTP", "name": "http"}, "hosts": ["istio-system/*"]},
                                             {"hosts": ["*/*"]}])
    traced = t.trace_request(_model(plans["prod"], port_81), DASHBOARD, neighbour)
    assert _hop(traced, "Sidecar").outcome == "pass" and _hop(traced, "Sidecar").decided_by == "Sidecar kubeflow/ports"


def test_the_plans_own_sidecars_and_services_are_modelled(plans):
    """Neither plan ships a Service exportTo; their Sidecars (`*/*` for two controllers) import every service. (The
    gateway's own Service has annotations known only after deploy; no route leads to it.)"""
    for stack in ("dev", "prod"):
        model = t.model_from_plan(plans[stack])
        known = [s for s in model.kind("Service") if isinstance((s.get("metadata") or {}).get("annotations") or {}, dict)]
        assert len(known) > 20 and not [t.ref(s) for s in known if t.service_export_to(s)]
        for sidecar in model.kind("Sidecar"):
            assert t.sidecar_imports(sidecar, t._ns(sidecar), "ml-pipeline.kubeflow.svc.cluster.local", "kubeflow", [8888], 8888)
