"""The test translation of the plan's gateway configuration into Envoy (tests/identity/envoy_harness.py), which the
gateway judge runs in real Envoy, held to istiod 1.28.0's own expected output: the authorization builder's golden
files (RBAC, CUSTOM shadow rules, ext_authz), the JWT filter tests and the route tests, restated as case data under
tests/istio_goldens/ with their sources. Each translation either builds what istiod builds or refuses the shape by
name; it never builds something else."""

from __future__ import annotations

import json
import pathlib

import pytest
import yaml

from analysis import trace as t
from tests.identity.envoy_harness import (
    custom_shadow_rbac_filter,
    ext_authz_http_filter,
    gateway_virtual_hosts,
    jwt_authn_filter,
    rbac_filter,
    virtual_service_routes,
)

GOLDEN_CASES = [
    pytest.param(
        {"to": [{"operation": {"paths": ["/exact", "/prefix/*", "*/suffix", "*"]}}]},
        [{"url_path": {"path": {"exact": "/exact"}}}, {"url_path": {"path": {"prefix": "/prefix/"}}},
         {"url_path": {"path": {"suffix": "/suffix"}}}, {"url_path": {"path": {"safe_regex": {"regex": ".+"}}}}],
        id="istio/istio@1.28.0 pilot/pkg/security/authz/builder/testdata/http/allow-path-out.yaml:11-25 paths"),
    pytest.param(
        {"to": [{"operation": {"notPaths": ["/not-exact", "/not-prefix/*"]}}]},
        [{"url_path": {"path": {"exact": "/not-exact"}}}, {"url_path": {"path": {"prefix": "/not-prefix/"}}}],
        id="istio/istio@1.28.0 pilot/pkg/security/authz/builder/testdata/http/allow-path-out.yaml:35-46 notPaths"),
    pytest.param(
        {"to": [{"operation": {"hosts": ["google.com", "httpbin.org"]}}]},
        [{"header": {"name": ":authority", "string_match": {"exact": "google.com", "ignore_case": True}}},
         {"header": {"name": ":authority", "string_match": {"exact": "httpbin.org", "ignore_case": True}}}],
        id="istio/istio@1.28.0 pilot/pkg/security/authz/builder/testdata/http/multiple-policies-out.yaml:40-55 hosts"),
    pytest.param(
        {"from": [{"source": {"requestPrincipals": ["requestPrincipals1"]}}]},
        [{"metadata": {"filter": "envoy.filters.http.jwt_authn", "path": [{"key": "payload"}, {"key": "iss"}],
                       "value": {"string_match": {"exact": "requestPrincipals1"}}}},
         {"metadata": {"filter": "envoy.filters.http.jwt_authn", "path": [{"key": "payload"}, {"key": "sub"}],
                       "value": {"string_match": {"exact": ""}}}}],
        id="istio/istio@1.28.0 pilot/pkg/security/authz/builder/testdata/http/multiple-policies-out.yaml:88-115 "
           "requestPrincipals"),
    pytest.param(
        {"when": [{"key": "request.headers[X-abc]", "values": ["abc1", "abc2"]}]},
        [{"header": {"name": "X-abc", "string_match": {"exact": "abc1"}}},
         {"header": {"name": "X-abc", "string_match": {"exact": "abc2"}}}],
        id="istio/istio@1.28.0 pilot/pkg/security/authz/builder/testdata/http/multiple-policies-out.yaml:168-185 header"),
]


def _leaves(node):
    """The matchers of an RBAC permission or principal tree, without and/or/not wrappers and default fields."""
    if isinstance(node, list):
        return [leaf for item in node for leaf in _leaves(item)]
    if not isinstance(node, dict):
        return []
    for wrapper in ("and_rules", "or_rules", "and_ids", "or_ids"):
        if wrapper in node:
            return _leaves(node[wrapper].get("rules") or node[wrapper].get("ids"))
    for negation in ("not_rule", "not_id"):
        if negation in node:
            return _leaves(node[negation])
    if node.get("any"):
        return []
    return [_without_defaults(node)]


def _without_defaults(value):
    if isinstance(value, dict):
        return {k: _without_defaults(v) for k, v in value.items() if not (k == "ignore_case" and v is False)}
    if isinstance(value, list):
        return [_without_defaults(v) for v in value]
    return value


def _key(leaf) -> str:
    return json.dumps(leaf, sort_keys=True)


@pytest.mark.parametrize(("rule", "golden"), GOLDEN_CASES)
def test_rbac_translation_builds_the_matchers_of_istiods_golden_output(rule, golden):
    policy = {"metadata": {"name": "httpbin", "namespace": "foo"}, "spec": {"action": "ALLOW", "rules": [rule]}}
    built = rbac_filter([policy])["typed_config"]["rules"]["policies"]["ns[foo]-policy[httpbin]-rule[0]"]
    leaves = _leaves(built["permissions"]) + _leaves(built["principals"])
    assert sorted(map(_key, leaves)) == sorted(map(_key, golden))


def test_rbac_translation_names_policies_and_action_as_istiod():
    # deny-and-allow-out1.yaml:1-8: action DENY, policy `ns[<namespace>]-policy[<name>]-rule[<index>]`.
    policy = {"metadata": {"name": "httpbin-deny", "namespace": "foo"},
              "spec": {"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/x"]}}]}]}}
    rules = rbac_filter([policy])["typed_config"]["rules"]
    assert rules["action"] == "DENY" and list(rules["policies"]) == ["ns[foo]-policy[httpbin-deny]-rule[0]"]


# ---------------------------------------------------------------------------------------------------
# Every policy of istiod's authorization builder goldens (tests/istio_goldens/authz_rbac.yaml): emitted exactly as
# istiod emits it, or refused by the names of the fields the test translation does not know; never something else.

GOLDENS_DIR = pathlib.Path(__file__).parent / "istio_goldens"
RBAC_CASES = yaml.safe_load((GOLDENS_DIR / "authz_rbac.yaml").read_text())


def _policy_of(case: dict) -> dict:
    metadata = {key: case["policy"][key] for key in ("name", "namespace", "annotations") if key in case["policy"]}
    spec = {key: case["policy"][key] for key in ("action", "provider") if key in case["policy"]}
    if "rule" in case:
        spec["rules"] = [case["rule"]]
    return {"metadata": metadata, "spec": spec}


@pytest.mark.parametrize("case", [c for c in RBAC_CASES if "golden" in c], ids=lambda c: f"{c['source']} {c['name']}")
def test_rbac_translation_emits_istiods_golden_policy(case):
    rules = rbac_filter([_policy_of(case)])["typed_config"]["rules"]
    assert rules["action"] == case["action"]
    assert list(rules["policies"]) == [f"ns[{case['policy']['namespace']}]-policy[{case['policy']['name']}]-rule[0]"]
    assert _without_defaults(next(iter(rules["policies"].values()))) == case["golden"]


@pytest.mark.parametrize("case", [c for c in RBAC_CASES if "refuses" in c],
                         ids=lambda c: f"{c['source']} {c.get('name', c['policy']['name'])}")
def test_rbac_translation_refuses_what_it_does_not_know_by_name(case):
    with pytest.raises(NotImplementedError) as refusal:
        rbac_filter([_policy_of(case)], **({"name": case["filter"]} if "filter" in case else {}))
    for name in case["refuses"]:
        assert name in str(refusal.value)


def test_rbac_goldens_cover_every_builder_output():
    # builder_test.go:128-251 at 1.28.0: 16 non-CUSTOM HTTP cases writing 18 output files (each with a byte-identical
    # extended- twin; CUSTOM ones are held below), and 7 TCP cases (281-327). Every one appears here, compared or refused.
    sources = {case["source"].split(" (")[0].split(":")[0].rsplit(" ", 1)[-1] for case in RBAC_CASES}
    assert len([s for s in sources if "/http/" in s]) == 18 and len([s for s in sources if "/tcp/" in s]) == 7


# ---------------------------------------------------------------------------------------------------
# CUSTOM policies (tests/istio_goldens/authz_custom.yaml): the shadow-rules RBAC filter and the ext_authz filter istiod
# builds from the extension provider, compared whole; a provider kind or value it does not build is refused by name.

CUSTOM_CASES = yaml.safe_load((GOLDENS_DIR / "authz_custom.yaml").read_text())


@pytest.mark.parametrize("case", CUSTOM_CASES["shadow_rules"], ids=lambda c: c["source"])
def test_custom_policies_become_istiods_shadow_rules(case):
    built = custom_shadow_rbac_filter(case["policies"])
    assert built["name"] == "envoy.filters.http.rbac"
    assert _without_defaults(built["typed_config"]) == case["golden"]


@pytest.mark.parametrize("case", [c for c in CUSTOM_CASES["providers"] if "golden" in c], ids=lambda c: c["source"])
def test_http_extension_provider_becomes_istiods_ext_authz_filter(case):
    built = ext_authz_http_filter(case["provider"], case["hostname"], case["cluster"])
    assert built["name"] == "envoy.filters.http.ext_authz"
    assert built["typed_config"] == case["golden"]


@pytest.mark.parametrize("case", [c for c in CUSTOM_CASES["providers"] if "refuses" in c], ids=lambda c: c["source"])
def test_extension_provider_the_translation_does_not_build_is_refused_by_name(case):
    with pytest.raises(NotImplementedError) as refusal:
        ext_authz_http_filter(case["provider"], "authz.example", "outbound|9000||authz.example")
    for name in case["refuses"]:
        assert name in str(refusal.value)


@pytest.mark.parametrize("case", CUSTOM_CASES["refused_policies"], ids=lambda c: c["source"])
def test_custom_policies_the_translation_does_not_build_are_refused_by_name(case):
    with pytest.raises(NotImplementedError) as refusal:
        custom_shadow_rbac_filter(case["policies"])
    for name in case["refuses"]:
        assert name in str(refusal.value)


# ---------------------------------------------------------------------------------------------------
# RequestAuthentication -> jwt_authn (tests/istio_goldens/authn_jwt.yaml): the whole filter config istiod builds,
# provider names, token locations, forwarding, metadata, claim headers and the requirement tree, JWKS source aside.

JWT_CASES = yaml.safe_load((GOLDENS_DIR / "authn_jwt.yaml").read_text())


def _request_authentications(case: dict) -> list[dict]:
    return [{"metadata": {"name": f"ra-{index}", "namespace": "foo"}, "spec": {"jwtRules": rules}}
            for index, rules in enumerate(case["requestAuthentications"])]


def _without_jwks(config: dict) -> dict:
    providers = {name: {key: value for key, value in provider.items() if key != "local_jwks" and value is not False}
                 for name, provider in config["providers"].items()}
    return {**{key: value for key, value in config.items() if key != "@type"}, "providers": providers}


@pytest.mark.parametrize("case", JWT_CASES, ids=lambda c: c["source"])
def test_jwt_translation_builds_istiods_jwt_authn_config(case):
    authentications = _request_authentications(case)
    issuers = {rule["issuer"] for ra in authentications for rule in ra["spec"]["jwtRules"]}
    built = jwt_authn_filter(authentications, {issuer: b"k" * 32 for issuer in issuers})
    if case["golden"] is None:
        assert built is None
        return
    assert built["name"] == "envoy.filters.http.jwt_authn"
    assert _without_jwks(built["typed_config"]) == case["golden"]


def test_jwt_translation_refuses_a_rule_field_it_does_not_know_by_name():
    rule = {"issuer": "https://secret.foo.com", "jwksUri": "http://127.0.0.1/jwks", "futureField": True}
    with pytest.raises(NotImplementedError, match="jwtRules.futureField"):
        jwt_authn_filter(_request_authentications({"requestAuthentications": [[rule]]}), {rule["issuer"]: b"k" * 32})


def test_jwt_token_locations_are_copied_only_where_the_rule_names_them():
    # policy_applier.go convertToEnvoyJwtConfig at 1.28.0: from_headers from fromHeaders (name, prefix as
    # value_prefix), from_params and from_cookies as given; none named, none set (Envoy's defaults then apply).
    rule = {"issuer": "https://i.example", "fromHeaders": [{"name": "x-jwt", "prefix": "Bearer "}], "fromParams": ["t"],
            "fromCookies": ["session"]}
    provider = jwt_authn_filter(_request_authentications({"requestAuthentications": [[rule]]}),
                                {rule["issuer"]: b"k" * 32})["typed_config"]["providers"]["origins-0"]
    assert provider["from_headers"] == [{"name": "x-jwt", "value_prefix": "Bearer "}]
    assert provider["from_params"] == ["t"] and provider["from_cookies"] == ["session"]
    plain = jwt_authn_filter(_request_authentications({"requestAuthentications": [[{"issuer": "https://i.example"}]]}),
                             {"https://i.example": b"k" * 32})["typed_config"]["providers"]["origins-0"]
    assert not {"from_headers", "from_params", "from_cookies"} & set(plain)


# ---------------------------------------------------------------------------------------------------
# VirtualService -> Envoy routes (tests/istio_goldens/routes.yaml): the fields TestBuildHTTPRoutes checks, route by route.

ROUTE_CASES = yaml.safe_load((GOLDENS_DIR / "routes.yaml").read_text())


def _holds(expected, built) -> bool:
    """`expected` is `built` restricted to the keys it names (lists compared whole, item by item)."""
    if isinstance(expected, dict):
        return isinstance(built, dict) and all(key in built and _holds(value, built[key]) for key, value in expected.items())
    if isinstance(expected, list):
        return isinstance(built, list) and len(expected) == len(built) and all(map(_holds, expected, built))
    return expected == built


def _service(case: dict) -> dict:
    return {"metadata": {"name": "acme", "namespace": "default"},
            "spec": {"hosts": ["*"], "gateways": ["some-gateway"], "http": [case["http"]]}}


@pytest.mark.parametrize("case", [c for c in ROUTE_CASES if "expect" in c], ids=lambda c: c["source"])
def test_route_translation_builds_what_istiods_route_tests_expect(case):
    built = virtual_service_routes(_service(case))
    assert len(built) == len(case["expect"])
    for expected, route in zip(case["expect"], built):
        assert _holds(expected, route), (expected, route)


@pytest.mark.parametrize("case", [c for c in ROUTE_CASES if "refuses" in c], ids=lambda c: c["source"])
def test_route_translation_refuses_what_it_does_not_build_by_name(case):
    with pytest.raises(NotImplementedError) as refusal:
        virtual_service_routes(_service(case))
    for name in case["refuses"]:
        assert name in str(refusal.value)


# ---------------------------------------------------------------------------------------------------
# Gateway servers and VirtualServices -> virtual hosts (tests/istio_goldens/gateway_virtual_hosts.yaml): the domains
# of each virtual host and how many routes it holds, as TestGatewayHTTPRouteConfig expects. The host-name helpers are
# the trace's own (held to Istio's host tests elsewhere), as the gateway judge passes them.

VHOST_CASES = yaml.safe_load((GOLDENS_DIR / "gateway_virtual_hosts.yaml").read_text())


@pytest.mark.parametrize("case", VHOST_CASES, ids=lambda c: c["source"])
def test_gateway_virtual_hosts_are_istiods(case):
    http = [{"route": [{"destination": {"host": "example.org", "port": {"number": 80}}}]}]
    servers = [(server["hosts"], [{"metadata": {"name": f"vs-{index}", "namespace": "default"},
                                   "spec": {"hosts": hosts, "http": http}}
                                  for index, hosts in enumerate(server["virtualServices"])])
               for server in case["servers"]]
    built = gateway_virtual_hosts(servers, t.hosts_for_namespace, t.hosts_intersection)
    assert {vhost["name"]: vhost["domains"] for vhost in built} == case["virtualHosts"]
    assert {vhost["name"]: len(vhost["routes"]) for vhost in built} == case["routes"]
