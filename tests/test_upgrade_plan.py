"""The upgrade plan: what `pulumi up` does to a live cluster when a stack moves between Kubeflow releases."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest

from analysis.upgrade import FORCE_NEW, plan_upgrade, render
from tests.conftest import _stack_kubeflow, shared_run
from tests.plans import config_group_plan, evaluated_plan
from tests.upstream import REPO_ROOT, manifests_path

#: 1.11.0 is not a step of the stacks' path: KFP 2.15.0 cannot use their IRSA object store, so the program
#: refuses it (docs/releases.md); they go from 1.10.2 to 26.03.
PAIRS = [("1.9.1", "1.10.2"), ("1.10.2", "26.03")]
TRAINING_V1_CRDS = ("jaxjobs", "mpijobs", "paddlejobs", "pytorchjobs", "tfjobs", "xgboostjobs")


def _upgrade(before: str, after: str, stack: str = "dev"):
    return plan_upgrade(evaluated_plan(stack, before)[0], evaluated_plan(stack, after)[0], before, after)


#: Whether each pair needs attention: 1.9.1 -> 1.10.2 drops the mxjobs CRD, 1.10.2 -> 26.03 the
#: training-operator's.
ATTENTION = {("1.9.1", "1.10.2"): True, ("1.10.2", "26.03"): True}


@pytest.mark.parametrize("before,after", PAIRS, ids=lambda v: v)
def test_every_object_of_both_releases_is_classified(before, after):
    plan = _upgrade(before, after)
    assert plan.needs_attention is ATTENTION[(before, after)]
    source, target = evaluated_plan("dev", before)[0], evaluated_plan("dev", after)[0]
    from analysis.upgrade import _objects

    old, new = _objects(source), _objects(target)
    # Every object of either side is accounted for exactly once.
    assert sum(plan.counts.values()) == len(set(old) | set(new)) - plan.counts["renamed"]
    assert set(plan.changes) | {k for k in old if k in new and old[k].obj == new[k].obj} == set(old) | (set(new) - {
        change.split("as ", 1)[1].split(", then")[0] for _, (action, change) in plan.changes.items() if action == "renamed"})
    assert plan.counts["unchanged"] > 200 and plan.counts["updated"] > 0
    text = render(plan)
    headline = "Needs attention" if plan.needs_attention else "Nothing needs attention."
    assert text.index(headline) < text.index("Everything else")


def test_training_operator_crds_leaving_in_1_11_are_retained_with_every_users_job():
    plan = _upgrade("1.10.2", "26.03")
    removed = {f.subject.split(" ", 1)[1]: f for f in plan.attention if f.kind == "crd-removed"}
    assert sorted(removed) == sorted(f"{name}.kubeflow.org" for name in TRAINING_V1_CRDS)
    for finding in removed.values():
        assert "retained on the cluster" in finding.what
    for name in TRAINING_V1_CRDS:
        assert plan.changes[f"apiextensions.k8s.io/CustomResourceDefinition {name}.kubeflow.org"][0] == "retained"
    assert plan.counts["retained"] == len(TRAINING_V1_CRDS)


def test_a_crd_removal_no_longer_deletes_the_crd_from_the_cluster():
    plan, _ = evaluated_plan("dev", "1.10.2")
    by_urn = {r["urn"]: r for r in plan["resources"]}
    groups = [r for r in plan["resources"] if r["type"] == "kubernetes:yaml/v2:ConfigGroup"]
    crd_groups = [g for g in groups if '"kind":"CustomResourceDefinition"' in g["inputs"]["yaml"]]
    assert crd_groups and all(g["options"]["retainOnDelete"] for g in crd_groups)
    # Each CRD group names its children as the group that held them before (their URNs do not move).
    for group in crd_groups:
        assert group["inputs"]["resourcePrefix"] == group["name"].removesuffix("-crds")
        assert '"kind":"CustomResourceDefinition"' not in by_urn[group["urn"].removesuffix("-crds")]["inputs"]["yaml"]
    namespaces = [g for g in groups if g["name"] == "kubeflow-namespaces"]
    assert namespaces[0]["options"]["retainOnDelete"] is True
    # Everything else is deleted as usual: a workload that leaves upstream does not linger.
    core = [g for g in groups if g["name"] == "kubeflow-core"]
    assert core[0]["options"]["retainOnDelete"] is False


def test_letting_upgrades_delete_crds_takes_an_explicit_setting_the_plan_names():
    kubeflow = dict(_stack_kubeflow("dev"), version="1.10.2", manifests=str(manifests_path("1.10.2")),
                    keepCrdsAndNamespaces=False)
    run = shared_run("dev", {"kubeflow": kubeflow})
    crd_groups = [r for r in run.resources if r.name.endswith("-crds")]
    assert crd_groups == []
    assert all(not r.retain_on_delete for r in run.resources if r.type == "kubernetes:yaml/v2:ConfigGroup")


def _deployment(name: str, selector: dict, image: str = "ghcr.io/kubeflow/x:1") -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "kubeflow",
                                                                         "labels": {"app": "dashboard"}},
            "spec": {"selector": {"matchLabels": selector},
                     "template": {"metadata": {"labels": selector}, "spec": {"containers": [{"name": "c", "image": image}]}}}}


def _crd(versions: list[dict], scope: str = "Namespaced") -> dict:
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "things.example.com"},
            "spec": {"group": "example.com", "scope": scope, "names": {"kind": "Thing", "plural": "things"},
                     "versions": versions}}


def test_immutable_fields_are_replacements_with_downtime_and_the_rest_updates_in_place():
    before = [_deployment("a", {"app": "a"}), _deployment("b", {"app": "b"}),
              {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "kubeflow"},
               "spec": {"clusterIP": "None", "ports": [{"port": 80}]}}]
    after = copy.deepcopy(before)
    after[0]["spec"]["selector"]["matchLabels"]["tier"] = "web"  # immutable
    after[1]["spec"]["template"]["spec"]["containers"][0]["image"] = "ghcr.io/kubeflow/x:2"  # rolling update
    after[2]["spec"]["clusterIP"] = "10.0.0.1"
    plan = plan_upgrade(config_group_plan(before), config_group_plan(after))
    assert plan.changes["apps/Deployment kubeflow/a"][0] == "replaced"
    assert "spec.selector" in plan.changes["apps/Deployment kubeflow/a"][1] and "down" in plan.changes["apps/Deployment kubeflow/a"][1]
    assert plan.changes["apps/Deployment kubeflow/b"][0] == "updated"
    assert plan.changes["Service kubeflow/s"][0] == "replaced"
    assert {f.subject for f in plan.attention if f.kind == "replaced"} == {"apps/Deployment kubeflow/a", "Service kubeflow/s"}
    assert ("apps", "StatefulSet") in FORCE_NEW and ("spec", "volumeClaimTemplates") in FORCE_NEW[("apps", "StatefulSet")]


def test_crd_changes_that_need_a_storage_migration_or_that_the_api_server_refuses_are_named():
    v1 = {"name": "v1", "served": True, "storage": True}
    v1beta1 = {"name": "v1beta1", "served": True, "storage": False}
    before = [_crd([{**v1beta1, "storage": True}, {**v1, "storage": False}])]
    moved = [_crd([v1beta1, v1])]
    dropped = [_crd([v1])]
    rescoped = [_crd([{**v1beta1, "storage": True}, {**v1, "storage": False}], scope="Cluster")]
    kinds = lambda after: {f.kind for f in plan_upgrade(config_group_plan(before), config_group_plan(after)).attention}  # noqa: E731
    assert kinds(moved) == {"crd-storage-version"}
    assert kinds(dropped) == {"crd-storage-version", "crd-version-dropped"}
    assert kinds(rescoped) == {"crd-refused"}


def test_renamed_objects_are_paired_by_what_they_are():
    before = [_deployment("centraldashboard", {"app": "dashboard"})]
    after = [_deployment("dashboard", {"app": "dashboard"})]
    plan = plan_upgrade(config_group_plan(before), config_group_plan(after))
    assert plan.changes["apps/Deployment kubeflow/centraldashboard"] == ("renamed", "created as apps/Deployment kubeflow/dashboard, then deleted")
    (finding,) = [f for f in plan.attention if f.kind == "renamed"]
    assert "kubeflow/dashboard" in finding.what and plan.counts["renamed"] == 1 and plan.counts["added"] == 0


def test_upstreams_manual_step_is_listed_and_known_to_be_done_by_the_replacement():
    plan = _upgrade("1.9.1", "1.10.2")
    (step,) = plan.steps
    assert "meta-controller-cluster-role-binding" in step["command"]
    assert step["source"].startswith("kubeflow/manifests@v1.10.2 README.md:650")
    assert plan.changes["rbac.authorization.k8s.io/ClusterRoleBinding meta-controller-cluster-role-binding"][0] == "replaced"
    assert "pulumi up replaces" in step["notApplicable"]
    assert any(f.kind == "crd-removed" and "mxjobs" in f.subject for f in plan.attention)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tools.upgrade_plan", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=600)


#: dev runs on Pod Identity, which 1.10.2's SDKs cannot use: at 1.10.2 the stack was on IRSA.
ON_IRSA = "identity.mechanism=irsa"


def test_the_command_exits_like_diff_and_writes_the_json(tmp_path):
    same = _cli("1.10.2", "1.10.2", "--from-set", ON_IRSA, "--to-set", ON_IRSA, "--out", str(tmp_path))
    assert same.returncode == 0, same.stderr[-2000:]
    assert "Nothing needs attention." in same.stdout
    risky = _cli("1.10.2", str(manifests_path("26.03")), "--from-set", ON_IRSA, "--out", str(tmp_path))
    assert risky.returncode == 1, risky.stderr[-2000:]
    written = json.loads((tmp_path / "dev-1.10.2-to-26.03.yaml.json").read_text())
    assert written["needsAttention"] is True and written["counts"]["retained"] == len(TRAINING_V1_CRDS)
    broken = _cli("not-a-release", "1.10.2", "--out", str(tmp_path))
    assert broken.returncode == 2 and "is not a release" in broken.stderr and "Traceback" not in broken.stderr


def test_make_upgrade_plan_exits_1_when_something_needs_attention():
    env = {**__import__("os").environ}
    for variable in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL"):
        env.pop(variable, None)
    result = subprocess.run(["make", "upgrade-plan", "FROM=1.10.2", "TO=26.03", f"FROM_SET={ON_IRSA}", "OUT=unused"],
                            cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "crd-removed (6)" in result.stdout


def test_the_upgrade_page_shows_the_plans_real_output():
    import io
    import re

    from tools.upgrade_plan import load_side, parse_settings

    page = (REPO_ROOT / "docs" / "upgrading.md").read_text()
    blocks = re.findall(r"<!-- upgrade-plan (\S+) (\S+) (\S+)((?: (?:from|to):\S+)*) -->\n```\n(.*?)```", page, re.S)
    # The walk 1.10.2 -> 1.11.0 -> 26.03 (1.11.0 with static keys), the stacks' direct path, and 1.9.1 -> 1.10.2.
    assert [(a, b) for a, b, _, _, _ in blocks] == [("1.10.2", "1.11.0"), ("1.11.0", "26.03"), ("1.10.2", "26.03"),
                                                   ("1.9.1", "1.10.2")]
    sides: dict[tuple, tuple] = {}

    def side(version: str, stack: str, assignments: tuple[str, ...]):
        key = (version, stack, assignments)
        if key not in sides:
            sides[key] = load_side(version, stack, allow_saved=False, stderr=io.StringIO(),
                                   settings=parse_settings(list(assignments)))
        return sides[key]

    for before, after, stack, tokens, shown in blocks:
        chosen = {"from": (), "to": ()}
        for token in tokens.split():
            where, _, assignment = token.partition(":")
            chosen[where] += (assignment,)
        (old, old_label), (new, new_label) = side(before, stack, chosen["from"]), side(after, stack, chosen["to"])
        command = f"$ make upgrade-plan FROM={before} TO={after}"
        command += "".join(f" {where.upper()}_SET='{' '.join(chosen[where])}'" for where in ("from", "to") if chosen[where])
        assert shown == f"{command}\n{render(plan_upgrade(old, new, old_label, new_label))}", "run `make docs`"


def test_a_side_can_take_the_settings_the_stack_has_at_that_release(tmp_path):
    # dev's Pod Identity is refused at 1.10.2, naming the fix: the stack was on IRSA there.
    on_pod_identity = _cli("1.10.2", "1.11.0", "--out", str(tmp_path))
    assert on_pod_identity.returncode == 2 and "Use identity.mechanism: irsa with this release" in on_pod_identity.stderr
    # 1.11.0 is refused on the stack's object store without keys, and planned once the stack gives it static keys.
    refused = _cli("1.10.2", "1.11.0", "--from-set", ON_IRSA, "--out", str(tmp_path))
    assert refused.returncode == 2 and "kubeflow.objectStore.staticKeys: true" in refused.stderr
    keyed = _cli("1.10.2", "1.11.0", "--from-set", ON_IRSA, "--to-set", "kubeflow.objectStore.staticKeys=true",
                 "--out", str(tmp_path))
    assert keyed.returncode == 1, keyed.stderr[-2000:]
    assert "(stack dev) with identity.mechanism=\"irsa\" -> Kubeflow 1.11.0 (stack dev) with kubeflow.objectStore.staticKeys=true" in keyed.stdout
    assert "crd-removed (6)" in keyed.stdout
    broken = _cli("1.10.2", "1.11.0", "--from-set", ON_IRSA, "--to-set", "kubeflow.objectStore.staticKeys",
                  "--out", str(tmp_path))
    assert broken.returncode == 2 and "is not KEY=VALUE" in broken.stderr and "Traceback" not in broken.stderr


def test_a_database_or_bucket_the_change_moves_is_data_that_needs_attention():
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "pipeline-install-config", "namespace": "kubeflow"},
              "data": {"pipelineDb": "mlpipeline", "mlmdDb": "metadb", "appName": "pipeline"}}
    renamed = copy.deepcopy(config)
    renamed["data"]["mlmdDb"] = "metadb2"
    plan = plan_upgrade(config_group_plan([config]), config_group_plan([renamed]))
    (finding,) = [f for f in plan.attention if f.kind == "database-renamed"]
    assert "data.mlmdDb: database 'metadb' -> 'metadb2'" in finding.what
    source, target = evaluated_plan("dev", "1.10.2")[0], copy.deepcopy(evaluated_plan("dev", "1.10.2")[0])
    target["resources"] = [r for r in target["resources"] if r["type"] != "aws:s3/bucket:Bucket"]
    buckets = [f for f in plan_upgrade(source, target).attention if f.kind == "bucket"]
    assert buckets and all("artifacts are deleted" in f.what for f in buckets)  # dev does not protect its buckets


_BUNDLED: dict[str, dict] = {}


def bundled_stores_plan(version: str) -> dict:
    """The dev stack's preview plan with Kubeflow's bundled MySQL, object store and Argo: the other
    configuration v1.11.0 runs in (docs/releases.md)."""
    if version not in _BUNDLED:
        from tests.conftest import MARKER_SECRETS, irsa_overrides, pod_identity_usable
        from tools.mock_runtime import run_program
        from tools.plan import build_plan

        kubeflow = {key: value for key, value in _stack_kubeflow("dev").items() if key != "database"}
        kubeflow.update(version=version, manifests=str(manifests_path(version)), argo={"external": False},
                        exclude=[rule for rule in kubeflow["exclude"] if rule != "argo"])
        # dev's Pod Identity at a release whose SDKs can use it, IRSA before (tests/conftest.py).
        overrides = {"kubeflow": kubeflow, **((irsa_overrides("dev") or {}) if not pod_identity_usable(version) else {})}
        run = run_program("dev", config_overrides=overrides, secrets=MARKER_SECRETS, preview=True)
        _BUNDLED[version] = build_plan(run, MARKER_SECRETS.values())[0]
    return _BUNDLED[version]


def test_through_1_11_0_the_plan_names_the_training_crds_then_finds_26_03_a_quiet_step():
    into = plan_upgrade(bundled_stores_plan("1.10.2"), bundled_stores_plan("1.11.0"), "1.10.2", "1.11.0")
    assert into.needs_attention
    removed = sorted(f.subject.split(" ", 1)[1] for f in into.attention if f.kind == "crd-removed")
    assert removed == sorted(f"{name}.kubeflow.org" for name in TRAINING_V1_CRDS)
    assert into.counts["retained"] == len(TRAINING_V1_CRDS)
    # Upstream's MinIO-to-SeaweedFS step concerns this configuration: its MinIO was the bundled one.
    (step,) = into.steps
    assert "SeaweedFS" in step["what"] and "notApplicable" not in step
    onward = plan_upgrade(bundled_stores_plan("1.11.0"), bundled_stores_plan("26.03"), "1.11.0", "26.03")
    assert not any(f.kind in ("crd-removed", "namespace-removed", "data-deleted") for f in onward.attention)
    assert onward.counts["unchanged"] > 200 and onward.counts["deleted"] < 40
