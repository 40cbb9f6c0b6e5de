"""Profiles exist only as the platform team intends (docs/profiles.md, "Profiles created at run time").

By default nobody creates a profile through the dashboard: its `POST /api/workgroup/create` is answered with 403
by the gateway for every caller, whatever the case of the path, and the API server refuses any Profile kfam
creates. `tenancy.selfService` opens both for chosen email domains: one profile per user, named from the owner's
email, with no quota or plugins of its own, and the template's guardrails applied at run time (a Kyverno generate
policy) and at admission (GPU access, Pod Security).
"""

from __future__ import annotations

import io

import pulumi
import pytest

from analysis import admission as evaluation
from analysis import trace as t
from analysis import trace_matrix
from manifests.admission import (
    DECLARED_PROFILE_LABEL, PROFILE_POLICY, REGISTRATION_ROUTE, SELF_SERVICE_POD_POLICY, SELF_SERVICE_TEMPLATE_POLICY,
    kfam_user, profile_policy,
)
from tests.conftest import MARKER_SECRETS, run_stack
from tests.plans import evaluated_plan
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
