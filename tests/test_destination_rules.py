"""The DestinationRule a caller's proxy applies decides its transport (istio/istio@1.28.0
pilot/pkg/networking/core/cluster_tls.go:407-461 buildUpstreamTLSSettings): ISTIO_MUTUAL always sends mTLS (a
sidecar-less destination fails the handshake), DISABLE sends plaintext (STRICT resets it), no `tls` is auto mTLS.
Which rule applies is PushContext.destinationRule (pilot/pkg/model/push_context.go:1238-1324): the caller's
namespace, then the Service's, then the root namespace, with exportTo and the most specific host. Shapes the trace
does not evaluate (SIMPLE, MUTUAL, workloadSelector, merged rules, non-mutual rules under ambient) are refused by
name. A portLevelSettings entry replaces the rule's policy for its port; a route's subset narrows the endpoints by
its labels and its traffic policy overrides the rule's (pilot/pkg/networking/util/util.go:802-875)."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest

from analysis import policies as authz
from analysis import trace as t
from tests.plans import evaluated_plan, plan_with

ML_PIPELINE = "http://ml-pipeline.kubeflow.svc.cluster.local:8888/apis/v2beta1/healthz"
BOB = t.workload("bob", "default-editor", {"notebook-name": "x"})
#: A caller in the root namespace, which ml-pipeline's NetworkPolicy admits on both stacks.
PROBE = t.workload("istio-system", "probe", {"app": "probe"})


@pytest.fixture(scope="module")
def plans():
    return {stack: evaluated_plan(stack)[0] for stack in ("dev", "prod")}


def _model(plan, *objects):
    return t.model_from_plan(plan_with(plan, *objects, name_prefix="dr"))


def _rule(name, namespace, host, tls=None, **spec):
    policy = {"tls": tls} if tls is not None else {}
    return {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"host": host, **({"trafficPolicy": policy} if policy else {}), **spec}}


def _rule_for(model, proxy_namespace, service):
    return t.destination_rule_for(model, proxy_namespace, t._ns(service), f"{t._name(service)}.{t._ns(service)}.svc.cluster.local")


def _hop(traced, step):
    return next((h for h in traced.hops if h.step == step), None)


def _plain_backend(namespace="bob"):
    """A Deployment that opts out of injection, and its Service."""
    labels = {"app": "plain", "sidecar.istio.io/inject": "false"}
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "plain", "namespace": namespace},
                  "spec": {"selector": {"matchLabels": {"app": "plain"}}, "template": {
                      "metadata": {"labels": labels},
                      "spec": {"containers": [{"name": "c", "image": "x", "ports": [{"containerPort": 8080}]}]}}}}
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "plain", "namespace": namespace},
               "spec": {"selector": {"app": "plain"}, "ports": [{"port": 80, "targetPort": 8080}]}}
    return deployment, service


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_upstream_istio_mutual_rules_apply_to_the_gateway_and_reach(plans, stack):
    # The gateway sits in the root namespace: step 2 finds the Service namespace's exported rule.
    model = t.model_from_plan(plans[stack])
    traced = t.trace_request(model, f"https://{model.settings.hosts[0]}/pipeline/", t.browser("alice@example.com"))
    assert traced.reached
    assert _hop(traced, "DestinationRule").decided_by == "DestinationRule kubeflow/ml-pipeline-ui"
    assert "ISTIO_MUTUAL" in _hop(traced, "DestinationRule").why


def test_disable_toward_strict_ml_pipeline_is_reset_at_the_server(plans):
    # A proxy in the root namespace looks first at the root namespace's private rules (push_context.go:1260-1271):
    # its DISABLE beats kubeflow's exported ISTIO_MUTUAL rule for the same host.
    disable = _rule("plain-to-pipeline", "istio-system", "ml-pipeline.kubeflow.svc.cluster.local", {"mode": "DISABLE"},
                    exportTo=["."])
    traced = t.trace_request(_model(plans["prod"], disable), ML_PIPELINE, PROBE)
    assert not traced.reached
    assert traced.refused_at.step == "PeerAuthentication" and "STRICT" in traced.refused_at.why
    assert "DestinationRule" in traced.refused_at.why
    assert _hop(traced, "DestinationRule").decided_by == "DestinationRule istio-system/plain-to-pipeline"
    # Without it the same call carries mTLS under kubeflow's rule and passes the PeerAuthentication.
    plain = t.trace_request(t.model_from_plan(plans["prod"]), ML_PIPELINE, PROBE)
    assert _hop(plain, "DestinationRule").decided_by == "DestinationRule kubeflow/ml-pipeline"
    assert _hop(plain, "PeerAuthentication").outcome == "pass"


def test_disable_under_permissive_arrives_without_a_peer_identity(plans):
    disable = _rule("plain-to-pipeline", "istio-system", "ml-pipeline.kubeflow.svc.cluster.local", {},  # tls: {} is DISABLE
                    exportTo=["."])
    traced = t.trace_request(_model(plans["dev"], disable), ML_PIPELINE, PROBE)
    assert "DISABLE" in _hop(traced, "DestinationRule").why
    assert _hop(traced, "PeerAuthentication").why.endswith("the caller sends plaintext")


def test_the_callers_namespace_is_searched_before_the_services(plans):
    # push_context.go:1251-1259: bob's own rule for the host beats kubeflow's.
    model = _model(plans["dev"], _rule("mine", "bob", "ml-pipeline.kubeflow.svc.cluster.local", {"mode": "DISABLE"}))
    ml_pipeline = next(s for s in model.kind("Service") if t._name(s) == "ml-pipeline" and t._ns(s) == "kubeflow")
    assert _rule_for(model, "bob", ml_pipeline)["metadata"]["name"] == "mine"
    assert _rule_for(model, "alice", ml_pipeline)["metadata"]["name"] == "ml-pipeline"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_istio_mutual_toward_a_sidecar_less_destination_fails(plans, stack):
    deployment, service = _plain_backend()
    url = "http://plain.bob.svc.cluster.local/"
    assert t.trace_request(_model(plans[stack], deployment, service), url, BOB).reached  # auto mTLS falls back
    mutual = _rule("mutual", "bob", "plain", {"mode": "ISTIO_MUTUAL"})
    traced = t.trace_request(_model(plans[stack], deployment, service, mutual), url, BOB)
    assert not traced.reached and traced.status == 503
    assert traced.refused_at.step == "DestinationRule" and "no sidecar" in traced.refused_at.why


def test_istio_mutual_toward_a_disable_port_fails(plans):
    peer = {"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
            "metadata": {"name": "off", "namespace": "kubeflow"},
            "spec": {"selector": {"matchLabels": {"app": "ml-pipeline"}}, "mtls": {"mode": "DISABLE"}}}
    traced = t.trace_request(_model(plans["dev"], peer), ML_PIPELINE, PROBE)
    assert not traced.reached and traced.refused_at.step == "PeerAuthentication" and "handshake" in traced.refused_at.why


def test_a_caller_without_a_sidecar_ignores_destination_rules(plans):
    # A DestinationRule configures a proxy; a pod without one sends plaintext (prod's STRICT resets it). Such callers
    # enter the destination hop without a principal, as the run-time trace's sidecar-less pods do.
    model = t.model_from_plan(plans["prod"])
    traced = t.Trace(ML_PIPELINE, PROBE)
    t._to_destination(model, traced, ("workload", "istio-system", {"app": "probe"}, None), "istio-system",
                      {"host": "ml-pipeline.kubeflow.svc.cluster.local", "port": {"number": 8888}},
                      "/apis/v2beta1/healthz", {}, "ml-pipeline.kubeflow.svc.cluster.local", "GET", None, None, None)
    assert _hop(traced, "DestinationRule") is None
    assert not traced.reached and traced.refused_at.step == "PeerAuthentication"


def test_a_private_rule_of_the_services_namespace_does_not_apply_to_other_namespaces(plans):
    # setDestinationRules (push_context.go:2099-2118): exportTo `.` keeps the rule out of the exported index.
    model = _model(plans["dev"], _rule("private", "bob", "plain", {"mode": "DISABLE"}, exportTo=["."]),
                   *_plain_backend())
    service = next(s for s in model.kind("Service") if t._name(s) == "plain")
    assert _rule_for(model, "bob", service)["metadata"]["name"] == "private"
    assert _rule_for(model, "alice", service) is None
    assert _rule_for(model, "istio-system", service) is None


def test_exported_rules_are_kept_only_for_the_namespaces_they_name(plans):
    # getExportedDestinationRuleFromNamespace (push_context.go:1306-1324) filters after the most specific host.
    model = _model(plans["dev"], _rule("to-alice", "bob", "plain", {"mode": "DISABLE"}, exportTo=[".", "alice"]),
                   _rule("wide", "bob", "*.bob.svc.cluster.local", {"mode": "ISTIO_MUTUAL"}), *_plain_backend())
    service = next(s for s in model.kind("Service") if t._name(s) == "plain")
    assert _rule_for(model, "alice", service)["metadata"]["name"] == "to-alice"
    # `plain` is the most specific host in bob's exported rules and is not exported to kubeflow: no fallback to `*.bob`.
    assert _rule_for(model, "kubeflow", service) is None


def test_a_root_namespace_rule_applies_when_no_nearer_rule_does(plans):
    model = _model(plans["dev"], _rule("mesh-wide", "istio-system", "*.local", {"mode": "DISABLE"}), *_plain_backend())
    service = next(s for s in model.kind("Service") if t._name(s) == "plain")
    assert _rule_for(model, "alice", service)["metadata"]["name"] == "mesh-wide"
    ml_pipeline = next(s for s in model.kind("Service") if t._name(s) == "ml-pipeline" and t._ns(s) == "kubeflow")
    assert _rule_for(model, "alice", ml_pipeline)["metadata"]["name"] == "ml-pipeline"


def _probe_rule(name, tls=None, **spec):
    return _rule(name, "istio-system", "ml-pipeline.kubeflow.svc.cluster.local", tls, exportTo=["."], **spec)


REFUSED = {
    "tls.mode SIMPLE": _probe_rule("simple", {"mode": "SIMPLE"}),
    "tls.mode MUTUAL": _probe_rule("mutual", {"mode": "MUTUAL"}),
    "workloadSelector": _rule("selected", "istio-system", "ml-pipeline.kubeflow.svc.cluster.local", {"mode": "DISABLE"},
                              workloadSelector={"matchLabels": {"app": "probe"}}),
    "several DestinationRules": _rule("second", "kubeflow", "ml-pipeline", {"mode": "DISABLE"}),
}


@pytest.mark.parametrize("shape", sorted(REFUSED))
@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_a_destination_rule_shape_the_trace_does_not_evaluate_is_refused_by_name(plans, stack, shape):
    with pytest.raises(authz.NotModelled, match=shape):
        t.trace_request(_model(plans[stack], REFUSED[shape]), ML_PIPELINE, PROBE)


def test_a_port_level_setting_replaces_the_rules_policy_for_its_port_only(plans):
    # GetPortLevelTrafficPolicy (util.go:802-827): the entry for the Service port wins whole, inheriting nothing.
    ports = _probe_rule("ports", {"mode": "ISTIO_MUTUAL"}, trafficPolicy={
        "tls": {"mode": "ISTIO_MUTUAL"}, "portLevelSettings": [{"port": {"number": 8888}, "tls": {"mode": "DISABLE"}}]})
    traced = t.trace_request(_model(plans["prod"], ports), ML_PIPELINE, PROBE)
    assert "DISABLE" in _hop(traced, "DestinationRule").why
    # prod is STRICT: the plaintext the port-level DISABLE makes the probe's proxy send is reset.
    assert not traced.reached and traced.refused_at.step == "PeerAuthentication"
    # An entry without tls still replaces the whole policy for its port: no tls there, so auto mTLS.
    bare = _probe_rule("bare", None, trafficPolicy={
        "tls": {"mode": "DISABLE"}, "portLevelSettings": [{"port": {"number": 8888}, "connectionPool": {}}]})
    traced = t.trace_request(_model(plans["prod"], bare), ML_PIPELINE, PROBE)
    assert traced.reached and "auto mTLS" in _hop(traced, "DestinationRule").why
    # An entry for another port leaves the rule's own tls.
    other = _probe_rule("other", None, trafficPolicy={
        "tls": {"mode": "DISABLE"}, "portLevelSettings": [{"port": {"number": 8887}, "tls": {"mode": "ISTIO_MUTUAL"}}]})
    traced = t.trace_request(_model(plans["prod"], other), ML_PIPELINE, PROBE)
    assert "DISABLE" in _hop(traced, "DestinationRule").why and not traced.reached


def _subset_route(host, subset):
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "subset", "namespace": "kubeflow"},
            "spec": {"hosts": [host], "gateways": ["kubeflow/kubeflow-gateway"], "http": [
                {"match": [{"uri": {"prefix": "/subset/"}}],
                 "route": [{"destination": {"host": "centraldashboard.kubeflow.svc.cluster.local", "subset": subset}}]}]}}


def _subsets(*subsets, tls=None):
    return _rule("dashboard-subsets", "kubeflow", "centraldashboard", tls, subsets=list(subsets))


def test_a_route_to_a_subset_reaches_the_pods_its_labels_pick(plans):
    host = t.model_from_plan(plans["dev"]).settings.hosts[0]
    rule = _subsets({"name": "v1", "labels": {"app": "centraldashboard"}}, {"name": "none", "labels": {"version": "v9"}})
    traced = t.trace_request(_model(plans["dev"], _subset_route(host, "v1"), rule), f"https://{host}/subset/",
                             t.browser("alice@example.com"))
    assert traced.reached and "centraldashboard" in traced.backend
    assert "subset 'v1'" in _hop(traced, "DestinationRule").why
    # Labels that pick no pod of the Service leave the subset's cluster without endpoints.
    traced = t.trace_request(_model(plans["dev"], _subset_route(host, "none"), rule), f"https://{host}/subset/",
                             t.browser("alice@example.com"))
    assert not traced.reached and traced.status == 503 and "pick no pod" in traced.refused_at.why


def test_a_route_to_a_subset_no_rule_defines_is_a_503(plans):
    host = t.model_from_plan(plans["dev"]).settings.hosts[0]
    for objects in ([_subset_route(host, "v2")], [_subset_route(host, "v2"), _subsets({"name": "v1", "labels": {}})]):
        traced = t.trace_request(_model(plans["dev"], *objects), f"https://{host}/subset/", t.browser("alice@example.com"))
        assert not traced.reached and traced.status == 503 and "subset 'v2'" in traced.refused_at.why


def test_a_subsets_tls_overrides_the_rules(plans):
    host = t.model_from_plan(plans["prod"]).settings.hosts[0]
    rule = _subsets({"name": "v1", "labels": {"app": "centraldashboard"}, "trafficPolicy": {"tls": {"mode": "DISABLE"}}},
                    tls={"mode": "ISTIO_MUTUAL"})
    traced = t.trace_request(_model(plans["prod"], _subset_route(host, "v1"), rule), f"https://{host}/subset/",
                             t.browser("alice@example.com"))
    assert "DISABLE" in _hop(traced, "DestinationRule").why
    assert not traced.reached and traced.refused_at.step == "PeerAuthentication"  # prod is STRICT


def test_under_ambient_a_rule_other_than_istio_mutual_is_refused_by_name(plans):
    plan = copy.deepcopy(plans["dev"])
    plan["outputs"]["transformReport"]["mesh"] = {"dataPlane": "ambient", "mtls": "strict"}
    host = t.model_from_plan(plan).settings.hosts[0]
    disable = _rule("plain", "kubeflow", "centraldashboard", {"mode": "DISABLE"})
    with pytest.raises(authz.NotModelled, match="tls.mode DISABLE under the ambient data plane"):
        t.trace_request(_model(plan, disable), f"https://{host}/", t.browser("alice@example.com"))
    with pytest.raises(authz.NotModelled, match="subset 'v1' under the ambient data plane"):
        t.trace_request(_model(plan, _subset_route(host, "v1"), _subsets({"name": "v1", "labels": {}})),
                        f"https://{host}/subset/", t.browser("alice@example.com"))
    # The plans' own rules are ISTIO_MUTUAL: the ambient trace answers through them.
    assert t.trace_request(t.model_from_plan(plan), f"https://{host}/pipeline/", t.browser("alice@example.com")).reached


def test_a_mesh_whose_rules_default_to_private_hides_them_from_other_namespaces(plans):
    dev = t.model_from_plan(plans["dev"])
    model = t.MeshModel(dev.objects, replace(dev.settings, default_destination_rule_export_to=(".",)))
    ml_pipeline = next(s for s in model.kind("Service") if t._name(s) == "ml-pipeline" and t._ns(s) == "kubeflow")
    assert _rule_for(model, "kubeflow", ml_pipeline)["metadata"]["name"] == "ml-pipeline"
    # push_context.go:2099-2106: no exportTo under a `.` default is private; the gateway's namespace sees none.
    assert _rule_for(model, "istio-system", ml_pipeline) is None
    assert _rule_for(t.model_from_plan(plans["dev"]), "istio-system", ml_pipeline)["metadata"]["name"] == "ml-pipeline"
