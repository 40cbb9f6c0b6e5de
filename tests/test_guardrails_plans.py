"""The guardrails over what each stack really plans, in the offline preview and in whole-program runs.

No violation is expected, and none is tolerated: the transformations, the components and the settings'
own checks keep every rule on both stacks (the last gaps, the profile controller's labels file and the
GPU warm-capacity namespace, are fixed or allow-listed with their reasons in the code).
"""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest

from manifests.guardrails import GuardrailParams, GuardrailReport, PlannedObject, check_plan
from tests.conftest import REPO_ROOT, STACKS, _stack_kubeflow, run_stack
from tests.plans import evaluated_plan
from tests.upstream import manifests_path, upstream_objects
from tools.plan import build_plan
from tools.plan_checks import POLICY_PACK_CONFIG_EXPORT, guardrail_report, validate_plan


@pytest.mark.parametrize("stack", STACKS)
def test_the_offline_preview_of_each_stack_keeps_every_guardrail(stack):
    plan, _ = evaluated_plan(stack)
    report = guardrail_report(plan)
    assert report.violations == []
    # Nothing is left to deploy time: the OIDC provider's and the roles' ARNs follow from the account and names
    # the program chooses, so the trust policies and the profiles' role-bound groups are decided offline.
    assert report.deferred == []


def test_a_whole_run_of_each_stack_keeps_every_guardrail_with_nothing_left_to_deploy(stack_run):
    """Without preview unknowns every rule is decided, the IRSA trust policies and the profiles included."""
    plan, _ = build_plan(stack_run)
    assert guardrail_report(plan) == GuardrailReport([], [])


def test_each_stack_states_its_rules_for_the_policy_pack(stack_run):
    config = stack_run.exports[POLICY_PACK_CONFIG_EXPORT]
    params = GuardrailParams.from_policy_config(config)
    assert params.mirror == "registry.example.com/kubeflow"
    assert params.cluster_oidc_issuer == stack_run.exports["clusterOidcIssuer"]
    assert params.gateway_service == "istio-system/istio-ingressgateway"
    # prod runs a revisioned mesh and keeps warm GPU nodes, whose placeholder namespace stays out of the mesh;
    # both keep upstream's cert-manager, outside the mesh like upstream's.
    expected = {"dev": (None, {"cert-manager"}), "prod": ("prod-1-24", {"gpu-warm-capacity", "cert-manager"})}[stack_run.stack]
    assert (params.mesh_revision, set(params.namespaces_outside_mesh)) == expected


def test_unmodified_upstream_breaks_the_guardrails_the_transformations_keep():
    params = GuardrailParams.from_policy_config(evaluated_plan("dev")[0]["outputs"][POLICY_PACK_CONFIG_EXPORT])
    violations = check_plan([], params, [PlannedObject(obj) for obj in upstream_objects()]).violations
    # Public images everywhere, namespaces outside the mesh, bundled databases' literal passwords, the
    # profile controller's labels file without a mesh label.
    assert sum(v.startswith("[images-from-approved-mirror]") for v in violations) > 100
    assert "[namespaces-in-mesh] Namespace oauth2-proxy: metadata.labels[istio-injection] is None, not 'enabled' (outside the mesh)" in violations
    assert any(v.startswith("[no-static-credentials] Secret kubeflow/mlpipeline-minio-artifact: stringData[secretkey]") for v in violations)
    assert any(v.startswith("[no-static-credentials] Secret auth/dex-passwords") for v in violations)
    assert any(v.startswith("[profile-namespaces-in-mesh] ConfigMap kubeflow/namespace-labels-data-") for v in violations)


# ------------------------------------------------------------------------- a violating plan fails


def test_a_stack_that_keeps_upstream_dex_fails_the_offline_checks_with_the_policys_message():
    # The settings allow keeping Dex (only the replaced auth proxy must go); its example user's password
    # and client secret are literals in upstream's manifests.
    kubeflow = _stack_kubeflow("dev")
    kubeflow.update(manifests=str(manifests_path()), exclude=["istio", "argo", "oauth2-proxy"])
    plan, _ = build_plan(run_stack("dev", {"kubeflow": kubeflow}))
    assert [p for p in validate_plan(plan) if p.startswith("[")] == [
        "[no-static-credentials] Secret auth/dex-oidc-client: data[OIDC_CLIENT_SECRET] is a literal credential in the manifests; "
        "fill it from a Pulumi secret",
        "[no-static-credentials] Secret auth/dex-passwords: stringData[DEX_USER_PASSWORD] is a literal credential in the manifests; "
        "fill it from a Pulumi secret",
    ]


@pytest.mark.parametrize("edit,message", [
    (lambda plan: _inputs(plan, "aws:s3/bucketVersioning:BucketVersioning", "artifacts-pipelines-versioning")
     ["versioningConfiguration"].update(status="Suspended"),
     "[s3-bucket-versioned] BucketVersioning artifacts-pipelines-versioning: versioningConfiguration.status is 'Suspended', not 'Enabled'"),
    (lambda plan: plan["resources"].remove(_resource(plan, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
                                                     "artifacts-pipelines-public-access")),
     "[s3-bucket-companions] Bucket artifacts-pipelines: no a public access block (BucketPublicAccessBlock) for bucket 'example-ml-dev-pipelines'"),
    # dev's GPU pool is Karpenter's: the rule reads the NodePool's node template.
    (lambda plan: _inputs(plan, "kubernetes:karpenter.sh/v1:NodePool", "gpu-gpu-a10g-node-pool")["spec"]["template"]["spec"].update(taints=[]),
     "[gpu-node-groups-tainted-and-labelled] NodePool gpu-gpu-a10g-node-pool: taints [] has no NoSchedule or NoExecute taint"),
    (lambda plan: _inputs(plan, "kubernetes:core/v1:ServicePatch", "ingress-service")["spec"].update(loadBalancerSourceRanges=["0.0.0.0/0"]),
     "[gateway-nlb-restricted] Service istio-system/istio-ingressgateway: source range '0.0.0.0/0' opens the load balancer"),
    (lambda plan: plan["outputs"][POLICY_PACK_CONFIG_EXPORT]["images-from-approved-mirror"].update(mirror="registry.example.com/approved"),
     "[images-from-approved-mirror] Deployment kubeflow/admission-webhook-deployment: spec.template.spec.containers[0].image"),
], ids=["versioning suspended", "public access block gone", "GPU pool untainted", "NLB open", "another mirror"])
def test_a_plan_edited_to_break_a_rule_fails_the_offline_checks_with_that_policys_message(edit, message):
    plan = copy.deepcopy(evaluated_plan("dev")[0])
    edit(plan)
    problems = validate_plan(plan)
    assert any(problem.startswith(message) for problem in problems), problems


def _resource(plan, type_, name):
    return next(r for r in plan["resources"] if r["type"] == type_ and r["name"] == name)


def _inputs(plan, type_, name):
    return _resource(plan, type_, name)["inputs"]


def test_the_preview_command_exits_1_listing_the_violation_an_upstream_release_brings(tmp_path):
    # A release that adds a public LoadBalancer Service: no transformation removes it, the guardrail must.
    release = tmp_path / "kubeflow.yaml"
    release.write_text(manifests_path().read_text() + "\n---\napiVersion: v1\nkind: Service\nmetadata:\n"
                       "  name: ml-pipeline-ui-public\n  namespace: kubeflow\nspec:\n  type: LoadBalancer\n"
                       "  selector:\n    app: ml-pipeline-ui\n  ports:\n  - port: 80\n    targetPort: 3000\n")
    result = subprocess.run([sys.executable, "-m", "tools.preview", "--stack", "dev", "--manifests", str(release),
                             "--out", str(tmp_path / "plan")], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Offline checks: 1 problem\n" in result.stdout
    assert ("    - [only-gateway-load-balancer] Service kubeflow/ml-pipeline-ui-public: spec.type is LoadBalancer; "
            "only the gateway istio-system/istio-ingressgateway may have a load balancer\n") in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
