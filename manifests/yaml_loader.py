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

Two things PyYAML lets through are refused, each as a `yaml.MarkedYAMLError` with the line and column:

- a key written twice in one mapping (`DuplicateKeyError`): PyYAML keeps the last one silently, so a second
  `image:` line under the first would decide what runs while a reviewer reads the first;
- nesting deeper than `MAX_DEPTH` (`NestingTooDeepError`). libyaml's composer recurses in C once per level
  and overflows the C stack (SIGSEGV, no message) somewhere past 20,000 levels, so a cheap scan of the bytes
  bounds the depth before libyaml sees them (`check_nesting`); the exact limit is enforced while the
  documents are built. No object of a rendered release nests deeper than 40 levels.

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


#: Deepest nesting of collections accepted in a document. Rendered Kubeflow releases (1.9 to 26.03) nest at
#: most 38 levels; the program's own walkers (schema validation, the engine's serialization) recurse per
#: level and stay well inside Python's recursion limit up to about 200.
MAX_DEPTH = 100
#: Depth libyaml's composer is known to reach safely on an 8 MiB stack (it crashes past about 20,000);
#: a stream whose cheap bound stays below this is parsed directly, the rest is first checked exactly.
_PARSER_SAFE_DEPTH = 5_000
#: Characters a block collection can start after at the beginning of a line: indentation and the
#: indicators of compact nested entries (`- - x`, `? - x`, `- a: b`).
_BLOCK_PREFIX = b" \t?:-"
_OPENERS = b"[{"
#: Marks block-prefix characters as b" " and flow openers as b"[", everything else as b"x".
_SCAN_TABLE = bytes(0x20 if c in _BLOCK_PREFIX else 0x5B if c in _OPENERS else 0x78 for c in range(256))
_UTF16_32_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")


class NestingTooDeepError(yaml.MarkedYAMLError):
    """A document nests collections deeper than MAX_DEPTH."""


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping names the same key twice."""


class _NotPlain(Exception):
    """The document needs PyYAML's own constructor."""


def _too_deep(mark: Any) -> NestingTooDeepError:
    return NestingTooDeepError(
        problem=f"nesting deeper than {MAX_DEPTH} levels (objects of the Kubeflow releases nest at most 40)",
        problem_mark=mark,
    )


def check_nesting(data: str | bytes) -> None:
    """Raises NestingTooDeepError where the stream nests deeper than MAX_DEPTH, before libyaml composes it.

    A sound, cheap bound first: a block collection starts at most at column c of its line, where c counts
    the line's leading indentation and compact indicators, and nested block collections need a greater
    column at least every second level, so block nesting is at most 2 * (c + 1); flow collections cannot
    hold block ones, and each needs its own `[` or `{` since the last `---`. Only a stream whose bound is
    not below `_PARSER_SAFE_DEPTH` (never a rendered release: about 2,000 at most) is walked exactly, as
    libyaml's events, which its parser produces without recursing.
    """
    if len(data) < _PARSER_SAFE_DEPTH:
        return  # every level costs at least one character
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if raw.startswith(_UTF16_32_BOMS):
        _check_nesting_exactly(data)
        return
    marked = raw.translate(_SCAN_TABLE)
    # Runs of indentation and indicators are short in real manifests (at most 73 characters in the
    # releases), so the tighter bound usually holds; a longer run anywhere only costs the exact walk.
    for prefix_limit in (256, _PARSER_SAFE_DEPTH // 4):
        if b" " * prefix_limit not in marked:
            break
    else:
        _check_nesting_exactly(data)
        return
    block_bound = 2 * (prefix_limit + 1)
    flow_budget = _PARSER_SAFE_DEPTH - block_bound
    if marked.count(b"[") <= flow_budget:
        return
    start = 0
    while start < len(raw):
        end = raw.find(b"\n---", start + 1)
        end = len(raw) if end < 0 else end
        if marked.count(b"[", start, end) > flow_budget:
            _check_nesting_exactly(data)
            return
        start = end


def _check_nesting_exactly(data: str | bytes) -> None:
    depth = 0
    try:
        for event in yaml.parse(data, Loader=_BaseLoader):
            kind = event.__class__
            if kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
                depth += 1
                if depth > MAX_DEPTH:
                    raise _too_deep(event.start_mark)
            elif kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
                depth -= 1
    except NestingTooDeepError:
        raise
    except yaml.YAMLError:
        return  # the parse proper reports it, at the same place: up to there the nesting was within bounds


def _duplicate_key(first: Any, second: Any) -> DuplicateKeyError:
    """`first` and `second` are key nodes giving the same key (`1` and `true` do: 1 == True in Python)."""
    written = repr(second.value) if first.value == second.value else f"{second.value!r} (the same key as {first.value!r})"
    return DuplicateKeyError(
        "while constructing a mapping", first.start_mark,
        f"found duplicate key {written}, first at line {first.start_mark.line + 1}; only one of them would be used",
        second.start_mark,
    )


def _node_height(node: Any, limit: int) -> int:
    """Levels of collections in `node` (aliases followed), or more than `limit` if deeper or recursive."""
    heights: dict[int, int] = {}
    pending: list[tuple[Any, bool]] = [(node, False)]
    on_path: set[int] = set()
    while pending:
        current, done = pending.pop()
        if not isinstance(current, (MappingNode, SequenceNode)):
            continue
        key = id(current)
        children = [n for pair in current.value for n in pair] if isinstance(current, MappingNode) else current.value
        if done:
            on_path.discard(key)
            heights[key] = 1 + max((heights.get(id(c), 0) for c in children), default=0)
            if heights[key] > limit:
                return heights[key]
            continue
        if key in heights:
            continue
        if key in on_path:
            return limit + 1  # a recursive alias: the document contains itself
        on_path.add(key)
        pending.append((current, True))
        pending.extend((c, False) for c in children if id(c) not in heights)
    return heights.get(id(node), 0)


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
        except (_NotPlain, TypeError):
            # TypeError: an unhashable key, which PyYAML's constructor reports properly.
            if _node_height(node, MAX_DEPTH) > MAX_DEPTH:
                raise _too_deep(node.start_mark) from None
            return super().construct_document(node)

    def construct_mapping(self, node, deep=False):  # noqa: ANN001
        # PyYAML's own path (merge keys, tags): the mapping's own keys must be unique; merged ones may be
        # overridden, as YAML's merge key means.
        if isinstance(node, MappingNode):
            seen: dict[Any, Any] = {}
            for key_node, _value in node.value:
                if key_node.tag in _SPECIAL_KEY_TAGS:
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:
                    continue  # unhashable: PyYAML's constructor reports it
                if first is not key_node:
                    raise _duplicate_key(first, key_node)
        return super().construct_mapping(node, deep=deep)

    def _construct_plain(self, root: Any) -> Any:
        constructors = self.yaml_constructors
        # Aliases are the same node object: they must give the same Python object, as with PyYAML.
        built: dict[int, Any] = {}

        def build(node: Any, depth: int) -> Any:
            kind = node.__class__
            tag = node.tag
            if kind is ScalarNode:
                if tag == _STR:
                    return node.value
                if tag in _SCALAR_TAGS:
                    return constructors[tag](self, node)
                raise _NotPlain
            if depth > MAX_DEPTH:
                raise _too_deep(node.start_mark)
            known = built.get(id(node))
            if known is not None:
                # An alias: the shared collection sits here too, as deep as it goes from here.
                if depth + _node_height(node, MAX_DEPTH) - 1 > MAX_DEPTH:
                    raise _too_deep(node.start_mark)
                return known
            deeper = depth + 1
            if kind is MappingNode and tag == _MAP:
                mapping: dict = {}
                built[id(node)] = mapping
                for key_node, value_node in node.value:
                    if key_node.tag in _SPECIAL_KEY_TAGS:
                        raise _NotPlain
                    mapping[build(key_node, deeper)] = build(value_node, deeper)
                if len(mapping) != len(node.value):
                    self._refuse_duplicate(node, mapping)
                return mapping
            if kind is SequenceNode and tag == _SEQ:
                sequence: list = []
                built[id(node)] = sequence
                sequence.extend([build(item, deeper) for item in node.value])
                return sequence
            raise _NotPlain

        return build(root, 1)

    def _refuse_duplicate(self, node: Any, mapping: dict) -> None:
        seen: dict[Any, Any] = {}
        for key_node, _value in node.value:
            key = key_node.value if key_node.tag == _STR else self.yaml_constructors[key_node.tag](self, key_node)
            first = seen.setdefault(key, key_node)
            if first is not key_node:
                raise _duplicate_key(first, key_node)


def load_all(data: str | bytes) -> list[Any]:
    """Every document of a YAML stream, as `list(yaml.load_all(data, Loader=yaml.CSafeLoader))` gives them.

    Raises `yaml.YAMLError` exactly where PyYAML does, and also where a mapping repeats a key
    (`DuplicateKeyError`) or a document nests deeper than MAX_DEPTH (`NestingTooDeepError`).
    """
    check_nesting(data)
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
