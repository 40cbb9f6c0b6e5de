"""Stack files written by a test: a copy of the program to hold them, and ways to run it on them.

`tools.preview` and the mock runtime find stacks next to the program (`Pulumi.<stack>.yaml` beside
`__main__.py`), so a test that needs a stack file of its own copies the program's code into a temporary
directory (byte-identical, compiled files kept) and writes the stack file there; the repository is never
written to.
"""

from __future__ import annotations

import copy
import functools
import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import MARKER_SECRETS, REPO_ROOT
from tests.upstream import manifests_path
from tools.preview import preview
from tools.tenancy_stacks import copy_program  # noqa: F401 - the tests' copy of the program is the tools' one

PROJECT = "kubeflow-platform"
def stack_document(stack: str) -> dict[str, Any]:
    """The stack file of `stack` as data, its manifests pointed at the rendered release (no download)."""
    return copy.deepcopy(_stack_document(stack))


@functools.lru_cache(maxsize=None)
def _stack_document(stack: str) -> dict[str, Any]:
    document = yaml.load((REPO_ROOT / f"Pulumi.{stack}.yaml").read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    kubeflow = document["config"][f"{PROJECT}:kubeflow"]
    kubeflow["manifests"] = str(manifests_path(str(kubeflow.get("version", "1.10.2"))))
    return document


def write_stack(program: Path, name: str, text: str) -> Path:
    path = program / f"Pulumi.{name}.yaml"
    path.write_text(text)
    return path


def preview_in_process(program: Path, name: str, out: Path, manifests: str | None = None) -> tuple[int, str]:
    """`make preview` for stack `name` of `program`, in this process: its exit status and stderr."""
    stdout, stderr = io.StringIO(), io.StringIO()
    status = preview(name, manifests=manifests, out=out, secrets=MARKER_SECRETS, stdout=stdout, stderr=stderr,
                     root=program)
    return status, stderr.getvalue()


def preview_process(program: Path, name: str, out: Path, manifests: str | None = None,
                    timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -m tools.preview` for stack `name` of `program`, as a process of its own."""
    command = [sys.executable, "-m", "tools.preview", "--stack", name, "--out", str(out)]
    if manifests is not None:
        command += ["--manifests", manifests]
    return subprocess.run(command, cwd=program, capture_output=True, text=True, timeout=timeout)
