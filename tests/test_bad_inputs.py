"""Bad manifest sources, each run through the whole program: one clear message naming the file or key,
a `pulumi.RunError` (no traceback), and nothing registered.

Settings errors are tabled in test_settings.py; these are the inputs only the manifest loader can judge
(the file's bytes, the directory's contents, the download's checksum, the exclusion names). The rows
need the Kubeflow component, which loads the source before registering anything.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pulumi
import pytest

from tests.conftest import MARKER_SECRETS, REPO_ROOT, run_stack
from tools.mock_runtime import stack_config

VALID_DOCUMENT = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: kubeflow\n"


def _kubeflow(**changes) -> dict:
    kubeflow = dict(stack_config("dev")["kubeflow-platform:kubeflow"])
    kubeflow.update(changes)
    return {"kubeflow": kubeflow}


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# name, builds (tmp_path -> (overrides, what the one message must contain))
BAD_SOURCES = [
    ("missing file", lambda tmp: (_kubeflow(manifests=str(tmp / "absent.yaml")), [f"{tmp / 'absent.yaml'}: no such file or directory"])),
    ("unreadable file", lambda tmp: (_kubeflow(manifests=str(_unreadable(tmp / "kubeflow.yaml"))), [f"{tmp / 'kubeflow.yaml'}: cannot read"])),
    ("corrupt YAML", lambda tmp: (_kubeflow(manifests=str(_write(tmp / "kubeflow.yaml", VALID_DOCUMENT + "---\nkind: [unclosed\n"))),
                                  [f"{tmp / 'kubeflow.yaml'}:", "invalid YAML"])),
    ("not a Kubernetes object", lambda tmp: (_kubeflow(manifests=str(_write(tmp / "kubeflow.yaml", VALID_DOCUMENT + "---\n- just\n- a list\n"))),
                                             [f"{tmp / 'kubeflow.yaml'} document 2: expected a Kubernetes object"])),
    ("directory without YAML", lambda tmp: (_kubeflow(manifests=str(_write(tmp / "rendered" / "README.txt", "nothing").parent)),
                                            [f"{tmp / 'rendered'}: directory holds no .yaml or .yml files"])),
    ("checksum mismatch", lambda tmp: _checksum_mismatch(tmp)),
    ("unreachable URL", lambda tmp: (_kubeflow(manifests={"url": (tmp / "gone" / "kubeflow.yaml").as_uri(), "sha256": "a" * 64}),
                                     ["kubeflow.manifests: cannot download", "gone/kubeflow.yaml"])),
    ("unknown exclusion", lambda tmp: (_kubeflow(exclude=["istio", "argoo"]), ["kubeflow.exclude[1]: unknown exclusion 'argoo'", "did you mean 'argo'?"])),
]


def _checksum_mismatch(tmp: Path):
    release = _write(tmp / "kubeflow.yaml", VALID_DOCUMENT)
    overrides = _kubeflow(manifests={"url": release.as_uri(), "sha256": "0" * 64})
    return overrides, ["kubeflow.manifests.sha256: checksum mismatch", f"expected {'0' * 64}, actual {_sha256(release)}"]


def _unreadable(path: Path) -> Path:
    _write(path, VALID_DOCUMENT)
    path.chmod(0)
    return path


@pytest.mark.parametrize("build", [row[1] for row in BAD_SOURCES], ids=[row[0] for row in BAD_SOURCES])
def test_bad_manifest_source_is_refused_with_one_message_naming_it(build, tmp_path, request):
    if "unreadable" in request.node.name and os.geteuid() == 0:
        pytest.skip("permission bits do not stop root from reading a file")
    overrides, expected = build(tmp_path)
    with pytest.raises(pulumi.RunError) as caught:
        run_stack("dev", overrides)
    message = str(caught.value)
    for fragment in expected:
        assert fragment in message, message
    assert "Traceback" not in message
    assert caught.value.program_run.resources == [], "resources were registered despite a bad manifest source"
    for secret in MARKER_SECRETS.values():
        assert secret not in message


def test_the_preview_exits_non_zero_without_a_traceback_on_corrupt_manifests(tmp_path):
    corrupt = _write(tmp_path / "kubeflow.yaml", VALID_DOCUMENT + "---\nkind: [unclosed\n")
    result = subprocess.run([sys.executable, "-m", "tools.preview", "--stack", "dev", "--manifests", str(corrupt)],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0, result.stdout[-2000:]
    assert "Traceback" not in result.stderr + result.stdout
    assert f"{corrupt}:" in result.stderr and "invalid YAML" in result.stderr
