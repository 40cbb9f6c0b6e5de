"""Makes sure the rendered upstream Kubeflow releases the tests and the preview use are present.

`python -m tools.upstream_manifests 1.10.2 1.9.1` leaves `v<version>.yaml` in KUBEFLOW_MANIFESTS_DIR
(default build/upstream/), rendering github.com/kubeflow/manifests/example at the release tag with
`kubectl kustomize` or `kustomize build` when a file is missing. Exits 2 with what is needed when it
cannot.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
UPSTREAM = "github.com/kubeflow/manifests/example?ref=v{version}"


def target_dir() -> tuple[Path, bool]:
    configured = os.environ.get("KUBEFLOW_MANIFESTS_DIR")
    if configured:
        return Path(configured).resolve(), True
    return REPO_ROOT / "build" / "upstream", False


def render_command(version: str) -> list[str] | None:
    source = UPSTREAM.format(version=version)
    if shutil.which("kustomize"):
        return ["kustomize", "build", source]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize", source]
    return None


def ensure(version: str) -> str | None:
    """Returns None when v<version>.yaml is in place, else what the user must do."""
    directory, configured = target_dir()
    path = directory / f"v{version}.yaml"
    if path.is_file() and path.stat().st_size > 0:
        return None
    if configured:
        return f"KUBEFLOW_MANIFESTS_DIR={directory} has no v{version}.yaml; render it there or unset the variable"
    command = render_command(version)
    if command is None:
        return (
            f"Kubeflow v{version} must be rendered from {UPSTREAM.format(version=version)} but neither "
            "`kubectl` (with built-in kustomize) nor `kustomize` is installed. Install one of them, or put "
            f"rendered files in a directory and set KUBEFLOW_MANIFESTS_DIR to it."
        )
    directory.mkdir(parents=True, exist_ok=True)
    print(f"rendering Kubeflow v{version}: {' '.join(command)}", flush=True)
    partial = path.with_suffix(".yaml.partial")
    with partial.open("wb") as out:
        result = subprocess.run(command, stdout=out, stderr=subprocess.PIPE, timeout=900)
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        reason = result.stderr.decode(errors="replace").strip().splitlines()[-3:]
        return (
            f"rendering Kubeflow v{version} failed (kustomize needs git and access to github.com):\n    "
            + "\n    ".join(reason)
            + "\n  Offline: render it where you have access and set KUBEFLOW_MANIFESTS_DIR to its directory."
        )
    partial.replace(path)
    return None


def main(versions: list[str]) -> int:
    problems = [problem for problem in (ensure(v) for v in versions) if problem]
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 2 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
