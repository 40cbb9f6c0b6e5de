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

import socket
import subprocess
import sys
from pathlib import Path

import pulumi
import pytest

import config
from manifests.sources import ManifestError, load_source
from tests.conftest import MARKER_SECRETS, REPO_ROOT, _stack_kubeflow, run_stack
from tests.test_settings import BAD_SETTINGS
from tests.upstream import manifests_path

VALID_DOCUMENT = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: kubeflow\n"


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
     ["{tmp}/kubeflow.yaml: cannot read: No such device or address"]),
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
    read_bytes = Path.read_bytes

    def refuse(path: Path) -> bytes:
        if path == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(ManifestError) as caught:
        load_source(directory)
    assert [str(problem) for problem in caught.value.problems] == [
        f"{locked}: cannot read: Permission denied (fix: check the file's permissions, or render the release again)"]


# name, --manifests for a temporary directory, what stderr must say
COMMAND_LINE_ROWS = [row for row in BAD_SOURCES if row[0] in
                     ("unreadable file", "empty file", "not a Kubernetes object", "directory with a corrupt file")] + [
    ("missing file", lambda tmp: str(tmp / "absent.yaml"), ["{tmp}/absent.yaml: no such file or directory"]),
    ("corrupt YAML", lambda tmp: str(_write(tmp / "kubeflow.yaml", VALID_DOCUMENT + "---\nkind: [unclosed\n")),
     ["{tmp}/kubeflow.yaml:", "invalid YAML"]),
    ("another release than the stack pins", lambda tmp: str(manifests_path("1.9.1")),
     ["kubeflow.manifests: holds Kubeflow 1.9.1 (dashboard v1.9.2", "not kubeflow.version 1.10.2",
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


def test_the_table_covers_every_settings_area_every_source_and_the_secrets():
    areas = {line.split(":")[0].split(".")[0].split("[")[0] for _, _, expected in BAD_SETTINGS for line in expected}
    assert set(config.settings_keys()) <= areas, f"settings areas without a bad-input row: {set(config.settings_keys()) - areas}"
    kinds = {"file": 0, "directory": 0, "url": 0, "type": 0}
    for name, _, _ in BAD_SOURCES:
        kinds["directory" if "directory" in name else "url" if "URL" in name else "type" if "type" in name else "file"] += 1
    assert all(kinds.values()), kinds
    # The missing-secret test in test_settings.py adds a row per secret.
    assert len(BAD_SETTINGS) + len(BAD_SOURCES) + len(config.SECRET_KEYS) >= 40
