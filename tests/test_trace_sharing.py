"""Alike profiles traced once (analysis/trace_sharing.py): the same answers, byte for byte, as tracing each in full."""

from __future__ import annotations

import io
import json

import pytest

from analysis import runtime_trace as rt
from analysis import trace as t
from analysis import trace_matrix as tm
from analysis import trace_sharing
from analysis.plan_objects import yaml_stream_documents
from tests.conftest import MARKER_SECRETS
from tests.plans import evaluated_plan
from tests.upstream import CURRENT_VERSION, manifests_path
from tools.bench_case import generated_tenancy, machine_users
from tools.preview import Progress, evaluate, mesh_trace

EDITED = "user0080"


def _trace_section(plan, monkeypatch, sharing: bool) -> tuple[str, list[str]]:
    monkeypatch.setenv(trace_sharing.SHARING_ENV, "1" if sharing else "0")
    return mesh_trace(plan)


@pytest.fixture(scope="module")
def varied_plan():
    """100 generated profiles, some made different: more contributors, a group, none; and one profile's kfam view
    policy edited in the plan (its ConfigGroup's documents), as a hand edit would."""
    tenancy = generated_tenancy(100, machine_users("dev"))
    profiles = tenancy["profiles"]
    profiles[37]["contributors"] = [*profiles[37]["contributors"], {"user": "user0040@example.com", "role": "edit"}]
    profiles[55]["contributors"] = [{"group": "everyone", "role": "view"}]
    profiles[70].pop("contributors")
    plan, _ = evaluate("dev", manifests=str(manifests_path(CURRENT_VERSION)), kubeflow_version=CURRENT_VERSION,
                       secrets=MARKER_SECRETS, progress=Progress(io.StringIO()), settings={"tenancy": tenancy})
    group = next(r for r in plan["resources"] if r["name"] == f"tenancy-{EDITED}-namespace")
    documents = list(yaml_stream_documents(group["inputs"]["yaml"]))
    policy = next(d for d in documents if d and d["kind"] == "AuthorizationPolicy"
                  and (d["metadata"].get("annotations") or {}).get("role") == "view")
    policy["spec"]["rules"][0]["when"][0]["values"] = ["someone-else@example.com"]
    group["inputs"]["yaml"] = "\n---\n".join(json.dumps(d) for d in documents if d)
    return plan


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_trace_section_is_the_same_with_and_without_sharing(stack, monkeypatch):
    plan, _ = evaluated_plan(stack)
    shared = _trace_section(plan, monkeypatch, True)
    assert shared == _trace_section(plan, monkeypatch, False)
    assert "Mesh trace" in shared[0] and "Run-time paths" in shared[0]


def test_a_hundred_profiles_some_different_trace_the_same_with_and_without_sharing(varied_plan, monkeypatch):
    shared = _trace_section(varied_plan, monkeypatch, True)
    assert shared == _trace_section(varied_plan, monkeypatch, False)
    # The edited policy's viewer is refused on that profile's notebook, and the preview says so (both ways alike).
    assert any(f"/notebook/{EDITED}/" in p and "(view)" in p for p in shared[1])
    assert "every other profile (99)" in shared[0]


def test_alike_profiles_share_a_class_and_every_different_one_is_traced_on_its_own(varied_plan):
    model = t.model_from_plan(varied_plan)
    classes = trace_sharing.classes(model)
    assert sorted(name for members in classes for name in members) == sorted(model.profiles())  # nothing skipped
    of = {name: members for members in classes for name in members}
    # Most generated profiles are alike (a viewer each; every tenth with a GPU pool and quota).
    assert "user0002" in of["user0003"] and "user0020" in of["user0010"] and "user0003" not in of["user0010"]
    assert len(classes) < 15
    # The hand-edited policy, the extra contributor, the group and the profile without contributors: keys of their own.
    for name in (EDITED, "user0037", "user0055", "user0070"):
        assert of[name] == [name], name


def test_a_profile_whose_policy_is_edited_gets_its_own_answer(varied_plan):
    model = t.model_from_plan(varied_plan)
    cells = tm.matrix(model, share=True)

    def notebook(profile):
        return {c.caller_kind: c for c in cells if c.row.kind == "notebook" and c.row.profile == profile and c.row.host is None}

    edited, alike = notebook(EDITED), notebook("user0081")
    assert edited["view"].outcome == tm.REFUSE and not edited["view"].ok
    assert alike["view"].outcome == tm.REACH and alike["view"].ok
    assert edited["owner"].outcome == alike["owner"].outcome == tm.REACH
    assert cells == tm.matrix(model, share=False)


def test_the_run_time_trace_covers_every_profile_with_and_without_sharing(varied_plan):
    model, mesh = rt.model_from_plan(varied_plan)
    shared = rt.every_profile(model, mesh, share=True)
    assert list(shared) == list(model.profiles())
    assert shared == rt.every_profile(model, mesh, share=False)
    # Each profile's paths are its own: the pods and Services they call are in its namespace.
    assert all(any(f".{profile}" in p.label for p in found) for profile, found in shared.items())


def test_renaming_leaves_names_inside_other_words_alone():
    rename = trace_sharing.Renamer(trace_sharing.Identity("ann", ("ann@example.com",)),
                                   trace_sharing.Identity("bob", ("bob@example.com",)))
    assert rename("/notebook/ann/x/ ann@example.com kubeflow-ann-example-com banner ann1") == \
        "/notebook/bob/x/ bob@example.com kubeflow-bob-example-com banner ann1"
    caller = t.browser("ann@example.com", "ann@example.com (owner of ann)")
    assert rename(caller) == t.browser("bob@example.com", "bob@example.com (owner of bob)")
    untouched = t.anonymous()
    assert rename(untouched) is untouched


def test_run_time_problems_of_alike_profiles_are_read_renamed_and_the_same_as_traced_in_full(varied_plan, monkeypatch):
    """A policy of the root namespace refusing everything: every profile's run-time paths fail, each problem naming
    its profile's own hosts and people; with the sharing each member's problems are its class's first's renamed."""
    plan = json.loads(json.dumps(varied_plan))
    core = next(r for r in plan["resources"] if r["name"] == "kubeflow-core")
    deny = {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": "refuse-everything", "namespace": "istio-system"},
            "spec": {"action": "DENY", "rules": [{"to": [{"operation": {"notPorts": ["1"]}}]}]}}
    core["inputs"]["yaml"] += "\n---\n" + json.dumps(deny) + "\n"
    shared = _trace_section(plan, monkeypatch, True)
    assert shared == _trace_section(plan, monkeypatch, False)
    named = [p for p in shared[1] if "in profile user0042:" in p and "user0042.svc" not in p and ".user0042:" in p]
    assert named and not any("user0041" in p for p in named)
    model, mesh = rt.model_from_plan(plan)
    found = rt.every_profile(model, mesh, share=True)
    assert isinstance(found, trace_sharing.SharedAnswers)
    problems = trace_sharing.each(found, rt.problems)
    # Read without building the members' answers: only the traced ones (each class's first and second) are held.
    assert len(found._answers) < 30
    assert problems == {name: rt.problems(paths) for name, paths in rt.every_profile(model, mesh, share=False).items()}


def test_what_is_read_of_alike_answers_falls_back_to_each_answer_where_renaming_would_not_hold():
    ids = {name: trace_sharing.Identity(name, (f"{name}@example.com",)) for name in ("ann", "bobby", "carla")}
    answers = {"ann": ["ann", "ann@example.com"], "bobby": ["bobby", "bobby@example.com"]}
    found = trace_sharing.SharedAnswers(list(ids), dict(answers), {"carla": "ann"}, {"ann": "bobby"}, ids,
                                        {"ann": trace_sharing.Renaming(ids["ann"])})
    assert found["carla"] == ["carla", "carla@example.com"]
    # Joined by what is neither a letter nor a digit: renamed from the first's without building carla's answer.
    fresh = trace_sharing.SharedAnswers(list(ids), dict(answers), {"carla": "ann"}, {"ann": "bobby"}, ids,
                                        {"ann": trace_sharing.Renaming(ids["ann"])})
    assert fresh.each(lambda answer: [" / ".join(answer)]) == {
        "ann": ["ann / ann@example.com"], "bobby": ["bobby / bobby@example.com"], "carla": ["carla / carla@example.com"]}
    assert "carla" not in fresh._answers and fresh.size("carla") == 2
    # Padded to the name's length: renaming the first's text would not give the second's, so each answer is read.
    padded = fresh.each(lambda answer: [f"{answer[0]:<5}|"])
    assert padded == {"ann": ["ann  |"], "bobby": ["bobby|"], "carla": ["carla|"]}
    assert "carla" in fresh._answers


def test_verdicts_alone_print_and_check_the_same_as_whole_traces(varied_plan):
    # What the preview keeps of every profile's traces (their verdicts) renders and reports what the whole ones do.
    model = t.model_from_plan(varied_plan)
    whole, kept = tm.matrix(model), tm.matrix(model, verdicts=True)
    assert kept == [c if c.trace is None else tm.Cell(c.row, c.caller_kind, c.expected, c.trace.verdict()) for c in whole]
    assert all(len(c.trace.hops) <= 1 for c in kept if c.trace is not None)
    assert tm.render_table(kept) == tm.render_table(whole) and tm.problems(kept) == tm.problems(whole)
    assert tm.problems(kept)  # the edited profile's viewer: a refusal, worded from the hop kept
    runtime_model, mesh = rt.model_from_plan(varied_plan, model)
    whole_paths, kept_paths = rt.every_profile(runtime_model, mesh), rt.every_profile(runtime_model, mesh, verdicts=True)
    assert kept_paths == {profile: [rt.RuntimePath(p.scenario, p.label, p.trace.verdict(), p.held) for p in found]
                          for profile, found in whole_paths.items()}
    assert rt.render_every_profile(kept_paths) == rt.render_every_profile(whole_paths)
    assert rt.problems_of_every_profile(kept_paths) == rt.problems_of_every_profile(whole_paths)
