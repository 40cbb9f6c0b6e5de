"""Where the tests find the rendered upstream Kubeflow manifests.

The real upstream release is the main test data. `make test` renders the pinned upstream tags with
kustomize into build/upstream/ (`make upstream-manifests`), unless KUBEFLOW_MANIFESTS_DIR names a
directory that already holds `v<version>.yaml` files. A missing file is a test failure with the command
that fixes it, never a skip.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
#: The release the stacks pin, and the previous one used for upgrade diffs.
CURRENT_VERSION = "1.10.2"
PREVIOUS_VERSION = "1.9.1"


def manifests_dir() -> Path:
    configured = os.environ.get("KUBEFLOW_MANIFESTS_DIR")
    if configured:
        return Path(configured).resolve()
    return REPO_ROOT / "build" / "upstream"


def manifests_path(version: str = CURRENT_VERSION) -> Path:
    path = manifests_dir() / f"v{version}.yaml"
    if not path.is_file():
        raise FileNotFoundError(
            f"rendered Kubeflow v{version} manifests not found at {path}. "
            f"Run `make upstream-manifests` (renders github.com/kubeflow/manifests/example?ref=v{version} "
            f"with kustomize) or set KUBEFLOW_MANIFESTS_DIR to a directory holding v{version}.yaml."
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
