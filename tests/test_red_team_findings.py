"""The findings of the red team on inputs, each closed: a clear refusal where there was a hang, a memory
exhaustion or a traceback. Each test here failed on the code before its fix."""

from __future__ import annotations

import io
import os
import subprocess
import threading
from pathlib import Path

import pytest
import yaml

import config

from manifests import sources
from manifests.sources import ManifestError, load_source
from tests.conftest import REPO_ROOT
from tests.stack_files import PROJECT, copy_program, preview_in_process, stack_document, write_stack
from tests.upstream import manifests_dir
from tools import mock_runtime, upgrade_plan
from tools.mock_runtime import StackFileError, stack_config

ALIAS_BOMB = (
    "config:\n"
    f"  {PROJECT}:x0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    + "".join(f"  {PROJECT}:x{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]\n" for i in range(1, 9))
)


def _dump(document: dict) -> str:
    return yaml.safe_dump(document, sort_keys=False)


def test_a_yaml_alias_bomb_in_a_stack_file_is_refused_naming_the_file(tmp_path):
    (tmp_path / "Pulumi.yaml").write_text("name: kubeflow-platform\n")
    (tmp_path / "Pulumi.bomb.yaml").write_text(ALIAS_BOMB)
    with pytest.raises(StackFileError) as refused:
        stack_config("bomb", root=tmp_path)
    assert "Pulumi.bomb.yaml" in str(refused.value)
    assert "aliases" in str(refused.value)


def test_aliases_that_expand_modestly_are_still_read(tmp_path):
    (tmp_path / "Pulumi.yaml").write_text("name: kubeflow-platform\n")
    (tmp_path / "Pulumi.small.yaml").write_text(
        f"config:\n  {PROJECT}:tags: &t {{a: b}}\n  {PROJECT}:more: {{x: *t, y: *t}}\n"
    )
    assert stack_config("small", root=tmp_path)[f"{PROJECT}:more"] == {"x": {"a": "b"}, "y": {"a": "b"}}


def test_expanded_size_counts_every_alias_without_expanding_it():
    shared: list = ["x" * 10] * 10
    for _ in range(30):  # 10^31 leaves if written out
        shared = [shared] * 10
    assert mock_runtime.expanded_size(shared, 10_000) > 10_000


def test_a_fifo_as_the_manifests_input_is_refused_without_waiting(tmp_path):
    fifo = tmp_path / "kubeflow.yaml"
    os.mkfifo(fifo)
    outcome: list = []
    # Run in a thread so that a regression shows as a failed assertion, not a stuck suite; the writer end is
    # opened afterwards to release a blocked reader either way.
    reader = threading.Thread(target=lambda: outcome.append(_refusal(fifo)), daemon=True)
    reader.start()
    reader.join(timeout=10)
    if reader.is_alive():
        with open(fifo, "wb"):
            pass
        reader.join(timeout=10)
        pytest.fail("reading a FIFO blocked")
    assert outcome and "not a regular file" in outcome[0], outcome


def test_a_device_as_the_manifests_input_is_refused():
    assert "not a regular file" in _refusal(Path("/dev/zero"))


def test_a_manifests_file_past_the_bound_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "MAX_MANIFESTS_BYTES", 1024)
    big = tmp_path / "big.yaml"
    big.write_text("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {a: '" + "x" * 4096 + "'}\n")
    message = _refusal(big, limit=1024)
    assert str(big) in message and "larger than" in message


def _refusal(path: Path, limit: int | None = None) -> str:
    try:
        if limit is None:
            load_source(path)
        else:
            sources.read_regular_file(path, limit)
    except ManifestError as error:
        return str(error)
    return "accepted"


@pytest.fixture(scope="module")
def program(tmp_path_factory) -> Path:
    return copy_program(tmp_path_factory.mktemp("red-team-program"))


def test_an_extra_issuer_equal_to_the_clusters_own_is_a_message_not_a_traceback(program, tmp_path):
    document = stack_document("dev")
    settings = document["config"]
    own_issuer = mock_runtime.PlatformMocks(
        {f"{PROJECT}:{key.split(':', 1)[1]}": value for key, value in settings.items()}
    ).issuer
    settings[f"{PROJECT}:auth"]["extraIssuers"][0]["issuer"] = own_issuer
    write_stack(program, "own-issuer", _dump(document))
    status, stderr = preview_in_process(program, "own-issuer", tmp_path / "out")
    assert status == 1
    assert "Traceback" not in stderr
    assert "auth.extraIssuers" in stderr and "cluster's own issuer" in stderr, stderr[-1500:]


# --------------------------------------------------------------------------------------------- make

def run_make(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    # As a user or CI step runs it: not inside the make that may be running these tests.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    env["KUBEFLOW_MANIFESTS_DIR"] = str(manifests_dir())
    return subprocess.run(["make", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture()
def corrupt_plan(tmp_path) -> Path:
    (tmp_path / "saved").mkdir()
    (tmp_path / "saved" / "plan.json").write_text('{"bad')
    return tmp_path / "saved"


def test_a_quote_in_make_trace_url_runs_nothing(corrupt_plan, tmp_path):
    witness = tmp_path / "PWNED"
    result = run_make("trace", f"STACK={corrupt_plan}", f'URL=https://x/" ; touch {witness} ; echo "', "AS=anonymous")
    assert not witness.exists(), "the URL ran a shell command"
    assert result.returncode == 2
    assert f"{corrupt_plan}/plan.json is not a saved plan" in result.stderr


@pytest.mark.parametrize("variable", ["STACK", "AS", "FROM", "TO", "FROM_SET", "TO_SET"])
def test_no_make_argument_reaches_a_shell(corrupt_plan, tmp_path, variable):
    witness = tmp_path / f"PWNED-{variable}"
    hostile = f'x" ; touch {witness} ; echo "' if variable != "FROM_SET" and variable != "TO_SET" else f"a=b;touch${{IFS}}{witness} $(touch {witness})"
    if variable in ("STACK", "AS"):
        args = ["trace", f"URL=https://x/", f"STACK={corrupt_plan}", "AS=anonymous", f"{variable}={hostile}"]
    else:
        args = ["upgrade-plan", f"FROM={corrupt_plan}", "TO=26.03", f"{variable}={hostile}"]
    result = run_make(*args)
    assert not witness.exists(), f"{variable} ran a shell command"
    assert result.returncode == 2, result.stderr[-1500:]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("target", ["preview", "estate"])
def test_the_estate_arguments_never_reach_a_shell(tmp_path, target):
    """`make preview ESTATE=` and `make estate STACK= OUT=` pass their values as one argument each."""
    witness = tmp_path / f"PWNED-{target}"
    hostile = f'x" ; touch {witness} ; echo "'
    args = [target, "STACK=nosuchstack", f"ESTATE={hostile}"] if target == "preview" else \
        [target, f"STACK={hostile}", f"OUT={hostile}", "LIST=1"]
    result = run_make(*args, f"MANIFESTS={manifests_dir() / '26.03.yaml'}")
    assert not witness.exists(), f"make {target} ran a shell command"
    assert result.returncode == 2, result.stderr[-1500:]
    assert "Traceback" not in result.stderr


def test_upgrade_plan_reports_a_corrupt_saved_plan_and_a_binary_target_without_a_traceback(corrupt_plan, tmp_path):
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(bytes(range(256)) * 8)
    for argv in ([str(corrupt_plan), "26.03"], ["26.03", str(binary)]):
        stderr = io.StringIO()
        assert upgrade_plan.main([*argv, "--stack", "dev", "--out", str(tmp_path / "out")], io.StringIO(), stderr) == 2
        assert "Traceback" not in stderr.getvalue()
        assert str(corrupt_plan) in stderr.getvalue() or str(binary) in stderr.getvalue(), stderr.getvalue()


# ------------------------------------------------------------------------------- dangerous settings

def stack_raw(stack: str) -> dict:
    """The stack's settings as the program reads them (top-level keys without the project prefix)."""
    prefix = f"{PROJECT}:"
    return {key[len(prefix):]: value for key, value in stack_document(stack)["config"].items()
            if key.startswith(prefix) and key[len(prefix):] not in config.SECRET_KEYS}


def settings_problems(stack: str, change) -> list[str]:
    raw = stack_raw(stack)
    change(raw)
    try:
        config.parse(raw, config.Secrets(), set(config.SECRET_KEYS), stack)
    except config.SettingsError as error:
        return error.problems
    return []


DANGEROUS = [
    ("a profile's service account as a trusted principal", "tenancy.trustedPrincipals[1]",
     lambda raw: raw["tenancy"].update(trustedPrincipals=["cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account",
                                                          "cluster.local/ns/alice/sa/default-editor"])),
    ("a profile's service account as a serving principal", "tenancy.serving.principals[0]",
     lambda raw: raw["tenancy"].setdefault("serving", {}).update(principals=["cluster.local/ns/bob/sa/default-editor"])),
    ("a Pod Security label on a profile", "tenancy.profiles[0].labels.pod-security.kubernetes.io/enforce",
     lambda raw: raw["tenancy"]["profiles"][0].update(labels={"pod-security.kubernetes.io/enforce": "privileged"})),
    ("a TLS 1.0 NLB policy", "ingress.sslPolicy", lambda raw: raw["ingress"].update(sslPolicy="ELBSecurityPolicy-2016-08")),
    ("a TLS 1.1 NLB policy", "ingress.sslPolicy", lambda raw: raw["ingress"].update(sslPolicy="ELBSecurityPolicy-TLS13-1-1-2021-06")),
    ("the gateway's health port as target", "ingress.httpTargetPort", lambda raw: raw["ingress"].update(httpTargetPort=15021)),
    ("the gateway's admin port as target", "ingress.httpTargetPort", lambda raw: raw["ingress"].update(httpTargetPort=15000)),
    ("Kubeflow's pods out of the mesh by annotation", "kubeflow.podAnnotations.sidecar.istio.io/inject",
     lambda raw: raw["kubeflow"]["podAnnotations"].update({"sidecar.istio.io/inject": "false"})),
    ("Kubeflow's pods out of the mesh by label", "kubeflow.podLabels.sidecar.istio.io/inject",
     lambda raw: raw["kubeflow"]["podLabels"].update({"sidecar.istio.io/inject": "false"})),
    ("Kubeflow's inbound ports past the sidecar", "kubeflow.podAnnotations.traffic.sidecar.istio.io/excludeInboundPorts",
     lambda raw: raw["kubeflow"]["podAnnotations"].update({"traffic.sidecar.istio.io/excludeInboundPorts": "*"})),
    ("a GitHub repository wildcard", "auth.extraIssuers[1].requiredClaims.repository[0]",
     lambda raw: raw["auth"]["extraIssuers"][1]["requiredClaims"].update(repository=["*/ml-pipelines"])),
]


@pytest.mark.parametrize("change,key", [(row[2], row[1]) for row in DANGEROUS], ids=[row[0] for row in DANGEROUS])
def test_a_dangerous_setting_is_refused_naming_its_key_and_why(change, key):
    problems = settings_problems("dev", change)
    assert any(problem.startswith(f"{key}:") for problem in problems), problems
    # The reason, not just the key: each message says what the value would let happen or what to use instead.
    (message,) = [problem for problem in problems if problem.startswith(f"{key}:")]
    assert len(message) > len(key) + 60, message


@pytest.mark.parametrize("change", [
    lambda raw: raw["ingress"].update(sslPolicy="ELBSecurityPolicy-TLS13-1-3-2021-06"),
    lambda raw: raw["ingress"].update(sslPolicy="ELBSecurityPolicy-TLS13-1-2-Res-2021-06"),
    lambda raw: raw["ingress"].update(httpTargetPort=8443),
    lambda raw: raw["kubeflow"]["podAnnotations"].update({"cluster-autoscaler.kubernetes.io/safe-to-evict": "true"}),
    lambda raw: raw["tenancy"]["profiles"][0].update(labels={"team": "vision"}),
], ids=["tls13-only", "tls12-restricted", "another-port", "an-ordinary-annotation", "an-ordinary-label"])
def test_their_safe_neighbours_are_accepted(change):
    assert settings_problems("dev", change) == []


# ------------------------------------------------------------------------------------------ IAM leftovers

def test_a_data_lake_in_a_bucket_outside_the_stack_must_be_listed():
    def elsewhere(raw):
        raw["tenancy"]["profiles"][0]["dataLake"] = {"bucket": "corp-cloudtrail-logs", "prefix": "AWSLogs"}
    problems = settings_problems("dev", elsewhere)
    assert any(p.startswith("tenancy.profiles[0].dataLake.bucket: 'corp-cloudtrail-logs' is not a bucket of this stack")
               for p in problems), problems

    def listed(raw):
        elsewhere(raw)
        raw["tenancy"]["dataLakeBuckets"] = ["corp-cloudtrail-logs"]
    assert settings_problems("dev", listed) == []
