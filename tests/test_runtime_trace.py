"""Run-time pods (analysis/runtime_trace.py) under every mesh shape, and the transformations that make them work
(manifests/mesh.py): a KFP v2 run, a Katib experiment with early stopping, a TrainJob and a serverless
InferenceService reach everything they need under prod's mesh and dev's, and the preview fails, naming the path,
when the mesh the plan was made for is not the mesh it meets."""

from __future__ import annotations

import copy
import io

import pytest
import yaml

from analysis import runtime_trace as rt
from analysis.plan_objects import CONFIG_GROUP, kubernetes_objects
from manifests.mesh import (
    INJECT, NATIVE_SIDECAR, admit_sidecarless_clients, let_runtime_jobs_complete, provide_cluster_local_gateway,
)
from manifests.options import MeshOptions
from tests.conftest import MARKER_SECRETS
from tests.plans import evaluated_plan
from tests.upstream import manifests_path
from tools.preview import Progress, evaluate, mesh_trace


def _paths(plan):
    model, mesh = rt.model_from_plan(plan)
    return rt.paths(model, mesh)


def _with_mesh(plan, **changes):
    plan = copy.deepcopy(plan)
    plan["outputs"]["transformReport"]["mesh"].update(changes)
    return plan


def _objects(plan):
    return [o.obj for o in kubernetes_objects(plan).objects]


def _rewritten(plan, change):
    """The plan with `change(objects) -> objects` applied to every ConfigGroup's YAML."""
    plan = copy.deepcopy(plan)
    for resource in plan["resources"]:
        text = (resource.get("inputs") or {}).get("yaml")
        if resource.get("type") == CONFIG_GROUP and isinstance(text, str):
            documents = [d for d in yaml.safe_load_all(text) if d]
            resource["inputs"]["yaml"] = yaml.safe_dump_all(change(documents), sort_keys=False)
    return plan


def _without(plan, predicate):
    """The plan without the objects `predicate` picks (a program without that fix)."""
    return _rewritten(plan, lambda objects: [o for o in objects if not predicate(o)])


def _edited(plan, edit):
    def change(objects):
        for obj in objects:
            edit(obj)
        return objects
    return _rewritten(plan, change)


def _failing(found, scenario):
    return [p.problem() for p in found if p.scenario == scenario and not p.ok]


# ------------------------------------------------------------------------------------------ both stacks


@pytest.mark.parametrize("stack", ["prod", "dev"])
def test_a_kfp_run_a_katib_experiment_a_trainjob_and_an_inference_service_work_under_each_stack(stack, request):
    plan = request.getfixturevalue(stack)
    found = _paths(plan)
    assert rt.problems(found) == []
    labels = {(p.scenario, p.label) for p in found}
    assert (rt.KFP, "driver -> metadata-grpc-service.kubeflow:8080") in labels
    assert (rt.KFP, "launcher -> ml-pipeline.kubeflow:8887") in labels
    assert (rt.KATIB, "early stopping -> katib-db-manager.kubeflow:6789") in labels
    assert any(p.scenario == rt.KATIB and p.label.endswith(f"-> early stopping trace-experiment-random.alice:{rt.KATIB_EARLY_STOPPING_PORT}") for p in found)
    assert (rt.TRAINER, "TrainJob on torch-distributed: node completes") in labels
    assert (rt.TRAINER, "TrainJob on torch-distributed: node -> rendezvous trace-trainjob.alice:29500") in labels
    assert any(p.scenario == rt.KSERVE and p.label.startswith("Knative controller -> registry.example.com") for p in found)
    # The sidecar-less run pods really are sidecar-less, and run as the pipeline runner of the plan.
    model, _ = rt.model_from_plan(plan)
    driver = rt.kfp_pod(model, "alice", "driver")
    assert driver.annotations[INJECT] == "false" and driver.labels == rt.KFP_POD_LABELS
    assert driver.service_account == "default-editor"
    # The inference call goes through the central gateway, then the cluster-local gateway's pods.
    client = next(p for p in found if p.scenario == rt.KSERVE and p.label.startswith("client"))
    assert client.trace.backend.startswith("Deployment istio-system/knative-local-gateway port 8081")
    # The preview prints the table and finds nothing to refuse.
    table, problems = mesh_trace(plan)
    assert "Run-time paths" in table and "every one works" in table
    assert [p for p in problems if p.startswith("run-time trace")] == []


def test_a_model_is_called_with_its_owners_token_and_an_anonymous_call_meets_the_login(prod):
    """The serving hosts sit behind the login and the token policy by default (auth.openModelEndpoints false), so
    the run-time trace calls the model as its owner with a bearer token of an extra issuer that names people; the
    same call without a token is refused at the gateway's CUSTOM (login) policy."""
    model, _ = rt.model_from_plan(prod)
    client, who = rt.model_client(model, "alice")
    assert client.kind == "token" and "alice@example.com" in who
    url = f"https://{rt.TRACE_ISVC}-alice.{rt._serving_domain(model)}/v1/models/{rt.TRACE_ISVC}:predict"
    assert rt.t.trace_request(model, url, client, "POST").backend.startswith("Deployment istio-system/knative-local-gateway")
    anonymous = rt.t.trace_request(model, url, rt.t.anonymous(), "POST")
    assert anonymous.backend is None and anonymous.status in (302, 401)
    assert anonymous.refused_at.step == "CUSTOM"


# ---------------------------------------------------------------------------------------- strict mTLS


def test_strict_mtls_resets_sidecarless_kfp_and_katib_calls_unless_their_ports_take_plaintext(prod, dev):
    # prod's plan opens exactly those ports.
    opened = {o["metadata"]["name"]: o["spec"] for o in _objects(prod)
              if o.get("kind") == "PeerAuthentication" and o["metadata"]["name"].endswith("-sidecarless-clients")}
    assert {name: spec["portLevelMtls"] for name, spec in opened.items()} == {
        "metadata-grpc-deployment-sidecarless-clients": {"8080": {"mode": "PERMISSIVE"}},
        "ml-pipeline-sidecarless-clients": {"8887": {"mode": "PERMISSIVE"}},
        "katib-db-manager-sidecarless-clients": {"6789": {"mode": "PERMISSIVE"}},
    }
    assert opened["katib-db-manager-sidecarless-clients"]["selector"] == {"matchLabels": {"katib.kubeflow.org/component": "db-manager"}}
    # Without them (dev's plan, made for a permissive mesh, meeting a strict one) the run's pods are reset.
    _, problems = mesh_trace(_with_mesh(dev, mtls="strict"))
    runtime = [p for p in problems if p.startswith("run-time trace")]
    assert "run-time trace: KFP v2 run: driver -> metadata-grpc-service.kubeflow:8080 fails at PeerAuthentication " \
           "(mesh default (strict): STRICT and the caller sends plaintext: connection reset)" in runtime
    assert any(p.startswith("run-time trace: KFP v2 run: launcher -> ml-pipeline.kubeflow:8887 fails at PeerAuthentication") for p in runtime)
    assert any(p.startswith("run-time trace: Katib experiment with early stopping: suggestion -> katib-db-manager.kubeflow:6789 fails at PeerAuthentication") for p in runtime)
    # Sidecar callers are unaffected: the controller's call to the suggestion, a notebook's call to the API.
    assert not any("katib-controller ->" in p or "notebook ->" in p for p in runtime)
    # And prod without its exceptions fails the same way.
    stripped = _without(prod, lambda o: o.get("kind") == "PeerAuthentication" and o["metadata"]["name"].endswith("-sidecarless-clients"))
    assert _failing(_paths(stripped), rt.KFP)


def test_plaintext_callers_still_cannot_forge_the_identity_header(prod):
    model, mesh = rt.model_from_plan(prod)
    driver = rt.kfp_pod(model, "alice", "driver")
    forged = rt._call(model, driver, "ml-pipeline.kubeflow", 8887, headers={"kubeflow-userid": "bob@example.com"})
    assert not forged.reached and forged.refused_at.step == "DENY"
    assert rt._call(model, driver, "ml-pipeline.kubeflow", 8887).reached


def test_sidecarless_ports_join_an_existing_workload_policy_and_nothing_opens_under_permissive():
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ml-pipeline", "namespace": "kubeflow"},
               "spec": {"selector": {"app": "ml-pipeline"}, "ports": [{"port": 8887, "targetPort": 8887}]}}
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "ml-pipeline", "namespace": "kubeflow"},
                  "spec": {"selector": {"matchLabels": {"app": "ml-pipeline"}},
                           "template": {"metadata": {"labels": {"app": "ml-pipeline"}}, "spec": {"containers": [{"name": "a"}]}}}}
    existing = {"apiVersion": "security.istio.io/v1beta1", "kind": "PeerAuthentication",
                "metadata": {"name": "ml-pipeline-webhooks", "namespace": "kubeflow"},
                "spec": {"selector": {"matchLabels": {"app": "ml-pipeline"}}, "portLevelMtls": {"8443": {"mode": "PERMISSIVE"}}}}
    result = admit_sidecarless_clients([service, deployment, existing], MeshOptions(mtls="strict"))
    assert result.added == ()
    policy = next(o for o in result.objects if o.get("kind") == "PeerAuthentication")
    assert policy["spec"]["portLevelMtls"] == {"8443": {"mode": "PERMISSIVE"}, "8887": {"mode": "PERMISSIVE"}}
    assert admit_sidecarless_clients([service, deployment], MeshOptions(mtls="permissive")).changes == ()


# ------------------------------------------------------------------------------------------ egress


def test_knative_resolves_tags_at_the_mirror_only_through_a_service_entry_under_registry_only(prod, dev):
    entry = next(o for o in _objects(prod) if o.get("kind") == "ServiceEntry" and o["metadata"]["name"] == "external-image-registry")
    assert entry["spec"]["hosts"] == ["registry.example.com"] and entry["spec"]["exportTo"] == ["knative-serving"]
    assert not any(o.get("kind") == "ServiceEntry" for o in _objects(dev))
    # dev's plan (ALLOW_ANY) meeting a REGISTRY_ONLY mesh: every serverless Revision would miss its image.
    _, problems = mesh_trace(_with_mesh(dev, outboundTrafficPolicy="REGISTRY_ONLY"))
    assert any(p.startswith("run-time trace: serverless InferenceService: Knative controller -> registry.example.com (tag to digest) "
                            "fails at egress") and "BlackHoleCluster" in p for p in problems), problems
    # The run's own pods have no sidecar: their S3 calls leave without the mesh either way.
    assert not any("Argo executor" in p for p in problems)


# ------------------------------------------------------------------------------------- Jobs completing


def test_trainjob_and_trial_pods_complete_only_without_a_classic_sidecar(prod):
    found = _paths(prod)
    assert _failing(found, rt.TRAINER) == [] and _failing(found, rt.KATIB) == []
    # Upstream's runtimes and trial templates as they are: a classic sidecar in every pod of an injected profile.
    def strip(obj):
        if obj.get("kind") == "ClusterTrainingRuntime":
            for job in obj["spec"]["template"]["spec"]["replicatedJobs"]:
                job["template"]["spec"]["template"].get("metadata", {}).get("annotations", {}).pop(INJECT, None)
        if obj.get("kind") == "ConfigMap" and obj["metadata"]["name"] == "trial-templates":
            obj["data"] = {k: v.replace("sidecar.istio.io/inject: 'false'", "") for k, v in obj["data"].items()}
    upstream = _edited(prod, strip)
    _, problems = mesh_trace(upstream)
    assert "run-time trace: TrainJob: TrainJob on torch-distributed: node completes fails at completion (-: a classic istio-proxy " \
           "is injected (namespace alice has istio.io/rev: prod-1-24; the mesh has no native sidecars and the pod asks for none): " \
           "it never exits, so the Job never completes)" in problems
    assert any(p.startswith("run-time trace: Katib experiment with early stopping: Katib trial (defaultTrialTemplate.yaml)") and "completes fails" in p
               for p in problems)
    # The same pods under a mesh with native sidecars complete.
    assert _failing(_paths(_with_mesh(upstream, nativeSidecars=True)), rt.TRAINER) == []


def test_with_native_sidecars_runtime_pods_ask_for_one_and_stay_in_the_mesh():
    runtime = {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "ClusterTrainingRuntime", "metadata": {"name": "t"},
               "spec": {"template": {"spec": {"replicatedJobs": [{"name": "node", "template": {"spec": {"template": {
                   "spec": {"containers": [{"name": "node"}]}}}}}]}}}}
    trials = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "trial-templates", "namespace": "kubeflow"},
              "data": {"job.yaml": "kind: Job\nspec:\n  template:\n    spec:\n      containers:\n      - name: c\n"}}
    native = let_runtime_jobs_complete([runtime, trials], MeshOptions(native_sidecars=True))
    pod = native.objects[0]["spec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]
    assert pod["metadata"]["annotations"] == {NATIVE_SIDECAR: "true"}
    assert f"{NATIVE_SIDECAR}: 'true'" in native.objects[1]["data"]["job.yaml"]
    classic = let_runtime_jobs_complete([runtime, trials], MeshOptions(native_sidecars=False))
    assert classic.objects[0]["spec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["metadata"]["annotations"] == {INJECT: "false"}
    assert let_runtime_jobs_complete([runtime], MeshOptions(data_plane="ambient")).changes == ()


# ---------------------------------------------------------------------------------- cluster-local gateway


def test_the_cluster_local_gateway_is_run_by_the_program_or_expected_from_the_mesh(prod):
    gateway = next(o for o in _objects(prod) if o.get("kind") == "Deployment" and o["metadata"]["name"] == "knative-local-gateway")
    template = gateway["spec"]["template"]
    assert template["metadata"]["annotations"]["inject.istio.io/templates"] == "gateway"
    assert {"app": "cluster-local-gateway", "istio": "cluster-local-gateway", INJECT: "true", "istio.io/rev": "prod-1-24"}.items() \
        <= template["metadata"]["labels"].items()
    container = template["spec"]["containers"][0]
    assert container["image"] == "auto" and [p["containerPort"] for p in container["ports"]] == [8081, 8444, 15021]
    assert template["spec"]["serviceAccountName"] == "cluster-local-gateway-service-account"
    # It runs as upstream's account, kept from the istio exclusion, so tenancy.serving.principals still names it.
    report = prod["outputs"]["transformReport"]
    assert "ServiceAccount istio-system/cluster-local-gateway-service-account" not in report["excluded"]
    assert "Deployment istio-system/cluster-local-gateway" in report["excluded"]
    assert [o["metadata"]["labels"] for o in _objects(prod) if o.get("kind") == "ServiceAccount"
            and o["metadata"]["name"] == "cluster-local-gateway-service-account"] == [
        {"app": "cluster-local-gateway", "istio": "cluster-local-gateway", "app.kubernetes.io/part-of": "kubeflow-platform"}]
    # Provided by the mesh owner: nothing applied, the pods expected, the path still traced through them.
    provided = evaluate("prod", manifests=str(manifests_path("26.03")), kubeflow_version="26.03", secrets=MARKER_SECRETS,
                        progress=Progress(io.StringIO()), settings={"kubeflow.mesh.clusterLocalGateway": "provided"})[0]
    assert not any(o["metadata"].get("namespace") == "istio-system" and o.get("kind") in ("Deployment", "ServiceAccount")
                   for o in _objects(provided))
    assert provided["outputs"]["transformReport"]["mesh"]["clusterLocalGateway"] == "provided"
    found = _paths(provided)
    assert rt.problems(found) == []
    client = next(p for p in found if p.scenario == rt.KSERVE and p.label.startswith("client"))
    assert client.trace.backend.startswith("Deployment istio-system/cluster-local-gateway (run time)")
    # A plan made for a mesh that runs the gateway, applied where nobody does: every model call is a 503.
    _, problems = mesh_trace(_with_mesh(provided, clusterLocalGateway="program"))
    assert any(p.startswith("run-time trace: serverless InferenceService: client alice@example.com with a token of ") and "-> https://trace-isvc-alice.serving.ml.example.com" in p
               and "picks no workload of the plan: 503" in p for p in problems), problems
    # The program's gateway gone from a plan that says the program runs it: the same.
    missing = _without(prod, lambda o: o.get("kind") == "Deployment" and o["metadata"]["name"] == "knative-local-gateway")
    _, problems = mesh_trace(missing)
    assert any(p.startswith("run-time trace: serverless InferenceService: client alice@example.com with a token of ") and "-> https://trace-isvc-alice.serving.ml.example.com" in p
               and "picks no workload of the plan: 503" in p for p in problems), problems


def test_no_cluster_local_gateway_is_added_without_knative_or_when_provided():
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "knative-local-gateway", "namespace": "istio-system"},
               "spec": {"selector": {"app": "cluster-local-gateway"}, "ports": [{"name": "http2", "port": 80, "targetPort": 8081}]}}
    assert provide_cluster_local_gateway([], MeshOptions()).added == ()
    assert provide_cluster_local_gateway([service], MeshOptions(cluster_local_gateway="provided")).added == ()
    account, deployment = provide_cluster_local_gateway([service], MeshOptions()).added
    assert account["kind"] == "ServiceAccount" and "istio.io/rev" not in deployment["spec"]["template"]["metadata"]["labels"]
    # With the bundled Istio kept, its own gateway serves the Service: no second one.
    bundled = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "cluster-local-gateway", "namespace": "istio-system"},
               "spec": {"template": {"metadata": {"labels": {"app": "cluster-local-gateway", "istio": "cluster-local-gateway"}},
                                     "spec": {"containers": [{"name": "istio-proxy"}]}}}}
    assert provide_cluster_local_gateway([service, bundled], MeshOptions()).added == ()


def _evaluated(stack, version="26.03", **settings):
    return evaluate(stack, manifests=str(manifests_path(version)), kubeflow_version=version, secrets=MARKER_SECRETS,
                    progress=Progress(io.StringIO()), settings=settings)[0]


def test_a_plan_made_for_native_sidecars_breaks_runtime_jobs_on_a_mesh_without_them():
    native = _evaluated("dev", **{"kubeflow.mesh.nativeSidecars": True})
    runtime = next(o for o in _objects(native) if o.get("kind") == "ClusterTrainingRuntime" and o["metadata"]["name"] == "torch-distributed")
    pod = runtime["spec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]
    assert pod["metadata"]["annotations"][NATIVE_SIDECAR] == "true" and INJECT not in pod["metadata"]["annotations"]
    assert rt.problems(_paths(native)) == []
    # The pod asks for a native sidecar; an injector before 1.24 or one told otherwise gives a classic one.
    stripped = _edited(native, lambda o: o.get("kind") == "ClusterTrainingRuntime" and [
        j["template"]["spec"]["template"]["metadata"]["annotations"].pop(NATIVE_SIDECAR, None)
        for j in o["spec"]["template"]["spec"]["replicatedJobs"]])
    _, problems = mesh_trace(_with_mesh(stripped, nativeSidecars=False))
    assert any(p.startswith("run-time trace: TrainJob: TrainJob on torch-distributed: node completes fails at completion") for p in problems)
    assert rt.problems(_paths(_with_mesh(stripped, nativeSidecars=True))) == []


#: Every pair of values of the five mesh settings that shape the run-time paths appears in one of these (pairwise).
MESH_SHAPES = [
    dict(zip(("mtls", "outboundTrafficPolicy", "nativeSidecars", "clusterLocalGateway", "dataPlane"), row))
    for row in [
        ("permissive", "ALLOW_ANY", False, "program", "sidecar-init"),
        ("permissive", "REGISTRY_ONLY", True, "provided", "sidecar-cni"),
        ("strict", "ALLOW_ANY", True, "program", "sidecar-cni"),
        ("strict", "REGISTRY_ONLY", False, "provided", "sidecar-init"),
        ("permissive", "ALLOW_ANY", True, "provided", "sidecar-init"),
        ("permissive", "REGISTRY_ONLY", False, "program", "sidecar-cni"),
    ]
]


@pytest.mark.parametrize("shape", MESH_SHAPES, ids=lambda shape: "-".join(str(v) for v in shape.values()))
def test_every_mesh_shape_the_settings_allow_keeps_the_run_time_paths_working(shape):
    plan = _evaluated("dev", **{f"kubeflow.mesh.{key}": value for key, value in shape.items()})
    assert {key: plan["outputs"]["transformReport"]["mesh"][key] for key in shape} == shape
    found = _paths(plan)
    assert rt.problems(found) == []
    assert {p.scenario for p in found} == set(rt.SCENARIOS)


@pytest.mark.parametrize("version", ["1.11.0", "1.10.2"])
@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_run_time_paths_hold_at_the_earlier_supported_releases(stack, version):
    plan, _ = evaluated_plan(stack, version)
    found = _paths(plan)
    assert rt.problems(found) == []
    # 1.10.2 ships training-operator v1: no ClusterTrainingRuntime, so no TrainJob rows.
    assert bool([p for p in found if p.scenario == rt.TRAINER]) == (version == "1.11.0")
