"""The manifests' YAML is PyYAML's, byte for byte: on every object of the four releases' plans and on hostile data.

tools.manifest_yaml writes the block layout itself and asks PyYAML only how each distinct string is spelt;
PyYAML with the preview's options (`pyyaml_dump_all`) is the oracle here.
"""

from __future__ import annotations

import math
import random

import pytest

from tests.plans import evaluated_plan
from tests.upstream import SUPPORTED_VERSIONS, upstream_objects
from tools.manifest_yaml import ManifestWriter, pyyaml_dump_all
from tools.plan import kubernetes_objects, manifest_files


def _same_as_pyyaml(documents: list) -> None:
    writer = ManifestWriter()
    assert writer.dump_all(documents) == pyyaml_dump_all(documents)


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_every_file_of_a_release_plan_is_pyyamls_text(version: str) -> None:
    plan, _ = evaluated_plan("dev", version)
    found = kubernetes_objects(plan)
    by_file: dict[str, list[dict]] = {}
    for obj in found.objects:
        by_file.setdefault(obj.file, []).append(obj.obj)
    files = manifest_files(found)
    assert sorted(files) == sorted(by_file)
    for name, objects in by_file.items():
        text = files[name]
        assert text[text.index("\n") + 1:] == pyyaml_dump_all(objects), name


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_every_upstream_object_alone_is_pyyamls_text(version: str) -> None:
    # Each object as its own stream too: a difference inside a long file could hide behind another.
    writer = ManifestWriter()
    for obj in upstream_objects(version):
        assert writer.dump_all([obj]) == pyyaml_dump_all([obj]), f"{obj.get('kind')} {obj.get('metadata', {}).get('name')}"


def test_the_plans_objects_are_written_without_pyyamls_nodes() -> None:
    # Speed is the point: nearly every object of a real plan is written by the layout, not left to PyYAML.
    plan, _ = evaluated_plan("dev")
    objects = [o.obj for o in kubernetes_objects(plan).objects]
    writer = ManifestWriter()
    writer.dump_all(objects)
    assert writer.objects_left_to_pyyaml <= len(objects) // 100, writer.objects_left_to_pyyaml


# --- Hostile data --------------------------------------------------------------------------------------

#: Pieces PyYAML's resolver or libyaml's scalar analysis treat specially.
_ATOMS = [
    "a", "Z", "0", "7", "-", "--", "---", "...", ".", "_", "/", ":", ": ", " :", "#", " #", "# ", "'", '"', "''",
    "?", "? ", "!", "&", "*", "|", ">", "%", "@", "`", ",", "[", "]", "{", "}", "=", "<<", "~", "+", "\\",
    " ", "  ", "\t", "\n", "\n\n", "\r", "\r\n", "\x85", "\u2028", "\u2029", "\ufeff", "\x00", "\x07", "\x7f",
    "é", "ü", "ß", "日本", "\u00a0", "\ud7ff", "\ue000", "\ufffd", "😀", "\U0010ffff",
    "yes", "no", "on", "off", "y", "n", "Yes", "NO", "true", "False", "TRUE", "null", "Null", "NULL",
    "0x1F", "0o17", "017", "0b101", "1e3", "1E3", "1.5", "-1.5", "+12", "1_000", "1:20", "190:20:30", ".inf",
    "-.inf", ".NaN", ".nan", "2001-12-14", "2001-12-14t21:59:43.10-05:00", "2002-12-14 21:59:43.10 -5",
    "http://example.com:8080/a#b", "image:tag", "key=value", "--flag=1", "$(VAR)", "${VAR}", "%{x}",
]

_WORDS = ["yes", "no", "off", "ON", "null", "~", "0x1F", "1e3", ".inf", "2001-12-14", "<<", "=", "", " ", "-", "- a",
          "? x", ": x", "x:", "x: y", "a #b", "a#b", "'q'", '"q"', "@x", "`x", "%x", "!x", "&x", "*x", "|x", ">x",
          "---", "--- x", "...", "... x", "#c", "\n", "\na", "a\n", "a\n\n", "\n\n", " a\nb", "a \nb", "a\n b",
          "a\n\nb\n", "\ta\nb", "a\r\nb", "a\x85b", "a\u2028b", "\ufeffa", "é\nü", "😀\nx", "x\n😀"]


def _hostile_strings(rng: random.Random, count: int) -> list[str]:
    strings = list(_WORDS) + list(_ATOMS)
    for _ in range(count):
        strings.append("".join(rng.choice(_ATOMS) for _ in range(rng.randint(1, 8))))
    # Past libyaml's width (10,000) plain and quoted scalars are folded at a space; literal blocks are not.
    long_word = "word " * 2_100
    strings += [long_word.strip(), long_word, "x" * 12_000, "'" + long_word, long_word.replace(" ", "\n"),
                "é " * 5_000, "a: " * 3_000, "line\n" * 3_000, ("q\t" * 4_000).strip()]
    return strings


def _hostile_document(rng: random.Random, strings: list[str], depth: int = 0) -> dict:
    document: dict = {}
    for _ in range(rng.randint(1, 5)):
        key = rng.choice(strings) if rng.random() < 0.5 else f"k{rng.randint(0, 99)}"
        document[key] = _hostile_value(rng, strings, depth + 1)
    return document


def _hostile_value(rng: random.Random, strings: list[str], depth: int) -> object:
    roll = rng.random()
    if depth < 5 and roll < 0.2:
        return _hostile_document(rng, strings, depth)
    if depth < 5 and roll < 0.35:
        return [_hostile_value(rng, strings, depth + 1) for _ in range(rng.randint(0, 4))]
    if roll < 0.4:
        return rng.choice([{}, [], None, True, False, 0, -1, 2**70, 1.0, 0.1, -0.0, 1e17, 1e-5, 2.5e-300,
                           math.inf, -math.inf, math.nan])
    return rng.choice(strings)


def test_hostile_strings_are_pyyamls_text_as_values_keys_and_items() -> None:
    rng = random.Random(28)
    strings = _hostile_strings(rng, 3_000)
    writer = ManifestWriter()
    for text in strings:
        documents = [{"value": text}, {text: "key"}, {"items": [text, [text], {"in": text}]},
                     {"deep": {"er": {"still": [[{"x": text}]]}}}]
        assert writer.dump_all(documents) == pyyaml_dump_all(documents), repr(text)


def test_hostile_documents_are_pyyamls_text_alone_and_in_streams() -> None:
    rng = random.Random(2803)
    strings = _hostile_strings(rng, 400)
    documents = [_hostile_document(rng, strings) for _ in range(600)]
    writer = ManifestWriter()
    for document in documents:
        assert writer.dump_all([document]) == pyyaml_dump_all([document]), repr(document)
    for start in range(0, len(documents), 7):
        stream = documents[start:start + rng.randint(2, 9)]
        assert writer.dump_all(stream) == pyyaml_dump_all(stream), repr(stream)


def test_shapes_pyyaml_writes_otherwise_are_left_to_it() -> None:
    shared = {"a": 1}
    kept = "kept\n\n"  # a keep-chomped literal block: libyaml ends the stream with `...`
    cases = [
        [{"one": shared, "two": shared}],  # one dict twice in an object: an anchor and an alias
        [{"x": shared}, {"y": shared}],  # in two objects: no alias
        [{1: "int key", 2: "b"}],
        [{"a": kept}, {"b": 1}],
        [{"b": 1}, {"a": kept}],
        [{"a": kept}],
        [{"a": [kept, kept]}, {"b": {"c": kept}}, {"d": kept}],
        [{"a": 1}, "a root scalar", {"b": 2}],
        [{}, {"a": 1}],
        [{"a": 1}, []],
        [{"k" * 200: 1, "k" * 121: 2, "k" * 119: 3}],  # past 128 characters libyaml writes `? key`
    ]
    nested: dict = {"leaf": "x " * 10}
    for _ in range(60):
        nested = {"n": nested}
    cases.append([nested])  # deep enough that the indentation (two spaces a level) passes the width of 80
    for documents in cases:
        _same_as_pyyaml(documents)
