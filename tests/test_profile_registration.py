"""Profiles exist only as the platform team intends (docs/profiles.md, "Profiles created at run time").

By default nobody creates a profile through the dashboard: its `POST /api/workgroup/create` is answered with 403
by the gateway for every caller, whatever the case of the path, and the API server refuses any Profile kfam
creates. `tenancy.selfService` opens both for chosen email domains: one profile per user, named from the owner's
email, with no quota or plugins of its own, and the template's guardrails applied at run time (a Kyverno generate
policy) and at admission (GPU access, Pod Security).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Iterator

import pulumi
import pytest

from analysis import admission as evaluation
from analysis import trace as t
from analysis import trace_matrix
from manifests.admission import (
    DECLARED_PROFILE_LABEL, PROFILE_POLICY, REGISTRATION_BODY_FILTER_NAME, REGISTRATION_ROUTE, SELF_SERVICE_POD_POLICY,
    SELF_SERVICE_TEMPLATE_POLICY, kfam_user, profile_policy,
)
from tests.conftest import MARKER_SECRETS, run_stack
from tests.identity.envoy_harness import (
    JUDGE_SESSION_COOKIE, EnvoyGateway, gateway_bootstrap, send, start_echo_upstream, start_fake_auth_proxy,
)
from tests.plans import evaluated_plan
from tests.test_gateway_judge import _filter_chain, _virtual_hosts
from tests.upstream import manifests_path, upstream_objects
from tools.plan import kubernetes_objects
from tools.preview import Progress, evaluate

KFAM = "system:serviceaccount:kubeflow:profiles-controller-service-account"
SELF_SERVICE = {"tenancy.selfService.emailDomains": ["example.com"], "tenancy.selfService.namePrefix": "u-",
                "tenancy.selfService.templateEngine": "kyverno", "tenancy.selfService.template.quota.cpu": "8"}


def objects_of(plan) -> list[dict]:
    return [found.obj for found in kubernetes_objects(plan).objects]


def profile(name: str, owner: str, **spec) -> dict:
    return {"apiVersion": "kubeflow.org/v1", "kind": "Profile", "metadata": {"name": name},
            "spec": {"owner": {"kind": "User", "name": owner}, **spec}}


_SELF_SERVICE_PLAN: list = []


def self_service_plan() -> dict:
    if not _SELF_SERVICE_PLAN:
        plan, _ = evaluate("dev", manifests=str(manifests_path("26.03")), kubeflow_version="26.03", secrets=MARKER_SECRETS,
                           progress=Progress(io.StringIO()), settings=SELF_SERVICE)
        _SELF_SERVICE_PLAN.append(plan)
    return _SELF_SERVICE_PLAN[0]


# --------------------------------------------------------------------------------------- the gateway

@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_dashboards_profile_creation_is_refused_at_the_gateway_for_every_caller(stack):
    plan, _ = evaluated_plan(stack)
    model = t.model_from_plan(plan)
    host = model.settings.hosts[0]
    owner = model.profiles()["alice"]
    callers = [t.browser(owner), t.browser("trace-stranger@example.com")]
    for caller in callers:
        for path in ("/api/workgroup/create", "/api/workgroup/create/", "/API/Workgroup/CREATE", "/api/workgroup/create?x=1"):
            trace = t.trace_request(model, f"https://{host}{path}", caller, "POST")
            assert not trace.reached and trace.status == 403, (caller.label, path, t.render(trace))
            assert trace.refused_at.decided_by == f"VirtualService kubeflow/{REGISTRATION_ROUTE}"
        # The rest of the dashboard, and its other calls, stay as they were.
        assert t.trace_request(model, f"https://{host}/", caller).reached
        assert t.trace_request(model, f"https://{host}/api/workgroup/exists", caller).reached
        assert t.trace_request(model, f"https://{host}/api/workgroup/add-contributor/alice", caller, "POST").reached
    cells = [c for c in trace_matrix.matrix(model) if c.row.kind == "registration"]
    assert cells and all(c.ok for c in cells) and all(c.outcome == trace_matrix.REFUSE for c in cells if c.trace)


def test_without_the_route_the_matrix_shows_the_dashboard_creating_profiles():
    plan, _ = evaluated_plan("dev")
    model = t.model_from_plan(plan)
    model = t.MeshModel([o for o in model.objects if (o.get("metadata") or {}).get("name") != REGISTRATION_ROUTE], model.settings)
    problems = trace_matrix.problems(trace_matrix.matrix(model))
    assert any("POST /api/workgroup/create" in p and "let through" in p for p in problems), problems


def test_kfam_is_reachable_from_the_dashboard_alone():
    plan, _ = evaluated_plan("prod")
    model = t.model_from_plan(plan)
    for caller in (t.workload("alice", "default-editor", {"notebook-name": "x"}), t.workload("bob", "default-editor")):
        trace = t.trace_request(model, "http://profiles-kfam.kubeflow.svc.cluster.local:8081/kfam/v1/profiles", caller, "POST")
        assert not trace.reached, t.render(trace)
        # Nor does a tenant's pod reach the dashboard's own endpoint in the mesh, around the gateway.
        trace = t.trace_request(model, "http://centraldashboard.kubeflow.svc.cluster.local:80/api/workgroup/create", caller, "POST")
        assert not trace.reached, t.render(trace)
    # Without a network policy engine the NetworkPolicy above holds nothing; kfam's own AuthorizationPolicy
    # admits the central dashboard's account alone (upstream's, kept).
    kfam = next(p for p in model.kind("AuthorizationPolicy") if p["metadata"]["name"] == "profiles-kfam")
    assert [s["source"]["principals"] for r in kfam["spec"]["rules"] for s in r["from"]] == [["cluster.local/ns/kubeflow/sa/centraldashboard"]]


# ------------------------------------------------------------------------------------ the API server

@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_api_server_refuses_every_profile_kfam_creates_unless_self_service(stack):
    plan, _ = evaluated_plan(stack)
    objects = objects_of(plan)
    policies = evaluation.policies(objects)
    policy = policies[PROFILE_POLICY]
    assert kfam_user(upstream_objects("26.03")) == KFAM
    for name, owner in (("mallory", "mallory@example.com"), ("alice", "bob@example.com"), ("u-dan", "dan@example.com")):
        verdict = evaluation.evaluate(policy, profile(name, owner), user=KFAM)
        assert not verdict.admitted and "self-service profiles are off" in verdict.refusals[0]
    # The platform team's own applies (pulumi up) are not judged by it.
    assert evaluation.evaluate(policy, profile("alice", "alice@example.com"), user="arn:aws:sts::222222222222:assumed-role/deployer").admitted
    assert any(o["kind"] == "ValidatingAdmissionPolicyBinding" and o["metadata"]["name"] == PROFILE_POLICY for o in objects)


def test_self_service_lets_a_user_have_one_profile_named_after_them_and_nothing_else():
    policy = profile_policy(KFAM, self_service_domains=["example.com"], name_prefix="u-", declared_names=["alice"],
                            declared_owners=["alice@example.com"])[0]
    admitted = [profile("u-mallory", "mallory@example.com"), profile("u-first-last", "first-last@example.com")]
    refused = {
        "another name": profile("mallory", "mallory@example.com"),
        "a colleague's name": profile("u-bob", "mallory@example.com"),
        "a foreign domain": profile("u-mallory", "mallory@gmail.com"),
        "a domain that ends like it": profile("u-mallory", "mallory@example.com.evil.io"),
        "a subdomain": profile("u-mallory", "mallory@corp.example.com"),
        "a group as owner": {**profile("u-team", "team@example.com"), "spec": {"owner": {"kind": "Group", "name": "team@example.com"}}},
        "a quota of its own": profile("u-mallory", "mallory@example.com", resourceQuotaSpec={"hard": {"requests.nvidia.com/gpu": "64"}}),
        "plugins": profile("u-mallory", "mallory@example.com", plugins=[{"kind": "AwsIamForServiceAccount", "spec": {"awsIamRole": "arn:aws:iam::1:role/x"}}]),
        "the owner of a declared profile": profile("u-alice", "alice@example.com"),
    }
    for body in admitted:
        assert evaluation.evaluate(policy, body, user=KFAM).admitted, body
    for why, body in refused.items():
        verdict = evaluation.evaluate(policy, body, user=KFAM)
        assert not verdict.admitted, why
        assert not any("evaluation error" in r for r in verdict.refusals), (why, verdict.refusals)


# ------------------------------------------------------------------------------------- self-service

def test_self_service_opens_the_gateway_to_its_domains_only():
    model = t.model_from_plan(self_service_plan())
    host = model.settings.hosts[0]
    assert model.settings.self_service_domains == ("example.com",)
    assert t.trace_request(model, f"https://{host}/api/workgroup/create", t.browser("dan@example.com"), "POST").reached
    machine = next(i for i in model.settings.issuers if i.machine_user)
    assert machine.machine_user.endswith("@machines.example.com")
    cells = [c for c in trace_matrix.matrix(model) if c.row.kind == "registration"]
    assert all(c.ok for c in cells), [c.problem() for c in cells if not c.ok]
    assert {c.caller_kind for c in cells if c.outcome == trace_matrix.REACH} >= {"owner", "stranger"}
    assert "machine" not in {c.caller_kind for c in cells if c.outcome == trace_matrix.REACH}


def test_self_service_profiles_get_the_declared_guardrails_from_the_template():
    objects = objects_of(self_service_plan())
    template = next(o for o in objects if o["kind"] == "ClusterPolicy" and o["metadata"]["name"] == SELF_SERVICE_TEMPLATE_POLICY)
    assert template["spec"]["generateExisting"] is True
    generated = {(r["generate"]["kind"], r["generate"]["name"]): r for r in template["spec"]["rules"]}
    assert set(generated) >= {("ResourceQuota", "profile-quota"), ("NetworkPolicy", "allow-serving-system"),
                              ("AuthorizationPolicy", "kubeflow-identity-header-from-gateway-only"),
                              ("AuthorizationPolicy", "allow-serving-system-predictor")}
    for rule in generated.values():
        assert rule["generate"]["synchronize"] is True and rule["generate"]["namespace"] == "{{request.object.metadata.name}}"
        assert rule["match"]["any"][0]["resources"]["selector"]["matchLabels"] == {"app.kubernetes.io/part-of": "kubeflow-profile"}
        assert rule["exclude"]["any"][0]["resources"]["selector"]["matchExpressions"][0]["key"] == DECLARED_PROFILE_LABEL
    assert generated[("ResourceQuota", "profile-quota")]["generate"]["data"]["spec"]["hard"] == {
        "requests.nvidia.com/gpu": "0", "requests.cpu": "8"}
    # The identity-header policy is the declared profiles' own, namespace aside.
    declared = next(o for o in objects if o["kind"] == "AuthorizationPolicy" and o["metadata"]["name"] == "kubeflow-identity-header-from-gateway-only"
                    and o["metadata"].get("namespace") == "alice")
    assert generated[("AuthorizationPolicy", "kubeflow-identity-header-from-gateway-only")]["generate"]["data"]["spec"] == declared["spec"]
    # Declared namespaces carry the mark that keeps the template off them.
    assert next(o for o in objects if o["kind"] == "Namespace" and o["metadata"]["name"] == "alice")["metadata"]["labels"][DECLARED_PROFILE_LABEL] == "declared"


def test_self_service_pods_get_the_templates_gpu_access_at_admission():
    objects = objects_of(self_service_plan())
    policy = evaluation.policies(objects)[SELF_SERVICE_POD_POLICY]
    runtime = {"app.kubernetes.io/part-of": "kubeflow-profile"}
    assert evaluation.bindings_for(objects, runtime) and not any(
        b["spec"]["policyName"] == SELF_SERVICE_POD_POLICY for b in evaluation.bindings_for(objects, {**runtime, DECLARED_PROFILE_LABEL: "declared"}))
    ordinary = evaluation.tenant_pod("u-mallory")
    assert evaluation.evaluate(policy, ordinary).admitted
    gpu = evaluation._notebook("u-mallory", resources={"limits": {"nvidia.com/gpu": "1"}})
    tolerating = {**evaluation.tenant_pod("u-mallory")}
    tolerating["spec"] = {**tolerating["spec"], "tolerations": [{"key": "workload", "operator": "Equal", "value": "ai-ml", "effect": "NoSchedule"}]}
    everything = {**evaluation.tenant_pod("u-mallory")}
    everything["spec"] = {**everything["spec"], "tolerations": [{"operator": "Exists"}]}
    for pod in (gpu, tolerating, everything):
        assert not evaluation.evaluate(policy, pod).admitted, pod["spec"]


@pytest.mark.parametrize("overrides,expected", [
    ({"emailDomains": ["example.com"]}, "tenancy.selfService.templateEngine: required with emailDomains"),
    ({"emailDomains": ["*.example.com"], "templateEngine": "kyverno"}, "tenancy.selfService.emailDomains"),
    ({"emailDomains": ["example.com"], "templateEngine": "kyverno", "template": {"gpuPools": ["nope"], "quota": {"gpus": 1}}},
     "tenancy.selfService.template.gpuPools[0]: 'nope' is not a gpu.pools name"),
    ({"namePrefix": "u-"}, "namePrefix and template take effect only with emailDomains"),
    ({"emailDomains": ["example.com"], "templateEngine": "kyverno", "namePrefix": "U_"}, "tenancy.selfService.namePrefix"),
])
def test_self_service_settings_are_checked_with_their_key(overrides, expected):
    from tools.mock_runtime import stack_config
    tenancy = dict(stack_config("dev")["kubeflow-platform:tenancy"])
    tenancy["selfService"] = overrides
    with pytest.raises(pulumi.RunError) as caught:
        run_stack("dev", {"tenancy": tenancy})
    assert expected in str(caught.value)
    assert "Traceback" not in str(caught.value)


# ------------------------------------------------------------------- self-service through real Envoy
#
# The gateway of the plan (the identity EnvoyFilter's filters where its patches put them, the policies, the routes;
# tests/test_gateway_judge.py builds it as istiod would) run in the pinned Envoy, a stand-in auth proxy logging in
# whoever the session cookie names, and an echo server standing in for the dashboard: what the echo server gets is
# what the dashboard's create handler would read (its JSON parser reads `application/json` bodies only:
# kubeflow/kubeflow@v1.10.0 components/centraldashboard/app/server.ts:65 `express.json()`).

BOB = {"namespace": "u-bob", "user": "bob@example.com"}


class Gateway:
    def __init__(self, model: t.MeshModel, port: int) -> None:
        self.model, self.port, self.host = model, port, model.settings.hosts[0]

    def post(self, who: str | None, path: str = "/api/workgroup/create",
             body: bytes | None = None, headers: tuple = (("content-type", "application/json"),),
             chunked: bool = False):
        sent = list(headers)
        if who is not None:
            sent.append(("cookie", f"{JUDGE_SESSION_COOKIE}={who}"))
        if body is not None and not chunked:
            sent.append(("content-length", str(len(body))))
        return send(self.port, sent, path, self.host, "POST", body, chunked)


def _gateway(plan: dict, workdir: Path) -> Iterator[Gateway]:
    model = t.model_from_plan(plan)
    echo, auth = start_echo_upstream(), start_fake_auth_proxy()
    try:
        bootstrap = gateway_bootstrap(_filter_chain(model, auth.port), echo.port, auth.port, _virtual_hosts(model))
        with EnvoyGateway(bootstrap, workdir) as envoy:
            yield Gateway(model, envoy.port)
    finally:
        echo.stop()
        auth.stop()


@pytest.fixture(scope="module")
def self_service_gateway(tmp_path_factory) -> Iterator[Gateway]:
    yield from _gateway(self_service_plan(), tmp_path_factory.mktemp("envoy-self-service"))


@pytest.fixture(scope="module")
def closed_gateway(tmp_path_factory) -> Iterator[Gateway]:
    yield from _gateway(evaluated_plan("dev")[0], tmp_path_factory.mktemp("envoy-closed"))


def _own(got, email: str, name: str) -> None:
    """The dashboard stand-in got exactly the caller's own profile, as JSON of the right length, as the caller."""
    assert got.status == 200, got
    assert json.loads(got.upstream_body) == {"namespace": name, "user": email}, got.upstream_body
    assert got.values("content-type") == ["application/json"]
    assert not got.values("content-encoding")
    lengths = got.values("content-length")
    assert lengths == [str(len(got.upstream_body))] or (not lengths and got.values("transfer-encoding") == ["chunked"])
    assert got.values("kubeflow-userid") == [email]


HUGE = json.dumps({**BOB, "padding": "x" * (4 * 1024 * 1024)}).encode()
VARIANTS = {
    "a colleague's profile": dict(body=json.dumps(BOB).encode()),
    "no body": dict(body=None, headers=()),
    "an empty body": dict(body=b""),
    "extra fields": dict(body=json.dumps({**BOB, "admin": True, "resourceQuotaSpec": {"hard": {"cpu": "999"}}}).encode()),
    "repeated keys (the last one wins in JSON.parse)": dict(body=b'{"namespace": "u-alice", "namespace": "u-bob", "user": "bob@example.com"}'),
    "chunked": dict(body=json.dumps(BOB).encode(), chunked=True),
    "a huge chunked body": dict(body=HUGE, chunked=True),
    "text/plain": dict(body=json.dumps(BOB).encode(), headers=(("content-type", "text/plain"),)),
    "a form": dict(body=b"namespace=u-bob&user=bob%40example.com", headers=(("content-type", "application/x-www-form-urlencoded"),)),
    "a JSON subtype": dict(body=json.dumps(BOB).encode(), headers=(("content-type", "application/merge-patch+json"),)),
    "gzip": dict(body=json.dumps(BOB).encode(), headers=(("content-type", "application/json"), ("content-encoding", "gzip"))),
    "upper-case path": dict(path="/API/Workgroup/CREATE", body=json.dumps(BOB).encode()),
    "trailing slash and query": dict(path="/api/workgroup/create/?namespace=u-bob", body=json.dumps(BOB).encode()),
    "a spoofed kubeflow-userid": dict(body=json.dumps(BOB).encode(), headers=(
        ("content-type", "application/json"), ("kubeflow-userid", "bob@example.com"), ("kubeflow_userid", "bob@example.com"))),
    "a spoofed auth proxy header": dict(body=json.dumps(BOB).encode(), headers=(
        ("content-type", "application/json"), ("x-auth-request-email", "bob@example.com"))),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_with_self_service_the_dashboard_gets_the_callers_own_profile_whatever_the_body(self_service_gateway, variant):
    got = self_service_gateway.post("alice@example.com", **VARIANTS[variant])
    _own(got, "alice@example.com", "u-alice")


def test_the_callers_own_profile_is_named_from_the_lower_cased_identity(self_service_gateway):
    # auth.lowercase (on by default) lower-cases the login before the filter reads it; the name follows, and the
    # domain is compared lower-cased too.
    for login in ("DAN@example.com", "Dan@Example.COM"):
        _own(self_service_gateway.post(login, body=json.dumps(BOB).encode()), "dan@example.com", "u-dan")


def test_a_body_too_long_to_be_a_profile_creation_is_refused_unread(self_service_gateway):
    got = self_service_gateway.post("alice@example.com", body=HUGE)
    assert got.status == 413 and not got.upstream_body


@pytest.mark.parametrize("who,why", [
    ("eve@evil.io", "a foreign domain"),
    ("eve@example.com.evil.io", "a domain that ends like it"),
    ("first.last@example.com", "a local part that is no DNS label"),
    (None, "nobody logged in"),
])
def test_with_self_service_callers_who_cannot_have_a_profile_are_refused(self_service_gateway, who, why):
    got = self_service_gateway.post(who, body=json.dumps(BOB).encode())
    assert got.status in ((302, 401) if who is None else (403,)), (why, got.status)
    assert not got.upstream_body, why


def test_the_dashboards_other_calls_keep_their_bodies(self_service_gateway):
    body = json.dumps({"contributor": "bob@example.com", "role": "edit"}).encode()
    got = self_service_gateway.post("alice@example.com", path="/api/workgroup/add-contributor/alice", body=body)
    assert got.status == 200 and got.upstream_body == body.decode()


@pytest.mark.parametrize("who", ["alice@example.com", "trace-stranger@example.com", "eve@evil.io"])
@pytest.mark.parametrize("path", ["/api/workgroup/create", "/API/Workgroup/CREATE", "/api/workgroup/create/"])
def test_without_self_service_envoy_refuses_every_callers_profile_creation(closed_gateway, who, path):
    got = closed_gateway.post(who, path=path, body=json.dumps(BOB).encode())
    assert got.status == 403 and not got.upstream_body
    chunked = closed_gateway.post(who, path=path, body=HUGE, chunked=True)
    assert chunked.status == 403 and not chunked.upstream_body


def test_the_registration_filter_sits_after_the_identity_filter_and_only_with_self_service():
    def chain(plan) -> list[str]:
        model = t.model_from_plan(plan)
        return [f["name"] for f in _filter_chain(model, 1)]
    closed, opened = chain(evaluated_plan("dev")[0]), chain(self_service_plan())
    assert REGISTRATION_BODY_FILTER_NAME not in closed
    assert opened[-2:] == ["kubeflow-platform.identity-headers", REGISTRATION_BODY_FILTER_NAME]


def test_the_admission_policy_admits_exactly_the_profile_the_gateway_makes(self_service_gateway):
    # What reaches the dashboard is what kfam asks the API server for; the policy of the same plan must admit it,
    # for a lower-cased login too, and refuse the colleague's profile the body asked for.
    objects = objects_of(self_service_plan())
    policy = evaluation.policies(objects)[PROFILE_POLICY]
    for login in ("dan@example.com", "Dan@Example.COM"):
        sent = json.loads(self_service_gateway.post(login, body=json.dumps(BOB).encode()).upstream_body)
        made = profile(sent["namespace"], sent["user"])
        assert evaluation.evaluate(policy, made, user=KFAM).admitted, made
    declared_owner = json.loads(self_service_gateway.post("alice@example.com", body=b"{}").upstream_body)
    assert not evaluation.evaluate(policy, profile(declared_owner["namespace"], declared_owner["user"]), user=KFAM).admitted


def test_the_trace_tables_claims_on_the_self_service_plan_are_what_envoy_does(tmp_path):
    from tests.test_gateway_judge import judge

    echo, auth = start_echo_upstream(), start_fake_auth_proxy()
    try:
        judged, disagreements = judge("dev", (echo, auth), tmp_path / "envoy", t.model_from_plan(self_service_plan()))
    finally:
        echo.stop()
        auth.stop()
    assert judged > 60 and not disagreements, "\n".join(disagreements)


def test_without_lower_casing_a_login_that_gives_no_profile_name_is_refused_at_the_gateway(tmp_path):
    # auth.lowercase off: kubeflow-userid keeps the IdP's case. `u-DAN` is no object name the API server accepts
    # (lower-case DNS names only); the filter refuses with the reason instead of passing the dashboard a body kfam
    # cannot create. Only the filter runs here, given the header as the identity filter would set it.
    from manifests.admission import registration_body_filter

    echo = start_echo_upstream()
    try:
        chain = [registration_body_filter(user_header="kubeflow-userid", user_id_prefix="", name_prefix="u-",
                                          email_domains=["example.com"])]
        with EnvoyGateway(gateway_bootstrap(chain, echo.port), tmp_path / "envoy") as envoy:
            body = json.dumps(BOB).encode()
            for login, status in (("DAN@example.com", 403), ("dan@example.com", 200)):
                got = send(envoy.port, [("kubeflow-userid", login), ("content-length", str(len(body)))],
                           "/api/workgroup/create", "kubeflow.example.com", "POST", body)
                assert got.status == status, login
        policy = profile_policy(KFAM, self_service_domains=["example.com"], name_prefix="u-")[0]
        assert evaluation.evaluate(policy, profile("u-dan", "dan@example.com"), user=KFAM).admitted
    finally:
        echo.stop()
