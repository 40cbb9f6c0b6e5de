"""plan.json is json.dumps(indent=2, sort_keys=True, ensure_ascii=False) of the plan, byte for byte.

tools.plan.plan_json writes that layout itself (the library's indented encoder runs in Python); the library is
the oracle here, on the four releases' plans and on hostile values.
"""

from __future__ import annotations

import json
import math
import random

import pytest

from tests.plans import evaluated_plan
from tests.upstream import SUPPORTED_VERSIONS
from tools.plan import plan_json


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
