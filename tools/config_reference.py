"""The config reference (docs/configuration.md), generated from the settings dataclasses' field docstrings.

`python -m tools.config_reference` prints it; `--check docs/configuration.md` exits 1 when the page's copy
(between the config-reference markers) is out of date.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import sys
import textwrap
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import config
from config.loader import camel, keys_of

BEGIN = "<!-- config-reference:begin -->"
END = "<!-- config-reference:end -->"


@functools.lru_cache(maxsize=None)
def field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings (the string literal under each field) of a dataclass."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, following in zip(body, body[1:]):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[node.target.id] = " ".join(following.value.value.split())
    return docs


def type_text(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if hint is str:
        return "string"
    if hint is bool:
        return "boolean"
    if hint is int:
        return "integer"
    if origin is Literal:
        return " \\| ".join(f"`{a}`" for a in typing.get_args(hint))
    if origin in (tuple, list):
        return f"list of {type_text(typing.get_args(hint)[0])}"
    if origin in (dict, typing.get_origin(typing.Mapping[str, str])):
        return "map of string"
    if origin in (Union, types.UnionType):
        return " or ".join(type_text(a) for a in typing.get_args(hint) if a is not type(None))
    if dataclasses.is_dataclass(hint):
        return "object"
    return str(hint)


def _default_text(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        value = f.default_factory()  # type: ignore[misc]
    else:
        return "required"
    if value is None:
        return "unset"
    if dataclasses.is_dataclass(value):
        return "see below"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, types.MappingProxyType):
        return f"`{dict(value)}`" if value else "`{}`"
    if isinstance(value, tuple):
        if value and dataclasses.is_dataclass(value[0]):
            return "see below"
        return "`[" + ", ".join(str(v) for v in value) + "]`"
    return f"`{value}`"


def rows(cls: type, prefix: str = "") -> list[tuple[str, str, str, str]]:
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    out: list[tuple[str, str, str, str]] = []
    for key, f in keys_of(cls).items():
        path = f"{prefix}{key}"
        hint = hints[f.name]
        out.append((path, type_text(hint), _default_text(f), docs.get(f.name, "")))
        nested = [a for a in (typing.get_args(hint) or (hint,)) if dataclasses.is_dataclass(a)]
        if typing.get_origin(hint) in (tuple, list):
            nested = [a for a in typing.get_args(hint) if dataclasses.is_dataclass(a)]
            suffix = "[]."
        else:
            suffix = "."
        for inner in nested:
            out += rows(inner, f"{path}{suffix}")
    return out


def render() -> str:
    lines = [BEGIN, "", "| key | type | default | what it does |", "| --- | --- | --- | --- |"]
    for path, type_, default, doc in rows(config.Settings):
        lines.append(f"| `{path}` | {type_} | {default} | {doc} |")
    lines += ["", "Secrets (`pulumi config set --secret <key> <value>`):", ""]
    for key, doc in config.SECRET_KEYS.items():
        lines.append(f"- `{key}`: {doc}")
    lines += ["", END]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--check"]:
        readme = Path(argv[1]).read_text()
        if render() not in readme:
            print(f"{argv[1]}: the config reference is out of date; run `make docs`", file=sys.stderr)
            return 1
        return 0
    if argv[:1] == ["--write"]:
        path = Path(argv[1])
        text = path.read_text()
        start, end = text.index(BEGIN), text.index(END) + len(END)
        path.write_text(text[:start] + render() + text[end:])
        return 0
    print(render())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
