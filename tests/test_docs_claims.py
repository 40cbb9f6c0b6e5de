"""Claims the docs make about what the program does, held to what it does: counts, names, exit codes and
the sample output they quote. A failure names the page; update the page (or the program) so they agree."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from analysis.plan_objects import kubernetes_objects
from tests.conftest import REPO_ROOT
from tests.plans import evaluated_plan
from tools.mock_runtime import stack_config
from tests.test_fresh_machine import _environment, fresh_clone  # noqa: F401  (fixture)
from tests.upstream import CURRENT_VERSION, manifests_path
from tools.critical_path import estimate
from tools.preview import render_tree

DOCS = REPO_ROOT / "docs"


def page(name: str) -> str:
    return (REPO_ROOT / name).read_text(encoding="utf-8")


def _collapsed(line: str) -> str:
    return " ".join(line.split())


def test_readme_sample_preview_lines_are_the_dev_preview_s_own():
    """README's sample of `make preview`: every line it shows (`...` standing for what it leaves out) is a line
    the dev preview prints, columns aside."""
    readme = page("README.md")
    block = readme[readme.index("```\n +   pulumi:pulumi:Stack"):]
    block = block[4:block.index("\n```", 4)]
    printed = [_collapsed(line) for line in render_tree(evaluated_plan("dev")[0]).splitlines()]
    for line in block.splitlines():
        if line.strip() in ("", "..."):
            continue
        pattern = re.compile("^" + ".*".join(re.escape(part) for part in _collapsed(line).split("...")) + "$")
        # A tree row is printed with its Info column; the sample leaves it out.
        assert any(pattern.match(p) or pattern.match(p.rsplit(" create", 1)[0] + " create") for p in printed), line


def _test_names() -> set[str]:
    names = set()
    for path in (REPO_ROOT / "tests").rglob("test_*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names |= {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    return names


def test_tests_the_docs_name_exist():
    named = set(re.findall(r"`(test_\w+)`", page("README.md")))
    for doc in DOCS.glob("*.md"):
        named |= {name for name in re.findall(r"`(test_\w+)`", doc.read_text(encoding="utf-8"))
                  if not name.endswith(".py")}
    assert named and named <= _test_names(), sorted(named - _test_names())


def test_make_preview_exits_2_and_the_tool_1_when_the_stack_is_refused(fresh_clone, tmp_path):
    """README, preview-and-diff.md, troubleshooting-config.md, guardrails.md and mesh-trace.md: a refused stack
    (here by the CLI's check) makes `python -m tools.preview` exit 1 and `make preview` 2."""
    document = yaml.safe_load((REPO_ROOT / "Pulumi.dev.yaml").read_text())
    del document["config"]["kubeflow-platform:aws"]
    (fresh_clone / "Pulumi.broken.yaml").write_text(yaml.safe_dump(document))
    manifests = str(manifests_path(CURRENT_VERSION))
    env = _environment(tmp_path)
    made = subprocess.run(["make", "preview", "STACK=broken", f"MANIFESTS={manifests}"], cwd=fresh_clone, env=env,
                          capture_output=True, text=True, timeout=300)
    assert made.returncode == 2, made.stderr
    assert "Stack 'broken' is missing configuration value 'aws'" in made.stderr
    tool = subprocess.run([str(fresh_clone / ".venv" / "bin" / "python"), "-m", "tools.preview", "--stack", "broken",
                           "--manifests", manifests], cwd=fresh_clone, env=env, capture_output=True, text=True,
                          timeout=300)
    assert tool.returncode == 1, tool.stderr


def test_releases_md_counts_are_the_plans():
    counts = {stack: evaluated_plan(stack)[0]["outputs"]["transformReport"]["counts"] for stack in ("dev", "prod")}
    row = next(line for line in page("docs/releases.md").splitlines() if line.startswith("| With the stacks' settings"))
    dev, prod = counts["dev"], counts["prod"]
    assert (f"dev's plan: {dev['input']} upstream objects, {dev['emitted']} applied, {dev['excluded']} excluded, "
            f"{dev['added']} added (prod: {prod['emitted']} applied, {prod['added']} added)") in row


def test_releases_md_names_what_the_transformations_add():
    text = " ".join(page("docs/releases.md").split())
    added = {stack: evaluated_plan(stack)[0]["outputs"]["transformReport"]["added"] for stack in ("dev", "prod")}
    both = [ref for ref in added["dev"] if ref in added["prod"]]
    assert sorted(both) == ["ConfigMap argo/workflow-controller-configmap", "Deployment istio-system/knative-local-gateway",
                            "Job kubeflow/kubeflow-platform-databases", "ServiceAccount kubeflow/metadata-envoy",
                            "ValidatingAdmissionPolicy kubeflow-platform-pod-security",
                            "ValidatingAdmissionPolicyBinding kubeflow-platform-pod-security-labelled",
                            "ValidatingAdmissionPolicyBinding kubeflow-platform-pod-security-profiles"]
    assert ("`workflow-controller-configmap` (applied as a patch of the enterprise's own), the ServiceAccount "
            "`kubeflow/metadata-envoy`, the Job `kubeflow/kubeflow-platform-databases`, the cluster-local gateway "
            "`istio-system/knative-local-gateway`") in text
    assert "the Pod Security admission policy with its two bindings" in text
    only_prod = [ref.split()[0] for ref in added["prod"] if ref not in added["dev"]]
    assert (only_prod.count("PeerAuthentication"), only_prod.count("ServiceEntry"), len(only_prod)) == (8, 6, 14)
    assert "eight PeerAuthentications (mTLS `strict`: five for webhooks, three for the ports sidecar-less" in text
    assert "six ServiceEntries (`REGISTRY_ONLY`, the image mirror among them)" in text


def _namespace_label(stack: str, name: str, label: str) -> str | None:
    for found in kubernetes_objects(evaluated_plan(stack)[0]).objects:
        obj = found.obj
        if obj.get("kind") == "Namespace" and obj["metadata"]["name"] == name:
            return (obj["metadata"].get("labels") or {}).get(label)
    raise AssertionError(f"{stack}: no Namespace {name}")


@pytest.mark.parametrize(("stack", "level"), [("dev", "restricted"), ("prod", "privileged")])
def test_releases_md_pod_security_of_kubeflow_s_namespaces(stack, level):
    # releases.md "Pod Security `restricted` stays": kept with sidecar-cni (dev), privileged with sidecar-init.
    for namespace in ("kubeflow", "kubeflow-system", "knative-serving"):
        assert _namespace_label(stack, namespace, "pod-security.kubernetes.io/enforce") == level, namespace


@pytest.mark.parametrize(("stack", "outside"), [("dev", ["cert-manager"]), ("prod", ["cert-manager", "gpu-warm-capacity"])])
def test_guardrails_md_namespaces_kept_out_of_the_mesh(stack, outside):
    config = evaluated_plan(stack)[0]["outputs"]["policyPackConfig"]["namespaces-in-mesh"]
    assert config["namespacesOutsideMesh"] == outside
    assert "`cert-manager` on both stacks" in page("docs/guardrails.md")


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_profiles_md_resources_per_profile(stack):
    # profiles.md: three resources per profile, the Namespace's patch and the closing policy retained on delete; a
    # data lake adds its role and policy, and the two associations (seven in all) with EKS Pod Identity (dev), or the
    # small group of what names the role (six) with IRSA (prod).
    plan = evaluated_plan(stack)[0]
    pod_identity = plan["outputs"]["identityMechanism"] == "podIdentity"
    per_profile: dict[str, list[dict]] = {}
    for resource in plan["resources"]:
        match = re.match(r"tenancy-(\w+)-(namespace-patch|closed-when-removed|namespace|profile|"
                         r"data-lake(?:-policy|-default-editor|-pipeline-runner)?)$", resource["name"])
        if match:
            per_profile.setdefault(match.group(1), []).append(resource)
    lakes = {p["name"] for p in stack_config(stack)["kubeflow-platform:tenancy"]["profiles"] if "dataLake" in p}
    assert lakes and per_profile, "the stack needs profiles with a data lake"
    own = ["closed-when-removed", "namespace", "namespace-patch"]
    lake_adds = ["data-lake", "data-lake-policy",
                 *(["data-lake-default-editor", "data-lake-pipeline-runner"] if pod_identity else ["profile"])]
    for profile, resources in per_profile.items():
        names = sorted(r["name"].split(f"tenancy-{profile}-")[1] for r in resources)
        assert names == sorted([*own, *lake_adds] if profile in lakes else own), profile
        assert len(names) == (7 if pod_identity else 6) if profile in lakes else 3
        retained = {r["name"] for r in resources if r["options"]["retainOnDelete"]}
        assert retained == {f"tenancy-{profile}-namespace-patch", f"tenancy-{profile}-closed-when-removed"}
    text = " ".join(page("docs/profiles.md").split())
    assert "Each profile is three resources" in text
    assert "the two pod identity associations (`default-editor`, `pipeline-runner`; seven resources in all)" in text
    assert "a small group `tenancy-<profile>-profile` holding what carries the role's ARN (six in all)" in text


def test_kubeflow_manifests_md_irsa_annotations_ride_on_the_service_accounts():
    # No patch after the fact for service accounts in the manifests (the stacks opt no Argo account in). Under
    # IRSA (dev with only identity.mechanism changed) the role rides on the account; under Pod Identity (dev) none.
    from tests.conftest import irsa_settings

    for settings, annotated in ((irsa_settings("dev"), True), (None, False)):
        plan = evaluated_plan("dev", settings=settings)[0]
        assert not [r for r in plan["resources"] if r["type"] == "kubernetes:core/v1:ServiceAccountPatch"]
        accounts = {f"{o.obj['metadata'].get('namespace')}/{o.obj['metadata']['name']}": o.obj
                    for o in kubernetes_objects(plan).objects if o.obj.get("kind") == "ServiceAccount"}
        annotations = accounts["kubeflow/ml-pipeline"]["metadata"].get("annotations") or {}
        assert ("eks.amazonaws.com/role-arn" in annotations) is annotated
    assert "patched onto service accounts by small resources" not in page("docs/kubeflow-manifests.md")
    assert "under EKS Pod Identity there are none" in page("docs/kubeflow-manifests.md")


def test_working_kubeflow_md_databases_job_image():
    jobs = [o.obj for o in kubernetes_objects(evaluated_plan("dev")[0]).objects
            if o.obj.get("kind") == "Job" and o.obj["metadata"]["name"] == "kubeflow-platform-databases"]
    images = {c["image"] for c in jobs[0]["spec"]["template"]["spec"]["containers"]}
    assert images == {"registry.example.com/kubeflow/docker.io/library/mysql:8.0"}
    assert "(`mysql:8.0` in 26.03" in page("docs/working-kubeflow.md")


def test_performance_md_deploy_estimate_is_the_tool_s():
    """performance.md's block is `python -m tools.critical_path --plan build/dev` without the reasons."""
    text = page("docs/performance.md")
    block = text[text.index("```\nestimated first `pulumi up`"):]
    block = block[4:block.index("\n```", 4)].splitlines()
    printed = [re.sub(r"  \(.*\)$", "", line) for line in estimate(evaluated_plan("dev")[0]).lines()]
    assert block == printed
