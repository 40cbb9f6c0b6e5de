"""Makes sure the rendered upstream Kubeflow releases the tests and the preview use are present.

`python -m tools.upstream_manifests 1.10.2 1.9.1` leaves each release's file (`v1.10.2.yaml`; calendar
releases keep their tag: `26.03.yaml`) in the directory the user named with KUBEFLOW_MANIFESTS_DIR, or else
in build/upstream/, rendering github.com/kubeflow/manifests/example at the release tag with
`kustomize build` or `kubectl kustomize` when a file is missing there. A directory the user named is only
read: a missing file is the user's to render. Exits 2 with what is needed when it cannot, never a traceback.
`--path 26.03` prints where a release's file is expected.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = REPO_ROOT / "build" / "upstream"
#: The variable naming a directory of already-rendered releases.
DIR_VARIABLE = "KUBEFLOW_MANIFESTS_DIR"
EXAMPLE = "github.com/kubeflow/manifests/example?ref={tag}"
ARCHIVE = "https://github.com/kubeflow/manifests/archive/refs/tags/{tag}.tar.gz"
#: How long one render may take: kustomize clones the repository and every remote base.
RENDER_TIMEOUT_S = 900

#: Remote bases that `example/` pulls over the network while it renders, by release (releases before
#: v1.11.0 pull none). Read in kubeflow/manifests at each tag:
#:   applications/pipeline/upstream/third-party/argo/base/kustomization.yaml:5 (and installs/*),
#:   applications/trainer/upstream/third-party/jobset/kustomization.yaml:5,
#:   applications/trainer/upstream/third-party/leaderworkerset/kustomization.yaml:5.
_V1_11_BASES = (
    "github.com/argoproj/argo-workflows/manifests/...?ref=v3.7.3",
    "github.com/kubernetes-sigs/jobset/releases/download/v0.10.1/manifests.yaml",
    "github.com/kubernetes-sigs/lws//config/default?ref=v0.7.0",
)
REMOTE_BASES: dict[str, tuple[str, ...]] = {"1.11.0": _V1_11_BASES, "26.03": _V1_11_BASES}

_CALENDAR = re.compile(r"^\d{2}\.\d{2}(\.\d+)?$")


def release_tag(version: str) -> str:
    """The kubeflow/manifests tag of a release: `v1.10.2`, or `26.03` for calendar-versioned releases."""
    return version if _CALENDAR.match(version) else f"v{version}"


def release_file(version: str) -> str:
    """The file a rendered release is kept in: its tag and `.yaml`."""
    return f"{release_tag(version)}.yaml"


def target_dir() -> tuple[Path, bool]:
    """The directory of rendered releases, and whether the user named it (then nothing is written there)."""
    configured = os.environ.get(DIR_VARIABLE)
    if configured:
        return Path(configured).resolve(), True
    return DEFAULT_DIR, False


def release_path(version: str) -> Path:
    return target_dir()[0] / release_file(version)


def render_command(version: str) -> list[str] | None:
    source = EXAMPLE.format(tag=release_tag(version))
    if shutil.which("kustomize"):
        return ["kustomize", "build", source]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize", source]
    return None


def _render_elsewhere(version: str) -> str:
    tag = release_tag(version)
    name = release_file(version)
    return (
        f"  To render it where github.com is reachable and use the file here:\n"
        f"    curl -fsSLo manifests-{tag}.tar.gz {ARCHIVE.format(tag=tag)}\n"
        f"    tar xzf manifests-{tag}.tar.gz && kustomize build manifests-{tag.lstrip('v')}/example > {name}\n"
        f"  then copy {name} into {DEFAULT_DIR.relative_to(REPO_ROOT)}/ (or a directory named by {DIR_VARIABLE}),"
        f" or point one command at it: make preview MANIFESTS=/path/to/{name}"
    )


def _fetches(version: str) -> str:
    fetched = [EXAMPLE.format(tag=release_tag(version)), *REMOTE_BASES.get(version, ())]
    return "".join(f"\n    {url}" for url in fetched)


def ensure(version: str) -> str | None:
    """Returns None when the release's file is in place, else what the user must do."""
    directory, configured = target_dir()
    name = release_file(version)
    path = directory / name
    if path.is_file() and path.stat().st_size > 0:
        return None
    if configured:
        return (f"{DIR_VARIABLE}={directory} has no {name}; render Kubeflow {version} there, "
                f"or unset {DIR_VARIABLE} to have it rendered into {DEFAULT_DIR.relative_to(REPO_ROOT)}/")
    command = render_command(version)
    if command is None:
        return (
            f"Kubeflow {version} must be rendered from {EXAMPLE.format(tag=release_tag(version))}, but neither "
            "`kustomize` nor `kubectl` (with built-in kustomize) is installed. Install one of them.\n"
            + _render_elsewhere(version)
        )
    if shutil.which("git") is None:
        return (f"rendering Kubeflow {version} needs `git` (kustomize clones the release and its remote bases); "
                "install git.\n" + _render_elsewhere(version))
    directory.mkdir(parents=True, exist_ok=True)
    print(f"rendering Kubeflow {version}: {' '.join(command)}", flush=True)
    partial = path.with_name(name + ".partial")
    try:
        with partial.open("wb") as out:
            result = subprocess.run(command, stdout=out, stderr=subprocess.PIPE, timeout=RENDER_TIMEOUT_S)
        failed = result.returncode != 0
        reason = result.stderr.decode(errors="replace").strip().splitlines()[-3:] if failed else []
    except subprocess.TimeoutExpired:
        failed, reason = True, [f"no answer within {RENDER_TIMEOUT_S} s"]
    except OSError as error:
        failed, reason = True, [str(error)]
    if failed or partial.stat().st_size == 0:
        partial.unlink(missing_ok=True)
        return (
            f"rendering Kubeflow {version} failed. It fetches from the network:{_fetches(version)}\n"
            f"  {command[0]} said:\n    " + "\n    ".join(reason or ["(nothing, and wrote nothing)"]) + "\n"
            + _render_elsewhere(version)
        )
    partial.replace(path)
    return None


def main(argv: list[str]) -> int:
    if argv[:1] == ["--path"]:
        for version in argv[1:]:
            print(release_path(version))
        return 0
    problems = [problem for problem in (ensure(v) for v in argv) if problem]
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 2 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
