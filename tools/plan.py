"""The reviewable plan: what one program run registered, as plain data that can be saved, diffed and checked.

`build_plan` turns a mock-runtime run into the plan (`plan.json`): every resource with its type, name,
parent, provider, dependencies, options and inputs, plus the stack outputs. Two values stand in for what
a reviewer must not or cannot see:

- `[secret]`: a Pulumi secret (from the recorded secret paths), or a secret value the program let out
  of its secret wrapper (reported as a problem, because a real `pulumi up` would store it in clear);
- `(known after deploy)`: a value the mock runtime's preview mode left unknown, as a real preview does.

The Kubernetes objects that would be applied are taken from the plan itself (`kubernetes_objects`): the
`objs` (and inline `yaml`) of every `kubernetes:yaml/v2:ConfigGroup`, and every individual `kubernetes:*`
resource that carries an object. Nothing here knows about particular components.
"""

from __future__ import annotations

import dataclasses

import base64
import json
import math
import re
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from json.encoder import encode_basestring as _encode_json_string  # C, as json.dumps(ensure_ascii=False)
from pathlib import Path
from typing import Any

from pulumi.runtime import rpc

from analysis.plan_objects import (
    CONFIG_GROUP, KNOWN_AFTER_DEPLOY, SECRET, KubernetesObject, KubernetesObjects, _safe_file_name, kubernetes_objects,
)
from tools.kept import Kept, code_digest, content_digest, key
from tools.manifest_yaml import ManifestWriter
from tools.mock_runtime import PROJECT, ProgramRun

#: Version of the plan.json layout; a saved plan of another layout is refused by the diff.
PLAN_FORMAT = 1

PLAN_FILE = "plan.json"
MANIFESTS_DIR = "manifests"
IMAGES_FILE = "images.txt"
TRANSFORM_REPORT_FILE = "transform-report.txt"

#: Stack exports with a file of their own (besides appearing under the plan's outputs).
IMAGE_MIRROR_EXPORT = "imageMirror"
TRANSFORM_REPORT_EXPORT = "transformReport"

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")

Path_ = tuple[str | int, ...]


def format_part(part: str | int, first: bool) -> str:
    """One step of a path: `.key`, `[3]`, or `["key.with/dots"]` where a dot would be ambiguous."""
    if isinstance(part, int):
        return f"[{part}]"
    if _IDENTIFIER.match(part):
        return part if first else f".{part}"
    return f"[{json.dumps(part)}]"


def format_path(parts: Iterable[str | int]) -> str:
    """`spec.template.metadata.annotations["sidecar.istio.io/inject"]`: dots only where they are unambiguous."""
    return "".join(format_part(part, i == 0) for i, part in enumerate(parts))


@dataclass
class _Masking:
    """Turns recorded values into plain JSON data, masking secrets and marking unknowns."""

    secret_paths: frozenset[str]
    #: Secret values the run was given; finding one in clear is a leak.
    secret_values: tuple[str, ...]
    where: str
    leaks: list[str] = field(default_factory=list)

    def _secret_below(self, recorded: str) -> bool:
        if not recorded:
            return bool(self.secret_paths)
        return any(p == recorded or p.startswith(recorded + ".") or p.startswith(recorded + "[") for p in self.secret_paths)

    def _leaked(self, text: str) -> bool:
        return any(secret in text for secret in self.secret_values)

    def plain(self, value: Any, parts: Path_ = (), recorded: str = "") -> Any:
        """`value` as JSON data; `recorded` is `parts` in the spelling of the recorded secret paths."""
        if recorded in self.secret_paths:
            return SECRET
        if rpc.is_rpc_secret(value):
            # The SDK pushes secretness up to the enclosing object when it deserializes; the recorded
            # paths say which leaves are secret. Without any, the whole object is the secret.
            if not self._secret_below(recorded):
                return SECRET
            value = rpc.unwrap_rpc_secret(value)
        if _is_unknown(value):
            return KNOWN_AFTER_DEPLOY
        if isinstance(value, Mapping):
            return {str(k): self.plain(v, (*parts, str(k)), f"{recorded}.{k}" if recorded else str(k))
                    for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.plain(v, (*parts, i), f"{recorded}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, bool) or value is None or isinstance(value, int):
            return value
        if isinstance(value, float):
            # The wire format has only doubles: replicas: 1 arrives as 1.0 and must be written back as 1.
            return int(value) if value.is_integer() else value
        if isinstance(value, str):
            if self._leaked(value):
                self.leaks.append(f"{self.where} {format_path(parts)}: holds a secret value outside a Pulumi secret "
                                  "(a real deployment would store it in clear; wrap it with pulumi.Output.secret)")
                return SECRET
            return value
        return self._opaque(value, parts, recorded)

    def _opaque(self, value: Any, parts: Path_, recorded: str) -> Any:
        # Assets, archives and resource references: keep what identifies them, never a memory address.
        for attribute in ("path", "uri", "text", "assets"):
            if hasattr(value, attribute):
                return {type(value).__name__: self.plain(getattr(value, attribute), parts, recorded)}
        return f"<{type(value).__name__}>"


def _is_unknown(value: Any) -> bool:
    from pulumi.output import Unknown

    return isinstance(value, Unknown) or (isinstance(value, str) and value == rpc.UNKNOWN)


def _provider_urn(reference: str) -> str:
    # A provider reference is `<provider urn>::<provider id>`; the id is unknown in a preview and made up by
    # the mocks otherwise, so only the URN says which provider it is.
    return reference.rsplit("::", 1)[0] if reference else ""


def _secret_variants(values: Iterable[str]) -> tuple[str, ...]:
    variants: set[str] = set()
    for value in values:
        if value:
            variants.add(value)
            # Kubernetes Secret `data` carries values base64-encoded.
            variants.add(base64.b64encode(value.encode()).decode())
    return tuple(sorted(variants))


def build_plan(run: ProgramRun, secret_values: Iterable[str] = ()) -> tuple[dict[str, Any], list[str]]:
    """The plan of `run`, and the places where a secret value appears outside a Pulumi secret."""
    secrets = _secret_variants(secret_values)
    leaks: list[str] = []
    resources = []
    for registration in sorted(run.resources, key=lambda r: r.urn):
        masking = _Masking(frozenset(registration.secret_paths), secrets, f"{registration.type} {registration.name}: inputs")
        resources.append({
            "urn": registration.urn,
            "type": registration.type,
            "name": registration.name,
            "parent": registration.parent,
            "provider": _provider_urn(registration.provider),
            "custom": registration.custom,
            "dependencies": sorted(registration.dependencies),
            "options": {
                "protect": registration.protect,
                "retainOnDelete": registration.retain_on_delete,
                "deleteBeforeReplace": registration.delete_before_replace,
                "ignoreChanges": sorted(registration.ignore_changes),
                "replaceOnChanges": sorted(registration.replace_on_changes),
            },
            "inputs": masking.plain(registration.inputs),
        })
        leaks += masking.leaks
    outputs: dict[str, Any] = {}
    for key in sorted(run.exports):
        if key in run.secret_exports:
            outputs[key] = SECRET
        elif key in run.unknown_exports:
            outputs[key] = KNOWN_AFTER_DEPLOY
        else:
            masking = _Masking(frozenset(), secrets, f"stack output {key}:")
            outputs[key] = masking.plain(run.exports[key])
            leaks += masking.leaks
    plan = {"format": PLAN_FORMAT, "project": PROJECT, "stack": run.stack, "resources": resources, "outputs": outputs}
    if run.stack_references:
        # Which stacks' saved previews the run read (a fleet's stacks): the fleet check holds them together.
        plan["stackReferences"] = [{"name": name, "stack": name.rsplit("/", 1)[-1], "resolved": path is not None}
                                   for name, path in run.stack_references]
    return plan, leaks


def plan_json(plan: Mapping[str, Any]) -> str:
    """The plan as saved: sorted keys and a final newline, so the same plan is always the same bytes.

    Exactly `json.dumps(plan, indent=2, sort_keys=True, ensure_ascii=False)` (tests/test_plan_json.py): with an
    indent, the standard library encodes in Python, one generator step per value (a third of a second at 1,000
    profiles); the same layout written here, with the library's C string encoder, takes a fraction of it. A value
    of another type than JSON's (or a key that is not a string) is left to the library.
    """
    try:
        return "".join(plan_json_slices(plan))
    except _NotPlainJson:
        return _library_json(plan)


def plan_json_slices(plan: Any) -> Iterator[str]:
    """plan_json's text in slices, each item of the plan's top-level lists and mappings (a resource, an output) one
    slice: a caller writing them as they come never holds the whole text, which at 10,000 profiles is 285 MB, and as
    much again encoded, on top of the plan. Raises _NotPlainJson (before or after some slices) where plan_json leaves
    the plan to the library."""
    yield from _json_slices(plan, "", 2)
    yield "\n"


def _library_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _json_slices(value: Any, indent: str, depth: int) -> Iterator[str]:
    """`value` as _json_into writes it at `indent`, the items of containers fewer than `depth` levels down a slice each."""
    kind = type(value)
    if depth == 0 or not value or (kind is not dict and kind is not list):
        out: list[str] = []
        _json_into(value, indent, out)
        yield "".join(out)
        return
    inner = indent + "  "
    separator = ("{" if kind is dict else "[") + "\n" + inner
    if kind is dict:
        for key in sorted(value):
            if type(key) is not str:
                raise _NotPlainJson
            yield f"{separator}{_encode_json_string(key)}: "
            yield from _json_slices(value[key], inner, depth - 1)
            separator = ",\n" + inner
        yield f"\n{indent}}}"
    else:
        for item in value:
            yield separator
            yield from _json_slices(item, inner, depth - 1)
            separator = ",\n" + inner
        yield f"\n{indent}]"


class _NotPlainJson(Exception):
    pass


def _json_scalar(value: Any) -> str:
    kind = type(value)
    if kind is str:
        return _encode_json_string(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if kind is int:
        return int.__repr__(value)
    if kind is float:
        if value != value:
            return "NaN"
        if value in (math.inf, -math.inf):
            return "Infinity" if value > 0 else "-Infinity"
        return float.__repr__(value)
    raise _NotPlainJson


def _json_into(value: Any, indent: str, out: list[str]) -> None:
    """`value` as json.dumps(indent=2, sort_keys=True, ensure_ascii=False) writes it at `indent`."""
    kind = type(value)
    if kind is dict:
        if not value:
            out.append("{}")
            return
        inner = indent + "  "
        separator = "{\n" + inner
        for key in sorted(value):
            if type(key) is not str:
                raise _NotPlainJson
            item = value[key]
            item_kind = type(item)
            if item_kind is str:
                out.append(f"{separator}{_encode_json_string(key)}: {_encode_json_string(item)}")
            elif item_kind is dict or item_kind is list:
                out.append(f"{separator}{_encode_json_string(key)}: ")
                _json_into(item, inner, out)
            else:
                out.append(f"{separator}{_encode_json_string(key)}: {_json_scalar(item)}")
            separator = ",\n" + inner
        out.append(f"\n{indent}}}")
    elif kind is list:
        if not value:
            out.append("[]")
            return
        inner = indent + "  "
        separator = "[\n" + inner
        for item in value:
            item_kind = type(item)
            if item_kind is str:
                out.append(separator + _encode_json_string(item))
            elif item_kind is dict or item_kind is list:
                out.append(separator)
                _json_into(item, inner, out)
            else:
                out.append(separator + _json_scalar(item))
            separator = ",\n" + inner
        out.append(f"\n{indent}]")
    else:
        out.append(_json_scalar(value))


def load_plan(directory: Path) -> dict[str, Any]:
    path = directory / PLAN_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{directory} holds no {PLAN_FILE}; write one with `make preview`")
    try:
        plan = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not a saved plan ({error}); write it again with `make preview`") from None
    if not isinstance(plan, dict):
        raise ValueError(f"{path} is not a saved plan (a JSON {type(plan).__name__}, not an object); write it again with `make preview`")
    if plan.get("format") != PLAN_FORMAT:
        raise ValueError(f"{path} has plan format {plan.get('format')!r}; this tool reads format {PLAN_FORMAT}. "
                         "Write it again with `make preview`.")
    return plan


def unknown_paths(value: Any, parts: Path_ = ()) -> Iterator[str]:
    """Paths of the values in `value` that are known only after deploy."""
    if value == KNOWN_AFTER_DEPLOY:
        yield format_path(parts)
    elif isinstance(value, Mapping):
        for key in sorted(value):
            yield from unknown_paths(value[key], (*parts, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from unknown_paths(item, (*parts, index))


# --- Kubernetes objects: read back by analysis.plan_objects (pure; the diff and the upgrade plan use it) --


def manifests_yaml(objects: list[KubernetesObject], writer: ManifestWriter | None = None) -> str:
    """Objects as one YAML stream, sorted keys, in the given order (tools.manifest_yaml: PyYAML's bytes)."""
    return (writer or ManifestWriter()).dump_all(o.obj for o in objects)


def manifest_files(found: KubernetesObjects, skip: Collection[str] = ()) -> dict[str, str]:
    """File name under manifests/ -> its text, each with a header saying what applies it (`skip`: files not to
    write, left out)."""
    return dict(manifest_texts(found, skip))


def manifest_texts(found: KubernetesObjects, skip: Collection[str] = ()) -> Iterator[tuple[str, str]]:
    """manifest_files' files one at a time, by name."""
    by_file: dict[str, list[KubernetesObject]] = {}
    for obj in found.objects:
        by_file.setdefault(obj.file, []).append(obj)
    writer = ManifestWriter()  # one for every file: each distinct string's spelling is found once
    for name in sorted(by_file):
        if name in skip:
            continue
        objects = by_file[name]
        sources = sorted({o.source for o in objects})
        header = f"# {len(objects)} object{'s' if len(objects) != 1 else ''} applied by {', '.join(sources)}"
        if name[0].isdigit():
            header += " (in the ConfigGroup's order; files are numbered in apply order)"
        yield name, header + "\n" + manifests_yaml(objects, writer)


# --- Image mirror list and transformation report (stack exports) -------------------------------------


def image_mirror_lines(outputs: Mapping[str, Any]) -> list[str]:
    """`<source> <target>` per image, sorted: the list the registry team copies before a deploy.

    Reads the `imageMirror` export: a list of `{source, target}` or a mapping source -> target.
    """
    exported = outputs.get(IMAGE_MIRROR_EXPORT)
    if exported is None:
        return [f"# no {IMAGE_MIRROR_EXPORT} export: this program mirrors no images yet"]
    pairs, problem = image_mirror_pairs(exported)
    if problem:
        return [f"# {problem}"]
    return [f"{source} {target}" for source, target in pairs]


def image_mirror_pairs(exported: Any) -> tuple[list[tuple[str, str]], str]:
    """(source, target) pairs of an `imageMirror` export, sorted, or what is wrong with its shape."""
    if exported in (SECRET, KNOWN_AFTER_DEPLOY):
        return [], f"{IMAGE_MIRROR_EXPORT} is {exported}"
    if isinstance(exported, Mapping):
        return sorted((str(s), str(t)) for s, t in exported.items()), ""
    if not isinstance(exported, list):
        return [], f"{IMAGE_MIRROR_EXPORT} is a {type(exported).__name__}; expected a list of {{source, target}} or a mapping"
    pairs: set[tuple[str, str]] = set()
    for entry in exported:
        if not (isinstance(entry, Mapping) and isinstance(entry.get("source"), str) and isinstance(entry.get("target"), str)):
            return [], f"{IMAGE_MIRROR_EXPORT} entry {json.dumps(entry, sort_keys=True)[:120]} is not {{source, target}}"
        pairs.add((entry["source"], entry["target"]))
    return sorted(pairs), ""


@dataclass(frozen=True)
class TransformSummary:
    """What the transformations did, read from the `transformReport` export."""

    #: transformation name -> [(object ref, what changed)], in the export's order of transformations
    changes: dict[str, list[tuple[str, str]]]
    #: object ref -> exclusion rule
    excluded: dict[str, str]
    #: exclusion rule -> why it is in force
    exclusions: dict[str, str]
    #: refs of objects the transformations produced
    added: list[str]
    present: bool = True
    #: which release the manifests were identified as (`releaseIdentity`), and the warnings it gave
    identity: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    #: the mesh the objects are fitted to (`kubeflow.mesh`) and what it decided (`mesh`)
    mesh: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def mesh_lines(self) -> list[str]:
        """`Mesh: ...`, the namespaces kept outside it and each namespace's Pod Security level."""
        if not self.mesh:
            return []
        settings = ", ".join(f"{key} {self.mesh.get(key)}" for key in
                             ("dataPlane", "mtls", "outboundTrafficPolicy", "nativeSidecars", "revision"))
        lines = [f"Mesh: {settings}"]
        outside = self.mesh.get("namespacesOutsideMesh") or []
        if outside:
            lines.append(f"    outside the mesh: {', '.join(map(str, outside))}")
        levels = self.mesh.get("podSecurity") or {}
        if isinstance(levels, Mapping) and levels:
            lines.append("    Pod Security enforce: " + ", ".join(f"{name} {level}" for name, level in levels.items()))
        return lines

    def release_lines(self) -> list[str]:
        """`Release: ...` and one line per identification warning; nothing without `releaseIdentity`."""
        if not self.identity:
            return []
        components = self.identity.get("components") or {}
        found = ", ".join(f"{name} {entry.get('version')}" for name, entry in sorted(components.items())
                          if isinstance(entry, Mapping))
        identified = " or ".join(self.identity.get("identifiedAs") or []) or (
            "newer than every known release" if self.identity.get("newerThanKnown") else "not identified")
        lines = [f"Release: {self.identity.get('pinned')} (manifests identified as {identified}"
                 + (f" from {found})" if found else ")")]
        lines += [f"    warning: {warning}" for warning in self.identity.get("warnings") or []]
        return lines

    def headline(self) -> str:
        if not self.present:
            return f"no {TRANSFORM_REPORT_EXPORT} export: no transformation report yet"
        changed = {ref for entries in self.changes.values() for ref, _ in entries}
        per_step = ", ".join(f"{name} {len(entries)}" for name, entries in self.changes.items())
        rules: dict[str, int] = {}
        for rule in self.excluded.values():
            rules[rule] = rules.get(rule, 0) + 1
        per_rule = ", ".join(f"{rule} {count}" for rule, count in sorted(rules.items()))
        return (f"{sum(len(e) for e in self.changes.values())} changes to {len(changed)} objects"
                + (f" ({per_step})" if per_step else "")
                + f"; {len(self.excluded)} objects excluded" + (f" ({per_rule})" if per_rule else "")
                + f"; {len(self.added)} objects added")


def _change_entry(entry: Any) -> tuple[str, str]:
    if isinstance(entry, Mapping):
        return str(entry.get("ref", "")), str(entry.get("what", ""))
    if isinstance(entry, (list, tuple)) and len(entry) == 2:
        return str(entry[0]), str(entry[1])
    # The export writes `<Kind namespace/name>: <what>`; an object's name never holds ": ".
    ref, separator, what = str(entry).partition(": ")
    return (ref, what) if separator else ("", str(entry))


def transform_summary(outputs: Mapping[str, Any]) -> TransformSummary:
    """Reads the `transformReport` export (every key optional):

    `{"changes": {transformation: [{"ref", "what"}]}, "excluded": {ref: rule}, "exclusions": {rule: why},
    "added": [ref]}`
    """
    exported = outputs.get(TRANSFORM_REPORT_EXPORT)
    if not isinstance(exported, Mapping):
        return TransformSummary({}, {}, {}, [], present=False)

    # A part of the wrong shape reads as empty here; the offline checks report it (plan_checks).
    def mapping(key: str) -> Mapping[str, Any]:
        value = exported.get(key)
        return value if isinstance(value, Mapping) else {}

    added = exported.get("added")
    changes = {str(name): [_change_entry(e) for e in entries] if isinstance(entries, list) else []
               for name, entries in mapping("changes").items()}
    return TransformSummary(
        changes=changes,
        excluded={str(k): str(v) for k, v in sorted(mapping("excluded").items())},
        exclusions={str(k): str(v) for k, v in sorted(mapping("exclusions").items())},
        added=sorted(str(ref) for ref in added) if isinstance(added, list) else [],
        identity=mapping("releaseIdentity"),
        mesh=mapping("mesh"),
    )


def transform_report_text(summary: TransformSummary) -> str:
    if not summary.present:
        return f"# {summary.headline()}\n"
    lines = [f"# {summary.headline()}", ""]
    release = summary.release_lines()
    if release:
        lines += release
        for name, entry in sorted((summary.identity.get("components") or {}).items()):
            if isinstance(entry, Mapping):
                lines.append(f"    {name} {entry.get('version')}: {entry.get('evidence')}")
        lines.append("")
    mesh = summary.mesh_lines()
    if mesh:
        lines += [*mesh, ""]
    lines.append("Changed, per transformation (in the order they run):")
    for name, entries in summary.changes.items():
        lines.append(f"  {name}: {len(entries)} changes")
        lines += [f"    {ref}: {what}" if ref else f"    {what}" for ref, what in sorted(entries)]
    lines += ["", "Excluded, per rule:"]
    by_rule: dict[str, list[str]] = {}
    for ref, rule in summary.excluded.items():
        by_rule.setdefault(rule, []).append(ref)
    for rule in sorted(set(by_rule) | set(summary.exclusions)):
        why = summary.exclusions.get(rule)
        refs = by_rule.get(rule, [])
        lines.append(f"  {rule}: {len(refs)} objects" + (f" ({why})" if why else ""))
        lines += [f"    {ref}" for ref in sorted(refs)]
    lines += ["", f"Added by transformations: {len(summary.added)} objects"]
    lines += [f"  {ref}" for ref in summary.added]
    return "\n".join(lines) + "\n"


# --- Writing a plan directory ------------------------------------------------------------------------


def _write_if_changed(path: Path, text: str) -> bytes:
    """`text` in UTF-8 at `path`, unless the file already holds exactly those bytes; returns the bytes.

    A preview is mostly run again over its last output: reading a file and comparing is far cheaper than
    creating it again (at 1,000 profiles, 2,029 manifest files; removing and creating them cost more CPU
    than writing their YAML, and seconds of a busy disk).
    """
    data = text.encode("utf-8")
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return data
    except OSError:
        pass  # missing (or unreadable): written below, and any real problem is reported by the write
    path.write_bytes(data)
    return data


#: What a ConfigGroup's file is a function of besides its inputs: the code that reads the objects and writes them.
_WRITER_MODULES = ("tools/plan.py", "tools/manifest_yaml.py", "analysis/plan_objects.py", "manifests/objects.py")
_WRITER_DIGEST: list[bytes] = []


def _writer_digest() -> bytes:
    if not _WRITER_DIGEST:
        _WRITER_DIGEST.append(code_digest(_WRITER_MODULES))
    return _WRITER_DIGEST[0]


def group_sources(plan: Mapping[str, Any], found: KubernetesObjects) -> dict[str, str]:
    """File name -> the digest of what it is written from, for each file holding the objects of one ConfigGroup (its
    objects, in order, and the file are a function of it: what the preview found in them can be kept by it)."""
    groups = {r["urn"]: r for r in plan["resources"] if r["type"] == CONFIG_GROUP}
    urns: dict[str, set[str]] = {}
    for obj in found.objects:
        urns.setdefault(obj.file, set()).add(obj.urn if obj.urn in groups else "")
    sources: dict[str, str] = {}
    for name, of in urns.items():
        if len(of) != 1 or "" in of:
            continue
        group = groups[next(iter(of))]
        sources[name] = key(_writer_digest(), name, group["name"], group["urn"],
                            json.dumps(group["inputs"], sort_keys=True, ensure_ascii=False))
    return sources


#: Characters gathered from a text's slices before they are encoded and compared or written.
_WRITE_BATCH = 1 << 20


def _write_slices_if_changed(path: Path, slices: Iterable[str]) -> None:
    """`_write_if_changed` for a text given in slices, never whole in memory: compared with the file's bytes as they
    come and written from the first batch that differs; a file already holding exactly those bytes is not written.
    A failure part way removes the file rather than leave a text that is neither the old nor the new."""
    try:
        stream = open(path, "r+b")
        same = True
    except FileNotFoundError:
        stream = open(path, "wb")
        same = False
    try:
        with stream:
            for data in _encoded_batches(slices):
                if same:
                    at = stream.tell()
                    if stream.read(len(data)) == data:
                        continue
                    same = False
                    stream.seek(at)
                stream.write(data)
            end = stream.tell()
            if same and not stream.read(1):
                return
            stream.truncate(end)
    except BaseException:
        if not same:
            path.unlink(missing_ok=True)
        raise


def _encoded_batches(slices: Iterable[str]) -> Iterator[bytes]:
    batch: list[str] = []
    size = 0
    for piece in slices:
        batch.append(piece)
        size += len(piece)
        if size >= _WRITE_BATCH:
            yield "".join(batch).encode("utf-8")
            batch, size = [], 0
    if batch:
        yield "".join(batch).encode("utf-8")


def write_plan_json(plan: Mapping[str, Any], path: Path) -> None:
    """plan_json(plan) at `path` (left as it is when it holds those bytes), written in slices as they are made."""
    try:
        _write_slices_if_changed(path, plan_json_slices(plan))
    except _NotPlainJson:
        _write_if_changed(path, _library_json(plan))  # what plan_json does; the slices written so far are replaced


def write_plan_dir(plan: Mapping[str, Any], directory: Path, found: KubernetesObjects | None = None,
                   sources: Mapping[str, str] | None = None) -> list[Path]:
    """Writes plan.json, manifests/, images.txt and transform-report.txt; returns what it wrote.

    Only these are replaced (manifests/ entirely, so a file of a removed ConfigGroup does not linger; a file
    already holding the same bytes is left as it is); nothing else in `directory` is touched. `found`: the
    plan's `kubernetes_objects`, if the caller has them (and `sources`, their `group_sources`). A ConfigGroup's file
    that holds what its group's source was written as before (tools.kept) is not written out again.
    """
    directory.mkdir(parents=True, exist_ok=True)
    written = [directory / PLAN_FILE]
    write_plan_json(plan, directory / PLAN_FILE)
    manifests = directory / MANIFESTS_DIR
    if found is None:
        found = kubernetes_objects(plan)
    names = {obj.file for obj in found.objects}
    if sources is None:
        sources = group_sources(plan, found)
    # A group's file the same group was written to before (tools.kept: the digest of what it wrote), still holding
    # those bytes, is not written out again.
    written_before = Kept("manifests")
    kept = set()
    for name, source in sources.items():
        digest = written_before.get(source)
        try:
            if digest is not None and content_digest((manifests / name).read_bytes()) == digest:
                kept.add(name)
        except OSError:
            pass
    if manifests.is_dir():
        for stale in manifests.glob("*.yaml"):
            if stale.name not in names:
                stale.unlink()
    manifests.mkdir(exist_ok=True)
    # One file's text at a time: all of them at once are 174 MB at 10,000 profiles.
    for name, text in manifest_texts(found, skip=kept):
        data = _write_if_changed(manifests / name, text)
        if name in sources:
            written_before.put(sources[name], content_digest(data))
    written_before.save()
    written.append(manifests)
    _write_if_changed(directory / IMAGES_FILE, "\n".join(image_mirror_lines(plan["outputs"])) + "\n")
    written.append(directory / IMAGES_FILE)
    _write_if_changed(directory / TRANSFORM_REPORT_FILE, transform_report_text(transform_summary(plan["outputs"])))
    written.append(directory / TRANSFORM_REPORT_FILE)
    return written
