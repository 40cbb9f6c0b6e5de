"""The manifests' YAML: PyYAML's text, written without building PyYAML's nodes where the text is certain.

The manifests under build/<stack>/manifests/ are `yaml.dump_all` of the objects with libyaml's emitter, sorted
keys, block style, and multi-line strings as literal blocks (`pyyaml_dump_all`). That is the definition of the
files' bytes. PyYAML spends nearly all of its time in Python before libyaml sees anything: one node per value,
and the resolver's regular expressions run twice on every string (1,000 profiles: about 2.6 s of CPU for
19 MB). The plan holds only plain JSON data (dict, list, str, int, float, bool, None), whose block layout is
fixed, so `dump_all` writes that layout itself and asks PyYAML only how each distinct string is spelt, once:

- a string of ASCII letters, digits and punctuation that libyaml writes plain (no indicator where it matters,
  no `: ` or ` #`, no leading or trailing space) and that PyYAML's own resolver reads back as a string is
  written plain, as it is;
- a multi-line string that the literal style may hold (libyaml's conditions: every character printable, no
  space before a line break, no trailing space; our representer's: no tab, no carriage return) is written as a
  literal block with libyaml's indentation and chomping hints;
- any other string, and every float, is dumped alone by PyYAML and its spelling kept for the rest of the
  call; a spelling that is not one line (a complex key, a folded long string) is not reused.

Whatever the layout cannot prove equal (another type, a dict or list appearing twice in one object, which
PyYAML writes as an anchor and alias, a key that is not a string, a keep-chomped literal block, a string long
enough that libyaml would fold it at the width, nesting deep enough to reach the width) sends that object to
PyYAML alone, its text put in the stream where PyYAML would have written it (a root that is not a mapping sends
the whole stream). Without libyaml (PyYAML's pure-Python emitter spells some scalars differently) everything goes to
PyYAML. tests/test_manifest_yaml.py holds the equality on every object of four releases' plans and on
hostile strings.

libyaml's rules, as the PyYAML wheel bundles them (yaml/libyaml@0.2.5): src/emitter.c:1501
`yaml_emitter_analyze_scalar` (which characters allow the plain and the literal style), src/emitter.c:1187 (a
simple key is at most 128 characters), src/emitter.c:2207 `yaml_emitter_write_block_scalar_hints` (the `2` and
`-` hints; keep chomping leaves the stream open-ended), src/emitter.c:666 (`...` only at the end of an open-ended
stream, and nothing carried from one document to the next), src/yaml_private.h:261 (the printable characters).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import yaml

_LIBYAML = hasattr(yaml, "CSafeDumper")


class ManifestDumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """Block style, multi-line strings as literal blocks (ConfigMaps stay readable)."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value and not any(c in value for c in "\r\t") and value == value.rstrip(" ") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


ManifestDumper.add_representer(str, _represent_str)

#: The width PyYAML is given: past it libyaml folds plain and quoted scalars at a space.
WIDTH = 10_000


def pyyaml_dump_all(documents: Iterable[Any]) -> str:
    """The manifests' YAML as PyYAML writes it: the definition of the files' bytes."""
    return yaml.dump_all(list(documents), Dumper=ManifestDumper, sort_keys=True, default_flow_style=False,
                         allow_unicode=True, width=WIDTH)


# A scalar libyaml writes plain in block context whatever its place (key, value, item), if the resolver agrees:
# ASCII only, first character no indicator (`-` only before a non-space, not `---`/`...`), no `: ` or ` #`,
# no trailing `:`, no leading or trailing space.
_PLAIN = re.compile(r"(?!---|\.\.\.)(?:[A-Za-z0-9_./(=+$^~;<\\]|-(?=[^ ]))"
                    r"(?:[A-Za-z0-9_./()=+$^~;<>\\,?\[\]{}&*!|'\"%@`-]|:(?=[^ ])|[ ](?=[^ #]|[ ]+[^ #]))*\Z")
# Characters a literal block holds as they are (libyaml's printable set; no line break but `\n`, no BOM).
_LITERAL_UNSAFE = re.compile("[^\n\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd]")
_STR = "tag:yaml.org,2002:str"
#: Scalars longer than this (written on one line) could reach the width, where libyaml folds: left to PyYAML.
_MAX_SCALAR = 8_000
#: A deeper indentation could push a scalar past the width: left to PyYAML.
_MAX_INDENT = 1_000
#: libyaml writes a longer key as a complex key (`? key`).
_MAX_SIMPLE_KEY = 120


class _Unprovable(Exception):
    """A value whose spelling the layout below cannot prove equal to PyYAML's."""


class _Literal(tuple):
    """A literal block: its header (`|-`, `|2-`, ...) and its lines, without indentation."""


class _Writer:
    """Writes documents in PyYAML's block layout; one per stream of files, so spellings are learnt once."""

    def __init__(self) -> None:
        self._resolver = yaml.resolver.Resolver()
        self._keys: dict[str, str] = {}
        self._values: dict[str, str | _Literal] = {}
        self._floats: dict[str, str] = {}
        #: How many objects were written by PyYAML (the tests hold that a real plan's are few).
        self.left_to_pyyaml = 0

    # --- Scalars -----------------------------------------------------------------------------------

    def _resolves_to_str(self, value: str) -> bool:
        return self._resolver.resolve(yaml.ScalarNode, value, (True, False)) == _STR

    def _pyyaml_value(self, value: Any) -> str:
        text = pyyaml_dump_all([{"k": value}])
        # One line, by every line break Python knows (libyaml breaks single-quoted strings at U+2028 too).
        if not text.startswith("k: ") or len(text.splitlines()) != 1 or len(text) > _MAX_SCALAR:
            raise _Unprovable
        return text[3:-1]

    def key(self, key: Any) -> str:
        if type(key) is not str:
            raise _Unprovable
        if len(key) <= _MAX_SIMPLE_KEY and _PLAIN.match(key) and self._resolves_to_str(key):
            spelt = key
        else:
            text = pyyaml_dump_all([{key: 0}])
            if not text.endswith(": 0\n") or len(text.splitlines()) != 1 or text.startswith("? "):
                raise _Unprovable
            spelt = text[:-4]
        self._keys[key] = spelt
        return spelt

    def value(self, value: str) -> str | _Literal:
        if len(value) > _MAX_SCALAR and "\n" not in value:
            raise _Unprovable
        spelt: str | _Literal | None = None
        if _PLAIN.match(value) and self._resolves_to_str(value):
            spelt = value
        elif "\n" in value:
            spelt = self._literal(value)
        if spelt is None:
            spelt = self._pyyaml_value(value)
        self._values[value] = spelt
        return spelt

    @staticmethod
    def _literal(value: str) -> _Literal | None:
        """The literal block of `value`, if both our representer and libyaml choose one and we know its hints."""
        if ("\r" in value or "\t" in value or value.endswith(" ") or " \n" in value
                or _LITERAL_UNSAFE.search(value)):
            return None  # quoted by libyaml (no literal block may hold it): PyYAML spells it
        if value.endswith("\n\n") or value == "\n":
            # Keep chomping (`|+`) leaves the stream open-ended: libyaml may close it with `...`.
            raise _Unprovable
        header = "|" + ("2" if value[0] in " \n" else "") + ("" if value.endswith("\n") else "-")
        return _Literal((header, (value[:-1] if value.endswith("\n") else value).split("\n")))

    def float_(self, value: float) -> str:
        spelt = self._floats.get(repr(value))
        if spelt is None:
            spelt = self._floats[repr(value)] = self._pyyaml_value(value)
        return spelt

    def _scalar(self, value: Any) -> str | _Literal:
        """A value that is no dict or list: its spelling after `key: ` or `- `."""
        kind = type(value)
        if kind is str:
            spelt = self._values.get(value)
            return spelt if spelt is not None else self.value(value)
        if value is None:
            return "null"
        if kind is bool:
            return "true" if value else "false"
        if kind is int:
            return str(value)
        if kind is float:
            return self.float_(value)
        raise _Unprovable

    # --- Blocks ------------------------------------------------------------------------------------

    def mapping(self, mapping: dict, indent: int, lead: str, out: list[str], seen: set[int]) -> None:
        """`mapping` (not empty) with its keys at `indent`; the first line starts with `lead`."""
        if indent > _MAX_INDENT:
            raise _Unprovable
        pad = " " * indent
        keys, values = self._keys, self._values
        for key in sorted(mapping):
            spelt = keys.get(key)  # only strings are learnt
            if spelt is None:
                spelt = self.key(key)
            value = mapping[key]
            kind = type(value)
            if kind is str:
                scalar = values.get(value) or self.value(value)
            elif kind is dict or kind is list:
                identity = id(value)
                if identity in seen:
                    raise _Unprovable  # PyYAML writes an anchor and an alias
                seen.add(identity)
                if not value:
                    out.append(f"{lead}{spelt}: {{}}\n" if kind is dict else f"{lead}{spelt}: []\n")
                elif kind is dict:
                    out.append(f"{lead}{spelt}:\n")
                    self.mapping(value, indent + 2, pad + "  ", out, seen)
                else:
                    # A sequence in a mapping is not indented (libyaml's indentless sequence).
                    out.append(f"{lead}{spelt}:\n")
                    self.sequence(value, indent, pad, out, seen)
                lead = pad
                continue
            else:
                scalar = self._scalar(value)
            if type(scalar) is _Literal:
                self._write_literal(f"{lead}{spelt}: ", scalar, indent + 2, out)
            else:
                out.append(f"{lead}{spelt}: {scalar}\n")
            lead = pad

    def sequence(self, sequence: list, indent: int, lead: str, out: list[str], seen: set[int]) -> None:
        """`sequence` (not empty) with its dashes at `indent`; the first line starts with `lead`."""
        if indent > _MAX_INDENT:
            raise _Unprovable
        pad = " " * indent
        values = self._values
        for item in sequence:
            kind = type(item)
            if kind is str:
                scalar = values.get(item) or self.value(item)
            elif kind is dict or kind is list:
                identity = id(item)
                if identity in seen:
                    raise _Unprovable
                seen.add(identity)
                if not item:
                    out.append(f"{lead}- {{}}\n" if kind is dict else f"{lead}- []\n")
                elif kind is dict:
                    self.mapping(item, indent + 2, lead + "- ", out, seen)
                else:
                    self.sequence(item, indent + 2, lead + "- ", out, seen)
                lead = pad
                continue
            else:
                scalar = self._scalar(item)
            if type(scalar) is _Literal:
                self._write_literal(f"{lead}- ", scalar, indent + 2, out)
            else:
                out.append(f"{lead}- {scalar}\n")
            lead = pad

    @staticmethod
    def _write_literal(start: str, literal: _Literal, indent: int, out: list[str]) -> None:
        header, lines = literal
        pad = " " * indent
        out.append(f"{start}{header}\n")
        # libyaml indents each line of the block, and writes an empty line as nothing at all.
        out.append("".join(f"{pad}{line}\n" if line else "\n" for line in lines))

    def stream(self, documents: list[Any]) -> str:
        if any(type(document) is not dict or not document for document in documents):
            # Another root is written on the `---` line itself: the whole stream is PyYAML's.
            raise _Unprovable
        out: list[str] = []
        last = len(documents) - 1
        for index, document in enumerate(documents):
            mark = len(out)
            try:
                self.mapping(document, 0, "---\n" if index else "", out, {id(document)})
            except _Unprovable:
                # This object alone is PyYAML's. libyaml carries nothing from one document to the next but
                # whether the stream is open-ended (after a keep-chomped block): it writes `...` at the end of
                # the stream, not between documents, whose `---` follows directly.
                del out[mark:]
                self.left_to_pyyaml += 1
                text = pyyaml_dump_all([document])
                if index < last and text.endswith("\n...\n"):
                    text = text[:-4]
                out.append(("---\n" if index else "") + text)
        return "".join(out)


class ManifestWriter:
    """`dump_all` for many streams in a row (the files of one plan), learning each string's spelling once."""

    def __init__(self) -> None:
        self._writer = _Writer()

    def dump_all(self, documents: Iterable[Any]) -> str:
        """Exactly `pyyaml_dump_all(documents)`."""
        documents = list(documents)
        if not _LIBYAML or not documents:
            self._writer.left_to_pyyaml += len(documents)
            return pyyaml_dump_all(documents)
        try:
            return self._writer.stream(documents)
        except _Unprovable:
            self._writer.left_to_pyyaml += len(documents)
            return pyyaml_dump_all(documents)

    @property
    def objects_left_to_pyyaml(self) -> int:
        """Objects this writer could not prove and PyYAML wrote."""
        return self._writer.left_to_pyyaml
