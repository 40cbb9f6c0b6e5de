"""Kubeflow in the namespace the enterprise chooses (kubeflow.namespace, kubeflow.systemNamespace).

A stack set to names no other test uses previews cleanly at each release: no reference to upstream's
namespaces left outside the allow-list, every mesh and run-time trace row as expected, every contract
holding; a change of the setting on a live stack is refused by the upgrade plan and the estate check.
"""

from __future__ import annotations

import copy
import io

import pytest

import config
from analysis.estate_checks import namespace_move_problems
from analysis.upgrade import plan_upgrade, render
from manifests.contracts import contract_problems
from manifests.namespace import default_namespace_references, move_namespaces
from tests.conftest import MARKER_SECRETS, pod_identity_usable
from tests.test_contracts import CONTRACTS, flat_settings
from tests.upstream import NEEDS_STATIC_KEYS, SUPPORTED_VERSIONS, manifests_path, upstream_objects
from tools import plan_checks
from tools.plan import kubernetes_objects
from tools.preview import Progress, evaluate, mesh_trace
from tools.mock_runtime import stack_config

NAMESPACE = "ml-platform-x7"
SYSTEM_NAMESPACE = "ml-jobs-q4"
#: Every supported release (tests/upstream.py) and whether it ships Trainer and JobSet in `kubeflow-system`.
RELEASES = {"26.03": True, "1.11.0": True, "1.10.2": False, "1.9.1": False}

_PLANS: dict[tuple[str, bool, str], dict] = {}


def chosen_settings(release: str, moved: bool = True) -> dict:
    settings: dict = {}
    if moved:
        settings["kubeflow.namespace"] = NAMESPACE
        if RELEASES[release]:
            settings["kubeflow.systemNamespace"] = SYSTEM_NAMESPACE
    if release in NEEDS_STATIC_KEYS:
        settings["kubeflow.objectStore.staticKeys"] = True
    if not pod_identity_usable(release):
        # dev's Pod Identity is refused where the release's SDKs cannot use it: there it runs on IRSA.
        settings["identity.mechanism"] = "irsa"
    return settings


def plan_of(release: str, moved: bool = True, stack: str = "dev") -> dict:
    """The stack's preview plan at `release`, in the chosen namespaces (or upstream's); once per module."""
    if (release, moved, stack) not in _PLANS:
        _PLANS[(release, moved, stack)], _ = evaluate(
            stack, manifests=str(manifests_path(release)), kubeflow_version=release, secrets=MARKER_SECRETS,
            progress=Progress(io.StringIO()), settings=chosen_settings(release, moved) or None)
    return _PLANS[(release, moved, stack)]


def objects_of(plan: dict) -> list[dict]:
    return [found.obj for found in kubernetes_objects(plan).objects]


def test_every_supported_release_is_proven_in_a_chosen_namespace():
    assert sorted(RELEASES) == sorted(SUPPORTED_VERSIONS)


@pytest.mark.parametrize("release", RELEASES)
def test_a_stack_in_a_chosen_namespace_passes_every_offline_check(release):
    assert plan_checks.validate_plan(plan_of(release)) == []


def test_the_prod_stack_with_external_stores_and_argo_moves_cleanly():
    # The central Secret follows kubeflow.namespace: its consumers read only their own namespace's Secrets.
    plan = plan_of("26.03", stack="prod")
    assert plan_checks.validate_plan(plan) == [] and mesh_trace(plan)[1] == []
    central = [o["metadata"].get("namespace") for o in objects_of(plan)
               if o["kind"] == "Secret" and o["metadata"]["name"] == "kubeflow-platform-credentials"]
    assert central == [NAMESPACE]


@pytest.mark.parametrize("release", RELEASES)
def test_every_object_moves_and_no_reference_to_upstreams_namespace_is_left(release):
    objects = objects_of(plan_of(release))
    namespaces = {(obj.get("metadata") or {}).get("namespace") for obj in objects}
    assert "kubeflow" not in namespaces and "kubeflow-system" not in namespaces
    assert sum(1 for obj in objects if obj["metadata"].get("namespace") == NAMESPACE) > 200
    if RELEASES[release]:
        assert any(obj["metadata"].get("namespace") == SYSTEM_NAMESPACE for obj in objects)
    assert default_namespace_references(objects, ("kubeflow", "kubeflow-system")) == []


@pytest.mark.parametrize("release", RELEASES)
def test_every_mesh_and_run_time_trace_row_is_as_expected_in_the_chosen_namespace(release):
    table, problems = mesh_trace(plan_of(release))
    assert problems == []
    # The run-time rows name the Services where they now are (analysis/runtime_trace.py reads the plan).
    assert f"ml-pipeline.{NAMESPACE}:8888" in table
    assert "ml-pipeline.kubeflow" not in table


@pytest.mark.parametrize("release", RELEASES)
def test_every_contract_holds_in_the_chosen_namespace(release):
    values = {**flat_settings("dev"), "kubeflow.namespace": NAMESPACE, "ingress.gatewayNamespace": NAMESPACE,
              "kubeflow.systemNamespace": SYSTEM_NAMESPACE if RELEASES[release] else "kubeflow-system",
              "kubeflow.centralSecretNamespace": NAMESPACE}
    objects = objects_of(plan_of(release))
    problems = [problem for contract in CONTRACTS if contract.applies_to(release)
                for problem in contract_problems(contract, objects, values)]
    assert problems == []


def _find(objects: list[dict], kind: str, name_prefix: str) -> dict:
    return next(obj for obj in objects if obj["kind"] == kind and obj["metadata"]["name"].startswith(name_prefix))


def test_each_kind_of_reference_follows_the_namespace_and_what_is_not_one_stays():
    moved = move_namespaces(upstream_objects("26.03"), {"kubeflow": NAMESPACE, "kubeflow-system": SYSTEM_NAMESPACE}).objects
    env = {e["name"]: e.get("value") for e in _find(moved, "Deployment", "centraldashboard")["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["PROFILES_KFAM_SERVICE_HOST"] == f"profiles-kfam.{NAMESPACE}"
    profiles = _find(moved, "ConfigMap", "profiles-config")["data"]
    assert profiles["KFP_UI_PRINCIPAL"] == f"cluster.local/ns/{NAMESPACE}/sa/ml-pipeline-ui"
    assert profiles["ISTIO_INGRESS_GATEWAY_PRINCIPAL"].startswith("cluster.local/ns/istio-system/")
    assert _find(moved, "ConfigMap", "notebook-controller-config")["data"]["ISTIO_GATEWAY"] == f"{NAMESPACE}/kubeflow-gateway"
    assert f"gateway.{NAMESPACE}.kubeflow-gateway" in _find(moved, "ConfigMap", "config-istio")["data"]
    webhook = _find(moved, "MutatingWebhookConfiguration", "inferenceservice.serving.kserve.io")
    assert webhook["webhooks"][0]["clientConfig"]["service"]["namespace"] == NAMESPACE
    assert webhook["metadata"]["annotations"]["cert-manager.io/inject-ca-from"].startswith(f"{NAMESPACE}/")
    bindings = [s for obj in moved if obj["kind"] == "ClusterRoleBinding" for s in obj.get("subjects") or []]
    assert {s.get("namespace") for s in bindings} & {"kubeflow", "kubeflow-system"} == set()
    namespace = next(obj for obj in moved if obj["kind"] == "Namespace" and obj["metadata"]["name"] == NAMESPACE)
    # KServe's pod mutator skips namespaces labelled control-plane: the label stays.
    assert namespace["metadata"]["labels"]["control-plane"] == "kubeflow"
    # Not namespaces: ClusterRole names kfam and the profile controller hard-code, API groups.
    assert {"kubeflow-admin", "kubeflow-edit", "kubeflow-view"} <= {o["metadata"]["name"] for o in moved if o["kind"] == "ClusterRole"}
    assert any(o["kind"] == "CustomResourceDefinition" and o["spec"]["group"] == "kubeflow.org" for o in moved)


def test_the_check_finds_each_reference_left_and_only_those():
    left = default_namespace_references(upstream_objects("26.03"), ("kubeflow",))
    assert any("PROFILES_KFAM_SERVICE_HOST" in line or "profiles-kfam.kubeflow" in line for line in left)
    assert any("ns/kubeflow/sa/" in line for line in left)
    allowed = {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "x", "namespace": NAMESPACE, "labels": {"app.kubernetes.io/part-of": "kubeflow"}},
        "data": {"group": "pipelines.kubeflow.org/v1", "image": "ghcr.io/kubeflow/kubeflow/notebook-servers/jupyter:v1",
                 "links": '{"icon": "kubeflow:pipeline-centered"}', "docs": "https://www.kubeflow.org/docs/",
                 "host": "kubeflow.corp.example.com", "token": "/var/run/secrets/kubeflow/tokens/token",
                 "role": "kubeflow-edit"},
    }
    assert default_namespace_references([allowed], ("kubeflow",)) == []
    for value in ("ml-pipeline.kubeflow:8888", "cluster.local/ns/kubeflow/sa/x", "kubeflow/kubeflow-gateway",
                  "system:serviceaccount:kubeflow:kfam", "kubeflow"):
        obj = copy.deepcopy(allowed)
        obj["data"]["left"] = value
        assert default_namespace_references([obj], ("kubeflow",)) != [], value


def test_the_offline_check_fails_a_plan_that_still_names_the_default_namespace():
    plan = copy.deepcopy(plan_of("26.03"))
    host = f"profiles-kfam.{NAMESPACE}"
    group = next(r for r in plan["resources"] if r["type"] == plan_checks.CONFIG_GROUP and host in str(r["inputs"]))
    key = next(key for key, value in group["inputs"].items() if isinstance(value, str) and host in value)
    group["inputs"][key] = group["inputs"][key].replace(host, "profiles-kfam.kubeflow", 1)
    problems = list(plan_checks.no_default_namespace_is_left(plan))
    assert problems and "still names kubeflow" in problems[0]


def test_changing_the_namespace_on_a_live_stack_is_refused_naming_what_a_move_loses():
    result = plan_upgrade(plan_of("26.03", moved=False), plan_of("26.03"))
    assert result.needs_attention
    refused = [f for f in result.attention if f.kind == "namespace-move-refused"]
    assert [f.subject for f in refused] == [f"kubeflow.namespace: kubeflow -> {NAMESPACE}",
                                            f"kubeflow.systemNamespace: kubeflow-system -> {SYSTEM_NAMESPACE}"]
    text = render(result)
    for lost in ("Secrets", "CA bundles", "bindings of its ServiceAccounts", "volume claims"):
        assert lost in text
    assert not [f for f in plan_upgrade(plan_of("26.03"), plan_of("26.03")).attention if f.kind == "namespace-move-refused"]


def test_the_estate_check_refuses_a_namespace_other_than_where_kubeflow_runs():
    labels = {"control-plane": "kubeflow"}
    live = {"kubeflow": labels, "kubeflow-system": labels, "default": {}}
    assert [line for line in namespace_move_problems(live, plan_of("26.03")) if f"kubeflow.namespace is {NAMESPACE}" in line]
    assert list(namespace_move_problems(live, plan_of("26.03", moved=False))) == []
    assert list(namespace_move_problems({NAMESPACE: labels, SYSTEM_NAMESPACE: labels}, plan_of("26.03"))) == []
    assert list(namespace_move_problems({"default": {}}, plan_of("26.03"))) == []


def _parse(**kubeflow):
    raw = {key.split(":", 1)[1]: value for key, value in stack_config("dev").items()}
    raw["kubeflow"] = {**raw["kubeflow"], **kubeflow}
    return config.parse(raw, config.Secrets(), set(config.SECRET_KEYS), "dev")


def test_the_gateway_and_the_central_secret_follow_the_namespace_unless_set():
    settings = _parse(namespace=NAMESPACE)
    assert settings.ingress.gateway_namespace == NAMESPACE
    assert settings.kubeflow.central_secret_namespace == NAMESPACE
    assert _parse().ingress.gateway_namespace == "kubeflow"


def test_a_system_namespace_equal_to_the_namespace_is_refused_naming_the_key():
    with pytest.raises(config.SettingsError, match="kubeflow.systemNamespace"):
        _parse(namespace=NAMESPACE, systemNamespace=NAMESPACE)


@pytest.mark.parametrize("release", RELEASES)
def test_the_dashboard_finds_kfam_beside_it_in_the_chosen_namespace(release):
    # Kubernetes sets PROFILES_KFAM_SERVICE_HOST from a Service of the pod's own namespace (service links);
    # without it the dashboard dials profiles-kfam.kubeflow.
    objects = objects_of(plan_of(release))
    kfam = [o for o in objects if o["kind"] == "Service" and o["metadata"]["name"] == "profiles-kfam"]
    dashboard = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "centraldashboard"]
    assert [o["metadata"]["namespace"] for o in kfam] == [o["metadata"]["namespace"] for o in dashboard] == [NAMESPACE]
    assert dashboard[0]["spec"]["template"]["spec"].get("enableServiceLinks", True) is True


def test_notebooks_can_opt_into_the_pipelines_endpoint_in_the_chosen_namespace():
    def pod_defaults(plan):
        return [o for o in objects_of(plan) if o["kind"] == "PodDefault" and o["metadata"]["name"] == "kubeflow-pipelines-endpoint"]

    moved = pod_defaults(plan_of("26.03"))
    profiles = {profile.name for profile in _parse().tenancy.profiles}
    assert {o["metadata"]["namespace"] for o in moved} == profiles != set()
    assert moved[0]["spec"]["env"] == [{"name": "KF_PIPELINES_ENDPOINT", "value": f"http://ml-pipeline.{NAMESPACE}.svc.cluster.local:8888"}]
    assert moved[0]["spec"]["selector"] == {"matchLabels": {"kubeflow-pipelines-endpoint": "true"}}
    # In `kubeflow` the SDK's own default is right: nothing is added.
    assert pod_defaults(plan_of("26.03", moved=False)) == []


def test_a_profile_cannot_take_the_chosen_namespace():
    with pytest.raises(config.SettingsError, match=r"tenancy\.profiles\[0\]\.name: 'ml-platform-x7' is a platform namespace"):
        raw = {key.split(":", 1)[1]: value for key, value in stack_config("dev").items()}
        raw["kubeflow"] = {**raw["kubeflow"], "namespace": NAMESPACE}
        profiles = list(raw["tenancy"]["profiles"])
        profiles[0] = {**profiles[0], "name": NAMESPACE}
        raw["tenancy"] = {**raw["tenancy"], "profiles": profiles}
        config.parse(raw, config.Secrets(), set(config.SECRET_KEYS), "dev")
