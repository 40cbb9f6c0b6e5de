"""docs/deploying.md is a runbook: every command in its `sh` blocks runs, in the page's order, and succeeds.

The page runs in a copy of the project, as a platform engineer would run it from a clone, with `kubectl` and
`aws` played by tests/estate/fake_cli.py over the recorded estate (tests/estate/recorded/, which matches the
dev stack) and `pulumi` by tests/estate/fake_pulumi.py, which checks each command against Pulumi.yaml and the
stack file and loads the stack's settings with the secrets set so far, as the program does. `make` runs for
real: the offline preview, the estate command and the preview against the estate.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from analysis.estate_checks import estate_problems
from tests.conftest import REPO_ROOT
from tests.estate.test_estate import (  # noqa: F401 (dev_plan is a fixture)
    _no_gateway_service, _strict, declared, dev_plan, in_process, record, recorded,
)
from tests.upstream import manifests_dir

PAGE = REPO_ROOT / "docs" / "deploying.md"
FAKES = REPO_ROOT / "tests" / "estate"
#: What a clone holds that the runbook's commands read (tests and docs are not run by them).
PROJECT_PARTS = ("Makefile", "Pulumi.yaml", "Pulumi.dev.yaml", "Pulumi.prod.yaml", "__main__.py", "requirements.txt",
                 "requirements-dev.txt", "requirements-scan.txt", "config", "components", "manifests", "analysis",
                 "tools", "policy")


def shell_blocks(text: str) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```", text, flags=re.S | re.M)


def text_blocks(text: str) -> list[str]:
    return re.findall(r"^```text\n(.*?)^```", text, flags=re.S | re.M)


def _wrapper(path: Path, script: Path, tool: str) -> None:
    path.write_text(f"#!{sys.executable}\nimport os, runpy\nos.environ['FAKE_CLI_TOOL'] = {tool!r}\n"
                    f"runpy.run_path({str(script)!r}, run_name='__main__')\n")
    path.chmod(0o755)


def copy_project(project: Path, parts: tuple[str, ...] = PROJECT_PARTS) -> Path:
    """`parts` of the repository in `project`, as a clone would hold them (no caches, venvs or build output)."""
    project.mkdir()
    for part in parts:
        source = REPO_ROOT / part
        ignore = shutil.ignore_patterns("__pycache__", "venv", "build")
        if source.is_dir():
            shutil.copytree(source, project / part, ignore=ignore)
        else:
            shutil.copy2(source, project / part)
    return project


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    project = copy_project(tmp_path / "project")
    _venv_view(project / ".venv")
    return project


def _venv_view(view: Path) -> None:
    """The project's venv seen from the copy: its interpreter and packages, with a `.installed` stamp of the
    copy's own, dated ahead, so `make` never (re)builds a venv here or, through a link, the shared one."""
    shared = (REPO_ROOT / ".venv").resolve()
    (view / "bin").mkdir(parents=True)
    shutil.copy(shared / "pyvenv.cfg", view / "pyvenv.cfg")
    (view / "lib").symlink_to(shared / "lib")
    for entry in (shared / "bin").iterdir():
        if entry.name != ".installed":
            (view / "bin" / entry.name).symlink_to(entry)
    stamp = view / "bin" / ".installed"
    stamp.touch()
    ahead = time.time() + 24 * 3600
    os.utime(stamp, (ahead, ahead))


def test_every_command_of_the_runbook_runs_in_order(clone: Path, tmp_path: Path):
    blocks = shell_blocks(PAGE.read_text())
    assert len(blocks) >= 5, "the runbook lost its steps"
    state = tmp_path / "state"
    state.mkdir()
    cluster, aws = recorded()
    (state / "cluster.json").write_text(json.dumps(cluster))
    (state / "aws.json").write_text(json.dumps(aws))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _wrapper(bin_dir / "kubectl", FAKES / "fake_cli.py", "kubectl")
    _wrapper(bin_dir / "aws", FAKES / "fake_cli.py", "aws")
    _wrapper(bin_dir / "pulumi", FAKES / "fake_pulumi.py", "pulumi")
    log = tmp_path / "calls.log"
    env = {
        "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "KUBEFLOW_MANIFESTS_DIR": str(manifests_dir()),
        "FAKE_CLI_DIR": str(state),
        "FAKE_CLI_LOG": str(log),
        "KUBEFLOW_OIDC_CLIENT_SECRET": "runbook-oidc-client-secret",
        "KUBEFLOW_DATABASE_PASSWORD": "runbook-database-password",
    }
    for i, block in enumerate(blocks, start=1):
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=clone, env=env, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, f"block {i} of docs/deploying.md failed:\n{block}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    tools = [call[0] for call in calls]
    # The estate is read (twice: LIST=1 runs nothing, the second records) before any pulumi command.
    assert "kubectl" in tools and "aws" in tools
    assert max(i for i, t in enumerate(tools) if t in ("kubectl", "aws")) < tools.index("pulumi")
    pulumi = [" ".join(call[1:3]) for call in calls if call[0] == "pulumi"]
    assert pulumi == ["stack select", "config set", "config set", "config set", "preview --diff", "up"]
    estate = (clone / "estate" / "dev.yaml").read_text()
    assert estate.startswith("# Recorded by `make estate`") and "failed: []" in estate
    # Secrets are never written anywhere the runbook leaves files.
    for directory in (clone / "estate", clone / "build" / "dev"):
        for path in directory.rglob("*"):
            if path.is_file():
                text = path.read_text(errors="replace")
                assert "runbook-oidc-client-secret" not in text and "runbook-database-password" not in text


def test_the_runbook_runs_no_command_the_page_does_not_show(clone: Path):
    # Each block is shell commands only: no line a reader would have to adapt before pasting it.
    for block in shell_blocks(PAGE.read_text()):
        for line in block.splitlines():
            command = line.split("#", 1)[0].strip()
            assert "<" not in command and ">" not in command, f"a placeholder or redirection in {line!r}"


def test_the_example_problems_on_the_page_are_what_the_preview_says(tmp_path, monkeypatch, dev_plan):
    examples = [line.strip().removeprefix("- ") for block in text_blocks(PAGE.read_text())
                for line in block.splitlines() if line.strip().startswith("- estate: ")]
    assert len(examples) == 2
    said = []
    for i, change in enumerate((_strict, _no_gateway_service)):
        recording = record(tmp_path / str(i), monkeypatch, dev_plan[1], change, runner=in_process)
        said += estate_problems(recording.estate, dev_plan[0], declared())
    for example in examples:
        assert example in said


def test_make_preview_exits_2_naming_the_setting_when_the_stack_disagrees_with_the_estate(clone, tmp_path, monkeypatch, dev_plan):
    differing = record(tmp_path / "differing", monkeypatch, dev_plan[1], _strict, runner=in_process)
    estate = tmp_path / "differing" / "estate" / "dev.yaml"
    assert differing.estate is not None
    env = {**os.environ, "KUBEFLOW_MANIFESTS_DIR": str(manifests_dir())}
    done = subprocess.run(["make", "preview", "STACK=dev", f"ESTATE={estate}"], cwd=clone, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "    - estate: kubeflow.mesh.mtls is permissive but PeerAuthentication istio-system/default has mode STRICT" in done.stdout
