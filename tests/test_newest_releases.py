"""Kubeflow v1.11.0 and 26.03 against the organisation's cluster: what changed upstream, and how each change is met.

The pure pipeline runs over both rendered releases with the organisation's options; the whole program runs
both stacks over 26.03. Kubeflow 1.11.0 cannot work with the platform's IRSA-only object store (KFP 2.15.0's
API server requires static keys), so the program refuses it with the reason unless the stack gives pipelines
static keys (kubeflow.objectStore.staticKeys); its invariants are checked in that configuration.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import replace

import pulumi
import pytest
import yaml

from manifests import guardrails
from manifests.exclusions import RULES_BY_NAME
from manifests.images import INJECTED_PROXY_IMAGE, PUBLIC_REGISTRIES, istio_fills_image
from manifests.mesh import PROFILE_LABELS_KEY
from manifests.network_policies import NAMESPACE_NAME_LABEL, UPSTREAM_GATEWAY_NAMESPACE, admits_upstream_gateway
from manifests.objects import CONTAINER_LISTS, api_group, object_ref, pod_template, walk_strings
from manifests.options import GatewayPodsOptions, ImageMirrorOptions, ImageMirrorRule
from manifests.pipeline import transform
from manifests.sources import ManifestError
from manifests.validate import validate_objects
from tests import test_kubeflow
from tests.conftest import STACKS, run_stack, shared_run
from tests.manifests.conftest import ENTERPRISE, MIRROR, MIRROR_RULES
from tests.upstream import manifests_path, upstream_objects
from tools.mock_runtime import ProgramRun, stack_config

NEW_RELEASES = ("1.11.0", "26.03")
#: The gateway pods live outside istio-system here, so every NetworkPolicy rewrite shows.
GATEWAY_PODS = GatewayPodsOptions("istio-ingress", (("istio", "central-gateway"),))
#: The rendered JobSet release file names the staging registry (see the rendered files' README).
JOBSET_RULE = ImageMirrorRule("us-central1-docker.pkg.dev/k8s-staging-images", f"{MIRROR}/k8s-staging")

#: A mesh with the Istio CNI node agent, where upstream's restricted namespaces can stay restricted.
ORGANISATION = replace(ENTERPRISE, images=ImageMirrorOptions(MIRROR_RULES + (JOBSET_RULE,)), gateway_pods=GATEWAY_PODS,
                       mesh=replace(ENTERPRISE.mesh, data_plane="sidecar-cni"))
#: The stacks' reading: S3 through IRSA alone.
IRSA_ONLY = replace(ORGANISATION, stores=replace(ORGANISATION.stores, static_keys=False))
#: What each release runs with: 26.03 with every external store on IRSA; 1.11.0 with the external stores
#: and static object-store keys, which its KFP API server needs.
OPTIONS = {
    "26.03": IRSA_ONLY,
    "1.11.0": replace(ORGANISATION, stores=replace(ORGANISATION.stores, static_keys=True)),
}


@functools.lru_cache(maxsize=None)
def result(version: str):
    return transform(upstream_objects(version), OPTIONS[version])


@pytest.fixture(params=NEW_RELEASES, ids=lambda v: f"v{v}")
def version(request) -> str:
    return request.param


# ------------------------------------------------------------------------ the pure pipeline's invariants


def test_every_upstream_object_is_emitted_or_excluded_by_a_named_rule(version):
    upstream, emitted = upstream_objects(version), result(version)
    assert len(emitted.objects) == len(upstream) - len(emitted.excluded) + len(emitted.added)
    emitted_refs = {object_ref(obj) for obj in emitted.objects}
    for obj in upstream:
        ref = object_ref(obj)
        assert (ref in emitted_refs) != (ref in emitted.excluded), ref
    assert set(emitted.excluded.values()) <= set(emitted.exclusions) <= set(RULES_BY_NAME)


def test_every_image_is_pulled_from_the_mirror(version):
    emitted = result(version)
    assert emitted.unmirrored_images == {}
    images = [container["image"] for obj in emitted.objects if pod_template(obj)
              for name in CONTAINER_LISTS for container in pod_template(obj)["spec"].get(name) or []
              if not (container["image"] == INJECTED_PROXY_IMAGE and istio_fills_image(obj))]
    assert len(images) > 30 and all(image.startswith(MIRROR + "/") for image in images)
    public = re.compile(r"(?<![\w./-])(" + "|".join(re.escape(r) for r in PUBLIC_REGISTRIES) + r")/[\w./-]+")
    for obj in emitted.objects:
        if obj["kind"] == "CustomResourceDefinition":
            continue
        for path, text in walk_strings(obj):
            if path[:2] != ("data", "_example"):  # Knative's checksummed documentation
                assert public.search(text) is None, f"{object_ref(obj)} {path}: {text[:120]}"


def test_everything_emitted_validates_against_its_schema(version):
    upstream = upstream_objects(version)
    assert validate_objects(result(version).objects, extra_crds=upstream) == []


def test_kubeflow_system_joins_the_mesh_and_keeps_pod_security_restricted(version):
    namespaces = {o["metadata"]["name"]: o["metadata"]["labels"] for o in result(version).objects if o["kind"] == "Namespace"}
    assert {"kubeflow", "kubeflow-system"} <= set(namespaces)
    for name, labels in namespaces.items():
        assert labels["istio-injection"] == "enabled", name
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted", name
    trainer = [o for o in result(version).objects if o["metadata"].get("namespace") == "kubeflow-system" and pod_template(o)]
    assert {o["metadata"]["name"] for o in trainer} == {"jobset-controller-manager", "kubeflow-trainer-controller-manager"}
    for workload in trainer:
        # The API server calls the webhooks on 9443 without mesh mTLS: upstream's exclusion stays.
        annotations = pod_template(workload)["metadata"]["annotations"]
        assert annotations["traffic.sidecar.istio.io/excludeInboundPorts"] == "9443", object_ref(workload)


def test_trainer_webhooks_serve_before_the_runtimes_they_admit(version):
    groups = result(version).groups.objects
    order = list(groups)
    where = {object_ref(obj): order.index(name) for name, objects in groups.items() for obj in objects}
    runtimes = [ref for ref in where if ref.startswith("ClusterTrainingRuntime ")]
    assert len(runtimes) >= 3
    for served_by in ("ValidatingWebhookConfiguration validator.trainer.kubeflow.org",
                      "Deployment kubeflow-system/kubeflow-trainer-controller-manager",
                      "CustomResourceDefinition clustertrainingruntimes.trainer.kubeflow.org"):
        assert all(where[served_by] < where[runtime] for runtime in runtimes), served_by
    jobset = "MutatingWebhookConfiguration jobset-mutating-webhook-configuration"
    assert where[jobset] <= where["Deployment kubeflow-system/kubeflow-trainer-controller-manager"]


# ----------------------------------------------------------------------------- KFP's per-namespace sync

PROFILE_CONTROLLER = "Deployment kubeflow/kubeflow-pipelines-profile-controller"


def test_pipelines_profile_controller_never_calls_iam_or_writes_seaweedfs_config():
    emitted = result("26.03")
    assert emitted.excluded[PROFILE_CONTROLLER] == "pipelines-profile-controller"
    assert "IAM access key" in emitted.exclusions["pipelines-profile-controller"]
    assert not [o for o in emitted.objects if o["kind"] == "DecoratorController"]
    text = json.dumps(emitted.objects)
    for trace in ("create_access_key", "AWS_ENDPOINT_URL", "seaweedfs.kubeflow", "minio://mlpipeline"):
        assert trace not in text, trace
    # The per-profile config it wrote is the program's own (manifests.tenancy), so nothing else writes it.
    assert "default-namespaced" not in text


def test_the_pipelines_profile_controller_stays_where_it_creates_no_iam_key():
    # KFP 2.5 (Kubeflow 1.10) copies static keys and calls no IAM; the bundled SeaweedFS needs the hook.
    assert PROFILE_CONTROLLER not in transform(upstream_objects("1.10.2"), ENTERPRISE).excluded
    bundled = transform(upstream_objects("26.03"), replace(ORGANISATION, stores=None, argo=None))
    assert PROFILE_CONTROLLER not in bundled.excluded and "pipelines-profile-controller" not in bundled.exclusions


def test_kfp_2_15_with_the_irsa_object_store_is_refused_with_the_reason():
    with pytest.raises(ManifestError) as caught:
        transform(upstream_objects("1.11.0"), IRSA_ONLY)
    (problem,) = caught.value.problems
    assert problem.where == "kubeflow.manifests"
    assert "KFP 2.15.0" in str(problem) and "static object-store keys" in str(problem) and "26.03" in str(problem)
    assert "kubeflow.objectStore.staticKeys: true" in str(problem)


@pytest.mark.parametrize("release", ["1.11.0", "26.03"])
def test_the_external_argo_with_the_bundled_stores_is_refused_from_kfp_2_15(release):
    # KFP 2.15+'s kept per-namespace sync would point every profile's workflows at the bundled SeaweedFS.
    with pytest.raises(ManifestError) as caught:
        transform(upstream_objects(release), replace(ORGANISATION, stores=None))
    (problem,) = caught.value.problems
    assert problem.where == "kubeflow.argo.external" and "SeaweedFS" in problem.message
    assert "kubeflow.database" in problem.fix and "kubeflow.argo.external: false" in problem.fix
    # KFP 2.5's sync writes no artifact repository (Kubeflow 1.10): the combination stays accepted there.
    transform(upstream_objects("1.10.2"), replace(ORGANISATION, stores=None))


def test_kfp_2_15_runs_on_the_external_object_store_with_static_keys():
    keyed = OPTIONS["1.11.0"]
    emitted = result("1.11.0")
    api_server = next(o for o in emitted.objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "ml-pipeline")
    env = {e["name"]: e for c in pod_template(api_server)["spec"]["containers"] for e in c.get("env") or []}
    # ObjectStoreConfig.AccessKey/SecretAccessKey (kubeflow/pipelines@2.15.0 client_manager.go:991-1037) come
    # from the central Secret, whose keys the program fills from the two Pulumi secrets.
    for name, key in (("OBJECTSTORECONFIG_ACCESSKEY", "object-store-access-key"),
                      ("OBJECTSTORECONFIG_SECRETACCESSKEY", "object-store-secret-key")):
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": keyed.stores.secret_name, "key": key}
    assert env["OBJECTSTORECONFIG_HOST"]["value"] == keyed.stores.object_store_host


def test_static_keys_without_external_stores_are_refused_with_the_fix():
    kubeflow = {key: value for key, value in stack_config("dev")["kubeflow-platform:kubeflow"].items() if key != "database"}
    kubeflow.update(manifests=str(manifests_path("26.03")), objectStore={"staticKeys": True})
    with pytest.raises(pulumi.RunError) as caught:
        run_stack("dev", {"kubeflow": kubeflow})
    assert caught.value.program_run.resources == []
    message = str(caught.value)
    assert "kubeflow.objectStore.staticKeys: applies only to the external stores" in message


# ----------------------------------------------------------------------------------- KServe LLM controller


def test_kserve_llm_controller_is_left_out_unless_the_cluster_serves_the_gateway_api():
    emitted = result("26.03")
    llm = {ref for ref, rule in emitted.excluded.items() if rule == "kserve-llm"}
    assert {"Deployment kubeflow/llmisvc-controller-manager", "ValidatingWebhookConfiguration llminferenceservice.serving.kserve.io",
            "CustomResourceDefinition llminferenceservices.serving.kserve.io", "ClusterRole llmisvc-manager-role"} <= llm
    assert "kubeflow.gatewayApi" in emitted.exclusions["kserve-llm"]
    # Nothing left admits, serves or reconciles LLMInferenceServices; the main KServe controller stays.
    for obj in emitted.objects:
        assert "llmisvc" not in json.dumps(obj.get("webhooks", [])), object_ref(obj)
    assert "Deployment kubeflow/kserve-controller-manager" in {object_ref(o) for o in emitted.objects}
    with_gateway_api = transform(upstream_objects("26.03"), replace(ORGANISATION, gateway_api=True))
    assert "kserve-llm" not in with_gateway_api.exclusions
    assert "Deployment kubeflow/llmisvc-controller-manager" in {object_ref(o) for o in with_gateway_api.objects}
    # Releases without the LLM controller report no such exclusion.
    assert "kserve-llm" not in result("1.11.0").exclusions


# ------------------------------------------------------------------------------------- NetworkPolicies


def _peers(policy: dict):
    return [peer for rule in policy["spec"].get("ingress") or [] for peer in rule.get("from") or []]


def test_network_policies_admit_the_real_gateway_namespace(version):
    upstream = {object_ref(o): o for o in upstream_objects(version) if o["kind"] == "NetworkPolicy"}
    admitting = {ref for ref, policy in upstream.items() if admits_upstream_gateway(policy)}
    assert len(admitting) >= {"1.11.0": 13, "26.03": 16}[version]
    emitted = {object_ref(o): o for o in result(version).objects if o["kind"] == "NetworkPolicy"}
    changed = {change.ref for change in result(version).changes["admit_gateway_namespace"]}
    for ref in admitting & set(emitted):
        peers = _peers(emitted[ref])
        real = [p for p in peers if p.get("namespaceSelector") == {"matchLabels": {NAMESPACE_NAME_LABEL: "istio-ingress"}}]
        assert real, ref
        assert all(p.get("podSelector") in (None, {"matchLabels": {"istio": "central-gateway"}}) for p in real), ref
        assert ref in changed
        for peer in peers:
            if admits_upstream_gateway({"spec": {"ingress": [{"from": [peer]}]}}):
                # Only the control plane and Knative's local gateway are still sought in istio-system.
                apps = json.dumps(peer.get("podSelector"))
                assert "istiod" in apps or "cluster-local-gateway" in apps, ref


def test_network_policies_stay_as_upstream_wrote_them_where_the_gateway_is_where_upstream_expects():
    same = replace(ORGANISATION, gateway_pods=GatewayPodsOptions(UPSTREAM_GATEWAY_NAMESPACE, (("app", "istio-ingressgateway"),)))
    emitted = transform(upstream_objects("1.10.2"), replace(same, images=ENTERPRISE.images))
    assert emitted.changes["admit_gateway_namespace"] == ()


# ------------------------------------------------------------------------------ renamed dashboard pieces

#: 26.03.1 / kubeflow/manifests after 26.03 (the kubeflow/dashboard v2 manifests): new names and images.
RENAMES = {
    '"centraldashboard': '"dashboard',
    '"admission-webhook': '"poddefaults-webhook',
    '"namespace-labels-data': '"profiles-namespace-labels-data',
    '"kserve-models-web-app': '"kserve-models-web-application',
    "ghcr.io/kubeflow/kubeflow/central-dashboard": "ghcr.io/kubeflow/dashboard/dashboard",
    "ghcr.io/kubeflow/kubeflow/poddefaults-webhook": "ghcr.io/kubeflow/dashboard/poddefaults-webhook",
    "ghcr.io/kubeflow/kubeflow/profile-controller": "ghcr.io/kubeflow/dashboard/profile-controller",
    "ghcr.io/kubeflow/kubeflow/kfam": "ghcr.io/kubeflow/dashboard/kfam",
    "ghcr.io/kubeflow/kubeflow/": "ghcr.io/kubeflow/notebooks/",
    "gcr.io/istio-release": "registry.istio.io/release",
}


def renamed_release() -> list[dict]:
    """26.03 as the renamed manifests ship it: new names, `app: kubeflow-dashboard`, no kustomize.component."""
    text = json.dumps(upstream_objects("26.03"))
    for old, new in RENAMES.items():
        text = text.replace(old, new)
    text = text.replace('"app": "dashboard"', '"app": "kubeflow-dashboard"')
    objects = json.loads(text)
    for obj in objects:
        for labels in (obj["metadata"].get("labels"), (pod_template(obj) or {}).get("metadata", {}).get("labels")):
            if labels:
                labels.pop("kustomize.component", None)
    return objects


def test_renamed_dashboard_pieces_are_found_by_what_they_are():
    renamed = renamed_release()
    names = {object_ref(o) for o in renamed}
    assert {"Deployment kubeflow/dashboard", "Deployment kubeflow/poddefaults-webhook-deployment"} <= names
    emitted = transform(renamed, ORGANISATION)
    original = result("26.03")
    (labels_file,) = [o for o in emitted.objects if o["metadata"]["name"].startswith("profiles-namespace-labels-data")]
    assert yaml.safe_load(labels_file["data"][PROFILE_LABELS_KEY])["istio-injection"] == "enabled"
    for new, old in (("Deployment kubeflow/dashboard", "Deployment kubeflow/centraldashboard"),
                     ("Deployment kubeflow/poddefaults-webhook-deployment", "Deployment kubeflow/admission-webhook-deployment"),
                     (object_ref(labels_file), next(r for r in original.groups.placement if "namespace-labels-data" in r))):
        assert emitted.groups.placement[new] == original.groups.placement[old] == "core: namespaces, CRDs, profiles, dashboard, pipelines", new
    assert emitted.unmirrored_images == {}
    # The guardrail finds the renamed labels file too: untransformed, it does not put profiles in the mesh.
    profile = {"apiVersion": "kubeflow.org/v1", "kind": "Profile", "metadata": {"name": "alice"}}
    found = guardrails.profile_namespaces_in_mesh([profile, *renamed], guardrails.GuardrailParams(mirror=MIRROR))
    assert [v for v in found if "profiles-namespace-labels-data" in v]


def test_istio_images_from_registry_istio_io_are_mirrored_in_text_too():
    # With the bundled Istio kept, its injector names the proxy's hub in JSON text: that must move too.
    kept = replace(ORGANISATION, exclusions=("cert-manager", "dex", "oauth2-proxy"),
                   images=ImageMirrorOptions(ORGANISATION.images.rules, default_mirror=MIRROR))
    emitted = transform(renamed_release(), kept)
    texts = [(object_ref(o), path, text) for o in emitted.objects if o["kind"] != "CustomResourceDefinition"
             for path, text in walk_strings(o) if "registry.istio.io" in text]
    assert texts and all(f"{MIRROR}/registry.istio.io/" in text for _, _, text in texts), texts[:3]
    assert re.search(r"(?<![\w./-])registry\.istio\.io/", "\n".join(t for *_, t in texts)) is None


# --------------------------------------------------------------------------------- the whole program


def run_release(stack: str, version: str, overrides: dict | None = None) -> ProgramRun:
    kubeflow = dict(stack_config(stack)["kubeflow-platform:kubeflow"], version=version, manifests=str(manifests_path(version)))
    return shared_run(stack, {"kubeflow": kubeflow, **(overrides or {})})


@pytest.fixture(params=STACKS)
def stack_26_03(request) -> tuple[ProgramRun, str]:
    return run_release(request.param, "26.03"), "26.03"


#: The invariants tests/test_kubeflow.py holds both stacks to for the supported releases.
INVARIANTS = (
    test_kubeflow.test_every_upstream_object_is_applied_or_excluded_by_a_named_rule,
    test_kubeflow.test_no_bundled_istio_argo_or_dex_object_remains,
    test_kubeflow.test_every_workload_pod_template_carries_the_sidecar_annotation_and_configured_labels,
    test_kubeflow.test_namespaces_join_the_mesh_by_label_or_by_revision,
    test_kubeflow.test_every_virtual_service_is_on_the_central_gateway_and_hosts,
    test_kubeflow.test_no_image_reference_anywhere_points_outside_the_mirror,
    test_kubeflow.test_image_mirror_export_lists_every_image_the_cluster_pulls,
    test_kubeflow.test_everything_applied_validates_against_its_schema,
    test_kubeflow.test_config_groups_are_chained_in_order_on_the_explicit_provider,
    test_kubeflow.test_the_central_secret_keeps_the_database_password_a_pulumi_secret,
    test_kubeflow.test_the_central_secret_exists_before_its_consumers_and_after_its_namespace,
)


@pytest.mark.parametrize("invariant", INVARIANTS, ids=lambda f: f.__name__.removeprefix("test_"))
def test_both_stacks_apply_26_03_under_every_invariant_of_the_supported_releases(stack_26_03, invariant):
    invariant(stack_26_03)


def test_both_stacks_plan_26_03_without_the_iam_hook_or_the_llm_controller(stack_26_03):
    run, _ = stack_26_03
    report = run.exports["transformReport"]
    assert report["excluded"][PROFILE_CONTROLLER] == "pipelines-profile-controller"
    assert report["excluded"]["Deployment kubeflow/llmisvc-controller-manager"] == "kserve-llm"
    applied = test_kubeflow.applied(run)
    assert not [o for o in applied if o["kind"] in {"DecoratorController", "HTTPRoute"}]
    for obj in applied:
        if obj["kind"] == "NetworkPolicy" and admits_upstream_gateway(obj):
            # The stacks' gateway pods run in istio-system: only the pods' labels are the configured ones.
            for peer in _peers(obj):
                if "istio-ingressgateway" in json.dumps(peer.get("podSelector") or {}):
                    raise AssertionError(f"{object_ref(obj)} still selects upstream's gateway pods")


def test_network_policies_follow_the_ingress_namespace_setting():
    ingress = dict(stack_config("dev")["kubeflow-platform:ingress"], namespace="istio-gateways")
    run = run_release("dev", "26.03", {"ingress": ingress})
    policies = [o for o in test_kubeflow.applied(run) if o["kind"] == "NetworkPolicy"]
    admitting = [o for o in policies if any(
        p.get("namespaceSelector") == {"matchLabels": {NAMESPACE_NAME_LABEL: "istio-gateways"}} for p in _peers(o))]
    assert len(admitting) >= 12
    assert {object_ref(o) for o in admitting} >= {"NetworkPolicy kubeflow/ml-pipeline-ui", "NetworkPolicy kubeflow/centraldashboard",
                                                   "NetworkPolicy knative-serving/allow-istio-gateways-to-activator"}


def test_kubeflow_1_11_is_refused_by_both_stacks_naming_the_setting_and_the_way_out():
    for stack in STACKS:
        with pytest.raises(pulumi.RunError) as caught:
            run_stack(stack, {"kubeflow": dict(stack_config(stack)["kubeflow-platform:kubeflow"], version="1.11.0",
                                               manifests=str(manifests_path("1.11.0")))})
        message = str(caught.value)
        assert "kubeflow.manifests" in message and "KFP 2.15.0" in message and "26.03" in message
        assert "Traceback" not in message
