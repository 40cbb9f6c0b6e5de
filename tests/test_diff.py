"""`make diff`: field-level differences between plans, on constructed plans from the real upstream releases
and end to end on the real stacks."""

from __future__ import annotations

import io
import json
import os
import subprocess

import pytest

from tests.conftest import MARKER_SECRETS, REPO_ROOT, irsa_settings
from tests.plans import config_group_plan, evaluated_plan, resource
from tests.upstream import CURRENT_VERSION, PREVIOUS_VERSION, manifests_dir, manifests_path, upstream_objects
from tools import diff as plan_diff
from tools.diff import MISSING, FieldChange, diff_plans, diff_values, render
from tools.plan import SECRET, plan_json

# --- The engine on plans built from the real upstream releases (no Kubeflow component needed) ----------


def _key(obj: dict) -> str:
    metadata = obj["metadata"]
    where = f"{metadata['namespace']}/{metadata['name']}" if metadata.get("namespace") else metadata["name"]
    return f"{obj['apiVersion']} {obj['kind']} {where}"


#: The diff tool's behaviour is pinned on one known pair of releases (KFP 2.3.0 to 2.5.0, the registry move).
UPGRADE_PAIR = ("1.9.1", "1.10.2")


@pytest.fixture(scope="module")
def upgrade():
    old, new = (upstream_objects(version) for version in UPGRADE_PAIR)
    diff = diff_plans(config_group_plan(old), config_group_plan(new))
    return old, new, diff


def test_upgrade_shows_the_new_ml_pipeline_api_server_image(upgrade):
    _, _, diff = upgrade
    entry = next(e for e in diff.objects.entries if e.key == "apps/v1 Deployment kubeflow/ml-pipeline")
    assert entry.status == "changed"
    assert FieldChange(
        "spec.template.spec.containers[name=ml-pipeline-api-server].image",
        "gcr.io/ml-pipeline/api-server:2.3.0",
        "ghcr.io/kubeflow/kfp-api-server:2.5.0",
    ) in entry.changes
    text = render(diff, "v1.9.1", "v1.10.2")
    assert ('spec.template.spec.containers[name=ml-pipeline-api-server].image: '
            '"gcr.io/ml-pipeline/api-server:2.3.0" -> "ghcr.io/kubeflow/kfp-api-server:2.5.0"') in text


def test_upgrade_reports_exactly_the_objects_that_differ(upgrade):
    old, new, diff = upgrade
    old_by_key, new_by_key = {_key(o): o for o in old}, {_key(o): o for o in new}
    statuses = {e.key: e.status for e in diff.objects.entries}
    assert {k for k, s in statuses.items() if s == "added"} == set(new_by_key) - set(old_by_key)
    assert {k for k, s in statuses.items() if s == "removed"} == set(old_by_key) - set(new_by_key)
    both = set(old_by_key) & set(new_by_key)
    assert {k for k, s in statuses.items() if s == "changed"} == {k for k in both if old_by_key[k] != new_by_key[k]}
    assert diff.objects.unchanged == sum(1 for k in both if old_by_key[k] == new_by_key[k])
    # The ConfigGroup resource itself only differs in its objects, which are compared one by one.
    assert diff.resources.entries == []
    for entry in diff.objects.entries:
        for change in entry.changes:
            assert change.old != change.new, (entry.key, change.path)


def test_upgrade_report_counts_schema_documentation_instead_of_printing_it(upgrade):
    _, _, diff = upgrade
    short, full = render(diff, "a", "b"), render(diff, "a", "b", full=True)
    assert "schema descriptions changed (documentation only" in short
    assert len(short.splitlines()) < len(full.splitlines()) / 3


def test_the_same_plan_is_equal():
    plan = config_group_plan(upstream_objects(CURRENT_VERSION))
    diff = diff_plans(plan, json.loads(plan_json(plan)))
    assert diff.equal
    assert render(diff, "a", "b").rstrip().endswith("The plans are the same.")


def test_named_list_entries_are_matched_by_name_and_json_text_by_content():
    old = {"containers": [{"name": "a", "image": "x:1"}, {"name": "b", "image": "y:1"}],
           "defaultTags": json.dumps({"tags": {"env": "dev", "team": "ml"}})}
    new = {"containers": [{"name": "c", "image": "z:1"}, {"name": "a", "image": "x:2"}, {"name": "b", "image": "y:1"}],
           "defaultTags": json.dumps({"tags": {"team": "ml", "env": "prod"}})}
    assert diff_values(old, new) == [
        FieldChange("containers[name=a].image", "x:1", "x:2"),
        FieldChange("containers[name=c]", MISSING, {"name": "c", "image": "z:1"}),
        FieldChange("defaultTags<json>.tags.env", "dev", "prod"),
    ]


def test_string_lists_report_the_entries_that_came_and_went():
    assert diff_values({"cidrs": ["10.0.0.0/8", "192.0.2.0/24"]}, {"cidrs": ["10.0.0.0/8", "10.20.0.0/16"]}) == [
        FieldChange("cidrs[]", "192.0.2.0/24", MISSING),
        FieldChange("cidrs[]", MISSING, "10.20.0.0/16"),
    ]
    assert diff_values(["a", "b"], ["b", "a"]) == [FieldChange(" (order)", ["a", "b"], ["b", "a"])]


def test_options_dependencies_and_masked_values_are_compared():
    stack_urn = "urn:pulumi:t::kubeflow-platform::pulumi:pulumi:Stack::kubeflow-platform-t"
    before = config_group_plan([])
    after = config_group_plan([])
    before["resources"].append(resource("t", "aws:s3/bucketV2:BucketV2", "pipelines", stack_urn,
                                        {"bucket": "b", "password": SECRET}))
    after["resources"].append(resource("t", "aws:s3/bucketV2:BucketV2", "pipelines", stack_urn,
                                       {"bucket": "b", "password": SECRET}, protect=True,
                                       dependencies=("urn:pulumi:t::kubeflow-platform::x::y",)))
    diff = diff_plans(before, after)
    [entry] = diff.resources.entries
    assert entry.key == "aws:s3/bucketV2:BucketV2  pipelines"
    assert [c.path for c in entry.changes] == ["dependencies[]", "options.protect"]


# --- End to end on the real stacks ------------------------------------------------------------------------


def _provider_changes(diff, type_: str) -> dict[str, FieldChange]:
    entry = next(e for e in diff.resources.entries if e.key.startswith(type_ + "  "))
    return {c.path: c for c in entry.changes}


def test_dev_against_prod_shows_what_the_stack_files_change_and_nothing_else():
    dev, _ = evaluated_plan("dev")
    prod, _ = evaluated_plan("prod")
    diff = diff_plans(dev, prod)
    assert not diff.equal
    aws = _provider_changes(diff, "pulumi:providers:aws")
    # Both stacks run in us-west-2 and share owner: only account, environment and cost centre differ.
    assert set(aws) == {
        "inputs.allowedAccountIds<json>[]",
        "inputs.defaultTags<json>.tags.cost-center",
        "inputs.defaultTags<json>.tags.environment",
        "inputs.defaultTags<json>.tags.stack",
    }
    assert aws["inputs.defaultTags<json>.tags.environment"] == FieldChange(
        "inputs.defaultTags<json>.tags.environment", "dev", "prod")
    outputs = {e.key: e for e in diff.outputs.entries}
    assert outputs["url"].changes == (FieldChange("", "https://kubeflow.dev.ml.example.com/", "https://kubeflow.ml.example.com/"),)
    assert "kubeflowVersion" not in outputs
    statuses = {e.key: e.status for e in diff.resources.entries}
    assert statuses["pulumi:providers:kubernetes  k8s-ml-dev"] == "removed"
    assert statuses["pulumi:providers:kubernetes  k8s-ml-prod"] == "added"
    for section in diff.sections:
        for entry in section.entries:
            for change in entry.changes:
                assert "region" not in change.path and change.old != change.new, (entry.key, change)


def test_a_stack_against_itself_is_equal():
    first, _ = evaluated_plan("dev")
    again, _ = evaluated_plan("dev")
    assert diff_plans(first, again).equal


def test_the_upgrade_of_a_stack_changes_its_version_and_every_changed_object_is_real():
    # On IRSA at both releases: dev's Pod Identity is refused at 1.10.2, and the version alone is what changes.
    old, _ = evaluated_plan("dev", PREVIOUS_VERSION, settings=irsa_settings("dev"))
    new, _ = evaluated_plan("dev", CURRENT_VERSION, settings=irsa_settings("dev"))
    diff = diff_plans(old, new)
    outputs = {e.key: e for e in diff.outputs.entries}
    assert outputs["kubeflowVersion"].changes == (FieldChange("", PREVIOUS_VERSION, CURRENT_VERSION),)
    if any(r["type"] == "kubernetes:yaml/v2:ConfigGroup" for r in new["resources"]):
        # Once the Kubeflow component registers its ConfigGroups, the upstream upgrade shows through them.
        changed = {e.key for e in diff.objects.entries if e.status == "changed"}
        assert "apps/v1 Deployment kubeflow/ml-pipeline" in changed


def test_the_cli_compares_a_saved_plan_with_a_stack_and_exits_0_when_equal_1_when_not(tmp_path, monkeypatch):
    # The CLI evaluates stacks with placeholder secrets; the marker secrets prove nothing leaks into the report.
    monkeypatch.setattr("tools.preview.placeholder_secrets", lambda: dict(MARKER_SECRETS))
    saved = tmp_path / "dev"
    saved.mkdir()
    plan, _ = evaluated_plan("dev")
    (saved / "plan.json").write_text(plan_json(plan))
    manifests = str(manifests_path(CURRENT_VERSION))

    out, err = io.StringIO(), io.StringIO()
    assert plan_diff.main([str(saved), "dev", "--manifests-b", manifests], stdout=out, stderr=err) == 0
    assert "The plans are the same." in out.getvalue()

    out, err = io.StringIO(), io.StringIO()
    assert plan_diff.main([str(saved), "prod", "--manifests-b", manifests], stdout=out, stderr=err) == 1
    report = out.getvalue()
    assert '~ url: "https://kubeflow.dev.ml.example.com/" -> "https://kubeflow.ml.example.com/"' in report
    assert 'inputs.defaultTags<json>.tags.environment: "dev" -> "prod"' in report
    for marker in MARKER_SECRETS.values():
        assert marker not in report + err.getvalue()


def test_the_cli_refuses_what_is_neither_a_stack_nor_a_saved_plan(tmp_path):
    err = io.StringIO()
    assert plan_diff.main(["staging", str(tmp_path)], stdout=io.StringIO(), stderr=err) == 2
    assert "neither a directory with a plan.json nor a stack" in err.getvalue()


# --- `make diff` itself, as CI runs it: 0 same, 1 different, 2 bad usage or an error ---------------------


def _deployment(image: str) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "ml-pipeline", "namespace": "kubeflow"},
            "spec": {"template": {"spec": {"containers": [{"name": "api-server", "image": image}]}}}}


@pytest.fixture(scope="module")
def saved_plans(tmp_path_factory):
    """Two small saved plans that differ in one image: make diff without evaluating a stack."""
    base = tmp_path_factory.mktemp("saved")
    for name, image in (("before", "registry.example.com/api-server:2.3.0"),
                        ("after", "registry.example.com/api-server:2.5.0")):
        (base / name).mkdir()
        (base / name / "plan.json").write_text(plan_json(config_group_plan([_deployment(image)])))
    return base


def make_diff(*args: str) -> subprocess.CompletedProcess:
    # As a user or CI step runs it: not inside the make that may be running these tests.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    env["KUBEFLOW_MANIFESTS_DIR"] = str(manifests_dir())
    return subprocess.run(["make", "diff", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=600)


def test_make_diff_exits_0_for_the_same_plan(saved_plans):
    result = make_diff(f"A={saved_plans / 'before'}", f"B={saved_plans / 'before'}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.rstrip().endswith("The plans are the same.")


def test_make_diff_exits_1_when_the_plans_differ_and_says_nothing_but_the_report(saved_plans):
    result = make_diff(f"A={saved_plans / 'before'}", f"B={saved_plans / 'after'}")
    assert result.returncode == 1, result.stdout + result.stderr
    assert ('spec.template.spec.containers[name=api-server].image: "registry.example.com/api-server:2.3.0" -> '
            '"registry.example.com/api-server:2.5.0"') in result.stdout
    assert result.stdout.rstrip().endswith("The plans differ (+ only in B, - only in A, ~ changed A -> B).")
    # A difference is an answer, not a failure: make adds no error line of its own.
    assert "***" not in result.stderr


@pytest.mark.parametrize("args, message", [
    (("A=dev",), "usage: make diff A=<stack|dir> B=<stack|dir>"),
    (("B=dev",), "usage: make diff A=<stack|dir> B=<stack|dir>"),
    (("venv", "A=dev", "B=prod"), "make diff runs alone"),
], ids=["no-B", "no-A", "with-another-goal"])
def test_make_diff_exits_2_on_bad_usage_before_doing_anything(args, message):
    result = make_diff(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "tools.diff" not in result.stdout + result.stderr


def test_make_diff_exits_2_when_a_side_is_neither_a_stack_nor_a_saved_plan(saved_plans):
    result = make_diff("A=staging", f"B={saved_plans / 'after'}")
    assert result.returncode == 2
    assert "'staging' is neither a directory with a plan.json nor a stack" in result.stderr


def test_make_diff_exits_2_not_1_when_the_tool_crashes(saved_plans, tmp_path):
    # Python exits 1 on an uncaught exception, which CI would read as "the plans differ".
    (tmp_path / "plan.json").write_text(json.dumps({"format": 1, "resources": [{"urn": "x"}], "outputs": {}}))
    result = make_diff(f"A={saved_plans / 'before'}", f"B={tmp_path}")
    assert result.returncode == 2
    assert "Traceback" in result.stderr and "KeyError" in result.stderr


def test_dev_and_prod_differ_by_identity_mechanism_associations_against_the_oidc_provider_and_annotations():
    """dev shows EKS Pod Identity and prod IRSA: the diff of the two stacks shows the switch."""
    dev, _ = evaluated_plan("dev")
    prod, _ = evaluated_plan("prod")
    diff = diff_plans(dev, prod)
    outputs = {e.key: e for e in diff.outputs.entries}
    assert outputs["identityMechanism"].changes == (FieldChange("", "podIdentity", "irsa"),)
    resources = {e.key: e.status for e in diff.resources.entries}
    association = "aws:eks/podIdentityAssociation:PodIdentityAssociation  "
    removed = {k.removeprefix(association) for k, status in resources.items()
               if k.startswith(association) and status == "removed"}
    assert {"identity-pipelines-ml-pipeline", "identity-pipelines-readers-ml-pipeline-ui",
            "identity-pipelines-readers-ml-pipeline-visualizationserver"} <= removed
    assert not [k for k, status in resources.items() if k.startswith(association) and status != "removed"]
    assert resources["aws:iam/openIdConnectProvider:OpenIdConnectProvider  identity-oidc-provider"] == "added"
    objects = {e.key: e for e in diff.objects.entries}
    arns = prod["outputs"]["roleArns"]
    for account, role in (("ml-pipeline", "pipelines"), ("ml-pipeline-ui", "pipelines-readers"),
                          ("ml-pipeline-visualizationserver", "pipelines-readers")):
        (change,) = [c for c in objects[f"v1 ServiceAccount kubeflow/{account}"].changes
                     if c.path == "metadata.annotations"]
        assert change.old is MISSING and change.new == {"eks.amazonaws.com/role-arn": arns[role]}
    text = render(diff, "dev", "prod")
    assert '~ identityMechanism: "podIdentity" -> "irsa"' in text
