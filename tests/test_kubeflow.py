"""Both stacks apply both real upstream releases, transformed: the whole program under mocks, read back
from what the ConfigGroups would apply (issue 4, "Done when")."""

from __future__ import annotations

import json
import re

import pytest

from manifests.images import INJECTED_PROXY_IMAGE, PUBLIC_REGISTRIES, istio_fills_image, parse_image
from manifests.mesh import INJECT, NET_ISTIO_CONTROLLER
from manifests.release_identity import release_table
from manifests.objects import CONTAINER_LISTS, objects_from_config_group_inputs, object_ref, pod_template, walk_strings
from manifests.stores import DATABASE_SETUP_JOB
from manifests.validate import validate_objects
from tests.conftest import MARKER_SECRETS, STACKS, shared_run
from tests.upstream import NEEDS_STATIC_KEYS, SUPPORTED_VERSIONS, manifests_path, upstream_objects
from tools.mock_runtime import ProgramRun, stack_config

CONFIG_GROUP = "kubernetes:yaml/v2:ConfigGroup"
VERSIONS = SUPPORTED_VERSIONS


def run_release(stack: str, version: str) -> ProgramRun:
    """`stack` pinned to `version` with that release's manifests; evaluated once per session (for the
    stack's own release, the same run as `stack_run`). A release that needs static object-store keys gets
    them (kubeflow.objectStore.staticKeys and the secrets), as a user on that release would."""
    kubeflow = dict(stack_config(stack)["kubeflow-platform:kubeflow"], version=version, manifests=str(manifests_path(version)))
    if version in NEEDS_STATIC_KEYS:
        kubeflow["objectStore"] = {**kubeflow.get("objectStore", {}), "staticKeys": True}
    return shared_run(stack, {"kubeflow": kubeflow})


@pytest.fixture(params=[(s, v) for s in STACKS for v in VERSIONS], ids=lambda p: f"{p[0]}-v{p[1]}")
def release_run(request) -> tuple[ProgramRun, str]:
    stack, version = request.param
    return run_release(stack, version), version


def settings_of(run: ProgramRun, area: str) -> dict:
    return stack_config(run.stack)[f"kubeflow-platform:{area}"]


_APPLIED: dict[int, list[dict]] = {}


def kubeflow_config_groups(run: ProgramRun) -> list:
    return [g for g in run.of_type(CONFIG_GROUP) if g.parent.endswith("kubeflow-platform:kubeflow:Kubeflow::kubeflow")]


def applied(run: ProgramRun) -> list[dict]:
    """Every object the Kubeflow component's ConfigGroups apply, in registration order (decoded once per run).

    Tenancy registers ConfigGroups of its own (one per profile); they are not upstream objects.
    """
    if id(run) not in _APPLIED:
        _APPLIED[id(run)] = [
            obj for group in kubeflow_config_groups(run) for obj in objects_from_config_group_inputs(group.inputs)
        ] + [patch.inputs for patch in kubeflow_patches(run)]
    return _APPLIED[id(run)]


def kubeflow_patches(run: ProgramRun) -> list:
    """The Kubeflow component's server-side apply patches of objects from the manifests (someone else's)."""
    (component,) = run.of_type("kubeflow-platform:kubeflow:Kubeflow")
    return [r for r in run.of_type("kubernetes:core/v1:ConfigMapPatch") if r.parent == component.urn]


# ------------------------------------------------------------------------------------- accounting


def test_every_upstream_object_is_applied_or_excluded_by_a_named_rule(release_run):
    run, version = release_run
    upstream = upstream_objects(version)
    report = run.exports["transformReport"]
    objects = applied(run)
    applied_refs = [object_ref(obj) for obj in objects]
    assert len(applied_refs) == len(set(applied_refs)), "an object is in two ConfigGroups"
    assert len(objects) == len(upstream) - len(report["excluded"]) + len(report["added"])
    assert report["counts"] == {"input": len(upstream), "emitted": len(objects), "excluded": len(report["excluded"]), "added": len(report["added"])}
    applied_set = set(applied_refs)
    for obj in upstream:
        ref = object_ref(obj)
        assert (ref in applied_set) != (ref in report["excluded"]), ref
    assert set(report["excluded"].values()) <= set(report["exclusions"])
    assert set(report["added"]) <= applied_set


def test_no_bundled_istio_argo_or_dex_object_remains(release_run):
    run, _ = release_run
    report = run.exports["transformReport"]
    assert {"istio", "istio-crds", "argo", "dex"} <= set(report["exclusions"])
    for obj in applied(run):
        ref, metadata = object_ref(obj), obj["metadata"]
        labels = metadata.get("labels") or {}
        assert labels.get("app.kubernetes.io/part-of") != "istio", ref
        # Knative's local gateway Service stays, and the gateway behind it that the program runs (mesh.clusterLocalGateway)
        if labels.get("app.kubernetes.io/name") != "knative-serving" and labels.get("istio") != "cluster-local-gateway":
            assert metadata.get("namespace") not in {"istio-system", "auth"}, ref
        if obj["kind"] == "CustomResourceDefinition":
            assert not obj["spec"]["group"].endswith(("istio.io", "argoproj.io", "dexidp.com")), ref
        assert not re.match(r"^(dex|workflow-controller|argo-server|istiod|istio-ingressgateway)$", metadata["name"]), ref
        assert not (obj["kind"] == "Namespace" and metadata["name"] in {"istio-system", "auth"}), ref


# ------------------------------------------------------------------------------------------- mesh


def test_every_workload_pod_template_carries_the_sidecar_annotation_and_configured_labels(release_run):
    run, _ = release_run
    kubeflow = settings_of(run, "kubeflow")
    workloads = [obj for obj in applied(run) if pod_template(obj) is not None]
    outside = set(run.exports["transformReport"]["mesh"]["namespacesOutsideMesh"])
    assert len(workloads) > 20
    for obj in workloads:
        metadata = pod_template(obj)["metadata"]
        # The exceptions: the database setup Job talks only to the external MySQL, and a proxy that
        # outlives its client would keep the Job from ever completing; cert-manager stays outside, like upstream;
        # under REGISTRY_ONLY net-istio's controller, whose gateway probes its own sidecar would drop.
        net_istio = (object_ref(obj) == "Deployment " + "/".join(NET_ISTIO_CONTROLLER)
                     and run.exports["transformReport"]["mesh"]["outboundTrafficPolicy"] == "REGISTRY_ONLY")
        expected = "false" if object_ref(obj) == f"Job kubeflow/{DATABASE_SETUP_JOB}" or obj["metadata"].get("namespace") in outside \
            or net_istio else "true"
        assert metadata["annotations"][INJECT] == expected, object_ref(obj)
        assert kubeflow["podAnnotations"].items() <= metadata["annotations"].items(), object_ref(obj)
        assert kubeflow["podLabels"].items() <= metadata["labels"].items(), object_ref(obj)


def test_namespaces_join_the_mesh_by_label_or_by_revision(release_run):
    run, _ = release_run
    revision = settings_of(run, "kubeflow")["mesh"].get("revision")
    namespaces = [obj for obj in applied(run) if obj["kind"] == "Namespace"]
    outside = set(run.exports["transformReport"]["mesh"]["namespacesOutsideMesh"])
    assert "kubeflow" in {ns["metadata"]["name"] for ns in namespaces}
    for namespace in namespaces:
        labels = namespace["metadata"]["labels"]
        if namespace["metadata"]["name"] in outside:
            assert labels["istio-injection"] == "disabled" and "istio.io/rev" not in labels
        elif revision:
            assert labels["istio.io/rev"] == revision and "istio-injection" not in labels
        else:
            assert labels["istio-injection"] == "enabled" and "istio.io/rev" not in labels
    assert (run.stack == "prod") == bool(revision)


def test_every_virtual_service_is_on_the_central_gateway_and_hosts(release_run):
    run, _ = release_run
    ingress, dns = settings_of(run, "ingress"), settings_of(run, "dns")
    gateway = f"{ingress.get('gatewayNamespace', 'kubeflow')}/{ingress['gatewayName']}"
    hosts = [dns["host"], *dns.get("extraHosts", [])]
    services = [obj for obj in applied(run) if obj["kind"] == "VirtualService"]
    assert len(services) >= 8
    for service in services:
        spec = service["spec"]
        assert [g for g in spec["gateways"] if g != "mesh"] == [gateway], object_ref(service)
        assert spec["hosts"] == hosts, object_ref(service)
        assert spec["exportTo"] == [".", ingress["namespace"]], object_ref(service)


# ----------------------------------------------------------------------------------------- images

# A public registry's name as a host: at the start of a reference, not as a path part of the mirror
# (the default rule keeps the registry's name: <mirror>/quay.io/...).
_PUBLIC = re.compile(r"(?<![\w./-])(" + "|".join(re.escape(r) for r in PUBLIC_REGISTRIES) + r")/[\w./-]+")


def _container_images(objects):
    for obj in objects:
        template = pod_template(obj)
        for list_name in CONTAINER_LISTS if template else ():
            for container in template["spec"].get(list_name) or []:
                if not (container["image"] == INJECTED_PROXY_IMAGE and istio_fills_image(obj)):
                    yield object_ref(obj), container["image"]


def test_no_image_reference_anywhere_points_outside_the_mirror(release_run):
    run, _ = release_run
    mirror = settings_of(run, "kubeflow")["images"]["mirror"] + "/"
    objects = applied(run)
    for obj in objects:
        if obj["kind"] == "CustomResourceDefinition":
            continue  # schemas describe image fields; they hold no references
        for path, text in walk_strings(obj):
            if path[:2] == ("data", "_example"):
                continue  # Knative's checksummed documentation; never read by anything
            found = _PUBLIC.search(text)
            assert found is None, f"{object_ref(obj)} {path}: {found.group(0)}"
            if path[-1] == "image" and not (text == INJECTED_PROXY_IMAGE and istio_fills_image(obj)):
                assert text.startswith(mirror), f"{object_ref(obj)} {path}: {text}"
            if path[-1] == "value" and len(path) > 2 and "IMAGE" in str(path).upper():
                assert text.startswith(mirror) or parse_image(text) is None, f"{object_ref(obj)} {path}: {text}"
    images = list(_container_images(objects))
    assert len(images) > 30
    for ref, image in images:
        assert image.startswith(mirror), f"{ref}: {image}"


def test_image_mirror_export_lists_every_image_the_cluster_pulls(release_run):
    run, _ = release_run
    mirror = settings_of(run, "kubeflow")["images"]["mirror"] + "/"
    exported = run.exports["imageMirror"]
    assert exported == sorted(exported, key=lambda entry: entry["source"])
    assert all(set(entry) == {"source", "target"} and entry["target"].startswith(mirror) for entry in exported)
    targets = {entry["target"] for entry in exported}
    assert {image for _, image in _container_images(applied(run))} <= targets
    # The stack's own rules win over the per-registry default.
    ghcr = [entry for entry in exported if entry["source"].startswith("ghcr.io/kubeflow/")]
    assert all(entry["target"].startswith("registry.example.com/kubeflow/ghcr/kubeflow/") for entry in ghcr)


# ------------------------------------------------------------------------------------- validation


def test_everything_applied_validates_against_its_schema(release_run):
    run, version = release_run
    crds = [obj for obj in upstream_objects(version) if obj["kind"] == "CustomResourceDefinition"]
    assert validate_objects(applied(run), extra_crds=crds) == []


# ------------------------------------------------------------------------------------ registration


def test_config_groups_are_chained_in_order_on_the_explicit_provider(release_run):
    run, _ = release_run
    groups = kubeflow_config_groups(run)
    report_groups = run.exports["transformReport"]["groups"]
    # A group's CRDs come first, in a ConfigGroup of their own (retained on delete).
    expected = [name for g in report_groups for name in ([g["crdResource"]] if "crdResource" in g else []) + [g["resource"]]]
    assert [g.name for g in groups] == expected
    assert [g["resource"] for g in report_groups] == [f"kubeflow-{g['name']}" for g in report_groups]
    assert [g["name"] for g in report_groups][0] == "namespaces"
    counts = {g.name: len(objects_from_config_group_inputs(g.inputs)) for g in groups}
    # A patch of someone else's object waits for the groups before the one its object came from.
    by_urn = {g.urn: g.name for g in groups}
    for patch in kubeflow_patches(run):
        before = [by_urn[d] for d in patch.dependencies if d in by_urn]
        after = groups[[g.name for g in groups].index(before[-1]) + 1].name if before else groups[0].name
        counts[after] += 1
    assert [g["objects"] for g in report_groups] == [counts[g["resource"]] + counts.get(g.get("crdResource"), 0)
                                                     for g in report_groups]
    (provider,) = [r for r in run.resources if r.type == "pulumi:providers:kubernetes"]
    (component,) = run.of_type("kubeflow-platform:kubeflow:Kubeflow")
    for previous, group in zip([None, *groups], groups):
        assert group.provider.rsplit("::", 1)[0] == provider.urn, group.name
        assert group.parent == component.urn
        assert "objs" not in group.inputs and group.inputs["yaml"]
        if previous is not None:
            assert previous.urn in group.dependencies, f"{group.name} does not wait for {previous.name}"


def test_the_external_argo_configmap_is_patched_in_its_namespace_with_the_pipelines_bucket(release_run):
    run, _ = release_run
    argo_namespace = settings_of(run, "kubeflow")["argo"]["namespace"]
    bucket = f"{settings_of(run, 'artifacts')['bucketPrefix']}-pipelines"
    # Every Argo installation ships the ConfigMap: never created (pulumi up would fail on it), only patched.
    assert [o for o in applied(run) if o["kind"] == "ConfigMap" and o["metadata"].get("namespace") == argo_namespace
            and o not in [p.inputs for p in kubeflow_patches(run)]] == []
    (patch,) = kubeflow_patches(run)
    configmap = patch.inputs
    assert configmap["metadata"]["namespace"] == argo_namespace
    assert configmap["metadata"]["annotations"] == {"pulumi.com/patchFieldManager": "kubeflow-platform"}
    repository = configmap["data"]["artifactRepository"]
    assert f"bucket: {bucket}" in repository and "useSDKCreds: true" in repository
    assert f"region: {settings_of(run, 'aws')['region']}" in repository
    assert "accessKeySecret" not in repository


# -------------------------------------------------------------------------------- central Secret


def central_secrets(run):
    name = settings_of(run, "kubeflow")["centralSecret"]
    return [s for s in run.of_type("kubernetes:core/v1:Secret") if s.inputs["metadata"]["name"] == name]


def test_the_central_secret_keeps_the_database_password_a_pulumi_secret(release_run):
    run, version = release_run
    kubeflow = settings_of(run, "kubeflow")
    (secret,) = central_secrets(run)
    assert secret.inputs["metadata"]["namespace"] == "kubeflow"
    assert "stringData" in secret.secret_paths
    data = secret.inputs["stringData"]["value"]  # the recorded form of a secret: {<signature>: ..., "value": ...}
    assert data["db-password"] == MARKER_SECRETS["databasePassword"]
    assert data["db-username"] == kubeflow["database"]["user"] and data["db-host"] == kubeflow["database"]["host"]
    if version in NEEDS_STATIC_KEYS:
        # kubeflow.objectStore.staticKeys: the IAM user's keys, still Pulumi secrets (stringData is one).
        assert data["object-store-access-key"] == MARKER_SECRETS["objectStoreAccessKeyId"]
        assert data["object-store-secret-key"] == MARKER_SECRETS["objectStoreSecretAccessKey"]
    else:
        # S3 through IRSA: no static keys anywhere, even with the secrets configured.
        assert data["object-store-access-key"] == data["object-store-secret-key"] == ""
    for group in run.of_type(CONFIG_GROUP):
        assert MARKER_SECRETS["databasePassword"] not in group.inputs["yaml"]


def test_the_central_secret_exists_before_its_consumers_and_after_its_namespace(release_run):
    run, _ = release_run
    (secret,) = central_secrets(run)
    groups = {g.name: g for g in run.of_type(CONFIG_GROUP)}
    assert secret.dependencies == [groups["kubeflow-namespaces"].urn]
    name = settings_of(run, "kubeflow")["centralSecret"]
    consumers = [
        g.name for g in groups.values()
        if any(f'"name":"{name}"' in json.dumps(obj, separators=(",", ":")) for obj in objects_from_config_group_inputs(g.inputs) if pod_template(obj))
    ]
    assert consumers, "no workload reads the central Secret"
    assert secret.urn in groups[consumers[0]].dependencies


# ------------------------------------------------------------------------------------------ version


def test_the_pinned_release_is_exported_and_the_component_version_recorded(release_run):
    run, version = release_run
    report = run.exports["transformReport"]
    assert run.exports["kubeflowVersion"] == report["release"] == version
    # The dashboard's version, which is not the release's (1.11.0 and 26.03 still ship the v1.10.0 dashboard).
    dashboard = release_table().named(version).components["dashboard"]
    assert report["componentVersion"] == dashboard.removeprefix("v")
    assert report["versionEvidence"]
    json.dumps(report)  # the offline preview reads it as plain JSON
