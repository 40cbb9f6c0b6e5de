"""plan.json is json.dumps(indent=2, sort_keys=True, ensure_ascii=False) of the plan, byte for byte.

tools.plan.plan_json writes that layout itself (the library's indented encoder runs in Python), and
tools.plan.write_plan_json writes it to the file in slices; the library is the oracle here, on the four releases'
plans and on hostile values.
"""

from __future__ import annotations

import json
import math
import os
import random
from pathlib import Path

import pytest

from tests.plans import evaluated_plan
from tests.upstream import SUPPORTED_VERSIONS
import tools.plan
from tools.plan import plan_json, write_plan_json


def _library(value: object) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_a_release_plan_is_the_librarys_json(version: str) -> None:
    plan, _ = evaluated_plan("dev", version)
    assert plan_json(plan) == _library(plan)


_STRINGS = ["", " ", "a", "\"", "\\", "/", "\n", "\r\n", "\t", "\x00", "\x1f", "\x7f", "\u2028", "\ufeff", "é", "日本",
            "😀", "\ud800", "null", "[secret]", "{}", "[]", "a\"b\\c\nd"]
_SCALARS = [None, True, False, 0, -1, 2**80, -(2**70), 0.0, -0.0, 1.0, 0.1, 1e17, 1e-7, 2.5e-300, math.inf, -math.inf,
            math.nan, *_STRINGS]


def _hostile(rng: random.Random, depth: int = 0) -> object:
    roll = rng.random()
    if depth < 6 and roll < 0.25:
        return {rng.choice(_STRINGS) + str(rng.randint(0, 9)): _hostile(rng, depth + 1) for _ in range(rng.randint(0, 5))}
    if depth < 6 and roll < 0.45:
        return [_hostile(rng, depth + 1) for _ in range(rng.randint(0, 5))]
    return rng.choice(_SCALARS)


def test_hostile_values_are_the_librarys_json() -> None:
    rng = random.Random(28)
    for _ in range(2_000):
        value = {"root": _hostile(rng)}
        assert plan_json(value) == _library(value), repr(value)
    for scalar in _SCALARS:
        assert plan_json(scalar) == _library(scalar), repr(scalar)


def test_values_outside_json_are_left_to_the_library() -> None:
    # A tuple is a list to the library, a non-string key is converted after sorting: what the library does, unchanged.
    for value in ({"a": (1, 2)}, {1: "a", 2: "b"}, {"a": {3: [4]}}, {True: 1}):
        assert plan_json(value) == _library(value)


def _written(value: object, path: Path) -> str:
    write_plan_json(value, path)
    return path.read_bytes().decode("utf-8")


def test_plan_json_written_in_slices_is_the_librarys_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Batches of a few characters: slices split across batches, multi-byte characters at their edges.
    monkeypatch.setattr(tools.plan, "_WRITE_BATCH", 7)
    rng = random.Random(29)
    path = tmp_path / "plan.json"
    for _ in range(300):
        value = {"resources": [_hostile(rng) for _ in range(rng.randint(0, 4))], "outputs": _hostile(rng)}
        _assert_written(value, path)
    for value in (*_SCALARS, {}, [], {"a": (1, 2)}, {1: "a", 2: "b"}, {"resources": [{"a": {3: [4]}}]}):
        _assert_written(value, path)


def _assert_written(value: object, path: Path) -> None:
    expected = _library(value)
    try:
        expected.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate has no UTF-8: no plan.json, as before, and never a part of one.
        before = path.read_bytes() if path.exists() else None
        with pytest.raises(UnicodeEncodeError):
            write_plan_json(value, path)
        assert not path.exists() or path.read_bytes() == before
        return
    assert _written(value, path) == expected, repr(value)


def test_plan_json_written_over_another_text_is_the_new_text_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tools.plan, "_WRITE_BATCH", 16)
    path = tmp_path / "plan.json"
    plan = {"resources": [{"name": f"r{i}", "note": "é" * i} for i in range(20)], "stack": "dev"}
    text = _library(plan)
    for before in ("", text + "trailing bytes of a longer plan\n", text[:40], text[:200] + "X" + text[201:],
                   text.replace("dev", "prod"), "\x00" * 10_000):
        path.write_text(before, encoding="utf-8")
        assert _written(plan, path) == text, repr(before[:60])


def test_plan_json_holding_the_same_bytes_is_not_written_again(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    plan = {"resources": [{"name": "a"}], "outputs": {"url": "https://example.com/"}}
    write_plan_json(plan, path)
    os.utime(path, ns=(1, 1))
    write_plan_json(plan, path)
    assert path.stat().st_mtime_ns == 1
