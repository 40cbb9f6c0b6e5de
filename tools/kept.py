"""What one preview keeps for the next, by content: the digest each ConfigGroup's manifest file was written with, and
what the object guardrails found in each group's objects.

Both are functions of a group's source (tools.plan.group_sources: the group's inputs and the code that reads and
writes them) and, for the guardrails, of the stack's rules and their code; the keys hold all of it, so an entry is
right wherever and whenever it is read back. They live in the user's cache (`~/.cache/kubeflow-platform/previews/`,
`$XDG_CACHE_HOME`, or `KUBEFLOW_PLATFORM_CACHE_DIR` for the whole cache), never beside the plan: a checkout or an
output directory someone else wrote cannot hand a preview findings it did not find. One JSON file per kind, the
entries the last preview used first, at most `LIMIT` of them; written then renamed. A file that does not read back
costs the next preview the work, never a wrong answer.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
#: Entries kept per kind: the groups of a 10,000-profile stack and then some.
LIMIT = 50_000


def kept_dir() -> Path:
    from manifests.release import cache_root  # when something is kept: reading the plan needs no release machinery

    return cache_root() / "previews"


def key(*parts: str | bytes) -> str:
    """The content key of a kept result: a digest of everything it is a function of."""
    digest = hashlib.blake2b(digest_size=20)
    for part in parts:
        digest.update(part if isinstance(part, bytes) else part.encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    return digest.hexdigest()


def code_digest(modules: Iterable[str]) -> bytes:
    """A digest of the program's modules (paths from the repository's root) and of Python's version: what a kept
    result is also a function of."""
    digest = hashlib.sha256(sys.version.encode())
    for module in modules:
        digest.update(b"\0" + module.encode() + b"\0" + (REPO_ROOT / module).read_bytes())
    return digest.digest()


def content_digest(data: bytes) -> str:
    """A digest of bytes as written (a file's)."""
    return hashlib.blake2b(data, digest_size=20).hexdigest()


class Kept:
    """One kind's entries (key -> a JSON value): read once, what this preview read or found written back first."""

    def __init__(self, kind: str, directory: Path | None = None) -> None:
        self.path = (directory or kept_dir()) / f"{kind}.json"
        try:
            entries = json.loads(self.path.read_bytes())
        except (OSError, ValueError):
            entries = {}
        self.last: dict[str, Any] = entries if isinstance(entries, dict) else {}
        self.now: dict[str, Any] = {}

    def get(self, entry: str) -> Any:
        value = self.last.get(entry)
        if value is not None:
            self.now[entry] = value
        return value

    def put(self, entry: str, value: Any) -> None:
        self.now[entry] = value

    def save(self) -> None:
        entries = dict(self.now)
        for entry, value in self.last.items():
            if len(entries) >= LIMIT:
                break
            entries.setdefault(entry, value)
        if entries == self.last:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile("w", dir=self.path.parent, prefix=self.path.name, suffix=".part",
                                             delete=False) as partial:
                json.dump(entries, partial, separators=(",", ":"))
            os.replace(partial.name, self.path)
        except OSError:
            pass  # a read-only or full cache directory only costs the next preview the work
