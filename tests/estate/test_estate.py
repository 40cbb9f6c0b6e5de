"""`make estate` and `make preview ESTATE=...`: the real cluster and account, recorded read-only and checked.

The cluster and the account are a fake `kubectl` and `aws` on PATH (tests/estate/fake_cli.py) that answer
from objects recorded in the shapes the real tools print (tests/estate/recorded/: kubectl `get -o json`
objects and `List`s of the Kubernetes API types, https://kubernetes.io/docs/reference/kubernetes-api/;
AWS CLI `--output json` answers of eks describe-cluster, iam list-open-id-connect-providers, route53
list-hosted-zones-by-name and list-resource-record-sets, https://docs.aws.amazon.com/cli/latest/reference/,
and its error text for a missing role or bucket). The recorded estate matches the dev stack; each test
changes one thing in it, as a real estate would differ, and expects the preview to name the setting and
the value the estate holds.
"""

from __future__ import annotations

import copy
import io
import json
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
import yaml

from analysis.estate import EstateError, load_estate, refuse_writes
from analysis.estate_checks import ARGO_BY_RELEASE, estate_problems
from tests.conftest import MARKER_SECRETS, irsa_overrides, shared_run
from tests.upstream import SUPPORTED_VERSIONS, manifests_path
from tools import estate as estate_tool
from tools.plan import build_plan, write_plan_dir

HERE = Path(__file__).resolve().parent
RECORDED = HERE / "recorded"


def install_fakes(bin_dir: Path, state_dir: Path, log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`kubectl` and `aws` on PATH, played by fake_cli.py with this test's recorded state."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for tool in ("kubectl", "aws"):
        script = bin_dir / tool
        script.write_text(f"#!{sys.executable}\nimport os, runpy\nos.environ['FAKE_CLI_TOOL'] = {tool!r}\n"
                          f"runpy.run_path({str(HERE / 'fake_cli.py')!r}, run_name='__main__')\n")
        script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin")
    monkeypatch.setenv("FAKE_CLI_DIR", str(state_dir))
    monkeypatch.setenv("FAKE_CLI_LOG", str(log))


@pytest.fixture(scope="module")
def dev_plan(tmp_path_factory) -> tuple[dict, Path]:
    plan, _ = build_plan(shared_run("dev"), MARKER_SECRETS.values())
    directory = tmp_path_factory.mktemp("plan") / "dev"
    write_plan_dir(plan, directory)
    return plan, directory


def declared() -> dict:
    return estate_tool.declared_settings(estate_tool.stack_settings("dev"))


def _local_gateway_pods(cluster: dict) -> list[dict]:
    return [o for o in cluster["objects"] if o["metadata"]["name"].startswith("cluster-local-gateway")]


def recorded() -> tuple[dict, dict]:
    cluster, aws = json.loads((RECORDED / "cluster.json").read_text()), json.loads((RECORDED / "aws.json").read_text())
    if declared().get("kubeflow.mesh.clusterLocalGateway") == "program":
        # The stack deploys the cluster-local gateway itself: a matching mesh runs none of its own.
        cluster["objects"] = [o for o in cluster["objects"] if o not in _local_gateway_pods(cluster)]
    return cluster, aws


def _fake_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("fake_cli", HERE / "fake_cli.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FAKE = _fake_module()


def in_process(argv: list[str]):
    """The fake kubectl and aws called in this process: the same answers as through PATH, without starting a
    Python per command (the end-to-end tests above and the runbook's go through PATH)."""
    import contextlib

    from analysis.estate import Answer

    estate_tool.refuse_writes(argv)
    with open(os.environ["FAKE_CLI_LOG"], "a") as log:
        log.write(json.dumps(argv) + "\n")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = FAKE.kubectl(argv[1:]) if argv[0] == "kubectl" else FAKE.aws(argv[1:])
    return Answer(status, out.getvalue(), err.getvalue())


class Recording:
    def __init__(self, status: int, stdout: str, stderr: str, estate: Optional[dict], log: list[list[str]]) -> None:
        self.status, self.stdout, self.stderr, self.estate, self.log = status, stdout, stderr, estate, log


def record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plan_dir: Path,
           change: Optional[Callable[[dict, dict], None]] = None, extra: tuple[str, ...] = (),
           runner: Optional[Callable] = None) -> Recording:
    cluster, aws = recorded()
    if change is not None:
        change(cluster, aws)
    state = tmp_path / "state"
    state.mkdir(parents=True, exist_ok=True)
    (state / "cluster.json").write_text(json.dumps(cluster))
    (state / "aws.json").write_text(json.dumps(aws))
    log = tmp_path / "calls.log"
    install_fakes(tmp_path / "bin", state, log, monkeypatch)
    out = tmp_path / "estate" / "dev.yaml"
    stdout, stderr = io.StringIO(), io.StringIO()
    status = estate_tool.main(["--stack", "dev", "--plan", str(plan_dir), "--out", str(out), *extra],
                              stdout=stdout, stderr=stderr, **({"runner": runner} if runner else {}))
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return Recording(status, stdout.getvalue(), stderr.getvalue(), load_estate(out) if out.exists() else None, calls)


def problems_with(tmp_path, monkeypatch, dev_plan, change=None) -> list[str]:
    plan, directory = dev_plan
    recording = record(tmp_path, monkeypatch, directory, change, runner=in_process)
    assert recording.status == 0, recording.stderr
    return estate_problems(recording.estate, plan, declared())


# --- The command: printed first, reads only -----------------------------------------------------------


def test_every_command_is_printed_before_any_runs_and_each_is_a_read(tmp_path, monkeypatch, dev_plan):
    recording = record(tmp_path, monkeypatch, dev_plan[1])
    assert recording.status == 0, recording.stderr
    printed = [line.strip() for line in recording.stdout.splitlines() if line.startswith("    ")]
    ran = [" ".join(call) for call in recording.log]
    # The zone id and Karpenter's interruption queue are the answers later commands need; every other command
    # runs exactly as printed.
    assert [p.replace("{hosted-zone-id-from-the-answer-above}", "Z0123456789ABCDEFGHIJ")
            .replace("{interruption-queue-from-the-controller-above}", "ml-dev") for p in printed] == ran
    assert len(ran) > 50
    for call in recording.log:
        if call[0] == "kubectl":
            assert call[1] == "get"
        else:
            assert call[0] == "aws" and re.match(r"^(describe|list|get|head)-", call[2]), call
    # A Secret's contents are never asked for.
    assert all("-o name" in " ".join(c) for c in recording.log if c[:3] == ["kubectl", "get", "secret"])


def test_list_prints_the_commands_and_runs_none(tmp_path, monkeypatch, dev_plan):
    recording = record(tmp_path, monkeypatch, dev_plan[1], extra=("--list",))
    assert recording.status == 0 and recording.log == [] and recording.estate is None
    assert "kubectl get namespaces -o json" in recording.stdout
    assert "aws eks describe-cluster --name ml-dev --region us-west-2 --output json" in recording.stdout


@pytest.mark.parametrize("argv", [
    ["kubectl", "apply", "-f", "x.yaml"], ["kubectl", "delete", "configmap", "x"], ["kubectl", "patch", "svc", "x"],
    ["kubectl", "label", "ns", "x", "a=b"], ["kubectl", "get", "--raw", "/api"], ["kubectl", "get", "pods", "-f", "x.yaml"],
    ["aws", "iam", "create-role", "--role-name", "x"], ["aws", "s3api", "delete-bucket", "--bucket", "x"],
    ["aws", "route53", "change-resource-record-sets"], ["aws", "s3", "rm", "s3://x/y"], ["sh", "-c", "kubectl get pods"],
])
def test_a_command_that_is_not_a_read_is_refused_and_never_run(argv, monkeypatch):
    def must_not_run(*args, **kwargs):
        raise AssertionError(f"ran {args}")

    monkeypatch.setattr(estate_tool.subprocess, "run", must_not_run)
    with pytest.raises(EstateError, match="refused"):
        estate_tool.run_read(argv)


def test_commands_run_without_a_shell(monkeypatch):
    seen: dict[str, Any] = {}

    def fake_run(argv, **kwargs):
        seen.update(kwargs, argv=argv)
        raise FileNotFoundError(2, "No such file or directory", argv[0])

    monkeypatch.setattr(estate_tool.subprocess, "run", fake_run)
    with pytest.raises(FileNotFoundError):
        estate_tool.run_read(["kubectl", "get", "namespaces", "-o", "json"])
    assert isinstance(seen["argv"], list) and not seen.get("shell")


def test_a_missing_tool_is_one_error_line_and_exit_2(tmp_path, monkeypatch, dev_plan):
    monkeypatch.setenv("PATH", str(tmp_path))  # neither kubectl nor aws
    stdout, stderr = io.StringIO(), io.StringIO()
    status = estate_tool.main(["--stack", "dev", "--plan", str(dev_plan[1]), "--out", str(tmp_path / "e.yaml")],
                              stdout=stdout, stderr=stderr)
    assert status == 2 and "kubectl" in stderr.getvalue() and "Traceback" not in stderr.getvalue()


# --- The file -----------------------------------------------------------------------------------------


def test_the_estate_records_what_the_cluster_and_account_run(tmp_path, monkeypatch, dev_plan):
    estate = record(tmp_path, monkeypatch, dev_plan[1]).estate
    mesh = estate["mesh"]
    assert mesh["istiod"] == [{"namespace": "istio-system", "name": "istiod", "revision": "default", "version": "1.24.6",
                               "nativeSidecars": "false"}]
    assert mesh["cni"] is True and mesh["ztunnel"] is False
    assert mesh["meshConfig"]["default"]["extensionProviders"] == ["kubeflow-auth", "otel"]
    assert mesh["meshConfig"]["default"]["outboundTrafficPolicy"] == "ALLOW_ANY"
    # A stack that runs the cluster-local gateway itself meets a mesh without one (see `recorded`).
    program = declared().get("kubeflow.mesh.clusterLocalGateway") == "program"
    assert mesh["clusterLocalGateway"]["pods"] == ([] if program else ["cluster-local-gateway-6b8c9d0e1f-fghij"])
    assert estate["gateway"]["pods"] == [{"namespace": "istio-system", "serviceAccount": "istio-ingressgateway-service-account"}]
    assert estate["argo"]["controllers"][0] == {"namespace": "argo", "name": "workflow-controller", "version": "v3.7.8",
                                                "namespaced": False, "configmap": "workflow-controller-configmap"}
    assert estate["aws"]["cluster"]["oidcIssuer"].endswith("/id/0A1B2C3D4E5F60718293A4B5C6D7E8F9")
    assert estate["aws"]["iamRoles"] == {name: None for name in estate["aws"]["iamRoles"]} and estate["aws"]["iamRoles"]
    assert set(estate["aws"]["buckets"].values()) == {"absent"}
    assert estate["kubernetes"]["namespaces"]["istio-system"] == {"pod-security.kubernetes.io/enforce": "privileged"}
    assert {"group": "", "kind": "Service", "namespace": "istio-system", "name": "istio-ingressgateway",
            "managers": ["helm"]} in estate["kubernetes"]["existingObjects"]
    assert estate["failed"] == []


def test_an_estate_file_of_another_shape_is_refused_with_its_name(tmp_path):
    path = tmp_path / "dev.yaml"
    path.write_text(yaml.safe_dump({"format": "something-else", "stack": "dev"}))
    with pytest.raises(EstateError, match=r"dev\.yaml: .*format is 'something-else'"):
        load_estate(path)
    with pytest.raises(EstateError, match="make estate"):
        load_estate(tmp_path / "missing.yaml")


# --- The checks ---------------------------------------------------------------------------------------


def test_an_estate_that_matches_the_stack_passes(tmp_path, monkeypatch, dev_plan):
    assert problems_with(tmp_path, monkeypatch, dev_plan) == []


def _objects(cluster: dict, kind: str, name: str) -> list[dict]:
    return [o for o in cluster["objects"] if o["kind"] == kind and o["metadata"]["name"] == name]


def _istiod(cluster: dict) -> dict:
    return _objects(cluster, "Deployment", "istiod")[0]


def _discovery(cluster: dict) -> dict:
    return _istiod(cluster)["spec"]["template"]["spec"]["containers"][0]


def _set_env(container: dict, name: str, value: Optional[str]) -> None:
    container["env"] = [e for e in container["env"] if e["name"] != name] + ([{"name": name, "value": value}] if value else [])


def _mesh(cluster: dict, text_change: Callable[[str], str]) -> None:
    config = _objects(cluster, "ConfigMap", "istio")[0]
    config["data"]["mesh"] = text_change(config["data"]["mesh"])


def _add(cluster: dict, obj: dict) -> None:
    obj.setdefault("metadata", {}).setdefault("uid", "00000000-0000-4000-8000-000000000000")
    cluster["objects"].append(obj)


def _strict(cluster, aws):
    _add(cluster, {"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
                   "metadata": {"name": "default", "namespace": "istio-system"}, "spec": {"mtls": {"mode": "STRICT"}}})


def _istio_1_26(cluster, aws):
    _discovery(cluster)["image"] = "docker.io/istio/pilot:1.26.3"


def _no_cni(cluster, aws):
    cluster["objects"] = [o for o in cluster["objects"] if o["metadata"]["name"] != "istio-cni-node"]


def _no_pod_identity_agent(cluster, aws):
    cluster["objects"] = [o for o in cluster["objects"] if o["metadata"]["name"] != "eks-pod-identity-agent"]


def _native(cluster, aws):
    _set_env(_discovery(cluster), "ENABLE_NATIVE_SIDECARS", "true")


def _auto_on_new_kubelets(cluster, aws):
    _discovery(cluster)["image"] = "docker.io/istio/pilot:1.28.0"
    _set_env(_discovery(cluster), "ENABLE_NATIVE_SIDECARS", None)
    _objects(cluster, "Node", "ip-10-0-12-34.us-west-2.compute.internal")[0]["status"]["nodeInfo"]["kubeletVersion"] = "v1.33.1-eks-1"


def _registry_only(cluster, aws):
    _mesh(cluster, lambda text: text.replace("mode: ALLOW_ANY", "mode: REGISTRY_ONLY"))


def _private_services(cluster, aws):
    _mesh(cluster, lambda text: "defaultServiceExportTo: [\".\"]\n" + text)


def _no_provider(cluster, aws):
    _mesh(cluster, lambda text: text.split("- name: kubeflow-auth")[0])


def _revision_only(cluster, aws):
    istiod = _istiod(cluster)
    istiod["metadata"]["name"] = "istiod-stable-1-24"
    istiod["metadata"]["labels"]["istio.io/rev"] = "stable-1-24"


def _no_local_gateway(cluster, aws):
    cluster["objects"] = [o for o in cluster["objects"] if o not in _local_gateway_pods(cluster)]


def _local_gateway_of_the_mesh(cluster, aws):
    _add(cluster, {"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": "cluster-local-gateway-6b8c9d0e1f-klmno", "namespace": "istio-system",
                                "labels": {"app": "cluster-local-gateway", "istio": "cluster-local-gateway"}},
                   "spec": {"serviceAccountName": "cluster-local-gateway-service-account", "containers": []}})


def _argo_3_5(cluster, aws):
    _objects(cluster, "Deployment", "workflow-controller")[0]["spec"]["template"]["spec"]["containers"][0]["image"] = \
        "quay.io/argoproj/workflow-controller:v3.5.14"


def _argo_namespaced(cluster, aws):
    _objects(cluster, "Deployment", "workflow-controller")[0]["spec"]["template"]["spec"]["containers"][0]["args"] = \
        ["--namespaced", "--configmap", "argo-config"]


def _argo_instance_id(cluster, aws):
    _objects(cluster, "ConfigMap", "workflow-controller-configmap")[0]["data"]["instanceID"] = "data-eng"


def _argo_sets_its_own_executor(cluster, aws):
    configmap = _objects(cluster, "ConfigMap", "workflow-controller-configmap")[0]
    configmap["data"]["executor"] = "imagePullPolicy: Always\n"
    configmap["metadata"]["managedFields"][0]["fieldsV1"] = {"f:data": {"f:executor": {}, "f:parallelism": {}}}


def _no_argo_configmap(cluster, aws):
    cluster["objects"].remove(_objects(cluster, "ConfigMap", "workflow-controller-configmap")[0])


def _no_istio_crds(cluster, aws):
    cluster["serves"] = []
    cluster["objects"] = [o for o in cluster["objects"] if not o["metadata"]["name"].endswith(".istio.io")]


def _gateway_elsewhere(cluster, aws):
    pod = _objects(cluster, "Pod", "istio-ingressgateway-7d9f8b6c5d-abcde")[0]
    pod["metadata"]["namespace"] = "istio-ingress"
    pod["spec"]["serviceAccountName"] = "istio-ingress"


def _kubeflow_namespace_exists(cluster, aws):
    _add(cluster, {"apiVersion": "v1", "kind": "Namespace",
                   "metadata": {"name": "kubeflow", "labels": {"pod-security.kubernetes.io/enforce": "baseline"}}})


def _no_gateway_service(cluster, aws):
    cluster["objects"] = [o for o in cluster["objects"] if o["metadata"]["name"] != "istio-ingressgateway"
                          or o["kind"] != "Service"]


def _provider_exists(cluster, aws):
    aws["iam list-open-id-connect-providers"]["OpenIDConnectProviderList"].append(
        {"Arn": "arn:aws:iam::111111111111:oidc-provider/oidc.eks.us-west-2.amazonaws.com/id/0A1B2C3D4E5F60718293A4B5C6D7E8F9"})


def _role_exists(cluster, aws):
    aws["iam get-role kubeflow-platform-dev-identity-pipelines"] = {"Role": {
        "Path": "/", "RoleName": "kubeflow-platform-dev-identity-pipelines", "RoleId": "AROAEXAMPLEID000001",
        "Arn": "arn:aws:iam::111111111111:role/kubeflow-platform-dev-identity-pipelines",
        "CreateDate": "2025-10-01T10:00:00+00:00", "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": []},
        "MaxSessionDuration": 3600}}


def _bucket_exists(cluster, aws):
    aws["s3api head-bucket example-ml-dev-pipelines"] = {"BucketRegion": "us-west-2", "AccessPointAlias": False}


def _record_exists(cluster, aws):
    aws["route53 list-resource-record-sets Z0123456789ABCDEFGHIJ"]["ResourceRecordSets"].append(
        {"Name": "kubeflow.dev.ml.example.com.", "Type": "A",
         "AliasTarget": {"HostedZoneId": "Z1H1FL5HABSF5", "DNSName": "old-lb.elb.us-west-2.amazonaws.com.", "EvaluateTargetHealth": True}})


def _created_object_exists(cluster, aws):
    _add(cluster, {"apiVersion": "networking.istio.io/v1", "kind": "EnvoyFilter",
                   "metadata": {"name": "kubeflow-identity-headers", "namespace": "istio-system",
                                "managedFields": [{"manager": "istio-operator", "operation": "Apply"}]}, "spec": {}})


CASES = {
    "mesh-wide mTLS": (_strict, r"kubeflow\.mesh\.mtls is permissive but PeerAuthentication istio-system/default has mode STRICT"),
    "Istio version": (_istio_1_26, r"kubeflow\.mesh\.istioVersion is 1\.24 but istiod istio-system/istiod runs 1\.26\.3"),
    "Pod Identity agent": (_no_pod_identity_agent, r"identity\.mechanism is podIdentity but no eks-pod-identity-agent DaemonSet runs"),
    "data plane": (_no_cni, r"kubeflow\.mesh\.dataPlane is sidecar-cni but no Istio CNI node agent runs.*set it to sidecar-init"),
    "native sidecars": (_native, r"kubeflow\.mesh\.nativeSidecars is false but .*ENABLE_NATIVE_SIDECARS=true"),
    "native sidecars by default": (_auto_on_new_kubelets, r"kubeflow\.mesh\.nativeSidecars is false but .*unset \(auto in Istio 1\.28\.0\), kubelets v1\.33"),
    "outbound policy": (_registry_only, r"kubeflow\.mesh\.outboundTrafficPolicy is ALLOW_ANY but .*mode REGISTRY_ONLY"),
    "export default": (_private_services, r"the mesh config \(ConfigMap istio-system/istio\) sets defaultServiceExportTo \['\.'\]: Kubeflow's objects name no exportTo"),
    "extension provider": (_no_provider, r"auth: the mesh config \(ConfigMap istio-system/istio\) has no extension provider 'kubeflow-auth' \(it has: otel\)"),
    "revision": (_revision_only, r"kubeflow\.mesh\.revision is unset but the cluster runs no istiod of revision 'default'; its istiod revisions: stable-1-24"),
    "cluster-local gateway": (_no_local_gateway, r"Service istio-system/knative-local-gateway selects no pods \(app=cluster-local-gateway, istio=cluster-local-gateway\).*knative-local-gateway-has-pods")
    if declared().get("kubeflow.mesh.clusterLocalGateway", "provided") == "provided" else
    (_local_gateway_of_the_mesh, r"kubeflow\.mesh\.clusterLocalGateway is program but the mesh already runs pods with app=cluster-local-gateway"),
    "Argo version": (_argo_3_5, r"kubeflow\.version 26\.03 runs pipelines on Argo v3\.7\.3 .* argo/workflow-controller is v3\.5\.14"),
    "Argo scope": (_argo_namespaced, r"argo/workflow-controller runs --namespaced"),
    "Argo ConfigMap": (_argo_namespaced, r"kubeflow\.argo\.configmapName is workflow-controller-configmap but .* reads --configmap argo-config"),
    "Argo instance id": (_argo_instance_id, r"instanceID 'data-eng'"),
    "a key of Argo's ConfigMap the patch also sets": (_argo_sets_its_own_executor, r"kubeflow\.argo: ConfigMap argo/workflow-controller-configmap already sets executor \(field manager kubectl-client-side-apply\)"),
    "the Argo ConfigMap the plan patches": (_no_argo_configmap, r"ConfigMap argo/workflow-controller-configmap does not exist on the cluster; the plan patches it"),
    "the mesh's CRDs": (_no_istio_crds, r"CustomResourceDefinition\.apiextensions\.k8s\.io virtualservices\.networking\.istio\.io does not exist on the cluster; the plan expects it"),
    "gateway namespace": (_gateway_elsewhere, r"ingress\.namespace is istio-system but the gateway pods \(istio=ingressgateway\) run in istio-ingress"),
    "gateway service account": (_gateway_elsewhere, r"auth\.gatewayServiceAccount is istio-ingressgateway-service-account but the gateway pods run as istio-ingress"),
    "Pod Security": (_kubeflow_namespace_exists, r"namespace kubeflow enforces Pod Security baseline on the cluster, the plan sets restricted"),
    "an existing namespace the plan creates": (_kubeflow_namespace_exists, r"v1 Namespace kubeflow already exists on the cluster and this stack creates it"),
    "a patched object that is missing": (_no_gateway_service, r"Service istio-system/istio-ingressgateway does not exist on the cluster; the plan patches it"),
    "an existing object the plan creates": (_created_object_exists, r"networking\.istio\.io/v1alpha3 EnvoyFilter istio-system/kubeflow-identity-headers already exists on the cluster and this stack creates it"),
    "IAM role": (_role_exists, r"IAM role kubeflow-platform-dev-identity-pipelines already exists \(arn:aws:iam::111111111111:role/"),
    "bucket": (_bucket_exists, r"artifacts\.bucketPrefix: bucket example-ml-dev-pipelines exists"),
    "DNS record": (_record_exists, r"dns\.host: Route 53 record kubeflow\.dev\.ml\.example\.com A already exists"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_preview_names_the_setting_and_the_estate_value_where_they_differ(case, tmp_path, monkeypatch, dev_plan):
    change, expected = CASES[case]
    problems = problems_with(tmp_path, monkeypatch, dev_plan, change)
    assert any(re.search(expected, p) for p in problems), "\n".join(problems)
    assert all(p.startswith("estate: ") for p in problems)


OIDC_PROVIDER_CREATED = (r"identity\.oidcProviderArn is unset.*set identity\.oidcProviderArn: arn:aws:iam::111111111111:"
                         r"oidc-provider/oidc\.eks\.us-west-2\.amazonaws\.com/id/0A1B2C3D4E5F60718293A4B5C6D7E8F9")


@pytest.fixture(scope="module")
def dev_irsa_plan(tmp_path_factory) -> tuple[dict, Path]:
    """dev with only identity.mechanism: irsa, the mechanism that creates an OIDC provider."""
    plan, _ = build_plan(shared_run("dev", irsa_overrides("dev")), MARKER_SECRETS.values())
    directory = tmp_path_factory.mktemp("plan-irsa") / "dev"
    write_plan_dir(plan, directory)
    return plan, directory


def test_an_existing_oidc_provider_is_named_only_where_the_plan_creates_one(tmp_path, monkeypatch, dev_plan,
                                                                            dev_irsa_plan):
    # On IRSA the plan creates the cluster's provider, which the account already has: adopt it.
    problems = problems_with(tmp_path / "irsa", monkeypatch, dev_irsa_plan, _provider_exists)
    assert any(re.search(OIDC_PROVIDER_CREATED, p) for p in problems), "\n".join(problems)
    # dev's own plan uses EKS Pod Identity and creates no provider: the account's provider is no conflict.
    assert not any("oidcProviderArn" in p for p in problems_with(tmp_path / "pod-identity", monkeypatch, dev_plan,
                                                                  _provider_exists))


def test_a_command_that_failed_makes_the_estate_unusable(tmp_path, monkeypatch, dev_plan):
    def no_cluster(cluster, aws):
        del aws["eks describe-cluster ml-dev"]

    recording = record(tmp_path, monkeypatch, dev_plan[1], no_cluster, runner=in_process)
    assert recording.status == 1 and "failed: aws eks describe-cluster --name ml-dev" in recording.stderr
    declared = estate_tool.declared_settings(estate_tool.stack_settings("dev"))
    problems = estate_problems(recording.estate, dev_plan[0], declared)
    assert any("`aws eks describe-cluster --name ml-dev --region us-west-2 --output json` failed" in p for p in problems)


def test_the_estate_of_another_stack_is_refused(tmp_path, monkeypatch, dev_plan):
    estate = record(tmp_path, monkeypatch, dev_plan[1], runner=in_process).estate
    plan = copy.deepcopy(dev_plan[0])
    plan["stack"] = "prod"
    declared = estate_tool.declared_settings(estate_tool.stack_settings("dev"))
    assert "estate: the estate was recorded for stack 'dev', not 'prod'" in estate_problems(estate, plan, declared)


@pytest.mark.parametrize("release", SUPPORTED_VERSIONS)
def test_the_argo_each_release_expects_is_the_controller_it_bundles(release):
    text = manifests_path(release).read_text()
    tags = set(re.findall(r"argoproj/workflow-controller:(v\d+\.\d+\.\d+)", text)) | \
        set(re.findall(r"ml-pipeline/workflow-controller:(v\d+\.\d+\.\d+)", text))
    assert tags == {ARGO_BY_RELEASE[release]}


def test_make_preview_with_an_estate_fails_naming_the_setting(tmp_path, monkeypatch, dev_plan):
    from tools.preview import preview

    differing = record(tmp_path / "differing", monkeypatch, dev_plan[1], _strict, runner=in_process)
    assert differing.estate is not None
    stdout = io.StringIO()
    status = preview("dev", manifests=str(manifests_path()), out=tmp_path / "plan", stdout=stdout, stderr=io.StringIO(),
                     estate=tmp_path / "differing" / "estate" / "dev.yaml")
    assert status == 1
    assert ("    - estate: kubeflow.mesh.mtls is permissive but PeerAuthentication istio-system/default has mode STRICT"
            in stdout.getvalue())


def test_make_preview_refuses_an_estate_file_it_cannot_read(tmp_path):
    from tools.preview import preview

    stdout = io.StringIO()
    status = preview("dev", manifests=str(manifests_path()), out=tmp_path / "plan", stdout=stdout, stderr=io.StringIO(),
                     estate=tmp_path / "nowhere.yaml")
    assert status == 1 and "estate: " in stdout.getvalue() and "make estate" in stdout.getvalue()


# --- The cluster's Karpenter (analysis/karpenter_estate.py) ----------------------------------------------


def _karpenter(cluster: dict) -> dict:
    (deployment,) = _objects(cluster, "Deployment", "karpenter")
    return deployment


def _no_karpenter(cluster, aws):
    cluster["objects"].remove(_karpenter(cluster))


def _karpenter_v0(cluster, aws):
    _karpenter(cluster)["spec"]["template"]["spec"]["containers"][0]["image"] = "public.ecr.aws/karpenter/controller:0.37.5"


def _queue_missing(cluster, aws):
    del aws["sqs get-queue-url ml-dev"]


def _no_queue(cluster, aws):
    container = _karpenter(cluster)["spec"]["template"]["spec"]["containers"][0]
    container["env"] = [e for e in container["env"] if e["name"] != "INTERRUPTION_QUEUE"]


KARPENTER_CASES = {
    "no controller": (_no_karpenter, r"gpu\.provisioner is karpenter \(kubeflow-gpu-gpu-a10g\) but no Karpenter controller Deployment runs \(label app\.kubernetes\.io/name=karpenter\): install Karpenter 1\.0\.0 or later"),
    "a controller before the v1 API": (_karpenter_v0, r"the Karpenter controller kube-system/karpenter is 0\.37\.5, which does not serve the v1 NodePool and EC2NodeClass"),
    "a queue that does not exist": (_queue_missing, r"interruption queue ml-dev, which does not exist in the region"),
    "Spot without interruption handling": (_no_queue, r"kubeflow-gpu-gpu-a10g: Spot GPU capacity, but the Karpenter controller has no interruption queue"),
}


def test_the_estate_records_the_karpenter_controller_and_its_queue(tmp_path, monkeypatch, dev_plan):
    recording = record(tmp_path, monkeypatch, dev_plan[1])
    assert recording.estate["karpenter"] == {
        "controllers": [{"namespace": "kube-system", "name": "karpenter", "version": "1.14.1", "interruptionQueue": "ml-dev"}],
        "interruptionQueue": {"name": "ml-dev", "exists": True}, "nodeRoles": {}}
    assert ["aws", "sqs", "get-queue-url", "--queue-name", "ml-dev", "--region", "us-west-2", "--output", "json"] in recording.log
    # Without a queue on the controller, no queue is asked for.
    quiet = record(tmp_path / "no-queue", monkeypatch, dev_plan[1], _no_queue)
    assert quiet.estate["karpenter"]["interruptionQueue"] is None
    assert not any(call[1:3] == ["sqs", "get-queue-url"] for call in quiet.log) and quiet.estate["failed"] == []


@pytest.mark.parametrize("case", list(KARPENTER_CASES))
def test_the_preview_names_what_the_clusters_karpenter_lacks_for_the_plans_pools(case, tmp_path, monkeypatch, dev_plan):
    change, expected = KARPENTER_CASES[case]
    problems = problems_with(tmp_path, monkeypatch, dev_plan, change)
    assert any(re.search(expected, p) for p in problems), "\n".join(problems)


def test_prods_node_groups_ask_nothing_of_karpenter():
    from analysis.karpenter_estate import karpenter_commands, karpenter_problems

    plan, _ = build_plan(shared_run("prod"), MARKER_SECRETS.values())
    assert karpenter_commands(plan, "ml-prod", "us-east-1") == []
    assert list(karpenter_problems({"karpenter": {"controllers": []}}, plan, "ml-prod")) == []


@pytest.fixture(scope="module")
def dev_named_role_plan(tmp_path_factory) -> tuple[dict, Path]:
    """dev whose Karpenter pool uses the node role the cluster's Karpenter is set up for."""
    from tools.mock_runtime import stack_config

    gpu = copy.deepcopy(stack_config("dev")["kubeflow-platform:gpu"])
    gpu["karpenterNodeRole"] = "KarpenterNodeRole-ml-dev"
    plan, _ = build_plan(shared_run("dev", {"gpu": gpu}), MARKER_SECRETS.values())
    directory = tmp_path_factory.mktemp("plan-named-role") / "dev"
    write_plan_dir(plan, directory)
    return plan, directory


NODE_ROLE_ARN = "arn:aws:iam::111111111111:role/KarpenterNodeRole-ml-dev"


def _role(cluster, aws):
    aws["iam get-role KarpenterNodeRole-ml-dev"] = {"Role": {"RoleName": "KarpenterNodeRole-ml-dev", "Arn": NODE_ROLE_ARN}}


def _role_with_entry(cluster, aws):
    _role(cluster, aws)
    aws["eks list-access-entries ml-dev"] = {"accessEntries": ["arn:aws:iam::111111111111:role/ml-dev-admins", NODE_ROLE_ARN]}


def test_a_named_node_role_must_exist_and_be_able_to_join_the_cluster(tmp_path, monkeypatch, dev_named_role_plan):
    def entries(cluster, aws):
        aws["eks list-access-entries ml-dev"] = {"accessEntries": []}

    missing = problems_with(tmp_path / "missing", monkeypatch, dev_named_role_plan, entries)
    assert any("gpu.karpenterNodeRole is KarpenterNodeRole-ml-dev, which the account does not have" in p for p in missing)

    def unjoined(cluster, aws):
        entries(cluster, aws)
        _role(cluster, aws)

    problems = problems_with(tmp_path / "unjoined", monkeypatch, dev_named_role_plan, unjoined)
    assert any(f"has no EKS access entry and no aws-auth mapping, so its instances cannot join the cluster: aws eks "
               f"create-access-entry --cluster-name ml-dev --principal-arn {NODE_ROLE_ARN} --type EC2_LINUX" in p
               for p in problems), "\n".join(problems)
    joined = problems_with(tmp_path / "joined", monkeypatch, dev_named_role_plan, _role_with_entry)
    assert not any("karpenterNodeRole" in p for p in joined), "\n".join(joined)

    def mapped(cluster, aws):
        entries(cluster, aws)
        _role(cluster, aws)
        cluster["objects"].append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "aws-auth", "namespace": "kube-system"},
                                   "data": {"mapRoles": f"- rolearn: {NODE_ROLE_ARN}\n  username: system:node:{{{{EC2PrivateDNSName}}}}\n"
                                            "  groups: [system:bootstrappers, system:nodes]\n"}})

    assert not any("karpenterNodeRole" in p for p in problems_with(tmp_path / "mapped", monkeypatch, dev_named_role_plan, mapped))
