"""Knative's probes as run-time paths (analysis/runtime_trace.py `net_istio_probes`, the activator's probe of
queue-proxy) and the program's fix that keeps them working under REGISTRY_ONLY (manifests/mesh.py
`let_net_istio_probe_gateways`)."""

from __future__ import annotations

import copy

import pytest
import yaml

from analysis import runtime_trace as rt
from analysis.plan_objects import CONFIG_GROUP, kubernetes_objects
from manifests.mesh import INJECT, let_net_istio_probe_gateways
from manifests.options import MeshOptions
from tools.preview import mesh_trace


def _paths(plan):
    model, mesh = rt.model_from_plan(plan)
    return rt.paths(model, mesh)


def _probes(plan):
    return {p.label: p for p in _paths(plan) if p.label.startswith("net-istio probe")}


def _edited(plan, edit):
    """The plan with `edit(obj)` applied to every object it applies, in ConfigGroups or as resources of their own."""
    plan = copy.deepcopy(plan)
    for resource in plan["resources"]:
        text = (resource.get("inputs") or {}).get("yaml")
        if (resource.get("inputs") or {}).get("kind") and (resource.get("inputs") or {}).get("spec"):
            edit(resource["inputs"])
        if resource.get("type") == CONFIG_GROUP and isinstance(text, str):
            documents = [d for d in yaml.safe_load_all(text) if d]
            for document in documents:
                edit(document)
            resource["inputs"]["yaml"] = yaml.safe_dump_all(documents, sort_keys=False)
    return plan


def _net_istio_template(plan):
    return next(o.obj for o in kubernetes_objects(plan).objects if o.obj.get("kind") == "Deployment"
                and o.obj["metadata"]["name"] == "net-istio-controller")["spec"]["template"]["metadata"]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_net_istio_probes_every_gateway_of_the_predictors_ingress_and_each_probe_lets_it_become_ready(stack, request):
    plan = request.getfixturevalue(stack)
    probes = _probes(plan)
    domain = "serving.dev.ml.example.com" if stack == "dev" else "serving.ml.example.com"
    # The external route's host by config-network's domain-template, on the gateway config-istio names; the local
    # route's first host on net-istio's default local gateway, at the pods' port 8081.
    assert set(probes) == {
        f"net-istio probe -> kubeflow/kubeflow-gateway pods (external host trace-isvc-predictor-alice.{domain}) :80",
        "net-istio probe -> knative-serving/knative-local-gateway pods (local host trace-isvc-predictor.alice) :8081",
    }
    for probe in probes.values():
        assert probe.ok, probe.problem()
        assert probe.trace.caller.headers == rt.NET_ISTIO_PROBE_HEADERS
        assert probe.trace.url.endswith("/healthz")
        assert probe.trace.hops[0].step == "targets"


def test_a_probe_the_login_redirects_is_abandoned_and_the_ingress_is_marked_ready(dev):
    external = next(p for label, p in _probes(dev).items() if "kubeflow/kubeflow-gateway" in label)
    assert any(h.step == "CUSTOM" and h.outcome == "refused" for h in external.trace.hops)
    assert external.trace.status == 302 and external.ok
    assert "302 abandons the probe" in external.trace.hops[-1].why


def test_a_probe_answered_404_keeps_the_ingress_waiting_and_the_preview_names_it(dev):
    # The central Gateway no longer serving the serving domain: the gateway answers the probe 404, retried for ever.
    def drop_serving_host(obj):
        if obj.get("kind") == "Gateway" and obj["metadata"]["name"] == "kubeflow-gateway":
            for server in obj["spec"]["servers"]:
                server["hosts"] = [h for h in server["hosts"] if "serving" not in h]
    broken = _edited(dev, drop_serving_host)
    external = next(p for label, p in _probes(broken).items() if "kubeflow/kubeflow-gateway" in label)
    assert not external.ok and external.trace.status == 404
    _, problems = mesh_trace(broken)
    assert any(p.startswith("run-time trace: serverless InferenceService: net-istio probe -> kubeflow/kubeflow-gateway") for p in problems)


def test_under_registry_only_net_istio_runs_without_a_sidecar_so_its_probes_reach_the_gateway_pods(prod, dev):
    # prod (REGISTRY_ONLY): out of the mesh, as upstream net-istio ships it; dev (ALLOW_ANY): injected as Kubeflow has it.
    assert _net_istio_template(prod)["labels"][INJECT] == "false" and _net_istio_template(prod)["annotations"][INJECT] == "false"
    assert _net_istio_template(dev)["labels"][INJECT] == "true"
    local = next(p for label, p in _probes(prod).items() if "knative-local-gateway" in label)
    assert "has no sidecar" in next(h.why for h in local.trace.hops if h.step == "caller")
    # A program without that fix: the controller's own sidecar drops the probe of the gateway's 8081.
    def inject(obj):
        if obj.get("kind") == "Deployment" and obj["metadata"]["name"] == "net-istio-controller":
            obj["spec"]["template"]["metadata"]["labels"][INJECT] = "true"
            obj["spec"]["template"]["metadata"]["annotations"][INJECT] = "true"
    probes = _probes(_edited(prod, inject))
    local = next(p for label, p in probes.items() if "knative-local-gateway" in label)
    assert not local.ok and local.trace.refused_at.step == "caller"
    assert "REGISTRY_ONLY and no HTTP listener on port 8081: BlackHoleCluster" in local.trace.refused_at.why
    # On the central gateway's port an HTTP listener exists: its catch-all answers 502, which abandons the probe.
    external = next(p for label, p in probes.items() if "kubeflow/kubeflow-gateway" in label)
    assert external.ok and external.trace.status == 502


def test_net_istio_leaves_the_mesh_only_under_registry_only_with_sidecars():
    controller = {"apiVersion": "apps/v1", "kind": "Deployment",
                  "metadata": {"name": "net-istio-controller", "namespace": "knative-serving"},
                  "spec": {"template": {"metadata": {"labels": {INJECT: "true"}, "annotations": {INJECT: "true"}},
                                        "spec": {"containers": [{"name": "controller"}]}}}}
    assert let_net_istio_probe_gateways([controller], MeshOptions(outbound_traffic_policy="ALLOW_ANY")).changes == ()
    assert let_net_istio_probe_gateways([controller], MeshOptions(outbound_traffic_policy="REGISTRY_ONLY", data_plane="ambient")).changes == ()
    result = let_net_istio_probe_gateways([controller], MeshOptions(outbound_traffic_policy="REGISTRY_ONLY"))
    metadata = result.objects[0]["spec"]["template"]["metadata"]
    assert metadata["labels"][INJECT] == "false" and metadata["annotations"][INJECT] == "false"
    assert controller["spec"]["template"]["metadata"]["labels"][INJECT] == "true"  # the input is not changed
    assert len(result.changes) == 2


@pytest.mark.parametrize("data, expected", [
    ({}, rt.DEFAULT_GATEWAYS),
    ({"gateway.kubeflow.kubeflow-gateway": "istio-ingressgateway.istio-system.svc.cluster.local"},
     {"external": ["kubeflow/kubeflow-gateway"], "local": ["knative-serving/knative-local-gateway"]}),
    ({"local-gateway.mesh.local": "x.mesh.svc.cluster.local", "gateway.a.b": "y"},
     {"external": ["a/b"], "local": ["mesh/local"]}),
    ({"external-gateways": "- name: g\n  namespace: n\n  service: s\n- name: other\n  namespace: n\n  service: s\n"
                           "  labelSelector:\n    matchLabels: {a: b}\n"},
     {"external": ["n/g"], "local": ["knative-serving/knative-local-gateway"]}),
])
def test_the_probed_gateways_are_config_istios_as_net_istio_reads_it(data, expected):
    config = {"kind": "ConfigMap", "metadata": {"name": "config-istio", "namespace": "knative-serving"},
              "data": {"_example": "gateway.x.y: z", **data}}
    model = rt.t.MeshModel([config], rt.t.MeshSettings())
    assert rt.knative_gateways(model) == expected


def test_the_activator_probes_queue_proxy_on_its_serving_port_with_knatives_probe_header(prod):
    probe = next(p for p in _paths(prod) if p.label.startswith("activator -> queue-proxy probe"))
    assert probe.ok and probe.trace.backend.endswith("port 8012")
    assert probe.trace.caller.headers == rt.ACTIVATOR_PROBE_HEADERS
    peer = next(h for h in probe.trace.hops if h.step == "PeerAuthentication")
    assert peer.why.startswith("STRICT; the caller's sidecar sends mTLS as cluster.local/ns/knative-serving/sa/activator")


def test_a_service_labelled_like_the_gateways_pods_is_where_net_istio_finds_its_targets(dev):
    """The mesh owner's cluster-local gateway Service, labelled with the Gateway's selector and serving its port:
    net-istio probes the pods behind it on that port's target (lister.go:120-195)."""
    model, mesh = rt.model_from_plan(dev)
    gateway = next(g for g in model.kind("Gateway") if g["metadata"]["name"] == "knative-local-gateway")
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "owners-local-gateway", "namespace": "istio-system",
                                                                     "labels": dict(gateway["spec"]["selector"])},
               "spec": {"selector": dict(gateway["spec"]["selector"]), "ports": [{"name": "http", "port": 8081, "targetPort": 8081}]}}
    labelled = rt.t.MeshModel(list(model.objects) + [service], model.settings)
    local = next(trace for label, trace in rt.net_istio_probes(labelled, mesh, "alice") if "knative-local-gateway" in label)
    assert local.hops[0].why == ("Service istio-system/owners-local-gateway is labelled app=cluster-local-gateway,"
                                 "istio=cluster-local-gateway and has port 8081: probed")
    assert local.reached and local.status == 200
    # Without it, the plan shows no target: the row still traces the probe, and says why.
    plain = next(trace for label, trace in rt.net_istio_probes(model, mesh, "alice") if "knative-local-gateway" in label)
    assert plain.hops[0].why.startswith("no Service in the plan is labelled app=cluster-local-gateway,istio=cluster-local-gateway")
