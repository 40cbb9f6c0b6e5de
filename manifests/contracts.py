"""The upstream facts the program relies on, kept as data, and the checks that hold the emitted objects to them.

Every env var, flag, config key, annotation or API behaviour that a Kubeflow consumer reads and that the
program sets (or works around) is one contract in `manifests/facts/contracts/*.yaml`, with the place in
the consumer's source where it was read, per supported release (`repo@tag path:line`). A schema says an
object can be stored; only the consumer's code says whether it does what we meant, so each contract is
also a check over what the program emits:

- `check:` a structural check this module runs over the applied objects (`env`, `arg`, `data`,
  `annotation`, `path`; `${setting}` in `equals`, `contains` and a data check's `key`; `absent: true` on an
  annotation or path the consumer must not find), or
- `held_by:` the test (`tests/<file>.py::<test name>`) that proves a behaviour no single field shows
  (how Istio picks routes, what IAM allows), or
- `unsettled:` the source does not settle it; the text says what the user verifies on the cluster, and
  docs/working-kubeflow.md repeats it.

A contract that holds only under some settings says so with `when:`, a mapping of dotted setting paths to the
value (or list of values) they must have (`when: {identity.mechanism: irsa}`): the IRSA annotation is read only
by pods whose stack chose IRSA. Under other settings its check passes without reading anything.

Pure Python, no Pulumi: `load_contracts()` refuses a malformed table with every problem at once, and
`contract_problems(contract, objects)` says why emitted objects break a contract (empty when they hold).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from manifests.objects import containers_of, labels_of, object_ref, pod_template

FACTS_DIR = Path(__file__).resolve().parent / "facts" / "contracts"

#: What a consumer reads, as the contract's `reads:` starts.
READ_KINDS = ("env", "flag", "config-key", "annotation", "label", "header", "api-call", "behaviour", "image")

#: `owner/repo@tag path:line[-line][, line...]`, or documentation by address.
SOURCE = re.compile(
    r"^(?:[\w.-]+/[\w.-]+@[\w.+-]+ [\w./+-]+:\d+(?:-\d+)?(?:, ?\d+(?:-\d+)?)*"
    r"(?:; [\w./+-]+:\d+(?:-\d+)?(?:, ?\d+(?:-\d+)?)*)*"
    r"|https://\S+)$"
)
#: A release the contract does not concern: `n/a: <why>`.
NOT_APPLICABLE = re.compile(r"^n/a: \S.*$")
HELD_BY = re.compile(r"^tests/[\w/]+\.py::test_\w+$")
#: A `when:` key: a setting's dotted path in the stack file's spelling (`identity.mechanism`).
SETTING_PATH = re.compile(r"^[a-zA-Z][\w-]*(?:\.[a-zA-Z][\w-]*)+$")

CHECK_KINDS = ("env", "arg", "data", "annotation", "path")


class ContractTableError(ValueError):
    """The contracts table itself is malformed; lists every problem."""


@dataclass(frozen=True)
class Contract:
    """One fact: who reads what, where that is written in their source, and how the program is held to it."""

    id: str
    consumer: str
    reads: str
    why: str
    #: release -> source (`repo@tag path:line`, or `n/a: <why>` where the release lacks the consumer).
    sources: Mapping[str, str]
    check: Mapping[str, Any] | None = None
    held_by: str | None = None
    unsettled: str | None = None
    #: setting path -> the values under which the contract holds; empty: under every setting.
    when: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    file: str = ""

    def applies_to(self, release: str) -> bool:
        source = self.sources.get(release)
        return source is not None and not NOT_APPLICABLE.match(source)

    def applies_under(self, values: Mapping[str, Any]) -> bool:
        """Whether the stack's settings (`values`, by dotted path) meet every `when:` condition. A setting the
        stack does not have raises KeyError naming it, since a misspelt condition would silently never hold."""
        for path, wanted in self.when.items():
            if path not in values:
                raise KeyError(path)
            if values[path] not in wanted:
                return False
        return True


@dataclass
class _Problems:
    items: list[str] = field(default_factory=list)

    def add(self, where: str, what: str) -> None:
        self.items.append(f"{where}: {what}")


def load_contracts(directory: Path = FACTS_DIR) -> list[Contract]:
    """Every contract of the table, in file then document order; refuses a malformed table whole."""
    problems = _Problems()
    contracts: list[Contract] = []
    seen: dict[str, str] = {}
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise ContractTableError(f"{directory}: no contracts (*.yaml)")
    for path in files:
        entries = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(entries, list):
            problems.add(path.name, "must be a YAML list of contracts")
            continue
        for index, entry in enumerate(entries):
            where = f"{path.name}[{index}]"
            contract = _contract(entry, where, problems, path.name)
            if contract is None:
                continue
            if contract.id in seen:
                problems.add(where, f"id {contract.id!r} is already used in {seen[contract.id]}")
            seen[contract.id] = where
            contracts.append(contract)
    if problems.items:
        raise ContractTableError("malformed contracts table:\n  " + "\n  ".join(problems.items))
    return contracts


def _contract(entry: Any, where: str, problems: _Problems, file: str) -> Contract | None:
    if not isinstance(entry, dict):
        problems.add(where, "must be a mapping")
        return None
    allowed = {"id", "consumer", "reads", "why", "sources", "check", "held_by", "unsettled", "when"}
    for key in sorted(set(entry) - allowed):
        problems.add(where, f"unknown key {key!r} (allowed: {', '.join(sorted(allowed))})")
    for key in ("id", "consumer", "reads", "why"):
        if not isinstance(entry.get(key), str) or not entry[key].strip():
            problems.add(where, f"{key} must be a non-empty string")
    reads = entry.get("reads")
    if isinstance(reads, str) and reads.split(" ", 1)[0] not in READ_KINDS:
        problems.add(where, f"reads must start with one of {', '.join(READ_KINDS)}: {reads!r}")
    sources = entry.get("sources")
    if not isinstance(sources, dict) or not sources:
        problems.add(where, "sources must map each release to `repo@tag path:line` (or `n/a: <why>`)")
        sources = {}
    for release, source in sources.items():
        if not isinstance(source, str) or not (SOURCE.match(source) or NOT_APPLICABLE.match(source)):
            problems.add(where, f"sources[{release!r}] must be `repo@tag path:line` or `n/a: <why>`: {source!r}")
    modes = [key for key in ("check", "held_by", "unsettled") if entry.get(key) is not None]
    if len(modes) != 1:
        problems.add(where, f"exactly one of check, held_by, unsettled (has {modes or 'none'})")
    check = entry.get("check")
    if check is not None:
        _check_shape(check, where, problems)
    held_by = entry.get("held_by")
    if held_by is not None and not (isinstance(held_by, str) and HELD_BY.match(held_by)):
        problems.add(where, f"held_by must be tests/<file>.py::test_<name>: {held_by!r}")
    unsettled = entry.get("unsettled")
    if unsettled is not None and not (isinstance(unsettled, str) and unsettled.strip()):
        problems.add(where, "unsettled must say what the user verifies on the cluster")
    when = _when(entry.get("when"), where, problems)
    if not isinstance(entry.get("id"), str):
        return None
    return Contract(
        id=entry["id"], consumer=str(entry.get("consumer")), reads=str(entry.get("reads")),
        why=str(entry.get("why")), sources={str(k): str(v) for k, v in sources.items()},
        check=check if isinstance(check, dict) else None, held_by=held_by, unsettled=unsettled, when=when,
        file=file,
    )


def _when(when: Any, where: str, problems: _Problems) -> dict[str, tuple[Any, ...]]:
    """`when:` as setting path -> allowed values; each malformed part is a problem naming the fix."""
    if when is None:
        return {}
    if not isinstance(when, dict) or not when:
        problems.add(where, "when must map setting paths to values, e.g. `when: {identity.mechanism: irsa}`")
        return {}
    conditions: dict[str, tuple[Any, ...]] = {}
    for path, wanted in when.items():
        if not isinstance(path, str) or not SETTING_PATH.match(path):
            problems.add(where, f"when key {path!r} must be a setting's dotted path, e.g. identity.mechanism")
            continue
        values = tuple(wanted) if isinstance(wanted, list) else (wanted,)
        if not values or any(not isinstance(v, (str, bool, int, float)) for v in values):
            problems.add(where, f"when[{path!r}] must be a scalar or a non-empty list of scalars: {wanted!r}")
            continue
        conditions[path] = values
    return conditions


def _check_shape(check: Any, where: str, problems: _Problems) -> None:
    if not isinstance(check, dict) or len(check) != 1 or next(iter(check)) not in CHECK_KINDS:
        problems.add(where, f"check must be one of {', '.join(CHECK_KINDS)} with its arguments")
        return
    kind, spec = next(iter(check.items()))
    if not isinstance(spec, dict) or not isinstance(spec.get("select"), dict) or not spec["select"].get("kind"):
        problems.add(where, f"check.{kind}.select must name at least the kind of the objects it reads")
        return
    required = {"env": ("name",), "arg": ("flag",), "data": ("key",), "annotation": ("key",), "path": ("path",)}
    for key in required[kind]:
        if not isinstance(spec.get(key), str):
            problems.add(where, f"check.{kind}.{key} must be a string")
    if "absent" in spec:
        # An annotation or field the consumer must not find (IRSA's role under Pod Identity).
        if kind not in ("annotation", "path") or spec["absent"] is not True:
            problems.add(where, f"check.{kind}.absent may only be `true`, on an annotation or path check")
        elif "equals" in spec or "contains" in spec:
            problems.add(where, f"check.{kind}.absent goes without equals or contains")


# ------------------------------------------------------------------------------------------ checks


def selected(select: Mapping[str, Any], objects: Iterable[dict]) -> list[dict]:
    """The objects a contract reads: by kind, and optionally name, namespace, labels and container name."""
    found = []
    for obj in objects:
        metadata = obj.get("metadata") or {}
        if obj.get("kind") != select["kind"]:
            continue
        if "name" in select and metadata.get("name") != select["name"]:
            continue
        if "namespace" in select and metadata.get("namespace") != select["namespace"]:
            continue
        labels = labels_of(obj)
        if any(labels.get(key) != value for key, value in (select.get("labels") or {}).items()):
            continue
        found.append(obj)
    return found


def _containers(obj: dict, name: str | None) -> list[dict]:
    template = pod_template(obj)
    if template is None:
        return []
    return [c for c in containers_of(template.get("spec") or {}) if name is None or c.get("name") == name]


def _at(node: Any, path: str) -> Any:
    for step in path.split("."):
        if isinstance(node, dict):
            node = node.get(step)
        elif isinstance(node, list) and step.isdigit() and int(step) < len(node):
            node = node[int(step)]
        else:
            return None
    return node


PLACEHOLDER = re.compile(r"\$\{([\w.\[\]-]+)\}")


def expand(text: Any, values: Mapping[str, Any]) -> Any:
    """`${kubeflow.database.host}` in a check's expected value -> that stack setting (a whole-string
    placeholder keeps the setting's type). Unknown names raise KeyError naming them."""
    if not isinstance(text, str):
        return text
    whole = PLACEHOLDER.fullmatch(text)
    if whole:
        return values[whole.group(1)]
    return PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), text)


def _value_holds(spec: Mapping[str, Any], value: Any) -> bool:
    if spec.get("absent"):
        return value is None
    if "equals" in spec and value != spec["equals"]:
        return False
    if "contains" in spec:
        wanted = spec["contains"]
        if isinstance(value, str):
            return isinstance(wanted, str) and wanted in value
        if isinstance(value, list):
            return wanted in value
        return False
    return value is not None


def contract_problems(contract: Contract, objects: list[dict], values: Mapping[str, Any] | None = None) -> list[str]:
    """Why the emitted `objects` break `contract`'s check (empty when they hold, or for other modes).

    `values` are the stack's settings by dotted path, for `${...}` in `equals`/`contains`, and for where
    `kubeflow.namespace` and `kubeflow.systemNamespace` moved the objects a contract selects.
    """
    if contract.check is None:
        return []
    kind, spec = next(iter(contract.check.items()))
    label = f"{contract.id} ({contract.reads})"
    try:
        if not contract.applies_under(values or {}):
            return []
    except KeyError as missing:
        return [f"{label}: when names the setting {missing}, which the stack does not have"]
    spec = dict(spec)
    # A data check's key may name a setting too: Knative's config-domain keys are domains.
    for key in ("equals", "contains", *(("key",) if kind == "data" else ())):
        if key in spec:
            try:
                spec[key] = expand(spec[key], values or {})
            except KeyError as missing:
                return [f"{label}: {key} names the setting {missing}, which the stack does not set"]
    # A contract names upstream's namespace; the stack's objects are where kubeflow.namespace put them.
    select = dict(spec["select"])
    chosen = {"kubeflow": (values or {}).get("kubeflow.namespace"), "kubeflow-system": (values or {}).get("kubeflow.systemNamespace")}
    if chosen.get(select.get("namespace")):
        select["namespace"] = chosen[select["namespace"]]
    spec["select"] = select
    matches = selected(select, objects)
    if not matches:
        return [f"{label}: no emitted object matches {dict(spec['select'])}"]
    problems = []
    for obj in matches:
        ref = object_ref(obj)
        if kind == "env":
            containers = _containers(obj, spec.get("container"))
            if not containers:
                problems.append(f"{label}: {ref} has no container {spec.get('container')!r}")
            for container in containers:
                env = {e.get("name"): e for e in container.get("env") or [] if isinstance(e, dict)}
                entry = env.get(spec["name"])
                value = None if entry is None else entry.get("value", entry.get("valueFrom"))
                if entry is None or not _value_holds(spec, value):
                    problems.append(f"{label}: {ref} container {container.get('name')} env {spec['name']} "
                                    f"is {value!r}")
        elif kind == "arg":
            containers = _containers(obj, spec.get("container"))
            if not containers:
                problems.append(f"{label}: {ref} has no container {spec.get('container')!r}")
            for container in containers:
                words = [*(container.get("command") or []), *(container.get("args") or [])]
                flag = spec["flag"]
                values = [w[len(flag) + 1:] for w in words if isinstance(w, str) and w.startswith(flag + "=")]
                values += [words[i + 1] for i, w in enumerate(words[:-1]) if w == flag]
                constrained = "equals" in spec or "contains" in spec
                if not (flag in words or values) or (constrained and not any(_value_holds(spec, v) for v in values)):
                    problems.append(f"{label}: {ref} container {container.get('name')} args {words!r}")
        elif kind == "data":
            value = (obj.get("data") or {}).get(spec["key"], (obj.get("stringData") or {}).get(spec["key"]))
            if not _value_holds(spec, value):
                problems.append(f"{label}: {ref} data[{spec['key']!r}] is {value!r}")
        elif kind == "annotation":
            value = ((obj.get("metadata") or {}).get("annotations") or {}).get(spec["key"])
            if not _value_holds(spec, value):
                problems.append(f"{label}: {ref} annotation {spec['key']} is {value!r}")
        elif kind == "path":
            value = _at(obj, spec["path"])
            if not _value_holds(spec, value):
                problems.append(f"{label}: {ref} {spec['path']} is {value!r}")
    return problems
