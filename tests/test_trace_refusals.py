"""Shapes the trace does not evaluate are refused by name (exit 2 of `make trace`, a problem of the preview's table),
never answered; the shapes it does evaluate since Istio's tests and Envoy disagreed with it are answered as they
do (several Gateways on one host, dry-run policies, PeerAuthentication's oldest, mTLS DISABLE)."""

from __future__ import annotations

import copy
import io
import json

import pytest

from analysis import policies as authz
from analysis import trace as t
from tests.plans import evaluated_plan, plan_with
from tools import preview as preview_tool
from tools import trace as trace_tool

HOST = "kubeflow.dev.ml.example.com"
OWNER = t.browser("alice@example.com")
NOTEBOOK = f"https://{HOST}/notebook/alice/{t.TRACE_NOTEBOOK}/"


@pytest.fixture(scope="module")
def dev_plan():
    return evaluated_plan("dev")[0]


def _with(plan, *objects):
    return plan_with(plan, *objects, name_prefix="judged")


def _model(plan, *objects):
    return t.model_from_plan(_with(plan, *objects))


def _vs(name, namespace, http, hosts=(HOST,), gateways=("kubeflow/kubeflow-gateway",)):
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"hosts": list(hosts), "gateways": list(gateways), "http": http}}


def _policy(name, namespace, spec, annotations=None):
    metadata = {"name": name, "namespace": namespace, **({"annotations": annotations} if annotations else {})}
    return {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": metadata, "spec": spec}


REFUSED_SHAPES = {
    "uriRegexRewrite": (_vs("regex", "kubeflow", [{"match": [{"uri": {"prefix": "/regex/"}}],
                                                  "rewrite": {"uriRegexRewrite": {"match": "^/regex/(.*)", "rewrite": "/\\1"}},
                                                  "route": [{"destination": {"host": "centraldashboard.kubeflow.svc.cluster.local"}}]}]),
                        f"https://{HOST}/regex/x", OWNER),
    "tls.httpsRedirect": ({"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
                           "metadata": {"name": "redirecting", "namespace": "istio-system"},
                           "spec": {"selector": {"istio": "ingressgateway"}, "servers": [
                               {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": [HOST],
                                "tls": {"httpsRedirect": True}}]}},
                          f"https://{HOST}/pipeline/", OWNER),
    "TCP server on port 80": ({"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
                               "metadata": {"name": "raw-tcp", "namespace": "istio-system"},
                               "spec": {"selector": {"istio": "ingressgateway"}, "servers": [
                                   {"port": {"number": 80, "name": "tcp", "protocol": "TCP"}, "hosts": ["*"]}]}},
                              f"https://{HOST}/pipeline/", OWNER),
    "istio.io/dry-run": (_policy("dry-custom", "istio-system", {
        "action": "CUSTOM", "provider": {"name": "kubeflow-auth"}, "selector": {"matchLabels": {"istio": "ingressgateway"}},
        "rules": [{}]}, {"istio.io/dry-run": "true"}), f"https://{HOST}/pipeline/", OWNER),
    "2 providers": (_policy("second-provider", "istio-system", {
        "action": "CUSTOM", "provider": {"name": "another"}, "selector": {"matchLabels": {"istio": "ingressgateway"}},
        "rules": [{"to": [{"operation": {"paths": ["/never/*"]}}]}]}), f"https://{HOST}/pipeline/", OWNER),
    "fromHeaders": ({"apiVersion": "security.istio.io/v1", "kind": "RequestAuthentication",
                     "metadata": {"name": "header-token", "namespace": "istio-system"},
                     "spec": {"selector": {"matchLabels": {"istio": "ingressgateway"}},
                              "jwtRules": [{"issuer": "https://x.example.com", "fromHeaders": [{"name": "x-token"}]}]}},
                    f"https://{HOST}/pipeline/", OWNER),
    "Sidecar bind": ({"apiVersion": "networking.istio.io/v1", "kind": "Sidecar",
                      "metadata": {"name": "bound", "namespace": "bob"},
                      "spec": {"egress": [{"hosts": ["*/*"], "bind": "127.0.0.2"}]}},
                     "http://centraldashboard.kubeflow.svc.cluster.local/",
                     t.workload("bob", "default-editor", {"notebook-name": "x"})),
    "Sidecar ingress listeners": ({"apiVersion": "networking.istio.io/v1", "kind": "Sidecar",
                                   "metadata": {"name": "with-ingress", "namespace": "alice"},
                                   "spec": {"ingress": [{"port": {"number": 8888, "protocol": "HTTP", "name": "http"},
                                                         "defaultEndpoint": "127.0.0.1:8888"}],
                                            "egress": [{"hosts": ["*/*"]}]}},
                                  NOTEBOOK, OWNER),
    "can fetch the keys": ({"apiVersion": "security.istio.io/v1", "kind": "RequestAuthentication",
                            "metadata": {"name": "elsewhere", "namespace": "istio-system"},
                            "spec": {"selector": {"matchLabels": {"istio": "ingressgateway"}},
                                     "jwtRules": [{"issuer": "https://idp.elsewhere.example.com",
                                                   "jwksUri": "https://idp.elsewhere.example.com/keys"}]}},
                           f"https://{HOST}/pipeline/",
                           t.token_caller("cli", {"iss": "https://idp.elsewhere.example.com", "sub": "s"})),
    "bound to the mesh": (_vs("mesh-route", "kubeflow", [{"route": [{"destination": {"host": "centraldashboard"}}]}],
                              hosts=("centraldashboard",), gateways=("mesh",)),
                          "http://centraldashboard.kubeflow.svc.cluster.local/",
                          t.workload("bob", "default-editor", {"notebook-name": "x"})),
}


def test_a_url_on_another_port_than_its_schemes_is_refused_by_name(dev_plan):
    model = t.model_from_plan(dev_plan)
    assert t.trace_request(model, f"https://{HOST}:443/pipeline/", OWNER).backend
    with pytest.raises(authz.NotModelled, match="port 8443 at the gateway"):
        t.trace_request(model, f"https://{HOST}:8443/pipeline/", OWNER)


@pytest.mark.parametrize("shape", sorted(REFUSED_SHAPES))
def test_a_shape_the_trace_does_not_evaluate_is_refused_by_name(dev_plan, shape):
    obj, url, caller = REFUSED_SHAPES[shape]
    with pytest.raises(authz.NotModelled, match=shape.replace(".", r"\.")):
        t.trace_request(_model(dev_plan, obj), url, caller)


def test_the_preview_table_names_a_refused_shape_as_a_problem(dev_plan):
    table, problems = preview_tool.mesh_trace(_with(dev_plan, REFUSED_SHAPES["tls.httpsRedirect"][0]))
    assert table == "" and problems and "tls.httpsRedirect" in problems[0]


def test_make_trace_exits_2_naming_a_refused_shape(dev_plan, tmp_path):
    (tmp_path / "plan.json").write_text(json.dumps(_with(dev_plan, REFUSED_SHAPES["uriRegexRewrite"][0])))
    out, err = io.StringIO(), io.StringIO()
    status = trace_tool.main([str(tmp_path), f"https://{HOST}/regex/x", "--as", "alice@example.com"], out, err)
    assert status == 2
    assert "uriRegexRewrite" in err.getvalue() and "is not modelled" in err.getvalue()


def test_a_ztunnel_cannot_enforce_custom_and_the_trace_says_so(dev_plan):
    plan = copy.deepcopy(dev_plan)
    plan["outputs"]["transformReport"]["mesh"] = {"dataPlane": "ambient", "mtls": "strict"}
    custom = _policy("custom-tcp", "alice", {"action": "CUSTOM", "provider": {"name": "kubeflow-auth"}, "rules": [{}]})
    model = _model(plan, custom)
    for obj in model.objects:
        if obj.get("kind") == "Namespace" and obj["metadata"]["name"] == "alice":
            obj["metadata"].setdefault("labels", {})["istio.io/dataplane-mode"] = "ambient"
    with pytest.raises(authz.NotModelled, match="CUSTOM enforced on TCP"):
        t.trace_request(model, NOTEBOOK, OWNER)


def test_a_waypoint_takes_the_root_gateway_class_policy_from_istio_125_and_no_service_entry_policy():
    # policyattachment.go:151-182 at 1.28.0: once refused, now as istiod attaches them.
    waypoint_class = {"group": "gateway.networking.k8s.io", "kind": "GatewayClass", "name": "istio-waypoint"}
    default = _policy("default", "istio-system", {"targetRefs": [waypoint_class], "rules": [{}]})
    entry = _policy("p", "alice", {"targetRefs": [{"group": "networking.istio.io", "kind": "ServiceEntry", "name": "svc"}],
                                   "rules": [{}]})

    def allowed(version):
        found = authz.policies_for_workload([default, entry], "alice", {}, "istio-system", waypoint_services=[("svc", "alice")],
                                            waypoint_gateway="waypoint", istio_version=version)
        return [f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in found["ALLOW"]]

    assert allowed((1, 28)) == ["istio-system/default"]
    # 1.24.6 authorization.go:93-96: a waypoint looks only in its Service's namespace, and knows no GatewayClass.
    assert allowed((1, 24)) == []


def test_gateways_sharing_a_host_share_its_virtual_host_and_the_exact_host_beats_a_wildcard(dev_plan):
    # gateway.go:411-548: a second Gateway on port 80 for the same pods; its VirtualService's exact host joins the
    # virtual host of that host, and a `*` VirtualService lands in the `*` virtual host, which Envoy picks last.
    gateway = {"apiVersion": "networking.istio.io/v1", "kind": "Gateway", "metadata": {"name": "second", "namespace": "kubeflow"},
               "spec": {"selector": {"istio": "ingressgateway"},
                        "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}]}}
    exact = _vs("second-exact", "kubeflow", [{"match": [{"uri": {"prefix": "/second/"}}],
                                              "route": [{"destination": {"host": "centraldashboard.kubeflow.svc.cluster.local", "port": {"number": 80}}}]}],
                gateways=("kubeflow/second",))
    wildcard = _vs("second-wild", "kubeflow", [{"match": [{"uri": {"prefix": "/pipeline/"}}],
                                                "route": [{"destination": {"host": "nowhere.kubeflow.svc.cluster.local"}}]}],
                   hosts=("*",), gateways=("kubeflow/second",))
    model = _model(dev_plan, gateway, exact, wildcard)
    second = t.trace_request(model, f"https://{HOST}/second/", OWNER)
    assert "VirtualService kubeflow/second-exact" in t.render(second) and second.reached
    pipeline = t.trace_request(model, f"https://{HOST}/pipeline/", OWNER)
    assert "VirtualService kubeflow/ml-pipeline-ui" in t.render(pipeline) and pipeline.reached
    elsewhere = t.trace_request(model, "https://other.example.com/pipeline/", OWNER)
    assert "VirtualService kubeflow/second-wild" in t.render(elsewhere)


def test_a_dry_run_deny_is_not_enforced(dev_plan):
    deny = _policy("dry-deny", "alice", {"action": "DENY", "rules": [{}]}, {"istio.io/dry-run": "true"})
    assert t.trace_request(_model(dev_plan, deny), NOTEBOOK, OWNER).reached
    enforced = _policy("deny", "alice", {"action": "DENY", "rules": [{}]})
    assert not t.trace_request(_model(dev_plan, enforced), NOTEBOOK, OWNER).reached


def test_under_peer_authentication_disable_no_principal_rule_matches(dev_plan):
    # With DISABLE the gateway's sidecar-less plaintext arrives without a peer identity, so the owner policy's
    # gateway-principal rule cannot match (the trace once kept the principal).
    disable = {"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
               "metadata": {"name": "off", "namespace": "alice"}, "spec": {"mtls": {"mode": "DISABLE"}}}
    traced = t.trace_request(_model(dev_plan, disable), NOTEBOOK, OWNER)
    assert not traced.reached and traced.refused_at.step in ("ALLOW", "DENY")
    assert any(h.step == "PeerAuthentication" and "no peer identity" in h.why for h in traced.hops)


def test_the_oldest_namespace_peer_authentication_wins(dev_plan):
    def peer(name, mode, created):
        return {"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
                "metadata": {"name": name, "namespace": "alice", "creationTimestamp": created}, "spec": {"mtls": {"mode": mode}}}
    model = _model(dev_plan, peer("a-new", "DISABLE", "2025-02-01T00:00:00Z"), peer("z-old", "STRICT", "2025-01-01T00:00:00Z"))
    workload = next(w for w in t.workloads(model, "alice") if t.TRACE_NOTEBOOK in w.ref)
    assert t.peer_authentication_mode(model, workload, 8888) == ("STRICT", "PeerAuthentication alice/z-old")


def test_a_sidecar_resource_that_imports_the_service_lets_the_call_through(dev_plan):
    # pilot/pkg/model/push_context.go doGetSidecarScope, sidecar.go selectServices: `kubeflow/*` imports the service.
    sidecar = {"apiVersion": "networking.istio.io/v1", "kind": "Sidecar", "metadata": {"name": "imports", "namespace": "bob"},
               "spec": {"egress": [{"hosts": ["./*", "kubeflow/*"]}]}}
    caller = t.workload("bob", "default-editor", {"notebook-name": "x"})
    traced = t.trace_request(_model(dev_plan, sidecar), "http://centraldashboard.kubeflow.svc.cluster.local/", caller)
    assert any(h.step == "Sidecar" and h.decided_by == "Sidecar bob/imports" for h in traced.hops)


def test_keys_istiod_cannot_fetch_fail_every_token_of_their_issuer(dev_plan):
    # jwks_resolver.go BuildLocalJwks: a fake JWKS when the fetch fails; `.invalid` never resolves (RFC 6761 6.4).
    fake = {"apiVersion": "security.istio.io/v1", "kind": "RequestAuthentication",
            "metadata": {"name": "unfetchable", "namespace": "istio-system"},
            "spec": {"selector": {"matchLabels": {"istio": "ingressgateway"}},
                     "jwtRules": [{"issuer": "https://idp.example.invalid", "jwksUri": "https://idp.example.invalid/keys"}]}}
    caller = t.token_caller("cli", {"iss": "https://idp.example.invalid", "sub": "s"})
    traced = t.trace_request(_model(dev_plan, fake), f"https://{HOST}/pipeline/", caller)
    assert not traced.reached and traced.refused_at.step == "RequestAuthentication" and traced.status == 401
    assert "fake JWKS" in traced.refused_at.why


def test_a_sidecar_resource_does_not_govern_a_caller_without_a_sidecar(dev_plan):
    # A Sidecar resource configures a sidecar proxy (push_context.go doGetSidecarScope, SidecarProxy only): a pod
    # that opts out of injection calls the Service directly whatever its namespace's Sidecar imports.
    sidecar = {"apiVersion": "networking.istio.io/v1", "kind": "Sidecar", "metadata": {"name": "own-namespace-only", "namespace": "bob"},
               "spec": {"egress": [{"hosts": ["./*", "istio-system/*"]}], "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}}}
    url = "http://centraldashboard.kubeflow.svc.cluster.local/"
    caller = t.workload("bob", "default-editor", {"notebook-name": "x", "sidecar.istio.io/inject": "false"})
    traced = t.trace_request(_model(dev_plan, sidecar), url, caller)
    assert not any(h.step == "Sidecar" for h in traced.hops)


def test_the_trace_follows_the_stacks_istio_version_where_istio_changed(dev_plan):
    # The plan carries kubeflow.mesh.istioVersion (1.24 on dev): source.serviceAccounts exists only from Istio 1.25
    # (model.go:127 at 1.28.0), so on the stack's mesh a rule using it is refused; on a 1.28 mesh it is evaluated.
    assert dev_plan["outputs"]["meshTrace"]["istioVersion"] == "1.24"
    not_the_gateway = _policy("by-account", "alice", {"action": "DENY", "rules": [{"from": [{"source": {
        "serviceAccounts": ["istio-system/istio-ingressgateway-service-account"]}}]}]})
    with pytest.raises(authz.NotModelled, match="Istio 1.25 and later; this mesh runs 1.24"):
        t.trace_request(_model(dev_plan, not_the_gateway), NOTEBOOK, OWNER)
    newer = copy.deepcopy(dev_plan)
    newer["outputs"]["meshTrace"]["istioVersion"] = "1.28"
    denied = t.trace_request(_model(newer, not_the_gateway), NOTEBOOK, OWNER)
    assert not denied.reached and denied.refused_at.step == "DENY" and "by-account" in denied.refused_at.decided_by
    someone_else = copy.deepcopy(not_the_gateway)
    someone_else["spec"]["rules"][0]["from"][0]["source"]["serviceAccounts"] = ["istio-system/someone-else"]
    assert t.trace_request(_model(newer, someone_else), NOTEBOOK, OWNER).reached
