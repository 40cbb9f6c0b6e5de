"""Parsed YAML streams kept on disk, so a second evaluation of the same upstream release skips the parse.

Parsing the 10 MB upstream release costs about 0.4 s of CPU even with `manifests.yaml_loader` (0.3 s on two
cores); loading the same documents from a `marshal` file costs about 0.05 s. An entry is named by the sha256 of the YAML bytes and
carries a key of everything its content depends on (the loader's source, PyYAML's and Python's versions),
then the sha256 of its own payload. Anything that does not check out exactly (another key, a truncated or
edited file, an unreadable directory) is ignored and the stream parsed again, so a stale or corrupt cache
costs time, never correctness. `marshal` rather than `pickle`: loading it cannot run code.

Small streams are not cached: they parse faster than an entry is checked.
"""

from __future__ import annotations

import gc
import hashlib
import marshal
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from manifests import yaml_loader

#: Streams smaller than this are parsed every time.
MIN_CACHED_BYTES = 256 * 1024
_MAGIC = b"kubeflow-platform parsed yaml v1\n"
_DIGEST_BYTES = 32


def _content_key() -> bytes:
    """What the parsed documents depend on besides the YAML bytes."""
    digest = hashlib.sha256()
    digest.update(Path(yaml_loader.__file__).read_bytes())
    for part in (yaml.__version__, str(getattr(yaml, "__with_libyaml__", False)), sys.version, str(marshal.version)):
        digest.update(b"\0" + part.encode())
    return digest.digest()


def entry_path(cache_dir: Path, data: bytes) -> Path:
    return cache_dir / f"{hashlib.sha256(data).hexdigest()}.marshal"


def _read(path: Path, key: bytes) -> list[Any] | None:
    try:
        blob = path.read_bytes()
    except OSError:
        return None
    header = len(_MAGIC) + 2 * _DIGEST_BYTES
    if len(blob) < header or not blob.startswith(_MAGIC):
        return None
    stored_key = blob[len(_MAGIC) : len(_MAGIC) + _DIGEST_BYTES]
    stored_digest = blob[len(_MAGIC) + _DIGEST_BYTES : header]
    payload = memoryview(blob)[header:]
    if stored_key != key or hashlib.sha256(payload).digest() != stored_digest:
        return None
    try:
        documents = marshal.loads(payload)
    except (ValueError, EOFError, TypeError):
        return None
    return documents if isinstance(documents, list) else None


def _write(path: Path, key: bytes, documents: list[Any]) -> None:
    try:
        payload = marshal.dumps(documents)
    except ValueError:
        return  # a value marshal cannot hold (a YAML timestamp): such a stream is parsed every time
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename: a reader sees the old entry or the whole new one, never half of one.
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.name, suffix=".part", delete=False) as partial:
            partial.write(_MAGIC + key + hashlib.sha256(payload).digest() + payload)
        os.replace(partial.name, path)
    except OSError:
        pass  # a read-only or full cache directory only costs the next run the parse


def load_all(data: bytes, cache_dir: Path | None) -> list[Any]:
    """`manifests.yaml_loader.load_all(data)`, from `cache_dir` when an entry checks out; a stream that has to
    be parsed is parsed on all cores (`load_all_parallel`) and its entry written for the next run."""
    if cache_dir is None or len(data) < MIN_CACHED_BYTES:
        return yaml_loader.load_all(data)
    key = _content_key()
    path = entry_path(cache_dir, data)
    collecting = gc.isenabled()
    gc.disable()  # the loaded tree holds no cycles; walking it as it grows only costs time
    try:
        documents = _read(path, key)
    finally:
        if collecting:
            gc.enable()
    if documents is None:
        documents = yaml_loader.load_all_parallel(data)
        _write(path, key, documents)
    return documents
