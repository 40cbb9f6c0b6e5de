"""PyYAML's safe loader, faster on what Kubernetes manifests are made of, with the same results.

Parsing the 10 MB upstream release with `yaml.CSafeLoader` is mostly Python, not libyaml: about a third is
building dicts and lists through the constructor's generic machinery (a generator per mapping, a memo
entry per node), a quarter is resolving the tag of every plain scalar, and a third is the cyclic garbage
collector re-walking the growing tree while it is built. `load_all` keeps libyaml's scanner, parser and
composer and replaces those three:

- plain maps, sequences and scalars are built by one tight recursive function; anything else (merge keys,
  `!!set`, `!!omap`, unknown tags, unhashable keys) makes the whole document go through PyYAML's own
  constructor, so the result and every error are PyYAML's;
- a plain scalar's tag is resolved from the implicit resolvers for its first character only, which is what
  PyYAML does when no path resolvers are registered (none are, on this loader);
- the collector is paused while the documents are built: the tree holds no cycles worth collecting.

`load_all_parallel` also uses the machine's other cores for a large stream: split at document markers,
its later parts are parsed by helper processes (`python -m manifests.yaml_loader`) while this one parses
the first. Documents are independent (anchors never cross them), so the concatenated lists are what one
parse gives; any error, in any part, and any helper failure means one ordinary parse of the whole stream,
so results and errors stay PyYAML's.

`tests/manifests/test_yaml_loader.py` compares the results with `yaml.CSafeLoader`, types included.
"""

from __future__ import annotations

import gc
import marshal
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_STR = "tag:yaml.org,2002:str"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
#: Scalar tags whose SafeConstructor method is a plain function of the node (no generator, no state).
_SCALAR_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("null", "bool", "int", "float", "binary", "timestamp", "str")
)
#: Mapping keys that make PyYAML rewrite the mapping (merge `<<`, value `=`).
_SPECIAL_KEY_TAGS = frozenset(("tag:yaml.org,2002:merge", "tag:yaml.org,2002:value"))


class _NotPlain(Exception):
    """The document needs PyYAML's own constructor."""


class SafeDocumentLoader(_BaseLoader):  # type: ignore[misc, valid-type]
    """`yaml.CSafeLoader` with a fast path for plain documents; see the module docstring."""

    # The shortcut in `resolve` is exact only without path resolvers and wildcard implicit resolvers.
    _shortcut = not _BaseLoader.yaml_path_resolvers and None not in _BaseLoader.yaml_implicit_resolvers

    def resolve(self, kind, value, implicit):  # noqa: ANN001 (PyYAML's signature)
        if kind is ScalarNode and implicit[0] and self._shortcut:
            for tag, regexp in self.yaml_implicit_resolvers.get(value[:1], ()):
                if regexp.match(value):
                    return tag
            return self.DEFAULT_SCALAR_TAG
        return super().resolve(kind, value, implicit)

    def construct_document(self, node):  # noqa: ANN001
        try:
            return self._construct_plain(node)
        except (_NotPlain, TypeError, RecursionError):
            # TypeError: an unhashable key, which PyYAML's constructor reports properly. RecursionError:
            # nesting deeper than Python's stack, which PyYAML's constructor walks without recursing.
            return super().construct_document(node)

    def _construct_plain(self, root: Any) -> Any:
        constructors = self.yaml_constructors
        # Aliases are the same node object: they must give the same Python object, as with PyYAML.
        built: dict[int, Any] = {}

        def build(node: Any) -> Any:
            kind = node.__class__
            tag = node.tag
            if kind is ScalarNode:
                if tag == _STR:
                    return node.value
                if tag in _SCALAR_TAGS:
                    return constructors[tag](self, node)
                raise _NotPlain
            known = built.get(id(node))
            if known is not None:
                return known
            if kind is MappingNode and tag == _MAP:
                mapping: dict = {}
                built[id(node)] = mapping
                for key_node, value_node in node.value:
                    if key_node.tag in _SPECIAL_KEY_TAGS:
                        raise _NotPlain
                    mapping[build(key_node)] = build(value_node)
                return mapping
            if kind is SequenceNode and tag == _SEQ:
                sequence: list = []
                built[id(node)] = sequence
                sequence.extend([build(item) for item in node.value])
                return sequence
            raise _NotPlain

        return build(root)


def load_all(data: str | bytes) -> list[Any]:
    """Every document of a YAML stream, as `list(yaml.load_all(data, Loader=yaml.CSafeLoader))` gives them.

    Raises `yaml.YAMLError` exactly where PyYAML does.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        loader = SafeDocumentLoader(data)
        try:
            documents = []
            while loader.check_data():
                documents.append(loader.get_data())
            return documents
        finally:
            loader.dispose()
    finally:
        if collecting:
            gc.enable()


# ------------------------------------------------------------------------------ on several cores

#: Smaller streams parse faster than a helper process starts.
MIN_PARALLEL_BYTES = 1 << 20
#: A line that is a document start marker (`---` alone, or followed by a space or tab).
_DOCUMENT_START = re.compile(rb"\n(?=---(?:[ \t\r\n]|$))")
_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")
_REPO_ROOT = Path(__file__).resolve().parent.parent


class _HelperFailed(Exception):
    pass


def split_at_documents(data: bytes, parts: int) -> list[bytes]:
    """`data` in at most `parts` pieces of about equal size, each cut just before a `---` line."""
    if parts < 2 or data.startswith(_BOMS):  # a UTF-16/32 stream cannot be cut on bytes
        return [data]
    pieces, start = [], 0
    for index in range(1, parts):
        match = _DOCUMENT_START.search(data, max(start, len(data) * index // parts))
        if match is None:
            break
        cut = match.start() + 1
        if cut > start:
            pieces.append(data[start:cut])
            start = cut
    pieces.append(data[start:])
    return pieces


def helper_count() -> int:
    """Helper processes worth starting: one per spare core, at most three."""
    return max(0, min((os.cpu_count() or 1) - 1, 3))


def load_all_parallel(data: bytes, helpers: int | None = None) -> list[Any]:
    """`load_all(data)`, the later parts of a large stream parsed by helper processes meanwhile."""
    helpers = helper_count() if helpers is None else helpers
    pieces = split_at_documents(data, helpers + 1) if len(data) >= MIN_PARALLEL_BYTES else [data]
    if len(pieces) < 2:
        return load_all(data)
    try:
        started = [_start_helper(piece) for piece in pieces[1:]]
    except OSError:
        return load_all(data)
    try:
        documents = load_all(pieces[0])
        for helper in started:
            documents.extend(_result(*helper))
        return documents
    except (yaml.YAMLError, _HelperFailed):
        # Parsed whole, the stream gives PyYAML's own result or error (with the stream's line numbers).
        return load_all(data)
    finally:
        for process, _output, feeder in started:
            if process.poll() is None:
                process.kill()
            process.wait()
            feeder.join()


def _start_helper(piece: bytes) -> tuple[subprocess.Popen, list[bytes], threading.Thread]:
    process = subprocess.Popen(
        [sys.executable, "-m", "manifests.yaml_loader"], cwd=_REPO_ROOT,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )
    output: list[bytes] = []

    def exchange() -> None:
        # Writing and reading in a thread: neither pipe can fill up while this process parses.
        try:
            process.stdin.write(piece)
            process.stdin.close()
            output.append(process.stdout.read())
        except OSError:
            output.append(b"")

    feeder = threading.Thread(target=exchange, daemon=True)
    feeder.start()
    return process, output, feeder


def _result(process: subprocess.Popen, output: list[bytes], feeder: threading.Thread) -> list[Any]:
    feeder.join()
    if process.wait() != 0 or not output:
        raise _HelperFailed
    collecting = gc.isenabled()
    gc.disable()
    try:
        documents = marshal.loads(output[0])
    except (ValueError, EOFError, TypeError):
        raise _HelperFailed from None
    finally:
        if collecting:
            gc.enable()
    if not isinstance(documents, list):
        raise _HelperFailed
    return documents


def _helper() -> int:
    """Parses the stream on stdin, writes its documents to stdout as marshal data; 1 on any failure."""
    try:
        documents = load_all(sys.stdin.buffer.read())
        payload = marshal.dumps(documents)
    except (yaml.YAMLError, ValueError):  # ValueError: a value marshal cannot hold (a timestamp)
        return 1
    sys.stdout.buffer.write(payload)
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_helper())
