"""Turns raw stack configuration (plain JSON-like data) into frozen settings dataclasses.

The dataclasses in this package are the schema: field names in snake_case are read from camelCase keys,
type hints say what is accepted, `setting(check=...)` adds per-field rules and a class's `cross_check`
method adds rules across fields. Every problem is collected with its key path
(`gpu.pools[1].maxSize: 2 is below minSize 3`) so the user sees all of them at once.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, Optional, Union

#: A check returns None when the value is fine, else a message that completes "<path>: ...".
Check = Callable[[Any], Optional[str]]

_MISSING = dataclasses.MISSING
#: The largest place a setting's text ends up is an object's annotations, 256 KiB for all of them together
#: (kubernetes/apimachinery@v0.31.0 pkg/api/validation/objectmeta.go:36); anything longer is a mistake.
MAX_STRING_CHARACTERS = 256 * 1024
_WHOLE_NUMBER = re.compile(r"^[+-]?[0-9]{1,18}$")


def setting(default: Any = _MISSING, *, check: Check | Iterable[Check] | None = None) -> Any:
    """A dataclass field with optional checks run after its type is known to be right."""
    checks: tuple[Check, ...]
    if check is None:
        checks = ()
    elif callable(check):
        checks = (check,)
    else:
        checks = tuple(check)
    metadata = {"checks": checks}
    if default is _MISSING:
        return dataclasses.field(metadata=metadata)
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple or types.MappingProxyType for defaults, settings are immutable")
    if isinstance(default, types.MappingProxyType):
        # Read-only, so one shared instance is safe; dataclasses only refuse it for being unhashable.
        return dataclasses.field(default_factory=lambda: default, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


@functools.lru_cache(maxsize=None)
def _type_hints(cls: type) -> dict[str, Any]:
    # Resolving a dataclass's string annotations costs more than building it: a thousand profiles
    # would resolve the same hints a thousand times.
    return typing.get_type_hints(cls)


def keys_of(cls: type) -> dict[str, dataclasses.Field]:
    """The config keys a settings dataclass accepts, mapped to their fields."""
    return {camel(f.name): f for f in dataclasses.fields(cls) if f.init and not f.metadata.get("internal")}


class Problems:
    """Collects `path: message` lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.lines.append(f"{path}: {message}" if path else message)

    def __bool__(self) -> bool:
        return bool(self.lines)


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"number {value}"
    if isinstance(value, str):
        return f"string {value!r}"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    return type(value).__name__


def _type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if hint is str:
        return "a string"
    if hint is bool:
        return "true or false"
    if hint is int:
        return "a whole number"
    if hint is float:
        return "a number"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if origin in (tuple, list):
        return "a list"
    if origin in (dict, Mapping) or hint is dict:
        return "an object"
    if dataclasses.is_dataclass(hint):
        return "an object"
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(hint) if a is not type(None))
    return str(hint)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def convert(hint: Any, raw: Any, path: str, problems: Problems) -> Any:
    """Converts `raw` to `hint`, recording problems; returns None when the value is unusable."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if raw is None:
            return None
        # Pick the first alternative whose shape fits, so errors speak about the right one.
        for option in options:
            if _shape_fits(option, raw):
                return convert(option, raw, path, problems)
        problems.add(path, f"expected {_type_name(hint)}, got {_describe(raw)}")
        return None
    if hint is Any:
        return raw
    if hint is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in ("true", "false"):
            # `pulumi config set key true` stores a string.
            return raw.lower() == "true"
        problems.add(path, f"expected true or false, got {_describe(raw)}")
        return None
    if hint is int:
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and _WHOLE_NUMBER.match(raw.strip()):
            # `pulumi config set key 5` stores a string; ASCII digits only ("²".isdigit() is true).
            return int(raw)
        if isinstance(raw, str) and re.match(r"^[+-]?[0-9]{19,}$", raw.strip()):
            problems.add(path, f"{raw.strip()[:24]}... ({len(raw.strip())} digits) is far too large")
            return None
        problems.add(path, f"expected a whole number, got {_describe(raw)}")
        return None
    if hint is float:
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            return float(raw)
        problems.add(path, f"expected a number, got {_describe(raw)}")
        return None
    if hint is str:
        if isinstance(raw, str):
            if len(raw) > MAX_STRING_CHARACTERS:
                problems.add(path, f"is {len(raw):,} characters; no setting takes more than {MAX_STRING_CHARACTERS:,}")
                return None
            return raw
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            # YAML reads an unquoted 26.03 as the number 26.03 (and 26.10 as 26.1).
            problems.add(path, f"expected a string, got {_describe(raw)}: YAML reads an unquoted number; "
                               f"quote it as written, like \"{raw}\"")
            return None
        problems.add(path, f"expected a string, got {_describe(raw)}")
        return None
    if origin is Literal:
        allowed = typing.get_args(hint)
        if raw in allowed:
            return raw
        close = difflib.get_close_matches(str(raw), [str(a) for a in allowed], n=1)
        hint_text = f" (did you mean {close[0]!r}?)" if close else ""
        problems.add(path, f"{raw!r} is not one of {', '.join(repr(a) for a in allowed)}{hint_text}")
        return None
    if origin in (tuple, list):
        (item_hint, *_rest) = typing.get_args(hint)
        if isinstance(raw, str) and item_hint is str:
            problems.add(path, f"expected a list of strings, got {_describe(raw)}; write [{raw!r}]")
            return None
        if not isinstance(raw, (list, tuple)):
            problems.add(path, f"expected a list, got {_describe(raw)}")
            return None
        items = [convert(item_hint, item, f"{path}[{i}]", problems) for i, item in enumerate(raw)]
        return tuple(items)
    if origin in (dict, Mapping) or origin is typing.get_origin(Mapping[str, str]):
        key_hint, value_hint = typing.get_args(hint)
        if not isinstance(raw, Mapping):
            problems.add(path, f"expected an object, got {_describe(raw)}")
            return None
        out = {}
        for key, value in raw.items():
            out[str(key)] = convert(value_hint, value, _join(path, str(key)), problems)
        return types.MappingProxyType(out)
    if dataclasses.is_dataclass(hint):
        return from_raw(hint, raw, path, problems)
    raise TypeError(f"settings type {hint!r} at {path} is not supported by the loader")


def _shape_fits(hint: Any, raw: Any) -> bool:
    origin = typing.get_origin(hint)
    if hint is str:
        return isinstance(raw, str)
    if hint is bool:
        return isinstance(raw, bool) or (isinstance(raw, str) and raw.lower() in ("true", "false"))
    if hint in (int, float):
        return isinstance(raw, (int, float)) and not isinstance(raw, bool)
    if origin in (tuple, list):
        return isinstance(raw, (list, tuple))
    if origin in (dict, Mapping) or dataclasses.is_dataclass(hint):
        return isinstance(raw, Mapping)
    if origin is Literal:
        return True
    return True


def from_raw(cls: type, raw: Any, path: str, problems: Problems, internal: Optional[Mapping[str, Any]] = None) -> Any:
    """Builds dataclass `cls` from a mapping, recording every problem under `path`; `internal`: values of its internal
    fields (never read from a stack file), set before its cross_check runs."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        problems.add(path, f"expected an object, got {_describe(raw)}")
        return None
    accepted = keys_of(cls)
    hints = _type_hints(cls)
    for key in raw:
        if key not in accepted:
            close = difflib.get_close_matches(str(key), list(accepted), n=1, cutoff=0.6)
            suggestion = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(sorted(accepted))}"
            problems.add(_join(path, str(key)), f"unknown key; {suggestion}")
    values: dict[str, Any] = {}
    broken = False
    for key, field in accepted.items():
        key_path = _join(path, key)
        if key in raw and raw[key] is not None:
            before = len(problems.lines)
            value = convert(hints[field.name], raw[key], key_path, problems)
            if len(problems.lines) > before:
                broken = True
                continue
            for check in field.metadata.get("checks", ()):
                message = check(value)
                if message:
                    problems.add(key_path, message)
                    broken = True
            values[field.name] = value
        elif field.default is not _MISSING:
            values[field.name] = field.default
        elif field.default_factory is not _MISSING:  # type: ignore[misc]
            values[field.name] = field.default_factory()  # type: ignore[misc]
        else:
            problems.add(key_path, "is required")
            broken = True
    if broken:
        return None
    instance = cls(**values, **(internal or {}))
    cross_check = getattr(instance, "cross_check", None)
    if cross_check is not None:
        for relative, message in cross_check():
            # An empty relative path is a problem of the object itself, not of one of its keys.
            problems.add(_join(path, relative) if relative else path, message)
    return instance
