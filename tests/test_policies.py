"""analysis/policies.py matches AuthorizationPolicy rules as Istio 1.28 does (see its docstring for the sources)."""

from __future__ import annotations

import pytest

from analysis.policies import Request, denies, rule_matches

HEADER = {"key": "request.headers[kubeflow-userid]", "values": ["*"]}


def _deny(*rules):
    return {"kind": "AuthorizationPolicy", "metadata": {"name": "p"}, "spec": {"action": "DENY", "rules": list(rules)}}


def test_not_principals_match_plaintext_callers_and_principals_do_not():
    assert rule_matches({"from": [{"source": {"notPrincipals": ["cluster.local/ns/a/sa/b"]}}]}, Request(None))
    assert not rule_matches({"from": [{"source": {"principals": ["*"]}}]}, Request(None))
    assert rule_matches({"from": [{"source": {"principals": ["*"]}}]}, Request("cluster.local/ns/a/sa/b"))


def test_a_star_header_value_means_present_even_when_empty():
    # istio/istio@1.28.0 (and 1.24.6) pilot/pkg/security/authz/matcher/header.go:28-34: `*` is Envoy's present_match,
    # which an empty value satisfies; so an empty kubeflow-userid is refused by the identity-header DENY too.
    rule = {"when": [HEADER]}
    assert rule_matches(rule, Request("p", headers={"Kubeflow-Userid": "a"}))
    assert rule_matches(rule, Request("p", headers={"kubeflow-userid": ""}))
    assert not rule_matches(rule, Request("p", headers={}))


def test_prefix_and_suffix_patterns():
    assert rule_matches({"from": [{"source": {"principals": ["cluster.local/ns/a/*"]}}]}, Request("cluster.local/ns/a/sa/b"))
    assert rule_matches({"from": [{"source": {"principals": ["*/sa/b"]}}]}, Request("td/ns/a/sa/b"))


def test_cluster_local_in_a_policy_stands_for_the_mesh_trust_domain():
    rule = {"from": [{"source": {"principals": ["cluster.local/ns/a/sa/b"]}}]}
    assert rule_matches(rule, Request("corp.example/ns/a/sa/b", trust_domain="corp.example"))
    assert not rule_matches(rule, Request("other.example/ns/a/sa/b", trust_domain="corp.example"))


def test_from_to_and_when_must_all_match():
    rule = {"from": [{"source": {"principals": ["x"]}}], "to": [{"operation": {"notPorts": ["8012"]}}], "when": [HEADER]}
    user = {"kubeflow-userid": "u"}
    assert rule_matches(rule, Request("x", 8080, user))
    assert not rule_matches(rule, Request("x", 8012, user))
    assert not rule_matches(rule, Request("y", 8080, user))
    assert not rule_matches(rule, Request("x", 8080, {}))
    assert denies(_deny({"from": [{"source": {"principals": ["y"]}}]}, rule), Request("x", 8080, user))


def test_what_is_not_modelled_is_refused_not_guessed():
    with pytest.raises(ValueError):
        rule_matches({"from": [{"source": {"ipBlocks": ["10.0.0.0/8"]}}]}, Request("x"))
    with pytest.raises(ValueError):
        rule_matches({"when": [{"key": "source.ip", "values": ["10.0.0.1"]}]}, Request("x"))
    with pytest.raises(ValueError):
        denies({"spec": {"action": "ALLOW", "rules": []}}, Request("x"))
