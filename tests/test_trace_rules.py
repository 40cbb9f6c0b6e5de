"""Every rule of the offline mesh trace (analysis/trace.py, analysis/policies.py), held to cases taken from Istio's own
tests at istio/istio@1.28.0; each group names the Istio test it ports."""

from __future__ import annotations

import pytest

from analysis import trace as t
from analysis.policies import NotModelled, Request, path_matches, policy_matches, rule_matches, string_matches

# --- pkg/config/host/name_test.go TestNameMatches (lines 30-83) -------------------------------------------------
NAME_MATCHES = [
    ("", "", True), ("a.facebook.com", "*.facebook.COM", False), ("", "foo.com", False), ("foo.com", "", False),
    ("foo.com", "foo.com", True), ("*", "foo.com", True), ("*", "*.com", True), ("*", "com", True), ("*", "*", True),
    ("*", "", True), ("*.com", "*.foo.com", True), ("foo.com", "*.foo.com", False), ("*.foo.com", "foo.com", False),
    ("*.foo.bar.baz", "baz", False), ("baz", "*.foo.bar.baz", False), ("*.foo.bar.baz", "*.baz", True),
    ("foo.bar.baz", "*.baz", True),
]


@pytest.mark.parametrize(("a", "b", "want"), NAME_MATCHES)
def test_host_matches_as_istio_host_name_matches(a, b, want):
    assert t.host_matches(a, b) is want


# --- pkg/config/host/name_test.go TestNameSubsetOf (lines 101-150) ----------------------------------------------
@pytest.mark.parametrize(("a", "b", "want"), [
    ("", "", True), ("", "foo.com", False), ("foo.com", "", False), ("foo.com", "*", True), ("*.com", "*", True),
    ("com", "*", True), ("*", "*", True), ("", "*", True), ("*.foo.com", "*.com", True), ("*.foo.com", "foo.com", False),
    ("*.foo.bar.baz", "baz", False), ("foo.bar.baz", "*.baz", True),
])
def test_host_subset_of_as_istio_host_name_subset_of(a, b, want):
    assert t.host_subset_of(a, b) is want


# --- pkg/config/host/names.go doc examples of Intersection (78-82) and NamesForNamespace (114-119) -------------
@pytest.mark.parametrize(("a", "b", "want"), [
    (["foo.com", "bar.com"], ["*.com"], ["foo.com", "bar.com"]),
    (["foo.com", "*.net"], ["*.com", "bar.net"], ["foo.com", "bar.net"]),
    (["foo.com", "*.net"], ["*.bar.net"], ["*.bar.net"]),
    (["foo.com"], ["bar.com"], []),
    ([], ["bar.com"], []),
])
def test_hosts_intersection_as_istio_names_intersection(a, b, want):
    assert t.hosts_intersection(a, b) == want


@pytest.mark.parametrize(("hosts", "namespace", "want"), [
    (["ns1/foo.com", "ns2/bar.com"], "ns1", ["foo.com"]),
    (["ns1/foo.com", "ns2/bar.com"], "ns3", []),
    (["ns1/foo.com", "*/bar.com"], "ns1", ["foo.com", "bar.com"]),
    (["ns1/foo.com", "*/bar.com"], "ns3", ["bar.com"]),
    (["foo.com", "ns2/bar.com"], "ns2", ["foo.com", "bar.com"]),
    (["foo.com", "ns2/bar.com"], "ns3", ["foo.com"]),
])
def test_gateway_server_hosts_for_a_route_namespace_as_names_for_namespace(hosts, namespace, want):
    assert t.hosts_for_namespace(hosts, namespace) == want


# --- pilot/pkg/networking/core/route/route_internal_test.go TestIsCatchAllRoute (41-140) ------------------------
@pytest.mark.parametrize(("match", "want"), [
    ({"uri": {"prefix": "/"}}, True),                                         # catch all prefix
    ({"uri": {"regex": ".*"}}, True),                                         # catch all regex
    ({"uri": {"prefix": "/"}, "headers": {"x": {"regex": ".*"}}}, False),     # catch all prefix with headers
    ({"uri": {"regex": ".*"}, "headers": {"x": {"regex": ".*"}}}, False),     # uri regex with headers
    ({"uri": {"regex": ".*"}, "queryParams": {"q": {"regex": ".*"}}}, False),  # uri regex with query params
    ({"uri": {"prefix": "/pipeline"}}, False),
    (None, True),                                                             # no match: Istio routes prefix "/"
])
def test_catch_all_routes_as_istio_is_catch_all_route(match, want):
    assert t.HttpRoute({}, {}, match, 0).catch_all is want


def test_catch_all_routes_go_last_as_sort_vhost_routes():
    # route_test.go TestSortVHostRoutes: catch-all routes move to the end, the others keep their order; so the
    # dashboard's `/` never shadows `/pipeline`, whichever VirtualService was created first.
    dashboard = {"kind": "VirtualService", "metadata": {"name": "dash", "namespace": "kubeflow"},
                 "spec": {"hosts": ["k.example.com"], "http": [{"match": [{"uri": {"prefix": "/"}}]}]}}
    pipeline = {"kind": "VirtualService", "metadata": {"name": "kfp", "namespace": "kubeflow"},
                "spec": {"hosts": ["k.example.com"], "http": [{"match": [{"uri": {"prefix": "/pipeline"}}]},
                                                                {"match": [{"uri": {"prefix": "/b"}}]}]}}
    routes = t.gateway_routes([dashboard, pipeline], ["k.example.com"], "k.example.com")
    assert [(r.service["metadata"]["name"], r.match["uri"]["prefix"]) for r in routes] == [
        ("kfp", "/pipeline"), ("kfp", "/b"), ("dash", "/")]


def test_a_route_on_another_host_is_not_given_to_the_virtual_host():
    other = {"kind": "VirtualService", "metadata": {"name": "x", "namespace": "a"},
             "spec": {"hosts": ["other.example.com"], "http": [{"match": [{"uri": {"prefix": "/"}}]}]}}
    assert t.gateway_routes([other], ["*"], "k.example.com") == []
    # a server host `b/*` admits only routes of namespace b (names.go:120-133)
    assert t.gateway_routes([other], ["b/*"], "other.example.com") == []
    assert len(t.gateway_routes([other], ["a/*"], "other.example.com")) == 1


# --- pilot/pkg/security/authz/matcher/string_test.go TestStringMatcherWithPrefix ---------------------------------
@pytest.mark.parametrize(("pattern", "value", "want"), [
    ("*", "anything", True), ("*", "", False),                  # wildcardAsRequired: regex .+
    ("-prefix-*", "-prefix-abc", True), ("-prefix-*", "x-prefix-", False),
    ("*-suffix", "abc-suffix", True), ("*-suffix", "-suffix-x", False),
    ("-exact", "-exact", True), ("-exact", "-exact2", False),
])
def test_string_patterns_as_istio_string_matcher(pattern, value, want):
    assert string_matches(pattern, value) is want


# --- pilot/pkg/security/authz/builder/testdata/http/allow-path-in.yaml ------------------------------------------
@pytest.mark.parametrize(("pattern", "path", "want"), [
    ("/exact", "/exact", True), ("/exact", "/exact/", False),
    ("/prefix/*", "/prefix/a/b", True), ("/prefix/*", "/prefix", False),
    ("*/suffix", "/a/suffix", True), ("*", "/", True),
    ("/path/template/{*}", "/path/template/one", True), ("/path/template/{*}", "/path/template/one/two", False),
    ("/{**}/path/template", "/a/b/c/path/template", True), ("/{**}/path/template", "/path/templatex", False),
    ("/exact", "/exact?query=1", True),
])
def test_authorization_paths_as_the_builder_testdata(pattern, path, want):
    assert path_matches(pattern, path) is want


# --- pilot/pkg/security/authz/model/generator.go requestPrincipalGenerator (234-292), generator_test.go -----------
@pytest.mark.parametrize(("pattern", "iss", "sub", "want"), [
    ("*", "https://issuer", "sub", True),
    ("https://issuer/*", "https://issuer", "anyone", True),
    ("https://issuer/*", "https://other", "anyone", False),
    # the subject is a claim of its own: a `/` in it does not move the issuer (GitHub's sub)
    ("https://token.actions.githubusercontent.com/*", "https://token.actions.githubusercontent.com",
     "repo:example-org/ml-pipelines:ref:refs/heads/main", True),
    ("*/sub", "https://issuer", "sub", True),
    ("*issuer/sub", "https://issuer", "sub", True),
    ("*issuer/sub", "https://issuer", "other", False),
    ("https://issuer/sub", "https://issuer", "sub", True),
    ("https://issuer/su*", "https://issuer", "sub", True),
    ("https://issuer/su*", "https://issuer2", "sub", False),
])
def test_request_principals_split_the_pattern_at_its_last_slash_as_the_generator(pattern, iss, sub, want):
    rule = {"from": [{"source": {"requestPrincipals": [pattern]}}]}
    request = Request(None, request_principal=f"{iss}/{sub}", claims={"iss": iss, "sub": sub})
    assert rule_matches(rule, request) is want


def test_claims_match_a_string_or_any_item_of_a_list_as_use_extended_jwt():
    # model/util.go:103-105 builds MetadataListValueMatcher(..., useExtendedJwt=true): list OR value.
    rule = {"when": [{"key": "request.auth.claims[groups]", "values": ["ml-*"]}]}
    assert rule_matches(rule, Request(None, claims={"groups": ["x", "ml-vision"]}))
    assert rule_matches(rule, Request(None, claims={"groups": "ml-vision"}))
    assert not rule_matches(rule, Request(None, claims={"groups": True}))
    nested = {"when": [{"key": "request.auth.claims[a][b]", "values": ["c"]}]}
    assert rule_matches(nested, Request(None, claims={"a": {"b": "c"}}))


def test_namespaces_match_the_principal_as_the_namespace_generator():
    # generator.go:178-182: regex .*/ns/<ns>/.* over spiffe://<principal>; plaintext has no namespace.
    rule = {"from": [{"source": {"namespaces": ["alice"]}}]}
    assert rule_matches(rule, Request("cluster.local/ns/alice/sa/default-editor"))
    assert not rule_matches(rule, Request("cluster.local/ns/bob/sa/default-editor"))
    assert not rule_matches(rule, Request(None))
    assert rule_matches({"when": [{"key": "source.namespace", "values": ["ali*"]}]}, Request("td/ns/alice/sa/x"))


def test_hosts_ignore_case_and_methods_do_not_as_the_header_matchers():
    # matcher/header.go: HostMatcher ignores case, HeaderMatcher (methods) does not.
    assert rule_matches({"to": [{"operation": {"hosts": ["K.Example.com"]}}]}, Request(None, host="k.example.com"))
    assert not rule_matches({"to": [{"operation": {"methods": ["get"]}}]}, Request(None, method="GET"))


def _policy(action, *rules, name="p"):
    spec = {"action": action}
    if rules != (None,):
        spec["rules"] = list(rules)
    return {"kind": "AuthorizationPolicy", "metadata": {"name": name, "namespace": "foo"}, "spec": spec}


# --- builder testdata http/allow-empty-rule-in.yaml, deny-empty-rule-in.yaml, builder.go:228-233 ------------------
def test_an_empty_rule_matches_everything_and_no_rules_match_nothing():
    anyone = Request("cluster.local/ns/x/sa/y")
    assert policy_matches(_policy("ALLOW", {}), anyone) == 0          # allow-all
    assert policy_matches(_policy("DENY", {}), anyone) == 0           # deny-all
    assert policy_matches(_policy("ALLOW", None), anyone) is None     # no rules: matches nothing (allow nothing)


# --- builder testdata http/deny-and-allow-in.yaml: DENY first, then ALLOW -------------------------------------------
@pytest.mark.parametrize(("principal", "reached", "step"), [
    ("deny", False, "DENY"), ("allow", True, None), ("other", False, "ALLOW")])
def test_deny_is_evaluated_before_allow_as_the_builder(principal, reached, step):
    objects = [_policy("DENY", {"from": [{"source": {"principals": ["deny"]}}]}, name="httpbin-deny"),
               _policy("ALLOW", {"from": [{"source": {"principals": ["allow"]}}]}, name="httpbin-allow")]
    model = t.MeshModel(objects, t.MeshSettings())
    trace = t.Trace("u", t.anonymous())
    assert t.authorize(model, trace, "w", "foo", {}, Request(principal)) is reached
    assert (trace.refused_at.step if trace.refused_at else None) == step


# --- pilot/pkg/model/policyattachment.go:109-136: selectors, root namespace, targetRefs ignored by sidecars --------
def test_policy_selection_by_selector_root_namespace_and_target_refs():
    from analysis.policies import policies_for_workload
    selected = _policy("ALLOW", {}, name="sel")
    selected["spec"]["selector"] = {"matchLabels": {"app": "a"}}
    root = _policy("DENY", {}, name="root")
    root["metadata"]["namespace"] = "istio-system"
    targeted = _policy("ALLOW", {}, name="targeted")
    targeted["spec"]["targetRefs"] = [{"kind": "Service", "group": "", "name": "svc"}]
    other = _policy("ALLOW", {}, name="other-ns")
    other["metadata"]["namespace"] = "bar"
    found = policies_for_workload([selected, root, targeted, other], "foo", {"app": "a"}, "istio-system")
    assert [p["metadata"]["name"] for p in found["ALLOW"]] == ["sel"]
    assert [p["metadata"]["name"] for p in found["DENY"]] == ["root"]
    assert policies_for_workload([selected], "foo", {"app": "b"}, "istio-system")["ALLOW"] == []
    waypoint = policies_for_workload([targeted, selected], "foo", {}, "istio-system", waypoint_services=[("svc", "foo")],
                                     waypoint_gateway="waypoint")
    assert [p["metadata"]["name"] for p in waypoint["ALLOW"]] == ["targeted"]


# --- model.go:344-354: ztunnel (TCP) cannot build HTTP attributes: ALLOW rule dropped, DENY field dropped ------------
def test_l7_rules_fail_safe_when_ztunnel_enforces_them():
    http_allow = {"to": [{"operation": {"paths": ["/public/*"]}}]}
    request = Request("cluster.local/ns/x/sa/y", path="/public/a")
    assert rule_matches(http_allow, request)
    assert not rule_matches(http_allow, request, action="ALLOW", for_tcp=True)
    http_deny = {"from": [{"source": {"principals": ["cluster.local/ns/x/sa/y"]}}], "to": [{"operation": {"paths": ["/admin"]}}]}
    assert not rule_matches(http_deny, request, action="DENY")
    assert rule_matches(http_deny, request, action="DENY", for_tcp=True)


# --- pilot/pkg/security/authn/policy_applier_test.go TestComposePeerAuthentication (1639-) ------------------------
def _peer(name, namespace, mode=None, selector=None, ports=None):
    spec = {}
    if mode:
        spec["mtls"] = {"mode": mode}
    if selector:
        spec["selector"] = {"matchLabels": selector}
    if ports:
        spec["portLevelMtls"] = {str(p): {"mode": m} for p, m in ports.items()}
    return {"kind": "PeerAuthentication", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


@pytest.mark.parametrize(("policies", "port", "want"), [
    ([], 8080, "PERMISSIVE"),                                                                    # no policy
    ([_peer("mesh", "istio-system", "STRICT")], 8080, "STRICT"),                                 # mesh only
    ([_peer("mesh", "istio-system", "STRICT"), _peer("ns", "foo", "PERMISSIVE")], 8080, "PERMISSIVE"),  # ns overrides mesh
    ([_peer("mesh", "istio-system", "STRICT"), _peer("ns", "foo", "UNSET")], 8080, "STRICT"),    # UNSET inherits
    ([_peer("ns", "foo", "STRICT"), _peer("w", "foo", "PERMISSIVE", {"app": "a"})], 8080, "PERMISSIVE"),  # workload wins
    ([_peer("w", "foo", "STRICT", {"app": "a"}, {8443: "PERMISSIVE"})], 8443, "PERMISSIVE"),     # port-level
    ([_peer("w", "foo", "STRICT", {"app": "a"}, {8443: "UNSET"})], 8443, "STRICT"),              # port UNSET inherits
    ([_peer("w", "istio-system", "STRICT", {"app": "a"})], 8080, "PERMISSIVE"),                  # root ns selector ignored
])
def test_peer_authentication_composed_as_istio(policies, port, want):
    model = t.MeshModel(policies, t.MeshSettings())
    workload = t.Workload({}, "foo", {"app": "a"}, {}, "sa", [])
    assert t.peer_authentication_mode(model, workload, port)[0] == want


# --- Kubernetes NetworkPolicy semantics (kubernetes.io/docs/concepts/services-networking/network-policies) ------
def test_network_policies_are_additive_and_select_by_namespace_label():
    namespace = {"kind": "Namespace", "metadata": {"name": "foo"}}
    same = {"kind": "NetworkPolicy", "metadata": {"name": "same", "namespace": "foo"},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"from": [{"podSelector": {}}]}]}}
    gateway = {"kind": "NetworkPolicy", "metadata": {"name": "gw", "namespace": "foo"},
               "spec": {"podSelector": {"matchLabels": {"app": "a"}}, "policyTypes": ["Ingress"], "ingress": [
                   {"from": [{"namespaceSelector": {"matchExpressions": [
                       {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["istio-system"]}]}}],
                    "ports": [{"port": 8080}]}]}}
    model = t.MeshModel([namespace, same, gateway], t.MeshSettings())
    pod = t.Workload({}, "foo", {"app": "a"}, {}, "sa", [])
    assert t.network_policy_admits(model, pod, 8080, "istio-system", {})[0]
    assert not t.network_policy_admits(model, pod, 9090, "istio-system", {})[0]
    assert t.network_policy_admits(model, pod, 9090, "foo", {})[0]
    assert not t.network_policy_admits(model, pod, 8080, "bob", {})[0]


# --- RequestAuthentication: policy_applier.go:143-170, 250-290 (requires_any of providers and allow_missing) ------
RULES = [({"kind": "RequestAuthentication", "metadata": {"name": "r", "namespace": "istio-system"}},
          {"issuer": "https://issuer", "audiences": ["kubeflow"],
           "outputClaimToHeaders": [{"header": "x-verified", "claim": "email_verified"}]})]


@pytest.mark.parametrize(("token", "outcome", "status"), [
    (None, "none", None),                                                                     # allow_missing
    ({"iss": "https://issuer", "aud": "kubeflow", "sub": "s"}, "verified", None),
    # Envoy answers JwtAudienceNotAllowed with 403 (jwt_authn filter), every other failure with 401.
    ({"iss": "https://issuer", "aud": "other", "sub": "s"}, "invalid", 403),
    # allow_missing passes only a missing token since envoyproxy/envoy#15194: an unknown issuer is 401.
    ({"iss": "https://elsewhere", "aud": "kubeflow", "sub": "s"}, "invalid", 401),
    ({"iss": "https://issuer", "aud": "kubeflow", "sub": "s", "exp": 1}, "invalid", 401),             # expired
    ({"iss": "https://issuer", "aud": "kubeflow", "sub": "s", "nbf": 4_000_000_000}, "invalid", 401),  # not yet valid
])
def test_request_authentication_verdicts_as_envoy_jwt_authn(token, outcome, status):
    verdict = t.verify_token(RULES, token, now=1_700_000_000)
    assert (verdict.outcome, verdict.status) == (outcome, status)


def test_a_token_passes_unread_where_no_request_authentication_applies():
    assert t.verify_token([], {"iss": "https://elsewhere"}).outcome == "none"


def test_output_claim_to_headers_writes_a_boolean_claim_as_envoy_does():
    verdict = t.verify_token(RULES, {"iss": "https://issuer", "aud": "kubeflow", "sub": "s", "email_verified": False})
    assert verdict.headers == {"x-verified": "false"}


@pytest.mark.parametrize("location", ["fromHeaders", "fromParams", "fromCookies"])
def test_a_token_read_elsewhere_than_authorization_is_refused_not_answered(location):
    policy = {"kind": "RequestAuthentication", "metadata": {"name": "r", "namespace": "istio-system"},
              "spec": {"jwtRules": [{"issuer": "https://issuer", location: [{"name": "x-token"}]}]}}
    model = t.MeshModel([policy], t.MeshSettings())
    with pytest.raises(NotModelled, match=location):
        t.jwt_rules_for(model, "istio-system", {"istio": "ingressgateway"})
