"""`kubeflow.mesh`: the transformations fit Kubeflow to the mesh the stack says it joins (docs/mesh.md).

Each adaptation over the rendered 26.03 and 1.10.2 releases: Pod Security levels the data plane can meet,
who joins the mesh, webhooks the API server reaches under strict mTLS, ServiceEntries under REGISTRY_ONLY,
Jobs that complete, ambient refused while ztunnel would enforce Kubeflow's HTTP policies.
"""

from __future__ import annotations

import functools
from dataclasses import replace

import pytest
import yaml

from config.kubeflow import external_hosts
from manifests.mesh import (
    INJECT, NATIVE_SIDECAR, POD_SECURITY_ENFORCE, PROFILE_LABELS_KEY, is_profile_labels_config_map, label_namespaces,
    let_jobs_complete, webhook_services,
)
from manifests.objects import object_ref, pod_template
from manifests.options import MeshOptions
from manifests.pipeline import transform
from manifests.release import transform_report_export
from manifests.sources import ManifestError
from manifests.tenancy import MeshPolicy, ProfileSpec, namespace_object
from tests.manifests.conftest import ENTERPRISE
from tests.test_kubeflow_settings import options as settings_options, settings
from tests.upstream import upstream_objects

RELEASES = ("26.03", "1.10.2")
#: The organisation keeps upstream's cert-manager here, so its place outside the mesh shows.
ORGANISATION = replace(ENTERPRISE, exclusions=("istio", "dex", "oauth2-proxy"))
MESHES = {
    "init-strict-registry": MeshOptions(data_plane="sidecar-init", mtls="strict", outbound_traffic_policy="REGISTRY_ONLY"),
    "cni-permissive-any": MeshOptions(data_plane="sidecar-cni", mtls="permissive", outbound_traffic_policy="ALLOW_ANY"),
    "cni-native": MeshOptions(data_plane="sidecar-cni", native_sidecars=True),
}


@functools.lru_cache(maxsize=None)
def fitted(release: str, mesh: str):
    return transform(upstream_objects(release), replace(ORGANISATION, mesh=MESHES[mesh]))


@pytest.fixture(params=RELEASES, ids=lambda v: f"v{v}")
def release(request) -> str:
    return request.param


def namespaces(report) -> dict[str, dict]:
    return {o["metadata"]["name"]: o["metadata"].get("labels") or {} for o in report.objects if o["kind"] == "Namespace"}


def profile_labels(report) -> dict:
    config_map = next(o for o in report.objects if is_profile_labels_config_map(o))
    return yaml.safe_load(config_map["data"][PROFILE_LABELS_KEY])


# ------------------------------------------------------------------------------------ Pod Security

def test_istio_init_namespaces_enforce_privileged_and_the_report_says_why(release):
    report = fitted(release, "init-strict-registry")
    outside = set(report.mesh["namespacesOutsideMesh"])
    assert outside == {"cert-manager"}
    for name, labels in namespaces(report).items():
        if name in outside:
            # Upstream's own level stays where no sidecar runs.
            assert labels.get(POD_SECURITY_ENFORCE) == {"26.03": "restricted", "1.10.2": "restricted"}[release], name
        else:
            assert labels[POD_SECURITY_ENFORCE] == "privileged", name
    assert profile_labels(report)[POD_SECURITY_ENFORCE] == "privileged"
    reasons = [c.what for c in report.changes["set_pod_security"]]
    assert reasons and all("NET_ADMIN and NET_RAW" in what for what in reasons)
    assert report.mesh["podSecurity"]["kubeflow"] == "privileged"


def test_cni_keeps_upstream_levels_and_gives_restricted_pods_a_seccomp_profile_for_the_sidecar(release):
    report = fitted(release, "cni-permissive-any")
    upstream = {o["metadata"]["name"]: (o["metadata"].get("labels") or {}).get(POD_SECURITY_ENFORCE)
                for o in upstream_objects(release) if o["kind"] == "Namespace"}
    levels = {name: labels.get(POD_SECURITY_ENFORCE) for name, labels in namespaces(report).items()}
    assert levels == {name: upstream[name] for name in levels}
    assert profile_labels(report)[POD_SECURITY_ENFORCE] == "baseline"
    restricted = {name for name, level in levels.items() if level == "restricted"}
    pods = [o for o in report.objects if pod_template(o) is not None and o["metadata"].get("namespace") in restricted]
    assert pods
    for workload in pods:
        # The injected istio-proxy and istio-validation set no seccompProfile of their own.
        assert pod_template(workload)["spec"]["securityContext"]["seccompProfile"]["type"] in ("RuntimeDefault", "Localhost"), object_ref(workload)


def test_profile_namespaces_the_program_applies_carry_the_level_the_data_plane_needs():
    profile = ProfileSpec(name="alice", owner="alice@example.com")
    mesh = dict(trusted_principals=(), serving_namespaces=(), serving_principals=())
    assert namespace_object(profile, MeshPolicy(pod_security="privileged", **mesh))["metadata"]["labels"][POD_SECURITY_ENFORCE] == "privileged"
    assert POD_SECURITY_ENFORCE not in namespace_object(profile, MeshPolicy(**mesh))["metadata"]["labels"]


# ------------------------------------------------------------------------------- who joins the mesh

def test_cert_manager_stays_outside_the_mesh_like_upstream(release):
    report = fitted(release, "init-strict-registry")
    assert namespaces(report)["cert-manager"]["istio-injection"] == "disabled"
    cert_manager = [o for o in report.objects if pod_template(o) is not None and o["metadata"].get("namespace") == "cert-manager"]
    assert len(cert_manager) == 3
    assert all(pod_template(o)["metadata"]["annotations"][INJECT] == "false" for o in cert_manager)


def _workload_policies(report, workload: dict) -> list[dict]:
    """The workload-level PeerAuthentications selecting the workload's pods (Istio applies only the oldest)."""
    labels = pod_template(workload)["metadata"].get("labels") or {}
    return [p for p in report.objects if p["kind"] == "PeerAuthentication"
            and p["metadata"]["namespace"] == workload["metadata"]["namespace"]
            and (match := p["spec"].get("selector", {}).get("matchLabels")) and match.items() <= labels.items()]


@pytest.mark.parametrize("mesh", ["init-strict-registry", "cni-permissive-any"])
def test_the_api_server_reaches_every_webhook_in_the_mesh(release, mesh):
    report = fitted(release, mesh)
    services = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in report.objects if o["kind"] == "Service"}
    checked = 0
    for namespace, name, port in sorted(webhook_services(report.objects)):
        if (namespace, name) not in services or namespace in report.mesh["namespacesOutsideMesh"]:
            continue
        service = services[(namespace, name)]["spec"]
        target = next(p.get("targetPort", p["port"]) for p in service["ports"] if p["port"] == port)
        for workload in report.objects:
            template = pod_template(workload)
            if template is None or workload["metadata"].get("namespace") != namespace or \
                    not service["selector"].items() <= (template["metadata"].get("labels") or {}).items():
                continue
            container_port = target if isinstance(target, int) else next(
                p["containerPort"] for c in template["spec"]["containers"] for p in c.get("ports", []) if p.get("name") == target)
            excluded = (template["metadata"].get("annotations") or {}).get("traffic.sidecar.istio.io/excludeInboundPorts", "")
            policies = _workload_policies(report, workload)
            # One workload policy per pod, or Istio would apply only the oldest and drop the others' ports.
            assert len(policies) <= 1, [object_ref(p) for p in policies]
            opened = {port for p in policies for port, mode in p["spec"].get("portLevelMtls", {}).items() if mode["mode"] == "PERMISSIVE"}
            reachable = str(container_port) in excluded.split(",") or str(container_port) in opened
            # Under permissive mTLS plaintext is accepted everywhere: the program adds nothing.
            assert reachable or MESHES[mesh].mtls == "permissive", f"{object_ref(workload)} webhook {name}:{port}"
            checked += 1
    assert checked >= 6
    added = [ref for ref in report.added if ref.startswith("PeerAuthentication")]
    assert bool(added) == (MESHES[mesh].mtls == "strict")


# ---------------------------------------------------------------------------------------------- egress

def test_registry_only_registers_the_idp_s3_sts_and_the_database():
    kubeflow = settings()
    hosts = external_hosts(kubeflow, region="eu-west-1", issuers=("https://login.example.com/oauth2/default",
                                                                  "https://token.actions.githubusercontent.com"),
                           issuers_namespace="oauth2-proxy")
    mesh = MeshOptions(outbound_traffic_policy="REGISTRY_ONLY", external_hosts=hosts)
    report = transform(upstream_objects("1.10.2"), replace(settings_options(kubeflow), mesh=mesh))
    entries = {tuple(o["spec"]["hosts"]): o for o in report.objects if o["kind"] == "ServiceEntry"
               and o["metadata"]["labels"].get("app.kubernetes.io/part-of") == "kubeflow-platform"}
    assert entries[("login.example.com",)]["spec"]["exportTo"] == ["oauth2-proxy"]
    assert ("token.actions.githubusercontent.com",) in entries
    assert entries[("minio.example.com",)]["spec"]["ports"] == [{"number": 9000, "name": "tcp-9000", "protocol": "TCP"}]
    assert entries[("sts.eu-west-1.amazonaws.com", "sts.amazonaws.com")]["spec"]["exportTo"] == ["*"]
    database = entries[("db.example.com",)]["spec"]
    assert (database["ports"][0]["number"], database["exportTo"], database["location"]) == (3307, ["."], "MESH_EXTERNAL")
    allow_any = transform(upstream_objects("1.10.2"), replace(settings_options(kubeflow), mesh=replace(mesh, outbound_traffic_policy="ALLOW_ANY")))
    assert not [o for o in allow_any.objects if o["kind"] == "ServiceEntry" and o["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") == "kubeflow-platform"]


def test_regional_s3_is_registered_with_its_bucket_hosts_matched_by_sni():
    hosts = {host.purpose: host for host in external_hosts(settings(objectStore={}), region="us-west-2")}
    assert hosts["s3"].hosts == ("s3.us-west-2.amazonaws.com", "*.s3.us-west-2.amazonaws.com")
    report = transform(upstream_objects("26.03"), replace(ORGANISATION, mesh=MeshOptions(external_hosts=(hosts["s3"],))))
    entry = next(o for o in report.objects if o["kind"] == "ServiceEntry" and o["metadata"]["name"] == "external-s3")
    assert (entry["spec"]["resolution"], entry["spec"]["ports"][0]["protocol"]) == ("NONE", "TLS")


# ------------------------------------------------------------------------------------------------ Jobs

def _job() -> dict:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "namespace": "kubeflow"},
            "spec": {"template": {"metadata": {"annotations": {INJECT: "true"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}}


def test_jobs_complete_out_of_the_mesh_without_native_sidecars_and_on_them_with():
    classic = let_jobs_complete([_job()], MeshOptions(data_plane="sidecar-cni", native_sidecars=False)).objects[0]
    assert pod_template(classic)["metadata"]["annotations"][INJECT] == "false"
    native = let_jobs_complete([_job()], MeshOptions(data_plane="sidecar-cni", native_sidecars=True)).objects[0]
    assert pod_template(native)["metadata"]["annotations"] == {INJECT: "true", NATIVE_SIDECAR: "true"}
    report = fitted("26.03", "init-strict-registry")
    jobs = [o for o in report.objects if o["kind"] in ("Job", "CronJob")]
    assert jobs and all(pod_template(o)["metadata"]["annotations"][INJECT] == "false" for o in jobs)


# --------------------------------------------------------------------------------------------- ambient

def test_ambient_enrolls_namespaces_without_the_injection_label():
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kubeflow", "labels": {"istio-injection": "enabled"}}}
    labels = label_namespaces([namespace], MeshOptions(data_plane="ambient")).objects[0]["metadata"]["labels"]
    assert labels == {"istio.io/dataplane-mode": "ambient"}


def test_ambient_is_refused_while_ztunnel_would_enforce_kubeflows_http_policies(release):
    with pytest.raises(ManifestError) as caught:
        transform(upstream_objects(release), replace(ORGANISATION, mesh=MeshOptions(data_plane="ambient")))
    [problem] = caught.value.problems
    assert problem.where == "kubeflow.mesh.dataPlane"
    assert "AuthorizationPolicy" in problem.message and "sidecar-cni" in problem.fix


def test_the_transform_report_exports_the_mesh_for_the_trace():
    class Prepared:
        report = fitted("26.03", "cni-native")
        release, component_version, version_evidence, identity, sha256, input_count, groups = "26.03", None, None, {}, "", 0, {}

    mesh = transform_report_export(Prepared())["mesh"]
    assert {key: mesh[key] for key in ("dataPlane", "mtls", "outboundTrafficPolicy", "nativeSidecars", "revision")} == {
        "dataPlane": "sidecar-cni", "mtls": "strict", "outboundTrafficPolicy": "REGISTRY_ONLY", "nativeSidecars": True, "revision": None}


# --------------------------------------------------------------------------------- whole stacks

@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_namespace_a_stack_applies_admits_its_sidecars(stack):
    """prod's mesh has no CNI: every namespace with sidecars, the auth proxy's and the profiles' included,
    enforces privileged. dev's mesh has one: no namespace is made weaker than upstream or the cluster."""
    from analysis.plan_objects import kubernetes_objects
    from tests.plans import evaluated_plan
    from tools.mock_runtime import stack_config

    plan, _ = evaluated_plan(stack, "26.03")
    data_plane = stack_config(stack)["kubeflow-platform:kubeflow"]["mesh"]["dataPlane"]
    assert data_plane == {"dev": "sidecar-cni", "prod": "sidecar-init"}[stack]
    found = {}
    for planned in kubernetes_objects(plan).objects:
        if planned.obj.get("kind") == "Namespace":
            labels = planned.obj["metadata"].get("labels") or {}
            in_mesh = labels.get("istio-injection") == "enabled" or "istio.io/rev" in labels
            found[planned.obj["metadata"]["name"]] = (in_mesh, labels.get(POD_SECURITY_ENFORCE))
    assert {"kubeflow", "oauth2-proxy", "alice", "cert-manager"} <= set(found)
    assert not found["cert-manager"][0]
    for name, (in_mesh, level) in found.items():
        if not in_mesh:
            assert level != "privileged", name
        elif data_plane == "sidecar-init":
            assert level == "privileged", name
        else:
            assert level != "privileged", name


def test_the_text_report_says_what_mesh_and_which_pod_security_levels():
    from tools.plan import TRANSFORM_REPORT_EXPORT, transform_report_text, transform_summary

    mesh = {"dataPlane": "sidecar-init", "mtls": "strict", "outboundTrafficPolicy": "REGISTRY_ONLY", "nativeSidecars": False,
            "revision": None, "namespacesOutsideMesh": ["cert-manager"], "podSecurity": {"kubeflow": "privileged"}}
    text = transform_report_text(transform_summary({TRANSFORM_REPORT_EXPORT: {"mesh": mesh, "changes": {}}}))
    assert "Mesh: dataPlane sidecar-init, mtls strict, outboundTrafficPolicy REGISTRY_ONLY" in text
    assert "outside the mesh: cert-manager" in text and "Pod Security enforce: kubeflow privileged" in text
