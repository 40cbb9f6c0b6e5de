"""The fast YAML loader gives exactly what PyYAML's safe loader gives: values, types, sharing and errors."""

from __future__ import annotations

import gc
import time

import pytest
import yaml

from manifests import yaml_loader
from tests.upstream import CURRENT_VERSION, PREVIOUS_VERSION, manifests_path

_REFERENCE = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def reference(data: str | bytes) -> list:
    return list(yaml.load_all(data, Loader=_REFERENCE))


def same(a: object, b: object) -> bool:
    """Equal with the same types all the way down (1 == True == 1.0 in Python, not in YAML).

    Iterative, and each pair of containers compared once, so recursive aliases and deep nesting work.
    """
    pending, compared = [(a, b)], set()
    while pending:
        x, y = pending.pop()
        if type(x) is not type(y):
            return False
        if isinstance(x, (dict, list, tuple)):
            if (id(x), id(y)) in compared:
                continue
            compared.add((id(x), id(y)))
            if len(x) != len(y):
                return False
            if isinstance(x, dict):
                if list(x) != list(y) or [type(k) for k in x] != [type(k) for k in y]:
                    return False
                pending.extend((x[k], y[k]) for k in x)
            else:
                pending.extend(zip(x, y))
        elif isinstance(x, float) and x != x:
            if y == y:
                return False
        elif x != y:
            return False
    return True


@pytest.mark.parametrize("version", [CURRENT_VERSION, PREVIOUS_VERSION])
def test_upstream_release_loads_exactly_as_pyyaml_loads_it(version):
    data = manifests_path(version).read_bytes()
    assert same(yaml_loader.load_all(data), reference(data))


SCALARS = """\
plain: text
quoted: "123"
single: '0x1F'
ints: [0, -7, 0o17, 017, 0x1F, 1_000, 190:20:30]
floats: [1.5, -.inf, .NaN, 6.8523015e+5, 1e3]
bools: [yes, No, on, OFF, true, False, y, n]
nulls: [~, null, Null, ""]
empty:
timestamps: [2001-12-14t21:59:43.10-05:00, 2002-12-14]
tagged: [!!str 123, !!int "7", !!float "1", !!bool "yes", !!null "", !!binary aGVsbG8=]
block: |
  two
  lines
folded: >
  one
  line
keys: {1: int, 1.5: float, null: none, "1": str}
bool_keys: {true: bool, false: other}
"""

STRUCTURES = """\
base: &base {a: 1, b: [1, 2]}
same: *base
list: &items [x, y]
again: *items
merged:
  <<: *base
  c: 3
merged_list:
  <<: [*base, {d: 4}]
set: !!set {a, b}
omap: !!omap [{one: 1}, {two: 2}]
pairs: !!pairs [{one: 1}, {one: 2}]
---
---
# only a comment
---
just a string
---
42
"""


@pytest.mark.parametrize("text", [SCALARS, STRUCTURES], ids=["scalars", "structures"])
def test_every_yaml_shape_gives_what_pyyaml_gives(text):
    assert same(yaml_loader.load_all(text), reference(text))
    assert same(yaml_loader.load_all(text.encode()), reference(text.encode()))


def test_aliases_are_the_same_object_as_with_pyyaml():
    (doc, *_rest) = yaml_loader.load_all(STRUCTURES)
    assert doc["same"] is doc["base"] and doc["again"] is doc["list"]


def test_nesting_up_to_the_limit_loads_like_pyyaml():
    depth = yaml_loader.MAX_DEPTH
    for text in ("[" * depth + "]" * depth, "".join("  " * i + "-\n" for i in range(depth - 1)) + "  " * (depth - 1) + "- x\n"):
        assert same(yaml_loader.load_all(text), reference(text))


def _error(text: str | bytes) -> yaml.MarkedYAMLError:
    with pytest.raises(yaml.MarkedYAMLError) as caught:
        yaml_loader.load_all(text)
    return caught.value


@pytest.mark.parametrize("text,line", [
    ("a: 1\nb: " + "[" * 101 + "]" * 101 + "\n", 2),
    ("data:\n  x: " + "[" * 50_000 + "\n", 2),  # libyaml alone dies of this one (SIGSEGV)
    ("data:\n  x: " + "{a: " * 50_000 + "1" + "}" * 50_000 + "\n", 2),
    ("- " * 30_000 + "x\n", 1),
    ("".join("  " * i + "-\n" for i in range(200)), 101),
    ("base: &b " + "[" * 60 + "]" * 60 + "\nuse: " + "[" * 60 + "*b" + "]" * 60 + "\n", 1),
    ("- &self [1, *self]\n", 1),
    ("a: !!set " + "{" * 150 + "}" * 150 + "\n", 1),
])
def test_nesting_deeper_than_the_limit_is_refused_with_its_line(text, line):
    for data in (text, text.encode()):
        error = _error(data)
        assert isinstance(error, yaml_loader.NestingTooDeepError), error
        assert error.problem_mark.line + 1 == line
        assert f"nesting deeper than {yaml_loader.MAX_DEPTH} levels" in error.problem


def test_a_deep_stream_in_a_large_file_is_found_by_the_exact_walk():
    # Many flow collections (past the cheap bound) but shallow: accepted; one deep one among them: refused.
    shallow = "---\nitems: [" + ", ".join("{a: [1]}" for _ in range(3000)) + "]\n"
    assert len(yaml_loader.load_all(shallow)) == 1
    error = _error(shallow + "---\nx: " + "[" * 3000 + "]" * 3000 + "\n")
    assert isinstance(error, yaml_loader.NestingTooDeepError) and error.problem_mark.line + 1 == 4


@pytest.mark.parametrize("text,message,line", [
    ("image: ghcr.io/kubeflow/kfp-frontend:2.5.0\nimage: docker.io/evil/kfp-frontend:latest\n",
     "found duplicate key 'image', first at line 1", 2),
    ("spec:\n  a: 1\n  b: 2\n  a: 3\n", "found duplicate key 'a', first at line 2", 4),
    ("{1: int, true: bool}\n", "found duplicate key 'true' (the same key as '1'), first at line 1", 1),
    ("base: &b {a: 1}\nm:\n  <<: *b\n  c: 1\n  c: 2\n", "found duplicate key 'c', first at line 4", 5),
])
def test_a_key_written_twice_is_refused_with_both_lines(text, message, line):
    for data in (text, text.encode()):
        error = _error(data)
        assert isinstance(error, yaml_loader.DuplicateKeyError)
        assert message in error.problem and error.problem_mark.line + 1 == line


def test_a_merge_key_may_still_be_overridden():
    (doc,) = yaml_loader.load_all("base: &b {a: 1, c: 0}\nm:\n  <<: *b\n  c: 2\n")
    assert doc["m"] == {"a": 1, "c": 2}


def test_the_nesting_scan_is_cheap_on_a_release():
    data = manifests_path(CURRENT_VERSION).read_bytes()
    started = time.process_time()
    yaml_loader.check_nesting(data)
    scan = time.process_time() - started
    started = time.process_time()
    yaml_loader.load_all(data)
    parse = time.process_time() - started
    # About 4 % of the parse (0.03 s of 0.7 s); a fifth would mean the exact walk ran on a release.
    assert scan < parse / 5, (scan, parse)


@pytest.mark.parametrize("text", [
    "a: [unclosed\n",
    "a: 1\n b: 2\n",
    "? [1, 2]\n: unhashable key\n",
    "a: !!omap not-a-sequence\n",
    "a: !corp/unknown-tag 1\n",
    "---\nok: 1\n---\nbad: {\n",
])
def test_errors_are_pyyaml_errors_at_the_same_place(text):
    with pytest.raises(yaml.YAMLError) as expected:
        reference(text)
    with pytest.raises(yaml.YAMLError) as actual:
        yaml_loader.load_all(text)
    assert type(actual.value) is type(expected.value) and str(actual.value) == str(expected.value)


def test_the_collector_is_paused_only_while_loading():
    assert gc.isenabled()
    yaml_loader.load_all("a: 1\n")
    assert gc.isenabled()
    gc.disable()
    try:
        yaml_loader.load_all("a: 1\n")
        assert not gc.isenabled()  # a caller that turned it off keeps it off
    finally:
        gc.enable()


# --- several cores ------------------------------------------------------------------------------------


def many_documents(count: int = 14000, extra: str = "") -> bytes:
    docs = [f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm-{i}}}\ndata: {{k: 'v{i}', n: '{i}'}}\n" for i in range(count)]
    text = "---\n".join(docs) + extra
    assert len(text) >= yaml_loader.MIN_PARALLEL_BYTES
    return text.encode()


@pytest.mark.parametrize("helpers", [1, 3])
def test_a_release_parsed_on_several_cores_is_the_same(helpers):
    data = manifests_path(CURRENT_VERSION).read_bytes()
    assert len(yaml_loader.split_at_documents(data, helpers + 1)) == helpers + 1
    assert same(yaml_loader.load_all_parallel(data, helpers=helpers), reference(data))


def test_streams_are_cut_only_before_document_markers():
    text = b"a: |\n  ---\n  x\n---x: 1\n--- \nb: 2\n---\nc: 3\n...\n---\t\nd: [4]\n"
    for parts in range(2, 6):
        pieces = yaml_loader.split_at_documents(text, parts)
        assert b"".join(pieces) == text
        assert all(piece.startswith(b"---") for piece in pieces[1:])
        assert same([doc for piece in pieces for doc in reference(piece)], reference(text))
    assert yaml_loader.split_at_documents("a: 1\n---\nb: 2\n".encode("utf-16"), 2) == ["a: 1\n---\nb: 2\n".encode("utf-16")]


@pytest.mark.parametrize("tail", [
    "---\nbroken: [unclosed\n",        # an error in a helper's part: PyYAML's error, with the stream's line
    "---\nwhen: 2024-01-01\n",         # a value marshal cannot carry back from a helper
])
def test_a_part_that_fails_means_one_ordinary_parse(tail):
    data = many_documents(extra=tail)
    try:
        expected = reference(data)
    except yaml.YAMLError as error:
        with pytest.raises(yaml.YAMLError) as actual:
            yaml_loader.load_all_parallel(data, helpers=1)
        assert str(actual.value) == str(error)
    else:
        assert same(yaml_loader.load_all_parallel(data, helpers=1), expected)


@pytest.mark.parametrize("executable", ["/bin/false", "/nonexistent/python"])
def test_helpers_that_cannot_run_mean_one_ordinary_parse(monkeypatch, executable):
    data = many_documents()
    monkeypatch.setattr(yaml_loader.sys, "executable", executable)
    assert same(yaml_loader.load_all_parallel(data, helpers=2), reference(data))
