"""The pod admission check's verdicts, kept on disk between previews by content key.

cel-python interprets the pod policy's CEL at about 25 ms a pod; a stack's release runs dozens of distinct pods
(prod: 38) and the hostile pods are the same on every run, so most of the check was the same evaluations again.
A verdict is a function of the policy's expressions, the pod and the evaluator (this program's activation code,
cel-python's, lark's and Python's versions), and its key holds all of them (`analysis.admission.verdict_key`): a
preview reads back what an earlier one found and evaluates only the pods and policies that changed.

Each verdict is one small JSON file under `~/.cache/kubeflow-platform/admission/` (`$XDG_CACHE_HOME`, or
`KUBEFLOW_PLATFORM_CACHE_DIR` for the whole cache), written then renamed. An entry that does not read back whole,
as a verdict for its own key, is evaluated again: a broken or foreign entry costs time, never correctness.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterator, MutableMapping
from pathlib import Path

from analysis.admission import Verdict
from manifests.release import cache_root

_KEY = re.compile(r"[0-9a-f]{64}")


def verdicts_dir() -> Path:
    return cache_root() / "admission"


class StoredVerdicts(MutableMapping[str, Verdict]):
    """Verdicts by content key in `directory` (created on the first write)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, key: str) -> Path:
        if not _KEY.fullmatch(key):
            raise KeyError(key)
        return self.directory / f"{key}.json"

    def __getitem__(self, key: str) -> Verdict:
        try:
            entry = json.loads(self._path(key).read_bytes())
        except (OSError, ValueError):
            raise KeyError(key) from None
        refusals = entry.get("refusals") if isinstance(entry, dict) else None
        if (not isinstance(entry, dict) or entry.get("key") != key or not isinstance(entry.get("admitted"), bool)
                or not isinstance(refusals, list) or not all(isinstance(r, str) for r in refusals)):
            raise KeyError(key)
        return Verdict(entry["admitted"], tuple(refusals))

    def __setitem__(self, key: str, verdict: Verdict) -> None:
        path = self._path(key)
        text = json.dumps({"key": key, "admitted": verdict.admitted, "refusals": list(verdict.refusals)})
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Write then rename: a reader sees no entry or the whole one, never half of one.
            with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=path.name, suffix=".part", delete=False) as partial:
                partial.write(text)
            os.replace(partial.name, path)
        except OSError:
            pass  # a read-only or full cache directory only costs the next run the evaluation

    def __delitem__(self, key: str) -> None:
        try:
            self._path(key).unlink()
        except OSError:
            raise KeyError(key) from None

    def __iter__(self) -> Iterator[str]:
        return (path.stem for path in sorted(self.directory.glob("*.json")) if _KEY.fullmatch(path.stem))

    def __len__(self) -> int:
        return sum(1 for _ in self)
