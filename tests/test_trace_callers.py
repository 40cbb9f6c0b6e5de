"""The trace's in-mesh callers as istiod injects them (analysis/trace.py `injector_webhook`, `has_sidecar`,
`caller_has_sidecar`): a caller has a sidecar only where the mesh's injection webhook and injectRequired would give
it one, and a caller without one is traced as plaintext, judged by PeerAuthentication like any sidecar-less pod."""

from __future__ import annotations

import copy

import pytest

from analysis import runtime_trace as rt
from analysis import trace as t
from analysis import trace_matrix as tm
from tests.plans import evaluated_plan

INJECT = t.INJECT


def _model(namespaces: dict[str, dict[str, str]], revision: str | None = None) -> t.MeshModel:
    objects = [{"kind": "Namespace", "metadata": {"name": name, "labels": dict(labels)}} for name, labels in namespaces.items()]
    return t.MeshModel(objects, t.MeshSettings(revision=revision))


def _pod(namespace: str, labels: dict | None = None, annotations: dict | None = None, host_network: bool = False) -> t.Workload:
    obj = {"kind": "Deployment", "spec": {"template": {"spec": {"hostNetwork": True} if host_network else {}}}}
    return t.Workload(obj, namespace, dict(labels or {}), dict(annotations or {}), "default", [])


DEFAULT_REVISION = _model({"injected": {"istio-injection": "enabled"}, "plain": {}, "off": {"istio-injection": "disabled"},
                           "rev-default": {"istio.io/rev": "default"}, "rev-other": {"istio.io/rev": "canary"}})
REVISIONED = _model({"injected": {"istio-injection": "enabled"}, "plain": {}, "rev": {"istio.io/rev": "prod-1-24"},
                     "rev-other": {"istio.io/rev": "canary"},
                     "both": {"istio.io/rev": "prod-1-24", "istio-injection": "enabled"}}, revision="prod-1-24")


@pytest.mark.parametrize("model, pod, injected", [
    # The default revision's `namespace` webhook, its object selector, then injectRequired.
    (DEFAULT_REVISION, _pod("injected"), True),
    (DEFAULT_REVISION, _pod("injected", {INJECT: "false"}), False),
    (DEFAULT_REVISION, _pod("injected", annotations={INJECT: "false"}), False),
    # The label is the newer API: it wins over the annotation (inject.go injectRequired).
    (DEFAULT_REVISION, _pod("injected", {INJECT: "true"}, {INJECT: "false"}), True),
    (DEFAULT_REVISION, _pod("injected", {INJECT: "false"}, {INJECT: "true"}), False),
    (DEFAULT_REVISION, _pod("injected", host_network=True), False),
    (DEFAULT_REVISION, _pod("off", {INJECT: "true"}), False),
    # No namespace label: only the pod's label selects the `object` webhook; an annotation selects nothing.
    (DEFAULT_REVISION, _pod("plain"), False),
    (DEFAULT_REVISION, _pod("plain", {INJECT: "true"}), True),
    (DEFAULT_REVISION, _pod("plain", annotations={INJECT: "true"}), False),
    (DEFAULT_REVISION, _pod("plain", {"istio.io/rev": "default"}), True),
    (DEFAULT_REVISION, _pod("rev-default"), True),
    (DEFAULT_REVISION, _pod("rev-other"), False),
    # A revisioned mesh: its `rev.namespace` and `rev.object` webhooks only.
    (REVISIONED, _pod("rev"), True),
    (REVISIONED, _pod("rev", annotations={INJECT: "false"}), False),
    (REVISIONED, _pod("rev-other"), False),
    (REVISIONED, _pod("injected"), False),
    (REVISIONED, _pod("both"), False),
    (REVISIONED, _pod("plain", {INJECT: "true"}), False),
    (REVISIONED, _pod("plain", {"istio.io/rev": "prod-1-24"}), True),
    (REVISIONED, _pod("plain", {"istio.io/rev": "prod-1-24", INJECT: "false"}), False),
])
def test_a_pod_gets_a_sidecar_exactly_where_istiods_webhook_injects_one(model, pod, injected):
    found, why = t.has_sidecar(model, pod)
    assert found is injected, why
    assert why


def test_the_reason_names_the_revision_a_namespace_label_does_not_select():
    _, why = t.has_sidecar(REVISIONED, _pod("injected"))
    assert "only the default revision's injector" in why and "prod-1-24" in why


def _strict(plan):
    plan = copy.deepcopy(plan)
    plan["outputs"]["transformReport"]["mesh"]["mtls"] = "strict"
    return plan


def _profiles_labelled(plan) -> t.MeshModel:
    """The plan's model with profile namespaces labelled as the profile controller labels them (Kubeflow's
    NetworkPolicies admit profile namespaces by those labels)."""
    return rt.model_from_plan(plan)[0]


def test_a_caller_that_opts_out_of_injection_is_traced_as_plaintext_and_reset_by_strict(dev):
    model = _profiles_labelled(_strict(dev))
    url = "http://ml-pipeline.kubeflow:8888/apis/v2beta1/runs"
    injected = t.trace_request(model, url, t.workload("alice", "default-editor", {"notebook-name": "x"}))
    assert injected.reached
    assert "mTLS from its sidecar" in injected.hops[0].why and "istio-injection: enabled" in injected.hops[0].why
    for opted_out in (t.workload("alice", "default-editor", {"notebook-name": "x", INJECT: "false"}),
                      t.workload("alice", "default-editor", {"notebook-name": "x"}, annotations={INJECT: "false"})):
        traced = t.trace_request(model, url, opted_out)
        assert not traced.reached
        assert traced.hops[0].step == "caller" and "has no sidecar" in traced.hops[0].why and "plaintext" in traced.hops[0].why
        assert traced.refused_at.step == "PeerAuthentication" and "STRICT and the caller sends plaintext" in traced.refused_at.why


def test_a_plaintext_caller_reaches_a_permissive_port_without_a_principal(dev):
    model = _profiles_labelled(dev)
    caller = t.workload("alice", "default-editor", {"notebook-name": "x", INJECT: "false"})
    traced = t.trace_request(model, "http://ml-pipeline.kubeflow:8888/apis/v2beta1/runs", caller)
    peer = next(h for h in traced.hops if h.step == "PeerAuthentication")
    assert peer.why == "PERMISSIVE; the caller sends plaintext"
    # No principal: the notebook's owner policy admits only the gateway's and the UI's principals with the header,
    # and same-namespace sources by namespace, which a plaintext caller does not have.
    notebook = t.trace_request(model, f"http://{t.TRACE_NOTEBOOK}.alice.svc.cluster.local/", caller)
    assert not notebook.reached and notebook.refused_at.step == "ALLOW"
    with_sidecar = t.trace_request(model, f"http://{t.TRACE_NOTEBOOK}.alice.svc.cluster.local/",
                                   t.workload("alice", "default-editor", {"notebook-name": "x"}))
    assert with_sidecar.reached


def test_a_caller_in_a_namespace_outside_the_mesh_sends_plaintext(dev):
    model = t.model_from_plan(dev)
    outside = dev["outputs"]["transformReport"]["mesh"]["namespacesOutsideMesh"]
    assert outside
    traced = t.trace_request(model, "http://centraldashboard.kubeflow.svc.cluster.local/", t.workload(outside[0], "default"))
    assert "istio-injection: disabled" in traced.hops[0].why and "plaintext" in traced.hops[0].why


def test_a_caller_in_a_namespace_the_plan_does_not_hold_is_taken_as_injected_and_says_so(dev):
    model = t.model_from_plan(dev)
    traced = t.trace_request(model, "http://centraldashboard.kubeflow.svc.cluster.local/", t.workload("elsewhere", "default"))
    assert "namespace elsewhere is not in the plan: taken as injected" in traced.hops[0].why


def test_the_run_time_trace_and_the_base_trace_judge_a_pod_alike(dev):
    """The run-time pods are callers of the base trace: one decision, one hop, whatever the caller."""
    model, _ = rt.model_from_plan(_strict(dev))
    driver = rt.kfp_pod(model, "alice", "KFP v2 driver")
    through_runtime = rt._call(model, driver, "ml-pipeline.kubeflow", 8887)
    through_base = t.trace_request(model, "http://ml-pipeline.kubeflow:8887/", driver.caller(), "POST")
    assert [(h.step, h.outcome, h.why) for h in through_runtime.hops] == [(h.step, h.outcome, h.why) for h in through_base.hops]
    assert "the pod opts out (annotation sidecar.istio.io/inject: false)" in through_base.hops[0].why
    assert through_base.refused_at.step == "PeerAuthentication"


@pytest.mark.parametrize("version", ["26.03", "1.11.0", "1.10.2"])
@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_in_mesh_caller_of_the_matrix_has_the_sidecar_its_plan_gives_it(stack, version):
    plan, _ = evaluated_plan(stack, version)
    model = t.model_from_plan(plan)
    cells = [c for c in tm.matrix(model) if c.trace is not None and c.trace.caller.kind == "workload"]
    assert cells
    for cell in cells:
        caller = cell.trace.caller
        assert caller.namespace in model.namespaces
        assert t.caller_has_sidecar(model, caller)[0]
        assert "mTLS from its sidecar" in cell.trace.hops[0].why
