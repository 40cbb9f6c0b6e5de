"""The mesh trace over both stacks' plans (analysis/trace_matrix.py), what the preview makes of it, and `make trace`."""

from __future__ import annotations

import copy
import json
import os
import subprocess

import pytest

from analysis import trace as t
from analysis import trace_matrix as tm
from tests.conftest import REPO_ROOT
from tests.plans import evaluated_plan
from tests.upstream import manifests_dir
from tools.preview import mesh_trace

RELEASES = ("26.03", "1.11.0", "1.10.2")


def _cells(plan):
    return tm.matrix(t.model_from_plan(plan))


@pytest.mark.parametrize("version", RELEASES)
@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_kubeflow_path_is_reachable_by_the_owner_and_no_one_else_gets_where_they_must_not(stack, version):
    plan, _ = evaluated_plan(stack, version)
    cells = _cells(plan)
    assert tm.problems(cells) == []
    reached = {(c.row.path, c.caller_kind) for c in cells if c.trace and c.trace.reached}
    for path in ("/", "/pipeline/", "/jupyter/", "/katib/", "/volumes/", "/tensorboards/", "/ml_metadata/"):
        assert (path, "owner") in reached
        assert (path, "anonymous") not in reached and (path, "other-workload") not in reached
    for profile in plan["outputs"]["profiles"]:
        assert (f"/notebook/{profile}/{t.TRACE_NOTEBOOK}/", "owner") in reached
        assert (f"/notebook/{profile}/{t.TRACE_NOTEBOOK}/", "forged") not in reached


def test_a_forged_header_reaches_a_notebook_when_the_identity_filter_does_not_apply():
    plan, _ = evaluated_plan("dev", "26.03")
    plan["outputs"]["meshTrace"]["gateway"]["labels"] = {"istio": "ingressgateway", "app": "other"}
    model = t.model_from_plan(plan)
    # The filter's workloadSelector is still a subset of these labels: it applies.
    forged = t.browser("mallory@example.com", headers={"kubeflow-userid": "alice@example.com"})
    url = f"https://{model.settings.hosts[0]}/notebook/alice/{t.TRACE_NOTEBOOK}/"
    assert not t.trace_request(model, url, forged).reached
    for obj in model.objects:
        if obj.get("kind") == "EnvoyFilter":
            obj["spec"]["workloadSelector"]["labels"] = {"istio": "some-other-gateway"}
    model = t.MeshModel(model.objects, model.settings)
    result = t.trace_request(model, url, forged)
    assert result.reached and result.user == "alice@example.com"
    hop = next(h for h in result.hops if h.step == "EnvoyFilter")
    assert hop.outcome == "info" and "does not apply" in hop.why


def test_the_preview_fails_naming_path_caller_and_hop_when_the_owner_is_refused():
    plan, _ = evaluated_plan("dev", "26.03")
    # Gateway pods that run under another account than the policies trust (the principal they name).
    plan["outputs"]["meshTrace"]["gateway"]["serviceAccount"] = "enterprise-gateway"
    table, problems = mesh_trace(plan)
    assert any(p.startswith("mesh trace: / [centraldashboard]: alice@example.com (owner of alice) (owner) should reach it "
                            "but is refused at DENY (AuthorizationPolicy kubeflow/kubeflow-identity-header-from-gateway-only") for p in problems), problems
    assert "!refused@DENY" in table


@pytest.mark.parametrize("mesh", [{"dataPlane": "sidecar-init", "mtls": "permissive"},
                                  {"dataPlane": "sidecar-cni", "mtls": "strict"}])
def test_each_sidecar_data_plane_keeps_every_path_as_expected(mesh):
    plan, _ = evaluated_plan("dev", "26.03")
    plan["outputs"]["transformReport"]["mesh"] = mesh
    model = t.model_from_plan(plan)
    assert model.settings.data_plane == mesh["dataPlane"] and model.settings.mtls == mesh["mtls"]
    assert tm.problems(tm.matrix(model)) == []


def _ambient(objects):
    """Namespaces enrolled as the ambient transformation enrols them (istio.io/dataplane-mode: ambient)."""
    objects = copy.deepcopy(objects)
    for obj in objects:
        if obj.get("kind") == "Namespace":
            labels = obj["metadata"].setdefault("labels", {})
            labels.pop("istio-injection", None)
            labels["istio.io/dataplane-mode"] = "ambient"
    return objects


def test_ambient_ztunnel_fails_safe_on_header_rules_and_a_waypoint_enforces_them():
    plan, _ = evaluated_plan("dev", "26.03")
    plan["outputs"]["transformReport"]["mesh"] = {"dataPlane": "ambient", "mtls": "strict"}
    model = t.model_from_plan(plan)
    model = t.MeshModel(_ambient(model.objects), model.settings)
    url = f"https://{model.settings.hosts[0]}/notebook/alice/{t.TRACE_NOTEBOOK}/"
    owner = t.browser("alice@example.com")
    refused = t.trace_request(model, url, owner)
    assert not refused.reached and refused.refused_at.step == "ALLOW"
    assert "cannot be enforced by ztunnel" in refused.refused_at.why
    # A waypoint for alice's namespace with the owner's policy attached to it: L7 at the waypoint, L4 at ztunnel.
    objects = copy.deepcopy(model.objects)
    for obj in objects:
        if obj.get("kind") == "Namespace" and obj["metadata"]["name"] == "alice":
            obj["metadata"]["labels"]["istio.io/use-waypoint"] = "waypoint"
    owner_policy = next(o for o in objects if o.get("kind") == "AuthorizationPolicy"
                        and o["metadata"] == {**o["metadata"], "name": t.OWNER_POLICY, "namespace": "alice"})
    attached = copy.deepcopy(owner_policy)
    attached["metadata"]["name"] = "owner-at-waypoint"
    attached["spec"]["targetRefs"] = [{"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "waypoint"}]
    objects.append(attached)
    # The identity-header DENY too: bound to ztunnel, its header condition is dropped and it refuses every caller
    # outside its list, the waypoint included (fail safe); bound to the waypoint it keeps its L7 meaning.
    for obj in objects:
        if obj.get("kind") == "AuthorizationPolicy" and obj["metadata"]["name"] == "kubeflow-identity-header-from-gateway-only" \
                and obj["metadata"]["namespace"] == "alice":
            obj["spec"]["targetRefs"] = [{"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "waypoint"}]
    reached = t.trace_request(t.MeshModel(objects, model.settings), url, owner)
    assert reached.reached, t.render(reached)
    assert [h.step for h in reached.hops if h.where.startswith("waypoint")][:1] == ["waypoint"]


# --- `make trace`, as a user runs it ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved_dev_plan(tmp_path_factory):
    plan, _ = evaluated_plan("dev", "26.03")
    directory = tmp_path_factory.mktemp("trace") / "dev"
    directory.mkdir()
    (directory / "plan.json").write_text(json.dumps(plan, sort_keys=True))
    return directory


def make_trace(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    env["KUBEFLOW_MANIFESTS_DIR"] = str(manifests_dir())
    return subprocess.run(["make", "trace", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_make_trace_exits_0_when_the_request_reaches_its_backend(saved_dev_plan):
    result = make_trace(f"STACK={saved_dev_plan}", "URL=https://kubeflow.dev.ml.example.com/pipeline/", "AS=alice@example.com")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "VirtualService kubeflow/ml-pipeline-ui" in result.stdout
    assert result.stdout.rstrip().endswith("Reached Deployment kubeflow/ml-pipeline-ui port 3000 as alice@example.com")


def test_make_trace_exits_1_and_names_the_hop_that_refused(saved_dev_plan):
    result = make_trace(f"STACK={saved_dev_plan}", "URL=https://kubeflow.dev.ml.example.com/notebook/alice/trace-notebook/",
                        "AS=carol@example.com")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Not reached (403): ALLOW at StatefulSet alice/trace-notebook (run time)" in result.stdout
    assert "***" not in result.stderr


@pytest.mark.parametrize("args, message", [
    (("URL=notaurl", "AS=anonymous"), "'notaurl' is not an http(s) URL with a host"),
    (("URL=https://kubeflow.dev.ml.example.com/", "AS=not-an-email"), "give the email of a logged-in user or `anonymous`"),
])
def test_make_trace_exits_2_on_a_bad_question(saved_dev_plan, args, message):
    result = make_trace(f"STACK={saved_dev_plan}", *args)
    assert result.returncode == 2
    assert message in result.stderr


def test_make_trace_without_a_caller_prints_its_usage():
    result = make_trace("STACK=dev", "URL=https://kubeflow.dev.ml.example.com/")
    assert result.returncode == 2
    assert "usage: make trace STACK=<stack|saved plan dir> URL=<url> AS=<email|anonymous>" in result.stderr


def test_a_path_without_its_trailing_slash_falls_to_the_dashboard_and_the_trace_says_why():
    plan, _ = evaluated_plan("dev", "26.03")
    model = t.model_from_plan(plan)
    result = t.trace_request(model, f"https://{model.settings.hosts[0]}/jupyter", t.browser("alice@example.com"))
    assert result.backend.startswith("Deployment kubeflow/centraldashboard")
    hint = next(h for h in result.hops if h.step == "route" and h.outcome == "info")
    assert "prefix '/jupyter/'" in hint.why and "trailing slash" in hint.why
