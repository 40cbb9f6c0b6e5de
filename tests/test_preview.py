"""`make preview`: the tree, the plan files, secrets, deploy-time values and the offline checks."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from manifests.objects import objects_from_config_group_inputs
from tests.conftest import MARKER_SECRETS, REPO_ROOT, shared_run
from tests.upstream import manifests_path
from tools import plan_checks
from tools.plan import (
    KNOWN_AFTER_DEPLOY,
    SECRET,
    image_mirror_lines,
    kubernetes_objects,
    transform_report_text,
    transform_summary,
)
from tools.preview import preview

#: libyaml reads the written manifests back in a fraction of a second; pure-Python PyYAML takes ten.
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# --- The real program, dev stack, real upstream v1.10.2 ------------------------------------------------


class PreviewResult:
    def __init__(self, out: Path, status: int, stdout: str, stderr: str) -> None:
        self.out, self.status, self.stdout, self.stderr = out, status, stdout, stderr

    def files(self) -> dict[str, bytes]:
        return {str(p.relative_to(self.out)): p.read_bytes() for p in sorted(self.out.rglob("*")) if p.is_file()}


def _preview(out: Path, **kwargs) -> PreviewResult:
    stdout, stderr = io.StringIO(), io.StringIO()
    status = preview("dev", manifests=str(manifests_path()), out=out, secrets=MARKER_SECRETS,
                     stdout=stdout, stderr=stderr, **kwargs)
    return PreviewResult(out, status, stdout.getvalue(), stderr.getvalue())


@pytest.fixture(scope="module")
def previews(tmp_path_factory) -> tuple[PreviewResult, PreviewResult]:
    """The dev preview run twice into two directories (module-scoped: each run is a whole program run)."""
    base = tmp_path_factory.mktemp("preview")
    return _preview(base / "first"), _preview(base / "second")


def test_preview_writes_the_plan_the_manifests_the_mirror_list_and_the_report(previews):
    first, _ = previews
    assert first.status == 0, first.stdout + first.stderr
    plan = json.loads((first.out / "plan.json").read_text())
    assert plan["stack"] == "dev"
    types = {r["type"] for r in plan["resources"]}
    assert {"pulumi:providers:aws", "pulumi:providers:kubernetes", "kubeflow-platform:kubeflow:Kubeflow"} <= types
    for resource in plan["resources"]:
        assert set(resource) == {"urn", "type", "name", "parent", "provider", "custom", "dependencies", "options", "inputs"}
    assert (first.out / "manifests").is_dir()
    assert (first.out / "images.txt").is_file() and (first.out / "transform-report.txt").is_file()
    assert first.stdout.rstrip().endswith("transform-report.txt")
    assert "Offline checks: passed" in first.stdout


def test_the_preview_prints_the_ownership_table_and_plan_json_records_each_class(previews):
    first, _ = previews
    plan = json.loads((first.out / "plan.json").read_text())
    classes = {(o["kind"], o["namespace"], o["name"]): o["class"] for o in plan["ownership"]}
    assert classes[("ConfigMap", "argo", "workflow-controller-configmap")] == "patched"
    assert classes[("Namespace", "", "istio-system")] == "expected"
    assert classes[("Namespace", "", "kubeflow")] == "created"
    counts = {c: sum(1 for v in classes.values() if v == c) for c in ("created", "patched", "expected")}
    assert f"Ownership: {counts['created']} created, {counts['patched']} patched, {counts['expected']} expected" \
        in first.stdout
    assert "v1 ConfigMap argo/workflow-controller-configmap by ConfigMapPatch" in first.stdout


def test_two_previews_are_byte_identical(previews):
    first, second = previews
    assert first.files() == second.files()
    # Only the output directory may differ between the two printed trees.
    assert first.stdout.replace(str(first.out), "OUT") == second.stdout.replace(str(second.out), "OUT")


def test_plan_json_has_sorted_keys_and_no_absolute_paths(previews):
    first, _ = previews
    text = (first.out / "plan.json").read_text()
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    for path in first.files():
        content = (first.out / path).read_text()
        assert str(REPO_ROOT) not in content and str(first.out) not in content, path


def test_the_plan_holds_every_resource_a_deployment_registers(previews):
    # Resources created inside an apply() would be missing from any preview, offline or real.
    first, _ = previews
    plan = json.loads((first.out / "plan.json").read_text())
    deployed = shared_run("dev")
    assert sorted(r["urn"] for r in plan["resources"]) == sorted(r.urn for r in deployed.resources)
    by_urn = {r.urn: r for r in deployed.resources}
    for resource in plan["resources"]:
        assert resource["parent"] == by_urn[resource["urn"]].parent
        assert resource["dependencies"] == sorted(by_urn[resource["urn"]].dependencies)


def test_manifests_hold_every_object_of_every_config_group(previews):
    # Exercises the real ConfigGroups as soon as the Kubeflow component registers them.
    first, _ = previews
    plan = json.loads((first.out / "plan.json").read_text())
    # The Kubeflow component's groups: tenancy's role-bound groups hold deploy-time ARNs, unknown offline.
    expected = sum(len(objects_from_config_group_inputs(r["inputs"])) for r in plan["resources"]
                   if r["type"] == "kubernetes:yaml/v2:ConfigGroup" and r["name"].startswith("kubeflow-"))
    assert expected > 400, "the Kubeflow ConfigGroups should carry the upstream objects"
    written = [obj for path in sorted((first.out / "manifests").glob("*configgroup-kubeflow-*.yaml"))
               for obj in yaml.load_all(path.read_text(), Loader=YAML_LOADER) if obj]
    assert len(written) == expected
    assert [o.obj for o in kubernetes_objects(plan).objects if o.source.startswith("ConfigGroup kubeflow-")] == written


def test_tree_shows_each_resource_under_its_parent_with_counts_and_a_summary(previews):
    first, _ = previews
    plan = json.loads((first.out / "plan.json").read_text())
    out = first.stdout
    assert " +   pulumi:pulumi:Stack" in out and "kubeflow-platform-dev" in out
    assert "├─ pulumi:providers:aws" in out or "└─ pulumi:providers:aws" in out
    assert "Resources by type:" in out
    assert f"+ {len(plan['resources']) + 1} to create" in out
    assert 'url:' in out and "https://kubeflow.dev.ml.example.com/" in out


def test_progress_goes_to_stderr_with_timings(previews):
    first, _ = previews
    assert "running __main__.py for stack dev" in first.stderr
    assert "done in " in first.stderr and "done in " not in first.stdout


def test_no_marker_secret_appears_in_any_file_or_output(previews):
    first, _ = previews
    markers = list(MARKER_SECRETS.values())
    markers += [base64.b64encode(m.encode()).decode() for m in markers]
    texts = {"stdout": first.stdout, "stderr": first.stderr}
    texts.update({path: content.decode() for path, content in first.files().items()})
    for where, text in texts.items():
        for marker in markers:
            assert marker not in text, f"{marker} in {where}"


def test_a_configuration_error_exits_1_with_the_message_and_no_traceback():
    result = subprocess.run(
        [sys.executable, "-m", "tools.preview", "--stack", "dev", "--manifests", str(manifests_path()),
         "--kubeflow-version", "1.10"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1
    assert "kubeflow.version: '1.10' is not a release version" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_problems_of_the_offline_checks_are_listed_and_fail_the_preview(tmp_path, monkeypatch):
    monkeypatch.setattr(plan_checks, "CHECKS", [lambda plan: [f"{len(plan['resources'])} resources is too many"]])
    result = _preview(tmp_path / "plan")
    assert result.status == 1
    assert "Offline checks: 1 problem" in result.stdout
    assert "resources is too many" in result.stdout


# --- A small program exercising what the stub components do not register yet -------------------------

FIXTURE_PROGRAM = textwrap.dedent('''
    import pulumi
    import pulumi_aws as aws
    import pulumi_kubernetes as k8s

    secret = pulumi.Config().require_secret("fixtureSecret")
    aws_provider = aws.Provider("aws", region="us-west-2")
    k8s_provider = k8s.Provider("k8s", kubeconfig="{}")
    on_aws = pulumi.ResourceOptions(provider=aws_provider)
    on_cluster = pulumi.ResourceOptions(provider=k8s_provider)

    role = aws.iam.Role("pipelines", assume_role_policy="{}", opts=on_aws)
    base = k8s.yaml.v2.ConfigGroup("z-base", objs=[
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kubeflow"}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "kubeflow"},
         "stringData": {"password": secret, "user": "kubeflow"}},
    ], opts=on_cluster)
    k8s.yaml.v2.ConfigGroup("a-apps", objs=[
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "ml-pipeline", "namespace": "kubeflow"},
         "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "api", "image": "ghcr.io/x:1"}]}}}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": "kubeflow"},
         "data": {"config.yaml": "a: 1\\nb: 2\\n"}},
    ], opts=pulumi.ResourceOptions(provider=k8s_provider, depends_on=[base]))
    k8s.core.v1.ServiceAccount("pipeline-runner", metadata={
        "name": "pipeline-runner", "namespace": "kubeflow",
        "annotations": {"eks.amazonaws.com/role-arn": role.arn}}, opts=on_cluster)
    k8s.core.v1.ConfigMap("leaky", metadata={"name": "leaky", "namespace": "kubeflow"},
                          data={"password": pulumi.Output.unsecret(secret)}, opts=on_cluster)

    pulumi.export("roleArn", role.arn)
    pulumi.export("password", secret)
    pulumi.export("imageMirror", [{"source": "ghcr.io/x:1", "target": "registry.example.com/ghcr/x:1"}])
    pulumi.export("transformReport", {
        "changes": {"rewrite_images": [{"ref": "Deployment kubeflow/ml-pipeline", "what": "image ghcr.io/x:1 -> registry.example.com/ghcr/x:1"}]},
        "excluded": {"Deployment istio-system/istiod": "istio"},
        "exclusions": {"istio": "configured"},
        "added": ["ConfigMap argo/workflow-controller-configmap"],
    })
''')

FIXTURE_SECRET = "MARKER-fixture-secret-91d0"


@pytest.fixture(scope="module")
def fixture_preview(tmp_path_factory) -> PreviewResult:
    root = tmp_path_factory.mktemp("program")
    (root / "Pulumi.yaml").write_text("name: kubeflow-platform\nruntime: python\n")
    (root / "Pulumi.fixture.yaml").write_text("config: {}\n")
    (root / "__main__.py").write_text(FIXTURE_PROGRAM)
    stdout, stderr = io.StringIO(), io.StringIO()
    out = root / "build"
    status = preview("fixture", out=out, secrets={"fixtureSecret": FIXTURE_SECRET}, stdout=stdout, stderr=stderr,
                     root=root)
    return PreviewResult(out, status, stdout.getvalue(), stderr.getvalue())


def _fixture_plan(result: PreviewResult) -> dict:
    return json.loads((result.out / "plan.json").read_text())


def test_values_known_only_after_deploy_are_marked_in_the_plan_the_manifests_and_the_tree(fixture_preview):
    plan = _fixture_plan(fixture_preview)
    account = next(r for r in plan["resources"] if r["name"] == "pipeline-runner")
    assert account["inputs"]["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == KNOWN_AFTER_DEPLOY
    assert plan["outputs"]["roleArn"] == KNOWN_AFTER_DEPLOY
    assert 'metadata.annotations["eks.amazonaws.com/role-arn"]: (known after deploy)' in fixture_preview.stdout
    written = yaml.safe_load((fixture_preview.out / "manifests" / "ServiceAccount.yaml").read_text())
    assert written["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == KNOWN_AFTER_DEPLOY


def test_secrets_are_masked_and_a_secret_let_out_of_its_wrapper_fails_the_preview(fixture_preview):
    plan = _fixture_plan(fixture_preview)
    assert plan["outputs"]["password"] == SECRET
    base = next(r for r in plan["resources"] if r["name"] == "z-base")
    assert base["inputs"]["objs"][1]["stringData"] == {"password": SECRET, "user": "kubeflow"}
    assert fixture_preview.status == 1
    assert "kubernetes:core/v1:ConfigMap leaky: inputs data.password: holds a secret value outside a Pulumi secret" \
        in fixture_preview.stdout
    for path, content in fixture_preview.files().items():
        assert FIXTURE_SECRET.encode() not in content, path
    assert FIXTURE_SECRET not in fixture_preview.stdout + fixture_preview.stderr


def test_manifests_are_one_file_per_config_group_in_apply_order_then_one_per_kind(fixture_preview):
    files = sorted(p.name for p in (fixture_preview.out / "manifests").glob("*.yaml"))
    # z-base is applied before a-apps (depends_on), so it gets the lower number despite its name.
    assert files == ["1-configgroup-z-base.yaml", "2-configgroup-a-apps.yaml", "ConfigMap.yaml", "ServiceAccount.yaml"]
    apps = list(yaml.safe_load_all((fixture_preview.out / "manifests" / "2-configgroup-a-apps.yaml").read_text()))
    assert [o["kind"] for o in apps] == ["Deployment", "ConfigMap"]
    assert apps[0]["spec"]["replicas"] == 1 and isinstance(apps[0]["spec"]["replicas"], int)
    text = (fixture_preview.out / "manifests" / "2-configgroup-a-apps.yaml").read_text()
    # Multi-line strings as literal blocks: a ConfigMap's embedded config stays readable.
    assert "data:\n  config.yaml: |\n    a: 1\n    b: 2\n" in text


def test_the_mirror_list_and_the_transformation_report_come_from_the_exports(fixture_preview):
    assert (fixture_preview.out / "images.txt").read_text() == "ghcr.io/x:1 registry.example.com/ghcr/x:1\n"
    report = (fixture_preview.out / "transform-report.txt").read_text()
    assert "rewrite_images: 1 changes" in report
    assert "Deployment kubeflow/ml-pipeline: image ghcr.io/x:1 -> registry.example.com/ghcr/x:1" in report
    assert "istio: 1 objects (configured)" in report and "Deployment istio-system/istiod" in report
    assert "ConfigMap argo/workflow-controller-configmap" in report
    assert "Transformations: 1 changes to 1 objects (rewrite_images 1); 1 objects excluded (istio 1); 1 objects added" \
        in fixture_preview.stdout


def test_the_headline_counts_the_objects_the_transformations_changed():
    from tools.plan import transform_summary

    summary = transform_summary({"transformReport": {"changes": {
        "rewrite_images": ["Deployment kubeflow/a: image x -> y", "Deployment kubeflow/b: image x -> y"],
        "label_pod_templates": ["Deployment kubeflow/a: labels team"],
    }}})
    assert summary.headline().startswith("3 changes to 2 objects (rewrite_images 2, label_pod_templates 1)")


def test_the_mirror_list_reads_a_mapping_too_and_says_when_there_is_none():
    assert image_mirror_lines({"imageMirror": {"b/y:2": "m/b/y:2", "a/x:1": "m/a/x:1"}}) == ["a/x:1 m/a/x:1", "b/y:2 m/b/y:2"]
    assert image_mirror_lines({})[0].startswith("# no imageMirror export")
    assert transform_report_text(transform_summary({})).startswith("# no transformReport export")


def test_exports_of_an_unexpected_shape_are_problems_not_crashes():
    plan = {"resources": [], "outputs": {"imageMirror": ["ghcr.io/x:1"], "transformReport": {"excluded": ["x"]}}}
    assert plan_checks.validate_plan(plan) == [
        'stack output imageMirror entry "ghcr.io/x:1" is not {source, target}',
        "stack output transformReport.excluded is a list; expected a mapping",
        "stack output policyPackConfig is None; without the rules the stack states, its guardrails cannot be checked",
    ]
    assert image_mirror_lines(plan["outputs"]) == ['# imageMirror entry "ghcr.io/x:1" is not {source, target}']
    assert "excluded" not in transform_report_text(transform_summary(plan["outputs"])).split("Excluded, per rule:")[1]


def test_a_dotted_setting_changes_one_key_and_keeps_the_rest_of_the_stack_file():
    from tools.mock_runtime import stack_config
    from tools.preview import config_overrides, with_settings

    written = stack_config("prod")["kubeflow-platform:kubeflow"]
    overrides = with_settings("prod", config_overrides("prod", "x.yaml", "1.11.0"),
                              {"kubeflow.mesh.mtls": "permissive", "kubeflow.objectStore.staticKeys": True})
    kubeflow = overrides["kubeflow"]
    assert kubeflow["mesh"] == {**written["mesh"], "mtls": "permissive"}
    assert kubeflow["objectStore"] == {"staticKeys": True}
    assert (kubeflow["version"], kubeflow["manifests"]) == ("1.11.0", "x.yaml")
    # A top-level area the overrides did not hold comes from the stack file, changed only where asked.
    assert with_settings("prod", {}, {"auth.lowercase": False})["auth"] == {
        **stack_config("prod")["kubeflow-platform:auth"], "lowercase": False}
