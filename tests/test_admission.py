"""Admission the cluster enforces (manifests/admission.py), evaluated with a real CEL evaluator (cel-python).

Pod Security judges a pod after Istio's injector; without the CNI the injected istio-init adds NET_ADMIN and
NET_RAW, which baseline refuses with no exception per container. So the namespaces whose pods get istio-init can
only carry the `privileged` label, and the program's ValidatingAdmissionPolicy holds their pods to baseline
instead. These tests run the policy's CEL over the pods each data plane injects (admitted) and over a tenant's
hostile pods (refused), over the release's own workloads, and over whole stacks under every data plane.
"""

from __future__ import annotations

import io
import re

import pytest
import yaml

from analysis import admission as evaluation
from manifests.admission import (
    BASELINE_CAPABILITIES, POD_ADMISSION_LABEL, POD_POLICY, PROFILE_NAMESPACE_LABEL, pod_security_policy,
)
from manifests.mesh import POD_SECURITY_ENFORCE, PROFILE_LABELS_KEY, is_profile_labels_config_map
from manifests.objects import pod_template
from tests.conftest import MARKER_SECRETS
from tests.test_mesh_dataplane import fitted
from tests.upstream import manifests_path
from tools import plan_checks
from tools.plan import kubernetes_objects
from tools.preview import Progress, evaluate

DATA_PLANES = ("sidecar-init", "sidecar-cni", "ambient")


def policy_for(data_plane: str) -> dict:
    return pod_security_policy(data_plane == "sidecar-init")[0]


# ------------------------------------------------------------------------------- the policy on its own

@pytest.mark.parametrize("native", [False, True], ids=["classic-sidecar", "native-sidecar"])
@pytest.mark.parametrize("data_plane", DATA_PLANES)
def test_a_tenants_ordinary_pod_is_admitted_once_the_mesh_injected_it(data_plane, native):
    pod = evaluation.injected(evaluation.tenant_pod("alice"), data_plane, native)
    if data_plane == "sidecar-init":
        init = next(c for c in pod["spec"]["initContainers"] if c["name"] == "istio-init")
        assert init["securityContext"]["capabilities"]["add"] == ["NET_ADMIN", "NET_RAW"]
    verdict = evaluation.evaluate(policy_for(data_plane), pod)
    assert verdict.admitted, verdict.refusals


@pytest.mark.parametrize("data_plane", DATA_PLANES)
def test_hostile_pods_are_refused_on_every_data_plane_with_the_check_that_refuses_them(data_plane):
    policy = policy_for(data_plane)
    expected = {
        "privileged container": "check_privileged.go", "hostPath volume": "check_hostPathVolumes.go",
        "hostNetwork": "check_hostNamespaces.go", "hostPID": "check_hostNamespaces.go", "hostIPC": "check_hostNamespaces.go",
        "hostPort": "check_hostPorts.go", "SYS_ADMIN added": "check_capabilities_baseline.go",
        "NET_ADMIN on the tenant's container": "check_capabilities_baseline.go",
        "unconfined seccomp": "check_seccompProfile_baseline.go", "unsafe sysctl": "check_sysctls.go",
        "Unmasked /proc": "check_procMount.go", "SELinux spc_t": "check_seLinuxOptions.go",
        "AppArmor unconfined": "check_appArmorProfile.go", "Windows hostProcess": "check_windowsHostProcess.go",
        "an istio-init with SYS_ADMIN besides NET_ADMIN": "check_capabilities_baseline.go",
        "an istio-init that is privileged": "check_privileged.go",
        "an istio-init with a command of its own": "check_capabilities_baseline.go",
        "an istio-init of another image than the pod's istio-proxy": "check_capabilities_baseline.go",
        "NET_ADMIN on a regular container named istio-init": "check_capabilities_baseline.go",
        "an istio-proxy that adds NET_ADMIN (interceptionMode TPROXY)": "check_capabilities_baseline.go",
        "privileged ephemeral container": "check_privileged.go",
    }
    hostile = evaluation.hostile_pods("alice", data_plane)
    assert set(hostile) == set(expected)
    for name, pod in hostile.items():
        verdict = evaluation.evaluate(policy, pod)
        assert not verdict.admitted, name
        assert any(expected[name] in refusal for refusal in verdict.refusals), (name, verdict.refusals)
        assert not any("evaluation error" in refusal for refusal in verdict.refusals), (name, verdict.refusals)


def test_only_istio_init_gets_net_admin_and_only_where_the_mesh_injects_it():
    pod = evaluation.injected(evaluation.tenant_pod("alice"), "sidecar-init")
    # The same injected pod under a policy without the exception (CNI, ambient) is refused: nothing else admits it.
    assert evaluation.evaluate(policy_for("sidecar-init"), pod).admitted
    assert not evaluation.evaluate(policy_for("sidecar-cni"), pod).admitted
    # NET_RAW alone, or NET_ADMIN alone, on istio-init is within the exception; a third capability is not.
    init = next(c for c in pod["spec"]["initContainers"] if c["name"] == "istio-init")
    for added, admitted in ((["NET_RAW"], True), (["NET_ADMIN"], True), (["NET_ADMIN", "NET_RAW", "SYS_PTRACE"], False)):
        init["securityContext"]["capabilities"]["add"] = added
        assert evaluation.evaluate(policy_for("sidecar-init"), pod).admitted is admitted, added


def test_every_capability_of_baselines_default_set_stays_allowed():
    for capability in BASELINE_CAPABILITIES:
        pod = evaluation.injected(evaluation._notebook("alice", securityContext={"capabilities": {"add": [capability]}}), "sidecar-cni")
        assert evaluation.evaluate(policy_for("sidecar-cni"), pod).admitted, capability


def test_a_debug_container_added_later_is_judged_and_other_updates_are_not():
    policy = policy_for("sidecar-init")
    debugged = evaluation.hostile_pods("alice", "sidecar-init")["privileged ephemeral container"]
    assert not evaluation.evaluate(policy, debugged, operation="UPDATE", sub_resource="ephemeralcontainers").admitted
    # A label update on a running pod is not judged again (Pod Security does not judge it either) ...
    relabelled = {**debugged, "metadata": {**debugged["metadata"], "labels": {"x": "y"}}}
    assert evaluation.evaluate(policy, relabelled, operation="UPDATE", old=debugged).admitted
    # ... a changed spec is: istio-init's image swapped for another after the pod was admitted.
    pod = evaluation.injected(evaluation.tenant_pod("alice"), "sidecar-init")
    swapped = {**pod, "spec": {**pod["spec"], "initContainers": [
        {**c, "image": "registry.example.com/tenant/tools:1"} if c["name"] == "istio-init" else c for c in pod["spec"]["initContainers"]]}}
    assert evaluation.evaluate(policy, pod, operation="UPDATE", old=pod).admitted
    assert not evaluation.evaluate(policy, swapped, operation="UPDATE", old=pod).admitted


def test_an_expression_that_cannot_be_evaluated_refuses_the_pod():
    policy = policy_for("sidecar-init")
    broken = {**policy, "spec": {**policy["spec"], "validations": [{"expression": "object.spec.noSuchField == 1", "message": "x"}]}}
    assert policy["spec"]["failurePolicy"] == "Fail"
    assert not evaluation.evaluate(broken, evaluation.tenant_pod("alice")).admitted


#: Functions of Kubernetes' CEL libraries (strings, lists, regex, URLs, quantities, sets, authorizer) that the
#: offline evaluator does not implement: the policies must not use them, so both judge the same text.
KUBERNETES_EXTENSIONS = ("lowerAscii", "upperAscii", "replace(", "split(", "join(", "substring(", "indexOf(", "trim(",
                         "isSorted", "sum(", "find(", "findAll(", "url(", "quantity(", "sets.", "authorizer", ".?", "optional.")


def test_the_policies_use_the_cel_standard_only_and_every_expression_compiles():
    for data_plane in DATA_PLANES:
        for validation in policy_for(data_plane)["spec"]["validations"]:
            expression = validation["expression"]
            assert not [name for name in KUBERNETES_EXTENSIONS if name in expression], expression[:120]
            evaluation._program(expression)


def test_the_bindings_select_every_profile_namespace_and_the_labelled_ones():
    objects = pod_security_policy(True)
    key, value = PROFILE_NAMESPACE_LABEL
    assert evaluation.pod_policy_holds(objects, {key: value}) is not None
    assert evaluation.pod_policy_holds(objects, {POD_ADMISSION_LABEL: "baseline"}) is not None
    assert evaluation.pod_policy_holds(objects, {"kubernetes.io/metadata.name": "kube-system"}) is None
    for binding in objects[1:]:
        assert binding["spec"]["validationActions"] == ["Deny"] and binding["spec"]["policyName"] == POD_POLICY


# --------------------------------------------------------------------------------- over the release

@pytest.mark.parametrize("release", ["26.03", "1.10.2"])
@pytest.mark.parametrize("mesh", ["init-strict-registry", "cni-permissive-any", "cni-native"])
def test_the_releases_pods_pass_the_policy_once_injected_and_no_namespace_is_left_privileged(release, mesh):
    report = fitted(release, mesh)
    labels_file = yaml.safe_load(next(o for o in report.objects if is_profile_labels_config_map(o))["data"][PROFILE_LABELS_KEY])
    assert labels_file[POD_ADMISSION_LABEL] == "baseline"
    data_plane = report.mesh["dataPlane"]
    found = evaluation.pod_admission(report.objects, labels_file, data_plane, mesh == "cni-native")
    assert found.problems == ()
    assert evaluation.RUNTIME_PROFILE in found.namespaces_held
    assert found.hostile_refused == len(evaluation.hostile_pods("x", data_plane))
    privileged = {o["metadata"]["name"] for o in report.objects if o["kind"] == "Namespace"
                  and (o["metadata"].get("labels") or {}).get(POD_SECURITY_ENFORCE) == "privileged"}
    assert privileged <= set(found.namespaces_held)
    if data_plane == "sidecar-init":
        assert privileged and found.pods_admitted == len(
            [o for o in report.objects if pod_template(o) is not None and o["metadata"].get("namespace") in found.namespaces_held])


def test_a_privileged_namespace_without_the_policy_is_a_problem():
    report = fitted("26.03", "init-strict-registry")
    without = [o for o in report.objects if o.get("kind") not in ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")]
    problems = evaluation.pod_admission(without, {POD_SECURITY_ENFORCE: "privileged"}, "sidecar-init").problems
    assert any(p.startswith("namespace kubeflow: Pod Security 'privileged'") for p in problems)
    assert any(p.startswith(f"namespace {evaluation.RUNTIME_PROFILE}:") for p in problems)


# ------------------------------------------------------------------------------------ whole stacks

def _plan(stack: str, data_plane: str) -> dict:
    plan, _ = evaluate(stack, manifests=str(manifests_path("26.03")), kubeflow_version="26.03", secrets=MARKER_SECRETS,
                       progress=Progress(io.StringIO()), settings={"kubeflow.mesh.dataPlane": data_plane})
    return plan


@pytest.mark.parametrize("stack,data_plane", [("prod", "sidecar-init"), ("dev", "sidecar-cni"), ("dev", "sidecar-init"),
                                              ("prod", "sidecar-cni")])
def test_no_profile_namespace_of_a_stack_is_effectively_privileged_on_any_data_plane(stack, data_plane):
    plan = _plan(stack, data_plane)
    found = plan_checks.plan_pod_admission(plan)
    assert found.problems == ()
    objects = [o.obj for o in kubernetes_objects(plan).objects]
    # Profiles whose namespace the stack applies; the others (upstream's example profile) get theirs at run time.
    namespaces = {o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"}
    profiles = {o["metadata"]["name"] for o in objects if o["kind"] == "Profile"} & namespaces
    assert profiles and profiles | {evaluation.RUNTIME_PROFILE} <= set(found.namespaces_held)
    for namespace in (o for o in objects if o["kind"] == "Namespace" and o["metadata"]["name"] in profiles):
        assert namespace["metadata"]["labels"][POD_ADMISSION_LABEL] == "baseline"
    policy = next(o for o in objects if o["kind"] == "ValidatingAdmissionPolicy" and o["metadata"]["name"] == POD_POLICY)
    hostile = evaluation.hostile_pods(sorted(profiles)[0], data_plane)
    assert not any(evaluation.evaluate(policy, pod).admitted for pod in hostile.values())
    assert re.search(r"NET_ADMIN and NET_RAW only on the istio-init", str(policy)) is not None \
        if data_plane == "sidecar-init" else "istio-init" not in str(policy["spec"]["validations"])


def _expressions(objects) -> list[str]:
    found = []

    def walk(value):
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "expression" and isinstance(item, str):
                    found.append(item)
                else:
                    walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(objects)
    return found


def test_the_cached_cel_parser_reads_every_policy_expression_as_cel_pythons_own_parser(tmp_path, monkeypatch):
    """The preview loads the CEL grammar's tables from lark's cache; the trees it parses are the ones cel-python's own
    parser (built without a cache) gives, for every expression the program's admission policies hold."""
    import lark
    from celpy.celparser import CELParser

    from manifests.admission import pod_security_policy, profile_policy, self_service_pod_policy

    expressions = _expressions([pod_security_policy(True), pod_security_policy(False),
                                profile_policy("system:serviceaccount:kubeflow:kfam", self_service_domains=["example.com"]),
                                self_service_pod_policy(gpus=2, gpu_taint_keys=["nvidia.com/gpu"])])
    assert len(expressions) > 20
    monkeypatch.setenv("KUBEFLOW_PLATFORM_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(CELParser, "CEL_PARSER", None)
    CELParser()  # cel-python's own, uncached
    own = [CELParser.CEL_PARSER.parse(text) for text in expressions]
    for _ in range(2):  # the first run writes lark's cache, the second loads it
        monkeypatch.setattr(CELParser, "CEL_PARSER", None)
        evaluation._cel_parser()
        assert isinstance(CELParser.CEL_PARSER, lark.Lark)
        assert [CELParser.CEL_PARSER.parse(text) for text in expressions] == own
    assert list((tmp_path / "cel").iterdir())


def test_without_a_writable_cache_cel_python_builds_its_own_parser(tmp_path, monkeypatch):
    from celpy.celparser import CELParser

    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    monkeypatch.setenv("KUBEFLOW_PLATFORM_CACHE_DIR", str(blocked))
    monkeypatch.setattr(CELParser, "CEL_PARSER", None)
    monkeypatch.setattr(evaluation, "_PROGRAMS", {})
    evaluation._cel_parser()
    assert CELParser.CEL_PARSER is None  # left to cel-python, which builds it on first use
    evaluation._environment.cache_clear()
    assert evaluation._truth("1 + 1 == 2", {}) == (True, None)
    assert CELParser.CEL_PARSER is not None
    assert not (tmp_path / "cel").exists()
