"""The test translation of AuthorizationPolicies into Envoy RBAC (tests/identity/envoy_harness.py rbac_filter), which the
gateway judge runs in real Envoy, held to istiod's own golden files: for each case, an input policy of Istio's
authorization builder test data and the leaf matchers of the golden output istiod produces for it (restated, only
what the case needs). Leaves are compared as a multiset, the and/or nesting aside (Envoy evaluates both alike)."""

from __future__ import annotations

import pytest

from tests.identity.envoy_harness import rbac_filter

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
    import json

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
