"""Generated bad inputs: every one is a clear refusal naming the key or the file, never a traceback, a crash
or a hang.

Seeded (`random.Random(SEED)`), so a failure names a case that reproduces. Stack files are the real dev and
prod files with one mutation each, chosen by walking the settings schema alongside the file: a wrong type,
an out-of-range number, a number written with other digits, a required key removed, an unknown key added,
an entry listed twice, a huge string, a bad data-lake prefix or source range, a secret in clear, or, in
the text itself, a key written twice or a value nested deep. Manifests are a small valid release with one
mutation each: malformed YAML, documents of the wrong shape or kind, deep nesting, duplicate keys, fields of
the wrong type, and a large file broken at its end. Each case runs the offline preview in this process
(settings loader and program under the mock runtime); a handful run as `python -m tools.preview` processes,
which proves the exit status and that nothing kills the interpreter.
"""

from __future__ import annotations

import copy
import dataclasses
import random
import time
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, Union

import pytest
import yaml

import config
from config.fleet import KUBEFLOW_STACK_KEYS
from config.loader import _type_hints, keys_of
from tests.stack_files import copy_program, preview_in_process, preview_process, stack_document, write_stack

SEED = 20261201
STACK_CASES = 220
MANIFEST_CASES = 26
#: No case may take longer than this (a hang shows as a slow case, not a stuck CI job).
CASE_SECONDS = 20.0
PROJECT = "kubeflow-platform"


# ------------------------------------------------------------------------------------------- stack files

@dataclasses.dataclass
class Node:
    """A value present in a stack file, the settings type it must have, and where it sits."""

    path: str
    hint: Any
    parent: Any
    key: Any


def _options(hint: Any) -> list:
    if typing.get_origin(hint) in (Union, types.UnionType):
        return [a for a in typing.get_args(hint) if a is not type(None)]
    return [hint]


def _walk(cls: type, raw: Mapping, path: str) -> Iterator[Node]:
    hints = _type_hints(cls)
    for key, field in keys_of(cls).items():
        if key not in raw or raw[key] is None:
            continue
        hint = hints[field.name]
        child = f"{path}.{key}" if path else key
        yield Node(child, hint, raw, key)
        yield from _below(hint, raw[key], child)


def _below(hint: Any, value: Any, path: str) -> Iterator[Node]:
    for option in _options(hint):
        if dataclasses.is_dataclass(option) and isinstance(value, Mapping):
            yield from _walk(option, value, path)
        elif typing.get_origin(option) in (tuple, list) and isinstance(value, list):
            (item,) = typing.get_args(option)[:1]
            for i, element in enumerate(value):
                yield Node(f"{path}[{i}]", item, value, i)
                yield from _below(item, element, f"{path}[{i}]")


def _kind(hint: Any) -> str:
    options = _options(hint)
    if len(options) > 1:
        return "union"
    hint = options[0]
    origin = typing.get_origin(hint)
    if hint in (int, bool, str):
        return hint.__name__
    if origin is Literal:
        return "literal"
    if origin in (tuple, list):
        return "list"
    if dataclasses.is_dataclass(hint):
        return "object"
    if origin in (dict, Mapping) or origin is typing.get_origin(Mapping[str, str]):
        return "mapping"
    return "other"


WRONG_TYPES = {
    "int": ["twelve", [1], {"a": 1}, 1.5, True],
    "bool": ["maybe", 3, [True], {"a": True}],
    "str": [5, [1, 2], {"a": "b"}, 2.5, False],
    "literal": ["not-an-option", 7, ["a"]],
    "list": [5, {"a": 1}, True],
    "object": [5, "text", ["a"], True],
    "mapping": [5, ["a", "b"], "text"],
    "union": [5.5, True, ["a"]],
}
# Each is refused by the whole-number rule whatever the field (no range check has a say).
BAD_WHOLE_NUMBERS = ["²", "٣", "--5", "5.0", "0x10", "1_000", "", " ", "1e3", "9" * 30]
OUT_OF_RANGE = [-1, -100, 10**12, 2**63]
BAD_PREFIXES = ["/", "//", "profiles/*", "profiles/a?c", "profiles/${aws:username}", "p" * 1200, "a/../b", "a//b",
                " ", "profiles/ali ce", "profiles/é"]
BAD_CIDRS = [["0.0.0.0/0"], ["0.0.0.0/1", "128.0.0.0/1"], ["0.0.0.0/2", "64.0.0.0/2", "128.0.0.0/1"], ["10.0.0.1/8"],
             ["10.0.0.0/33"], ["not-a-cidr"], ["10.0.0.0/8", "10.0.0.0/8"], ["::/0"], [""]]
#: Lists whose entries must differ (by the last key of their path).
UNIQUE_LISTS = {"users", "members", "scopes", "emailDomains", "exclude", "extraHosts", "subjectAlternativeNames",
                "argoServiceAccounts", "systemNamespaces", "securityGroups", "sourceCidrs", "contributors", "profiles",
                "pools", "buckets", "groups", "taints"}


#: The kinds of stack-file mutation, drawn with these weights.
STACK_MUTATIONS = ["wrong type", "wrong type", "number", "number", "missing", "unknown key", "listed twice",
                   "huge string", "prefix", "cidrs", "secret in clear", "text: key twice", "text: nesting"]


@dataclasses.dataclass
class StackCase:
    name: str
    text: str
    #: The message must contain one of these (a key path, or the stack file's name as `{file}`).
    expected: tuple[str, ...]


_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _dump(document: Mapping) -> str:
    return yaml.dump(document, Dumper=_DUMPER, sort_keys=False, width=100_000, allow_unicode=True)


def _top(document: Mapping) -> dict:
    return {key[len(PROJECT) + 1:]: value for key, value in document["config"].items() if key.startswith(PROJECT + ":")}


def _restore(document: dict, top: dict) -> None:
    document["config"] = {f"{PROJECT}:{key}": value for key, value in top.items()}


def _required(cls: type) -> list[str]:
    return [key for key, field in keys_of(cls).items()
            if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING]


def _stack_case(rng: random.Random, stack: str, number: int) -> StackCase:
    document = stack_document(stack)
    top = _top(document)
    nodes = list(_walk(config.Settings, top, ""))
    kind = rng.choice(STACK_MUTATIONS)
    name = f"{stack} #{number} {kind}"

    def pick(condition: Callable[[Node], bool]) -> Node:
        return rng.choice([node for node in nodes if condition(node)])

    if kind == "wrong type":
        node = pick(lambda n: _kind(n.hint) in WRONG_TYPES)
        node.parent[node.key] = rng.choice(WRONG_TYPES[_kind(node.hint)])
        expected = (node.path,)
    elif kind == "number":
        node = pick(lambda n: _kind(n.hint) == "int")
        node.parent[node.key] = rng.choice(BAD_WHOLE_NUMBERS + OUT_OF_RANGE)
        expected = (node.path,)
    elif kind == "missing":
        candidates = [(node.path, node.parent[node.key], cls, key) for node in nodes if _kind(node.hint) == "object"
                      and isinstance(node.parent[node.key], dict)
                      for cls in [_options(node.hint)[0]] for key in _required(cls) if key in node.parent[node.key]]
        candidates += [("", top, config.Settings, key) for key in _required(config.Settings) if key in top]
        path, mapping, _cls, key = rng.choice(candidates)
        del mapping[key]
        # A whole top-level setting missing is refused first by the Pulumi CLI's check (config/pulumi_project.py),
        # unless Pulumi.yaml defaults it to {} for a fleet's global stack: then the program names its fields.
        expected = (f"{path}.{key}: is required" if path else f"- {key}." if key in KUBEFLOW_STACK_KEYS
                    else f"is missing configuration value '{key}'",)
    elif kind == "unknown key":
        node = rng.choice([n for n in nodes if _kind(n.hint) == "object" and isinstance(n.parent[n.key], dict)] + [None])
        key = rng.choice(["zzzUnknown", "nmae", "enabled", "Name"])
        target, path = (top, "") if node is None else (node.parent[node.key], node.path)
        target.setdefault(key, "x")
        expected = (f"{path}.{key}: unknown key" if path else f"{key}: unknown key",)
    elif kind == "listed twice":
        node = pick(lambda n: _kind(n.hint) == "list" and n.path.rsplit(".", 1)[-1] in UNIQUE_LISTS
                    and isinstance(n.parent[n.key], list) and n.parent[n.key])
        values = node.parent[node.key]
        values.insert(rng.randrange(len(values) + 1), copy.deepcopy(rng.choice(values)))
        expected = (node.path,)
    elif kind == "huge string":
        node = pick(lambda n: _kind(n.hint) == "str" or (_kind(n.hint) == "union" and isinstance(n.parent[n.key], str)))
        node.parent[node.key] = rng.choice("abc-.é") * rng.choice([300_000, 1_000_000])
        expected = (node.path,)
    elif kind == "prefix":
        node = pick(lambda n: n.path.endswith("dataLake.prefix"))
        node.parent[node.key] = rng.choice(BAD_PREFIXES)
        expected = (node.path,)
    elif kind == "cidrs":
        ingress = top["ingress"]
        ingress["sourceCidrs"] = rng.choice(BAD_CIDRS)
        expected = ("ingress.",)
    elif kind == "secret in clear":
        key = rng.choice(sorted(config.SECRET_KEYS))
        top[key] = rng.choice(["hunter2", "a" * 32, "x"])
        # The secret Pulumi.yaml declares is refused first by the Pulumi CLI's check, the others by the program.
        expected = ((f"configuration key '{key}' must be encrypted as it's secret",) if key == "authClientSecret"
                    else (f"{key}: is written in clear in the stack file",))
    _restore(document, top)
    text = _dump(document)
    if kind == "text: key twice":
        lines = text.splitlines(keepends=True)
        scalar = [i for i, line in enumerate(lines) if ": " in line and not line.rstrip().endswith(":")
                  and not line.lstrip().startswith("- ")]
        i = rng.choice(scalar)
        lines.insert(i + 1, lines[i])
        text = "".join(lines)
        expected = ("{file}:", "found duplicate key")
    elif kind == "text: nesting":
        depth = rng.choice([101, 150, 1_000, 50_000])
        opener, closer = rng.choice([("[", "]"), ("{a: ", "}")])
        closed = rng.choice([True, False])
        text += f"  {PROJECT}:deep: " + opener * depth + "1" + closer * (depth if closed else 0) + "\n"
        # Unclosed and shallow enough to compose, it is a YAML error at its end: just as clear.
        expected = ("{file}:", "nesting deeper than 100 levels") if closed or depth >= 5_000 else ("{file}:",)
    return StackCase(name, text, expected)


def stack_cases() -> list[StackCase]:
    rng = random.Random(SEED)
    return [_stack_case(rng, rng.choice(["dev", "prod"]), number) for number in range(STACK_CASES)]


@pytest.fixture(scope="module")
def program(tmp_path_factory) -> Path:
    return copy_program(tmp_path_factory.mktemp("fuzz-program"))


def _refused(program: Path, tmp_path: Path, stack: str, text: str, manifests: str | None = None) -> tuple[str, float]:
    write_stack(program, stack, text)
    started = time.perf_counter()
    status, stderr = preview_in_process(program, stack, tmp_path / stack, manifests=manifests)
    elapsed = time.perf_counter() - started
    assert status == 1, f"accepted: {stderr[-1000:]}"
    assert not (tmp_path / stack).exists(), "a plan was written for a refused input"
    return stderr, elapsed


def test_generated_bad_stack_files_are_each_one_clear_refusal(program, tmp_path):
    cases = stack_cases()
    assert len(cases) >= 200
    failures, slowest = [], (0.0, "")
    for case in cases:
        try:
            stderr, elapsed = _refused(program, tmp_path, "fuzz", case.text)
        except AssertionError as failure:
            failures.append(f"{case.name}: {failure}")
            continue
        slowest = max(slowest, (elapsed, case.name))
        file_name = "Pulumi.fuzz.yaml"
        if "Traceback" in stderr or not all(fragment.format(file=file_name) in stderr for fragment in case.expected):
            failures.append(f"{case.name}: expected {case.expected} in {stderr[-600:]!r}")
        if elapsed > CASE_SECONDS:
            failures.append(f"{case.name}: took {elapsed:.1f} s")
    assert not failures, f"{len(failures)} of {len(cases)} cases:\n" + "\n".join(failures[:20])
    assert {case.name.split(" ", 2)[2] for case in cases} == set(STACK_MUTATIONS)  # every kind was drawn


# --------------------------------------------------------------------------------------------- manifests

BASE_MANIFESTS = """\
apiVersion: v1
kind: Namespace
metadata:
  name: kubeflow
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: ml-pipeline-ui
  namespace: kubeflow
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: ui-config
  namespace: kubeflow
  labels:
    app: ml-pipeline-ui
data:
  viewer.json: '{"a": [1, 2]}'
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: ml-pipeline-ui
  namespace: kubeflow
spec:
  selector:
    matchLabels:
      app: ml-pipeline-ui
  template:
    metadata:
      labels:
        app: ml-pipeline-ui
    spec:
      serviceAccountName: ml-pipeline-ui
      containers:
      - name: ui
        image: ghcr.io/kubeflow/kfp-frontend:2.5.0
        env:
        - name: ALLOW_CUSTOM_VISUALIZATIONS
          value: "true"
"""

#: Replacements of one line of the base that give a document of the wrong shape or type.
WRONG_SHAPES = [
    ("kind: ConfigMap", "kind: 5"), ("kind: ConfigMap", "kind: [ConfigMap]"), ("apiVersion: apps/v1", "apiVersion: {a: 1}"),
    ("  name: ui-config", "  name: 5"), ("  name: ui-config", "  name: [ui-config]"), ("    app: ml-pipeline-ui\ndata:", "    app: [x]\ndata:"),
    ("kind: ServiceAccount\nmetadata:\n  name: ml-pipeline-ui", "kind: ServiceAccount\nmetadata: [name, ml-pipeline-ui]\nx:\n  name: y"),
    ("        image: ghcr.io/kubeflow/kfp-frontend:2.5.0", "        image: 5"),
    ("        image: ghcr.io/kubeflow/kfp-frontend:2.5.0", "        image: [ghcr.io/kubeflow/kfp-frontend:2.5.0]"),
    ("      containers:", "      volumes: 5\n      containers:"), ("        env:", "        ports: {a: 1}\n        env:"),
    ("      serviceAccountName: ml-pipeline-ui", "      serviceAccountName: [a]"),
    ("spec:\n  selector:", "spec: 5\nx:\n  selector:"), ("  template:\n", "  template: []\n  x:\n"),
]
NOT_OBJECTS = ["---\n- a\n- b\n", "---\njust a string\n", "---\n42\n", "---\napiVersion: v1\nkind: List\nitems: 5\n",
               "---\napiVersion: v1\nkind: List\nitems: [5, x]\n", "---\napiVersion: v1\nmetadata: {name: x}\n",
               "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {}\n", "---\nkind: ConfigMap\nmetadata: {name: x}\n"]
BROKEN_YAML = ["---\na: [unclosed\n", "---\na: {b: 1\n", "---\na: 1\n b: 2\n", "---\n\tkey: tab\n", "---\na: 'open\n",
               "---\n? [1, 2]\n: unhashable\n", "---\n- &a x\n- *b\n", "---\na: !!int notanumber\n", "---\n%YAML 1.1\n"]


@dataclasses.dataclass
class ManifestCase:
    name: str
    text: str
    #: The message must name the file ({file}) or the object and field.
    expected: tuple[str, ...]


def _manifest_case(rng: random.Random, number: int) -> ManifestCase:
    kind = ["wrong shape", "not an object", "broken YAML", "deep", "key twice", "huge file"][number % 6]
    name = f"#{number} {kind}"
    if kind == "wrong shape":
        old, new = rng.choice(WRONG_SHAPES)
        assert old in BASE_MANIFESTS, old
        return ManifestCase(name, BASE_MANIFESTS.replace(old, new, 1), ("{file}", "ml-pipeline-ui", "ui-config"))
    if kind == "not an object":
        return ManifestCase(name, BASE_MANIFESTS + rng.choice(NOT_OBJECTS), ("{file} document 5",))
    if kind == "broken YAML":
        return ManifestCase(name, BASE_MANIFESTS + rng.choice(BROKEN_YAML), ("{file}:",))
    if kind == "deep":
        depth = rng.choice([101, 500, 5_000, 50_000])
        style = rng.choice(["flow list", "flow map", "block list", "compact"])
        if style == "flow list":
            value = "[" * depth + "]" * rng.choice([0, depth])
        elif style == "flow map":
            value = "{a: " * depth + "1" + "}" * depth
        elif style == "block list":
            value = "\n" + "".join("    " + "  " * i + "-\n" for i in range(min(depth, 600))) + "    " + "  " * min(depth, 600) + "- x"
        else:
            value = "\n    " + "- " * depth + "x"
        return ManifestCase(name, BASE_MANIFESTS + "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: deep, namespace: kubeflow}\n"
                            "data:\n  x: " + value + "\n", ("{file}:", "nesting deeper than 100 levels"))
    if kind == "key twice":
        lines = BASE_MANIFESTS.splitlines(keepends=True)
        scalar = [i for i, line in enumerate(lines) if ": " in line and not line.lstrip().startswith("- ")]
        i = rng.choice(scalar)
        lines.insert(i + 1, lines[i].split(":")[0] + ": other\n")
        return ManifestCase(name, "".join(lines), ("{file}:", "found duplicate key"))
    # About 12 MB of valid ConfigMaps (cut for helper processes, past the parse cache's threshold), the
    # last document broken: the error must still carry its line in the whole file.
    filler = "".join(f"---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: filler-{i}, namespace: kubeflow}}\n"
                     f"data: {{blob: '{'x' * 2000}'}}\n" for i in range(6000))
    broken = rng.choice(["---\na: [unclosed\n", "---\nkind: 5\n", "---\nx: " + "[" * 50_000 + "\n"])
    return ManifestCase(name, BASE_MANIFESTS + filler + broken, ("{file}",))


def manifest_cases() -> list[ManifestCase]:
    rng = random.Random(SEED + 1)
    return [_manifest_case(rng, number) for number in range(MANIFEST_CASES)]


def test_generated_bad_manifests_are_each_one_clear_refusal(program, tmp_path):
    document = stack_document("dev")
    document["config"][f"{PROJECT}:kubeflow"]["manifests"] = "kubeflow.yaml"
    write_stack(program, "fuzz-manifests", _dump(document))
    failures = []
    for number, case in enumerate(manifest_cases()):
        path = tmp_path / f"case-{number}" / "kubeflow.yaml"
        path.parent.mkdir()
        path.write_text(case.text)
        started = time.perf_counter()
        status, stderr = preview_in_process(program, "fuzz-manifests", tmp_path / f"plan-{number}", manifests=str(path))
        elapsed = time.perf_counter() - started
        if status != 1 or "Traceback" in stderr or (tmp_path / f"plan-{number}").exists():
            failures.append(f"{case.name}: status {status}: {stderr[-600:]!r}")
        elif not any(fragment.format(file=path) in stderr for fragment in case.expected):
            failures.append(f"{case.name}: expected one of {case.expected} in {stderr[-600:]!r}")
        if elapsed > CASE_SECONDS:
            failures.append(f"{case.name}: took {elapsed:.1f} s")
    assert not failures, "\n".join(failures)


def test_the_manifests_cases_cover_every_kind_and_a_large_file():
    cases = manifest_cases()
    assert len(cases) >= 20
    assert {case.name.split(" ", 1)[1] for case in cases} == {"wrong shape", "not an object", "broken YAML", "deep",
                                                               "key twice", "huge file"}
    assert max(len(case.text) for case in cases) > 10 * 1024 * 1024


# ----------------------------------------------------------------------------------- as real processes

def test_the_worst_inputs_end_the_preview_process_with_exit_1_and_a_message(program, tmp_path):
    """The crashes and tracebacks of before, as `python -m tools.preview`: exit 1 (not -11), no traceback."""
    stacks = [case for case in stack_cases() if case.name.endswith("text: nesting") and "50000" not in case.name][:1]
    deep_stack = _dump(stack_document("dev")) + f"  {PROJECT}:deep: " + "[" * 50_000 + "\n"
    runs = [(deep_stack, None, ("{file}:", "nesting deeper than 100 levels"))]
    runs += [(case.text, None, case.expected) for case in stacks]
    deep_manifests = tmp_path / "deep.yaml"
    deep_manifests.write_text(BASE_MANIFESTS + "---\nx: " + "[" * 50_000 + "\n")
    twice = tmp_path / "twice.yaml"
    twice.write_text(BASE_MANIFESTS.replace("        image: ghcr.io/kubeflow/kfp-frontend:2.5.0\n",
                                            "        image: ghcr.io/kubeflow/kfp-frontend:2.5.0\n        image: docker.io/evil/ui:latest\n"))
    runs += [(_dump(stack_document("dev")), str(deep_manifests), (str(deep_manifests), "nesting deeper than 100 levels")),
             (_dump(stack_document("prod")), str(twice), (str(twice), "found duplicate key 'image'"))]
    for number, (text, manifests, expected) in enumerate(runs):
        stack = f"fuzz-process-{number}"
        write_stack(program, stack, text)
        result = preview_process(program, stack, tmp_path / stack, manifests=manifests, timeout=120)
        assert result.returncode == 1, (number, result.returncode, result.stderr[-1500:])
        assert "Traceback" not in result.stderr + result.stdout
        for fragment in expected:
            assert fragment.format(file=f"Pulumi.{stack}.yaml") in result.stderr, (number, result.stderr[-1500:])
