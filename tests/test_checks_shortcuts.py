"""The offline checks' shortcuts find what the long way finds: each object still gets its own findings.

- guardrails: a plain object's strings are read in one pass that keeps only those the text rules could flag;
- the preview's checks read the plan's objects once for all of them;
- the hostile pods' admission stops at the first validation that refuses them.
"""

from __future__ import annotations

import copy
import json

import pytest

from analysis import admission as evaluation
from manifests import guardrails
from manifests.admission import pod_security_policy
from manifests.guardrails import GuardrailParams, PlannedObject, PlannedResource, Secret, Unknown, check_plan
from tests.upstream import upstream_objects
from tools import plan_checks

MIRROR = "registry.example.com/kubeflow"
PARAMS = GuardrailParams(mirror=MIRROR)
CONFIG_GROUP = "kubernetes:yaml/v2:ConfigGroup"


def _full_walk_findings(obj: dict, typed: bool = False) -> list[str]:
    """What the two string rules find walking every leaf (no shortcut)."""
    return (guardrails.images_from_approved_mirror(obj, MIRROR)
            + guardrails.no_static_credentials(obj, typed))


def _shortcut_findings(obj: dict, typed: bool = False) -> list[str]:
    leaves = guardrails._suspect_strings(obj)
    assert leaves is not None
    return (guardrails.images_from_approved_mirror(obj, MIRROR, leaves)
            + guardrails.no_static_credentials(obj, typed, leaves))


def test_the_string_rules_find_over_the_suspect_strings_what_they_find_over_every_leaf_of_the_release():
    # The release as upstream ships it: its images are public, so the rules have much to find.
    found = 0
    for obj in upstream_objects():
        expected = _full_walk_findings(obj)
        assert _shortcut_findings(obj) == expected, obj.get("metadata")
        found += len(expected)
    assert found > 100


@pytest.mark.parametrize("obj", [
    # A key ending in `image` (leaf `image` after a dotted key), a list of strings, a documentation key.
    {"kind": "ConfigMap", "metadata": {"name": "c", "annotations": {"x.image": "quay.io/a/b"}},
     "data": {"_example": "docker.io/a/b", "_example.x": "gcr.io/a/b", "list": "ghcr.io/a/b:1, registry.example.com/kubeflow/x",
              "image": "", "images": ["docker.io/a/b"]}},
    # A key id in a list, an image without a registry, a URL naming a public registry, numbers and booleans.
    {"kind": "Deployment", "metadata": {"name": "d", "namespace": "n"},
     "spec": {"replicas": 1, "paused": False, "template": {"spec": {"containers": [
         {"name": "c", "image": "busybox", "args": ["--key", "AKIAABCDEFGHIJKLMNOP", "https://docker.io/x/y"],
          "env": [{"name": "PASSWORD", "value": "hunter2"}, {"name": "TOKEN_FILE", "value": "/var/run/t"}]}]}}}},
    # Empty keys and odd nesting: the paths the walk prints must come out the same.
    {"kind": "ConfigMap", "metadata": {"name": "e"}, "": {"": {"image": "docker.io/a"}}, "data": [[{"image": "x"}]]},
])
def test_hand_written_objects_get_the_same_findings_and_paths_either_way(obj):
    expected = _full_walk_findings(obj)
    assert expected, "each case breaks a rule"
    assert _shortcut_findings(obj) == expected


@pytest.mark.parametrize("value", [Secret("docker.io/a/b"), Unknown("data.x"), ("docker.io/a/b",), 1j])
def test_an_object_holding_anything_but_plain_values_takes_the_full_walk(value):
    assert guardrails._suspect_strings({"kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"x": value}}) is None


def _profile_objects(profile: str, image: str = f"{MIRROR}/jupyter:1") -> list[dict]:
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "notebook-defaults", "namespace": profile},
         "data": {"image": image}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "tools", "namespace": profile},
         "spec": {"template": {"spec": {"containers": [{"name": "tools", "image": image}]}}}},
    ]


def test_a_public_image_in_one_profile_among_many_alike_ones_is_reported_and_named_by_that_profile():
    objects = [o for i in range(200) for o in _profile_objects(f"user{i:04d}", "docker.io/evil/tools:1" if i == 137 else
                                                                              f"{MIRROR}/jupyter:1")]
    resources = [PlannedResource(CONFIG_GROUP, "profiles", {"yaml": "\n---\n".join(json.dumps(o) for o in objects)})]
    report = check_plan(resources, PARAMS)
    assert report.violations == [
        "[images-from-approved-mirror] ConfigMap user0137/notebook-defaults: data.image 'docker.io/evil/tools:1' is not "
        f"from the approved mirror {MIRROR}",
        "[images-from-approved-mirror] Deployment user0137/tools: spec.template.spec.containers[0].image "
        f"'docker.io/evil/tools:1' is not from the approved mirror {MIRROR}",
    ]
    assert report.deferred == []


def test_a_finding_in_an_object_that_holds_a_deploy_time_value_is_still_deferred():
    # An object holding an unknown is read the full way, with tracking: the image rule's walk reads the unknown,
    # so its finding waits for deploy; the same object with a literal in its place is plain, and fails.
    def deployment(value):
        env = [{"name": "AWS_SECRET_ACCESS_KEY", "value": value}]
        return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "n"},
                "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "docker.io/a/b:1", "env": env}]}}}}

    image = ("[images-from-approved-mirror] Deployment n/d: spec.template.spec.containers[0].image 'docker.io/a/b:1' "
             f"is not from the approved mirror {MIRROR}")
    unknown = check_plan([], PARAMS, [PlannedObject(deployment(Unknown("env")), typed=True)])
    assert (unknown.violations, unknown.deferred) == ([], [image])
    literal = check_plan([], PARAMS, [PlannedObject(deployment("abc"), typed=True)])
    assert literal.deferred == []
    assert literal.violations == [image, "[no-static-credentials] Deployment n/d: containers[0] (c) env AWS_SECRET_ACCESS_KEY "
                                         "has a literal value; use valueFrom.secretKeyRef"]


# ------------------------------------------------------------------------------- one reading of the plan

def _plan(objects: list[dict]) -> dict:
    return {"resources": [{"urn": "urn:group", "type": CONFIG_GROUP, "name": "profiles", "dependencies": [],
                           "inputs": {"yaml": "\n---\n".join(json.dumps(o) for o in objects)}}],
            "outputs": {plan_checks.POLICY_PACK_CONFIG_EXPORT: {"images-from-approved-mirror": {"mirror": MIRROR}}}}


def test_a_plan_changed_after_its_checks_ran_is_read_again():
    plan = _plan(_profile_objects("alice"))
    assert plan_checks.guardrail_report(plan).violations == []
    plan["resources"][0]["inputs"]["yaml"] = "\n---\n".join(json.dumps(o) for o in _profile_objects("alice", "docker.io/x:1"))
    assert len(plan_checks.guardrail_report(plan).violations) == 2


def _groups_plan(images: dict[str, str]) -> dict:
    """A ConfigGroup per profile, each profile's Deployment running `images[profile]`."""
    plan = _plan([])
    plan["resources"] = [{"urn": f"urn:group-{name}", "type": CONFIG_GROUP, "name": f"tenancy-{name}",
                          "dependencies": [], "inputs": {"yaml": "\n---\n".join(json.dumps(o) for o in _profile_objects(name, image))}}
                         for name, image in images.items()]
    return plan


def _kept_report(plan: dict, directory, monkeypatch) -> guardrails.GuardrailReport:
    from tools.plan import group_sources, kubernetes_objects

    monkeypatch.setenv("KUBEFLOW_PLATFORM_CACHE_DIR", str(directory))
    return plan_checks.guardrail_report(plan, group_sources(plan, kubernetes_objects(plan)))


def test_findings_kept_beside_the_plan_are_what_checking_every_object_finds_and_only_changed_groups_are_read(
        tmp_path, monkeypatch):
    images = {f"user{i:04d}": f"{MIRROR}/jupyter:1" for i in range(20)}
    images["user0007"] = "docker.io/evil/tools:1"
    first = _kept_report(_groups_plan(images), tmp_path, monkeypatch)
    assert first.violations == plan_checks.guardrail_report(_groups_plan(images)).violations
    assert len(first.violations) == 2 and (tmp_path / "previews" / "guardrails.json").is_file()

    walked: list[str] = []
    suspect = guardrails._suspect_strings
    monkeypatch.setattr(guardrails, "_suspect_strings", lambda obj: walked.append(obj["metadata"].get("namespace")) or suspect(obj))
    assert _kept_report(_groups_plan(images), tmp_path, monkeypatch).violations == first.violations
    assert walked == []  # every group as it was: its findings read back, its objects not walked
    images["user0012"] = "quay.io/other/tools:2"
    changed = _kept_report(_groups_plan(images), tmp_path, monkeypatch)
    assert set(walked) == {"user0012"}
    monkeypatch.setattr(guardrails, "_suspect_strings", suspect)
    assert changed.violations == plan_checks.guardrail_report(_groups_plan(images)).violations
    assert len(changed.violations) == 4


def test_findings_kept_under_other_rules_or_in_a_broken_index_are_found_again(tmp_path, monkeypatch):
    images = {"ann": "docker.io/evil/tools:1", "bob": f"{MIRROR}/jupyter:1"}
    plan = _groups_plan(images)
    assert len(_kept_report(plan, tmp_path, monkeypatch).violations) == 2
    # Another mirror: the kept findings are another rule's, not read back.
    plan["outputs"][plan_checks.POLICY_PACK_CONFIG_EXPORT] = {"images-from-approved-mirror": {"mirror": "docker.io/evil"}}
    other = _kept_report(plan, tmp_path, monkeypatch)
    assert other.violations == plan_checks.guardrail_report(plan).violations and len(other.violations) == 2
    assert all("bob" in v for v in other.violations)
    kept = tmp_path / "previews" / "guardrails.json"
    kept.write_text('{"stamp": 1, "groups": [}')
    assert _kept_report(plan, tmp_path, monkeypatch).violations == other.violations
    # An entry that is not what the preview writes is found again.
    entries = json.loads(kept.read_text())
    kept.write_text(json.dumps({entry: ["not", "a", "mapping"] for entry in entries}))
    assert _kept_report(plan, tmp_path, monkeypatch).violations == other.violations


def test_the_checks_inside_one_reading_see_the_objects_read_once_and_only_for_that_plan():
    plan, other = _plan(_profile_objects("alice", "docker.io/x:1")), _plan(_profile_objects("bob"))
    with plan_checks.objects_read_once(plan) as objects:
        assert plan_checks.plan_objects(plan) is objects
        assert plan_checks.plan_objects(other) is not objects
        assert len(plan_checks.guardrail_report(plan).violations) == 2
        assert plan_checks.guardrail_report(other).violations == []
    assert plan_checks.plan_objects(plan) is not objects


# ------------------------------------------------------------------------------- pod admission

@pytest.mark.parametrize("data_plane", ["sidecar-init", "sidecar-cni", "ambient"])
def test_stopping_at_the_first_refusal_decides_every_pod_as_evaluating_every_validation_does(data_plane):
    policy = pod_security_policy(data_plane == "sidecar-init")[0]
    pods = {**evaluation.hostile_pods("alice", data_plane),
            "ordinary": evaluation.injected(evaluation.tenant_pod("alice"), data_plane)}
    # One pod that breaks two rules: the first one found is the one the full evaluation lists first.
    twice = copy.deepcopy(pods["hostNetwork"])
    twice["spec"]["containers"][0]["securityContext"] = {"privileged": True}
    pods["hostNetwork and privileged"] = twice
    for name, pod in pods.items():
        every = evaluation.evaluate(policy, pod)
        first = evaluation.evaluate(policy, pod, first_refusal=True)
        assert first.admitted == every.admitted, name
        assert first.refusals == every.refusals[:1], name
    assert len(evaluation.evaluate(policy, twice).refusals) == 2


# ------------------------------------------------------------------------------- verdicts of earlier previews

def _admission(verdicts):
    policy, *bindings = pod_security_policy(True)
    namespace = {"apiVersion": "v1", "kind": "Namespace",
                 "metadata": {"name": "alice", "labels": {"app.kubernetes.io/part-of": "kubeflow-profile"}}}
    workload = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "tools", "namespace": "alice"},
                "spec": {"template": {"spec": {"containers": [{"name": "tools", "image": f"{MIRROR}/tools:1"}]}}}}
    return evaluation.pod_admission([policy, *bindings, namespace, workload], None, "sidecar-init", verdicts=verdicts)


def test_a_second_preview_reads_every_verdict_back_and_evaluates_nothing(tmp_path, monkeypatch):
    from tools.admission_verdicts import StoredVerdicts

    first = _admission(StoredVerdicts(tmp_path))
    assert first.pods_admitted == 1 and first.hostile_refused == 21 and first.problems == ()

    def refuse(*args, **kwargs):
        raise AssertionError("evaluated again")

    monkeypatch.setattr(evaluation, "evaluate", refuse)
    assert _admission(StoredVerdicts(tmp_path)) == first


def test_a_pod_or_policy_that_changed_gets_its_own_verdict(tmp_path):
    from tools.admission_verdicts import StoredVerdicts

    stored = StoredVerdicts(tmp_path)
    policy = pod_security_policy(True)[0]
    pod = evaluation.injected(evaluation.tenant_pod("alice"), "sidecar-init")
    assert evaluation.evaluate_once(policy, pod, stored).admitted
    # One field the policy reads, in one container: a key of its own, and the refusal.
    changed = copy.deepcopy(pod)
    changed["spec"]["containers"][0]["securityContext"] = {"privileged": True}
    verdict = evaluation.evaluate_once(policy, changed, stored)
    assert not verdict.admitted and "check_privileged.go" in verdict.refusals[0]
    # A policy whose validations changed does not reuse the old policy's verdict on the same pod.
    stricter = copy.deepcopy(policy)
    stricter["spec"]["validations"].append({"expression": "!has(object.spec.containers[0].resources)", "message": "no resources"})
    assert evaluation.evaluate_once(stricter, pod, stored).refusals == ("no resources",)
    assert len(stored) == 3


def test_a_broken_or_foreign_entry_is_evaluated_again(tmp_path):
    from tools.admission_verdicts import StoredVerdicts

    stored = StoredVerdicts(tmp_path)
    policy = pod_security_policy(True)[0]
    pod = evaluation.hostile_pods("alice", "sidecar-init")["privileged container"]
    key = evaluation.verdict_key(policy, pod)
    for text in ('{"key": "%s", "admitted": tr' % key, json.dumps({"key": "0" * 64, "admitted": True, "refusals": []})):
        (tmp_path / f"{key}.json").write_text(text)
        assert key not in stored
        assert not evaluation.evaluate_once(policy, pod, stored).admitted
    assert stored[key] == evaluation.evaluate(policy, pod)


def test_a_verdict_kept_under_another_cel_python_release_is_not_read_back(monkeypatch):
    """cel-python has no `__version__`: the key reads the installed distribution's version, so an upgrade of the
    evaluator gives every pod a new key."""
    from analysis import admission

    policy = {"spec": {"validations": [{"expression": "true"}]}}
    pod = {"kind": "Pod", "spec": {"containers": [{"name": "main"}]}}
    monkeypatch.setattr(admission, "_EVALUATOR", [])
    now = admission.verdict_key(policy, pod)
    assert admission._installed("cel-python") == admission.CEL_PYTHON_VERSION
    monkeypatch.setattr(admission, "_EVALUATOR", [])
    monkeypatch.setattr(admission, "_installed", lambda distribution: "0.6.0" if distribution == "cel-python" else "")
    assert admission.verdict_key(policy, pod) != now
