"""Where the tests find the rendered upstream Kubeflow manifests.

The real upstream release is the main test data. `make test` renders the pinned upstream tags with
kustomize into build/upstream/ (`make upstream-manifests`), unless KUBEFLOW_MANIFESTS_DIR names a
directory that already holds the rendered files (`v1.10.2.yaml`, `26.03.yaml`: tools.upstream_manifests).
A missing file is a test failure with the command that fixes it, never a skip.
"""

from __future__ import annotations

import functools
from pathlib import Path

from tools.upstream_manifests import EXAMPLE, release_file, release_tag, target_dir

REPO_ROOT = Path(__file__).resolve().parent.parent
#: The release the stacks pin, and the one they pinned before it (upgrade diffs).
CURRENT_VERSION = "26.03"
PREVIOUS_VERSION = "1.10.2"
#: Every release the program supports (the Makefile's SUPPORTED_KUBEFLOW_VERSIONS, which `make test` renders).
SUPPORTED_VERSIONS = ("26.03", "1.11.0", "1.10.2", "1.9.1")
#: Releases whose KFP API server needs static object-store keys (KFP 2.15.0): the stacks run them with
#: kubeflow.objectStore.staticKeys, as a user on that release would.
NEEDS_STATIC_KEYS = ("1.11.0",)


def manifests_dir() -> Path:
    return target_dir()[0]


def manifests_path(version: str = CURRENT_VERSION) -> Path:
    path = manifests_dir() / release_file(version)
    if not path.is_file():
        raise FileNotFoundError(
            f"rendered Kubeflow {version} manifests not found at {path}. "
            f"Run `make upstream-manifests` (renders {EXAMPLE.format(tag=release_tag(version))} "
            f"with kustomize) or set KUBEFLOW_MANIFESTS_DIR to a directory holding {release_file(version)}."
        )
    return path


@functools.lru_cache(maxsize=None)
def _parsed(version: str) -> tuple[dict, ...]:
    # The program's own per-process cache: the whole-stack runs and these tests share one parse.
    from manifests.release import load_once

    return load_once(str(manifests_path(version))).objects


def upstream_objects(version: str = CURRENT_VERSION) -> list[dict]:
    """The parsed upstream objects. Parsed once per session; callers must not mutate them."""
    return list(_parsed(version))
