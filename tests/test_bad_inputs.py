"""The bad-input table: every bad input yields one clear message naming the key or file, the process exits
non-zero, and nothing is registered.

The table has three parts:
- `tests/test_settings.py` BAD_SETTINGS: a row per wrong type, out-of-range number, invalid DNS name, ARN
  and CIDR, unknown key or typo (with its did-you-mean), duplicate profile, ... in every settings area,
  each run through the whole program; and its test that each missing secret names the command setting it;
- BAD_SOURCES below: the manifest inputs only the loader can judge (the file's bytes, the directory's
  contents, the download), which the settings table does not already hold;
- the rows that can be given on the command line, run again as real `python -m tools.preview` processes.
"""

from __future__ import annotations

import copy
import socket
import subprocess
import sys
from pathlib import Path

import pulumi
import pytest
import yaml

import config
from manifests.guardrails import gateway_load_balancer_restricted
from manifests.sources import ManifestError, load_source
from tests.conftest import MARKER_SECRETS, REPO_ROOT, _stack_kubeflow, run_stack
from tests.stack_files import copy_program, preview_in_process, preview_process, stack_document, write_stack
from tests.test_settings import BAD_SETTINGS
from tests.upstream import manifests_path
from tools.mock_runtime import stack_config

VALID_DOCUMENT = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: kubeflow\n"
# A ConfigMap whose value nests 50,000 lists: libyaml's composer overflows the C stack on it (SIGSEGV).
DEEP_CONFIGMAP = "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: deep, namespace: kubeflow}\ndata:\n  x: " + "[" * 50_000 + "\n"
# The red team's second image: line under the first; PyYAML alone keeps the last one.
SECOND_IMAGE = """---
apiVersion: apps/v1
kind: Deployment
metadata: {name: ml-pipeline-ui, namespace: kubeflow}
spec:
  selector: {matchLabels: {app: ml-pipeline-ui}}
  template:
    metadata: {labels: {app: ml-pipeline-ui}}
    spec:
      containers:
      - name: ui
        image: ghcr.io/kubeflow/kfp-frontend:2.5.0
        image: docker.io/evil/kfp-frontend:latest
"""


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _unreadable(path: Path) -> Path:
    # A socket where the file should be: open() fails for every user, root included (permission bits
    # would not stop root).
    path.parent.mkdir(parents=True, exist_ok=True)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    _SOCKETS.append(listener)
    return path


_SOCKETS: list[socket.socket] = []


def _directory(path: Path, files: dict[str, str]) -> str:
    for name, text in files.items():
        _write(path / name, text)
    return str(path)

# name, kubeflow.manifests for a temporary directory, what the one message must contain ({tmp}: that directory)
BAD_SOURCES = [
    ("unreadable file", lambda tmp: str(_unreadable(tmp / "kubeflow.yaml")),
     ["{tmp}/kubeflow.yaml: is not a regular file"]),
    ("empty file", lambda tmp: str(_write(tmp / "kubeflow.yaml", "")), ["{tmp}/kubeflow.yaml: holds no Kubernetes objects"]),
    ("only comments", lambda tmp: str(_write(tmp / "kubeflow.yaml", "# rendered by hand\n---\n")),
     ["{tmp}/kubeflow.yaml: holds no Kubernetes objects"]),
    ("not a Kubernetes object", lambda tmp: str(_write(tmp / "kubeflow.yaml", VALID_DOCUMENT + "---\n- just\n- a list\n")),
     ["{tmp}/kubeflow.yaml document 2: expected a Kubernetes object, found list"]),
    ("object without a name", lambda tmp: str(_write(tmp / "kubeflow.yaml", VALID_DOCUMENT + "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {}\n")),
     ["{tmp}/kubeflow.yaml document 2: ", "metadata.name"]),
    ("directory without YAML", lambda tmp: _directory(tmp / "rendered", {"README.txt": "nothing"}),
     ["{tmp}/rendered: directory holds no .yaml or .yml files"]),
    ("directory with a corrupt file", lambda tmp: _directory(tmp / "rendered", {"a.yaml": VALID_DOCUMENT, "b.yaml": "kind: [unclosed\n"}),
     ["{tmp}/rendered/b.yaml:2:1: invalid YAML"]),
    ("unreachable URL", lambda tmp: {"url": (tmp / "gone" / "kubeflow.yaml").as_uri(), "sha256": "a" * 64},
     ["kubeflow.manifests: cannot download", "gone/kubeflow.yaml"]),
    ("plain-http URL", lambda tmp: {"url": "http://example.com/kubeflow.yaml", "sha256": "a" * 64},
     ["kubeflow.manifests.url: 'http://example.com/kubeflow.yaml' must be an https:// or file:// URL"]),
    ("wrong type", lambda tmp: 42, ["kubeflow.manifests: expected a string or an object, got number 42"]),
    # Tracebacks and a crash before: each is now one message naming the file and where in it.
    ("a document with kind: 5", lambda tmp: str(_write(tmp / "kubeflow.yaml", VALID_DOCUMENT + "---\napiVersion: v1\nkind: 5\nmetadata: {name: x}\n")),
     ["{tmp}/kubeflow.yaml document 2: object with a wrong type at kind (a number)"]),
    ("metadata as a list", lambda tmp: str(_write(tmp / "kubeflow.yaml", VALID_DOCUMENT + "---\napiVersion: v1\nkind: ConfigMap\nmetadata: [name, x]\n")),
     ["{tmp}/kubeflow.yaml document 2: object with a wrong type at metadata (a list, not an object)"]),
    ("a List whose items are a number", lambda tmp: str(_write(tmp / "kubeflow.yaml", VALID_DOCUMENT + "---\napiVersion: v1\nkind: List\nitems: 5\n")),
     ["{tmp}/kubeflow.yaml document 2 items: expected a list of objects, found a number"]),
    ("a value nested 50,000 deep", lambda tmp: str(_write(tmp / "kubeflow.yaml", VALID_DOCUMENT + DEEP_CONFIGMAP)),
     ["{tmp}/kubeflow.yaml:10:104: nesting deeper than 100 levels"]),
    ("a key written twice", lambda tmp: str(_write(tmp / "kubeflow.yaml", VALID_DOCUMENT + SECOND_IMAGE)),
     ["{tmp}/kubeflow.yaml:17:9: found duplicate key 'image', first at line 16"]),
    ("a container list of the wrong shape", lambda tmp: str(_write(tmp / "kubeflow.yaml", VALID_DOCUMENT + SECOND_IMAGE.replace(
        "      - name: ui\n        image: ghcr.io/kubeflow/kfp-frontend:2.5.0\n        image: docker.io/evil/kfp-frontend:latest\n",
        "      - name: ui\n        image: [ghcr.io/kubeflow/kfp-frontend:2.5.0]\n"))),
     ["Deployment kubeflow/ml-pipeline-ui spec.template.spec.containers[0].image: ['ghcr.io/kubeflow/kfp-frontend:2.5.0'] is not of type 'string'"]),
]


@pytest.mark.parametrize("make,expected", [row[1:] for row in BAD_SOURCES], ids=[row[0] for row in BAD_SOURCES])
def test_a_bad_manifest_source_is_refused_with_one_message_naming_it(make, expected, tmp_path):
    kubeflow = _stack_kubeflow("dev")
    kubeflow["manifests"] = make(tmp_path)
    with pytest.raises(pulumi.RunError) as caught:
        run_stack("dev", {"kubeflow": kubeflow})
    message = str(caught.value)
    for fragment in expected:
        assert fragment.format(tmp=tmp_path) in message, message
    assert message.count("\n  - ") == 1, message
    assert "Traceback" not in message
    assert caught.value.program_run.resources == [], "resources were registered despite a bad manifest source"
    for secret in MARKER_SECRETS.values():
        assert secret not in message


def test_an_unreadable_file_in_a_manifests_directory_is_named(tmp_path, monkeypatch):
    # Permission bits do not stop root, so the refusal is simulated for one file of the directory.
    directory = _write(tmp_path / "rendered" / "a.yaml", VALID_DOCUMENT).parent
    locked = _write(directory / "b.yaml", VALID_DOCUMENT)
    open_ = Path.open

    def refuse(path: Path, *args, **kwargs):
        if path == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return open_(path, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refuse)
    with pytest.raises(ManifestError) as caught:
        load_source(directory)
    assert [str(problem) for problem in caught.value.problems] == [
        f"{locked}: cannot read: Permission denied (fix: check the file's permissions, or render the release again)"]


# name, --manifests for a temporary directory, what stderr must say
COMMAND_LINE_ROWS = [row for row in BAD_SOURCES if row[0] in
                     ("unreadable file", "empty file", "not a Kubernetes object", "directory with a corrupt file",
                      "a value nested 50,000 deep", "a key written twice")] + [
    ("missing file", lambda tmp: str(tmp / "absent.yaml"), ["{tmp}/absent.yaml: no such file or directory"]),
    ("corrupt YAML", lambda tmp: str(_write(tmp / "kubeflow.yaml", VALID_DOCUMENT + "---\nkind: [unclosed\n")),
     ["{tmp}/kubeflow.yaml:", "invalid YAML"]),
    ("another release than the stack pins", lambda tmp: str(manifests_path("1.9.1")),
     ["kubeflow.manifests: holds Kubeflow 1.9.1 (dashboard v1.9.2", "not kubeflow.version 26.03",
      'set kubeflow.version to "1.9.1"']),
]


@pytest.mark.parametrize("make,expected", [row[1:] for row in COMMAND_LINE_ROWS], ids=[row[0] for row in COMMAND_LINE_ROWS])
def test_the_preview_process_exits_1_with_the_message_and_no_traceback(make, expected, tmp_path):
    result = subprocess.run([sys.executable, "-m", "tools.preview", "--stack", "dev", "--manifests", make(tmp_path),
                             "--out", str(tmp_path / "plan")], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stdout[-2000:]
    for fragment in expected:
        assert fragment.format(tmp=tmp_path) in result.stderr, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "plan").exists(), "a plan was written for a refused input"


def _area(area: str) -> dict:
    return copy.deepcopy(stack_config("dev")[f"kubeflow-platform:{area}"])


def _edited(area: str, edit) -> dict:
    value = _area(area)
    edit(value)
    if area == "kubeflow":
        value["manifests"] = str(manifests_path())
    return {area: value}


def _pool(**changes):
    return _edited("gpu", lambda gpu: gpu["pools"][0].update(changes))


def _lake_prefix(prefix: str):
    return _edited("tenancy", lambda tenancy: tenancy["profiles"][0]["dataLake"].update(prefix=prefix))


# The inputs of the red team's report that ended in a traceback, were accepted though they cannot deploy,
# were resolved silently, or named a key the user did not write: name, overrides, the one message.
ISSUE_ROWS = [
    ("maxSize with two minus signs", _pool(maxSize="--5"), "gpu.pools[0].maxSize: expected a whole number, got string '--5'"),
    ("maxSize a superscript digit", _pool(maxSize="²"), "gpu.pools[0].maxSize: expected a whole number, got string '²'"),
    ("data lake prefix /", _lake_prefix("/"), "tenancy.profiles[0].dataLake.prefix: '/' names no prefix; an empty prefix would grant the whole bucket"),
    ("data lake prefix with *", _lake_prefix("profiles/*"), "tenancy.profiles[0].dataLake.prefix: 'profiles/*': use letters, digits"),
    ("data lake prefix with ?", _lake_prefix("profiles/a?c"), "tenancy.profiles[0].dataLake.prefix: 'profiles/a?c': use letters, digits"),
    ("negative quota", _edited("tenancy", lambda t: t["profiles"][0]["quota"].update(cpu="-64")),
     "tenancy.profiles[0].quota.cpu: '-64' is negative; Kubernetes refuses a negative resource quota"),
    ("pod annotation of 300,000 characters", _edited("kubeflow", lambda k: k["podAnnotations"].update({"example.com/big": "x" * 300_000})),
     "kubeflow.podAnnotations.example.com/big: is 300,000 characters; no setting takes more than 262,144"),
    ("pod annotations past 256 KiB together", _edited("kubeflow", lambda k: k["podAnnotations"].update(
        {f"example.com/part-{i}": "x" * 100_000 for i in range(3)})),
     "kubeflow.podAnnotations: keys and values total 300,088 bytes; Kubernetes refuses an object whose annotations exceed 262,144 bytes"),
    ("maxSize past EKS's nodes per node group", _pool(maxSize=1_000_000_000_000), "gpu.pools[0].maxSize: 1000000000000 is outside 1..450"),
    ("data lake prefix of 1,200 characters", _lake_prefix("p" * 1200),
     "tenancy.profiles[0].dataLake.prefix: is 1,200 bytes; S3 object keys are at most 1,024 bytes"),
    ("contributor as view and edit", _edited("tenancy", lambda t: t["profiles"][1]["contributors"].append({"user": "carol@example.com", "role": "edit"})),
     "tenancy.profiles[1].contributors[1].user: 'carol@example.com' is already listed at contributors[0] with role 'view'"),
    ("sourceCidrs repeated", _edited("ingress", lambda i: i.update(sourceCidrs=["10.0.0.0/8", "192.0.2.0/24", "10.0.0.0/8"])),
     "ingress.sourceCidrs: '10.0.0.0/8' is listed twice"),
    ("the IPv4 internet in two halves", _edited("ingress", lambda i: i.update(sourceCidrs=["0.0.0.0/1", "128.0.0.0/1"])),
     "ingress.sourceCidrs: together they cover 0.0.0.0/0, the whole internet"),
    ("the IPv6 internet in two halves", _edited("ingress", lambda i: i.update(sourceCidrs=["::/1", "8000::/1"], ipAddressType="dualstack")),
     "ingress.sourceCidrs: together they cover ::/0, the whole internet"),
    ("cluster name no EKS cluster can have", _edited("cluster", lambda c: c.update(name="c" * 10_000)),
     "cluster.name: 'cccccccccccccccccccccccccccccccccccccccc'... (10000 characters) is not an EKS cluster name"),
    ("bucket prefix too long for the pipelines bucket", _edited("artifacts", lambda a: a.update(bucketPrefix="b" * 60)),
     "artifacts.bucketPrefix: gives the bucket name '" + "b" * 60 + "-pipelines' is not a valid S3 bucket name"),
    ("ambient with native sidecars", _edited("kubeflow", lambda k: k["mesh"].update(dataPlane="ambient", nativeSidecars=True)),
     "kubeflow.mesh.nativeSidecars: ambient pods have no sidecar; leave nativeSidecars out or false"),
    ("ambient on an Istio before 1.24", _edited("kubeflow", lambda k: k["mesh"].update(dataPlane="ambient", istioVersion="1.22")),
     "kubeflow.mesh.dataPlane: ambient needs Istio 1.24 or later"),
    ("a data plane Istio does not have", _edited("kubeflow", lambda k: k["mesh"].update(dataPlane="cni")),
     "kubeflow.mesh.dataPlane: 'cni' is not one of 'sidecar-init', 'sidecar-cni', 'ambient'"),
    ("ambient while ztunnel would enforce HTTP policies", _edited("kubeflow", lambda k: k["mesh"].update(dataPlane="ambient")),
     "kubeflow.mesh.dataPlane: ambient: ztunnel would enforce"),
] + [
    (f"{key} in clear in the stack file", {key: "plaintext-in-the-stack-file"},
     f"{key}: is written in clear in the stack file; remove it and run `pulumi config set --secret {key} <value>`")
    for key in sorted(config.SECRET_KEYS)
]


@pytest.mark.parametrize("overrides,expected", [row[1:] for row in ISSUE_ROWS], ids=[row[0] for row in ISSUE_ROWS])
def test_an_input_that_cannot_deploy_is_refused_with_the_key_the_user_wrote(overrides, expected):
    with pytest.raises(pulumi.RunError) as caught:
        run_stack("dev", overrides)
    message = str(caught.value)
    assert expected in message
    assert message.count("\n  - ") == 1, message
    assert caught.value.program_run.resources == []
    assert "plaintext-in-the-stack-file" not in message


def test_the_nlb_guardrail_judges_the_address_space_not_the_strings():
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "istio-ingressgateway", "namespace": "istio-system"},
               "spec": {"type": "LoadBalancer", "loadBalancerSourceRanges": ["0.0.0.0/2", "64.0.0.0/2", "128.0.0.0/1"]}}
    assert gateway_load_balancer_restricted(service, "istio-system/istio-ingressgateway") == [
        "Service istio-system/istio-ingressgateway: source ranges 0.0.0.0/2, 64.0.0.0/2, 128.0.0.0/1 together cover "
        "0.0.0.0/0, the whole internet"]
    annotated = {**service, "metadata": {**service["metadata"], "annotations": {
        "service.beta.kubernetes.io/load-balancer-source-ranges": "::/1,8000::/1"}}, "spec": {"type": "LoadBalancer"}}
    assert "together cover ::/0" in gateway_load_balancer_restricted(annotated, "istio-system/istio-ingressgateway")[0]
    service["spec"]["loadBalancerSourceRanges"] = ["0.0.0.0/2", "64.0.0.0/2", "128.0.0.0/2"]
    assert gateway_load_balancer_restricted(service, "istio-system/istio-ingressgateway") == []


@pytest.fixture(scope="module")
def program(tmp_path_factory) -> Path:
    return copy_program(tmp_path_factory.mktemp("program"))


def _dump(document: dict) -> str:
    return yaml.safe_dump(document, sort_keys=False, width=1000)


def _without_aws() -> str:
    # The one structured setting the CLI requires of every stack (a fleet's global stack has no Kubeflow settings).
    document = stack_document("dev")
    del document["config"]["kubeflow-platform:aws"]
    return _dump(document)


# Stack files only the stack-file reader sees: name, the file's text, what stderr must say ({file}: its name).
BAD_STACK_FILES = [
    # Refused by the Pulumi CLI's check before the program runs (config/pulumi_project.py).
    ("no kubeflow-platform:aws", _without_aws,
     ["is missing configuration value 'aws'", "fix: pulumi config set --path aws.region <value>"]),
    ("a key written twice", lambda: _dump(stack_document("dev")) + "  kubeflow-platform:protect: true\n",
     ["{file}:", "found duplicate key 'kubeflow-platform:protect', first at line"]),
    ("a value nested 50,000 deep", lambda: _dump(stack_document("dev")) + "  kubeflow-platform:labels: " + "[" * 50_000 + "\n",
     ["{file}:", "nesting deeper than 100 levels"]),
    ("not a mapping", lambda: "- config\n", ["{file}: expected one mapping with a `config:` key"]),
]


@pytest.mark.parametrize("text,expected", [row[1:] for row in BAD_STACK_FILES], ids=[row[0] for row in BAD_STACK_FILES])
def test_a_bad_stack_file_is_one_message_naming_it(text, expected, program, tmp_path):
    name = f"bad-{abs(hash(tuple(expected))) % 10_000}"
    stack_file = write_stack(program, name, text())
    status, stderr = preview_in_process(program, name, tmp_path / "plan", manifests=str(manifests_path()))
    assert status == 1
    for fragment in expected:
        assert fragment.format(file=stack_file.name) in stderr, stderr[-2000:]
    assert "Traceback" not in stderr and not (tmp_path / "plan").exists()


@pytest.mark.parametrize("row", [0, 2], ids=[BAD_STACK_FILES[0][0], BAD_STACK_FILES[2][0]])
def test_a_bad_stack_file_ends_the_preview_process_with_exit_1(row, program, tmp_path):
    _name, text, expected = BAD_STACK_FILES[row]
    stack_file = write_stack(program, f"bad-process-{row}", text())
    result = preview_process(program, f"bad-process-{row}", tmp_path / "plan", manifests=str(manifests_path()))
    assert result.returncode == 1, (result.returncode, result.stderr[-2000:])
    for fragment in expected:
        assert fragment.format(file=stack_file.name) in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr + result.stdout


def test_the_table_covers_every_settings_area_every_source_and_the_secrets():
    areas = {line.split(":")[0].split(".")[0].split("[")[0] for _, _, expected in BAD_SETTINGS for line in expected}
    assert set(config.settings_keys()) <= areas, f"settings areas without a bad-input row: {set(config.settings_keys()) - areas}"
    kinds = {"file": 0, "directory": 0, "url": 0, "type": 0}
    for name, _, _ in BAD_SOURCES:
        kinds["directory" if "directory" in name else "url" if "URL" in name else "type" if "type" in name else "file"] += 1
    assert all(kinds.values()), kinds
    # The missing-secret test in test_settings.py adds a row per secret.
    assert len(BAD_SETTINGS) + len(BAD_SOURCES) + len(config.SECRET_KEYS) >= 40
