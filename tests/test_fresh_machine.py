"""The README's commands on a fresh clone: no KUBEFLOW_MANIFESTS_DIR, nothing rendered yet.

Each test copies the project as a clone would have it into a temporary directory and runs the real make
targets there, with a stand-in `kustomize` first on PATH. The stand-in answers exactly the command the
project runs, `kustomize build github.com/kubeflow/manifests/example?ref=<tag>`, from the rendered releases
the other tests use, so the fresh-machine path is proven without a network; a second stand-in fails the way
kustomize does offline. The venvs are the current ones (linked), so nothing is installed.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import STACKS
from tests.test_contracts import SUPPORTED_RELEASES
from tests.upstream import CURRENT_VERSION, REPO_ROOT, SUPPORTED_VERSIONS, manifests_path
from tools.upstream_manifests import REMOTE_BASES, release_file, release_tag

#: The stand-in: a log line per call; answers `build <example>?ref=<tag>` from $STANDIN_RENDERED/<tag>.yaml.
STANDIN = textwrap.dedent("""\
    #!{python}
    import os, sys
    with open(os.environ["STANDIN_LOG"], "a") as log:
        log.write(" ".join(sys.argv[1:]) + "\\n")
    prefix = "github.com/kubeflow/manifests/example?ref="
    if os.environ.get("STANDIN_OFFLINE"):
        sys.stderr.write("Error: accumulating resources: accumulation err='accumulating resources from "
                         "'" + sys.argv[-1] + "'': git cmd = 'git fetch --depth=1 origin': exit status 128: "
                         "fatal: unable to access 'https://github.com/kubeflow/manifests/': Could not resolve "
                         "host: github.com\\n")
        sys.exit(1)
    if len(sys.argv) != 3 or sys.argv[1] != "build" or not sys.argv[2].startswith(prefix):
        sys.stderr.write("stand-in kustomize: unexpected arguments %r\\n" % (sys.argv[1:],))
        sys.exit(3)
    with open(os.path.join(os.environ["STANDIN_RENDERED"], sys.argv[2][len(prefix):] + ".yaml"), "rb") as f:
        sys.stdout.buffer.write(f.read())
""")


def _tracked_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO_ROOT, check=True, capture_output=True).stdout.decode()
    return [name for name in listed.split("\0") if name and (REPO_ROOT / name).is_file()]


@pytest.fixture
def fresh_clone(tmp_path) -> Path:
    """The project's files (as git has them, uncommitted changes included) in a new directory, mtimes kept
    so the linked venvs count as up to date; no build/, no rendered releases."""
    clone = tmp_path / "clone"
    for name in _tracked_files():
        target = clone / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, target)
    for venv in (".venv", ".venv-scan"):
        if (REPO_ROOT / venv).is_dir():
            (clone / venv).symlink_to(REPO_ROOT / venv)
    return clone


def _environment(tmp_path: Path, *, offline: bool = False) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    standin = bin_dir / "kustomize"
    standin.write_text(STANDIN.format(python=sys.executable))
    standin.chmod(standin.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    env = {key: value for key, value in os.environ.items()
           if key not in {"KUBEFLOW_MANIFESTS_DIR", "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "PYTEST_ADDOPTS"}}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", STANDIN_LOG=str(tmp_path / "kustomize.log"),
               STANDIN_RENDERED=str(manifests_path(CURRENT_VERSION).parent))
    if offline:
        env["STANDIN_OFFLINE"] = "1"
    return env


def _make(clone: Path, env: dict[str, str], *args: str, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", *args], cwd=clone, env={**env, **extra}, capture_output=True, text=True,
                          timeout=600)


def test_readme_commands_render_what_they_need_on_a_fresh_clone(fresh_clone, tmp_path):
    env = _environment(tmp_path)
    upstream = fresh_clone / "build" / "upstream"

    preview = _make(fresh_clone, env, "preview")
    assert preview.returncode == 0, preview.stderr[-3000:]
    assert (upstream / release_file(CURRENT_VERSION)).stat().st_size > 0
    assert (fresh_clone / "build" / "dev" / "plan.json").is_file()
    assert "to create" in preview.stdout

    # The stacks differ, which make diff reports with status 1 ("different"), not 2 ("broken").
    diff = _make(fresh_clone, env, "diff", "A=dev", "B=prod")
    assert diff.returncode == 1, diff.stdout[-2000:] + diff.stderr[-3000:]
    assert "Traceback" not in diff.stderr

    test = _make(fresh_clone, env, "test",
                 PYTEST_ADDOPTS="-p no:warnings tests/test_contracts.py -k every_upstream_contract")
    assert test.returncode == 0, test.stdout[-3000:] + test.stderr[-3000:]
    assert f"{len(STACKS) * len(SUPPORTED_RELEASES)} passed" in test.stdout
    for version in SUPPORTED_VERSIONS:
        assert (upstream / release_file(version)).stat().st_size > 0

    calls = (tmp_path / "kustomize.log").read_text().splitlines()
    tags = [line.rsplit("=", 1)[1] for line in calls]
    # Each supported release is rendered once, then found in build/upstream/.
    assert sorted(tags) == sorted(release_tag(version) for version in SUPPORTED_VERSIONS)
    assert not (fresh_clone / "build" / "upstream" / (release_file(CURRENT_VERSION) + ".partial")).exists()


def test_offline_render_fails_with_what_was_fetched_and_how_to_render_elsewhere(fresh_clone, tmp_path):
    env = _environment(tmp_path, offline=True)
    release = "1.11.0"
    preview = _make(fresh_clone, env, "preview", f"KUBEFLOW={release}")
    assert preview.returncode == 2
    message = preview.stderr
    assert "Traceback" not in message + preview.stdout
    assert f"rendering Kubeflow {release} failed" in message
    assert "github.com/kubeflow/manifests/example?ref=v1.11.0" in message
    for base in REMOTE_BASES[release]:
        assert base in message
    assert "Could not resolve host: github.com" in message  # what kustomize said
    assert "archive/refs/tags/v1.11.0.tar.gz" in message and "MANIFESTS=" in message
    assert not list((fresh_clone / "build" / "upstream").glob("*.partial"))
    assert not (fresh_clone / "build" / "dev").exists()


def test_a_directory_the_user_named_is_read_not_rendered_into(fresh_clone, tmp_path):
    env = _environment(tmp_path)
    named = tmp_path / "rendered"
    named.mkdir()
    preview = _make(fresh_clone, env, "preview", KUBEFLOW_MANIFESTS_DIR=str(named))
    assert preview.returncode == 2
    assert f"KUBEFLOW_MANIFESTS_DIR={named} has no {release_file(CURRENT_VERSION)}" in preview.stderr
    assert "Traceback" not in preview.stderr
    assert not (tmp_path / "kustomize.log").exists()
    assert list(named.iterdir()) == []
