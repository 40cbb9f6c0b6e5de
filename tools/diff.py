"""Field-level differences between two plans: stacks evaluated now, or plans saved by `make preview`.

    python -m tools.diff A B [--manifests-a PATH] [--kubeflow-a VERSION] [--manifests-b ...] [--kubeflow-b ...]

A and B are each a stack name (evaluated now, offline) or a directory holding a saved plan.json; or both are saved
fleets (directories `make fleet OUT=<dir>` wrote), compared stack by stack: the global stack, then each region. The
output lists resources added, removed and changed (with every changed field path and old -> new value),
stack outputs, and the Kubernetes objects that would be applied, matched by apiVersion, kind, namespace
and name. Exit status: 0 when the plans are the same, 1 when they differ, 2 when one cannot be read or
evaluated, or the tool fails (never 1, which CI reads as "different").
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, TextIO

import pulumi

from analysis.ownership import classify, ownership_changes
from analysis.tenancy_moves import move_lines, profile_moves
from tools.mock_runtime import known_stacks
from tools.plan import CONFIG_GROUP, format_part, kubernetes_objects, load_plan

#: Values longer than this are cut in the report (the plans hold them whole).
_VALUE_WIDTH = 160
#: Lines of a multi-line text change shown before the rest is counted.
_TEXT_DIFF_LINES = 30
#: Changed fields shown per resource or object before the rest is counted.
_FIELDS_PER_ENTRY = 40


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


#: The side of a change where the field does not exist.
MISSING: Any = _Missing()


@dataclass(frozen=True)
class FieldChange:
    path: str
    old: Any
    new: Any


@dataclass(frozen=True)
class EntryDiff:
    """One resource, output or Kubernetes object that is only in A, only in B, or in both but different."""

    key: str
    status: str  # "added" | "removed" | "changed"
    changes: tuple[FieldChange, ...] = ()


@dataclass
class SectionDiff:
    title: str
    entries: list[EntryDiff] = field(default_factory=list)
    unchanged: int = 0

    def count(self, status: str) -> int:
        return sum(1 for e in self.entries if e.status == status)


@dataclass
class PlanDiff:
    resources: SectionDiff
    outputs: SectionDiff
    objects: SectionDiff
    #: Objects that move between created, patched and expected (analysis.ownership), one line each.
    ownership: list[str] = field(default_factory=list)
    #: Profiles that change stacks (analysis.tenancy_moves), with what deploying them does.
    moves: list[str] = field(default_factory=list)

    @property
    def sections(self) -> list[SectionDiff]:
        return [self.resources, self.outputs, self.objects]

    @property
    def equal(self) -> bool:
        return not any(section.entries for section in self.sections) and not self.ownership


# --- Values ------------------------------------------------------------------------------------------


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, (Mapping, list))


def _named_items(items: list[Any]) -> Optional[dict[str, Any]]:
    # Kubernetes lists of named things (containers, env, ports, volumes) are matched by name, so inserting
    # one does not show every later entry as changed.
    if not items or not all(isinstance(i, Mapping) and isinstance(i.get("name"), str) for i in items):
        return None
    names = [i["name"] for i in items]
    return dict(zip(names, items)) if len(set(names)) == len(names) else None


def _json_container(text: Any) -> Any:
    # Providers take some structured inputs as JSON text (the AWS provider's defaultTags, a kubeconfig, an
    # IAM policy): compare what they say, not the characters.
    if isinstance(text, str) and text[:1] in "{[":
        try:
            return json.loads(text)
        except ValueError:
            return None
    return None


@dataclass(frozen=True)
class _Selected:
    """A list entry picked by name: `containers[name=ml-pipeline-api-server]`."""

    name: str


@dataclass(frozen=True)
class _JsonText:
    """A string input holding JSON, compared by what it says: `defaultTags<json>.tags.environment`."""

    key: str | int


def _format(path: tuple[Any, ...]) -> str:
    text = ""
    for i, part in enumerate(path):
        if isinstance(part, _Selected):
            text += f"[name={part.name}]"
        elif isinstance(part, _JsonText):
            text += (format_part(part.key, i == 0) if part.key != "" else "") + "<json>"
        else:
            text += format_part(part, i == 0)
    return text


def diff_values(old: Any, new: Any, path: tuple[Any, ...] = ()) -> list[FieldChange]:
    """Every leaf that differs between `old` and `new`, with its path."""
    if old == new:
        return []
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        changes: list[FieldChange] = []
        for key in sorted(set(old) | set(new), key=str):
            changes += diff_values(old.get(key, MISSING), new.get(key, MISSING), (*path, key))
        return changes
    if isinstance(old, list) and isinstance(new, list):
        return _diff_lists(old, new, path)
    old_json, new_json = _json_container(old), _json_container(new)
    if old_json is not None and new_json is not None:
        return diff_values(old_json, new_json, (*path[:-1], _JsonText(path[-1])) if path else (_JsonText(""),))
    return [FieldChange(_format(path), old, new)]


def _diff_lists(old: list[Any], new: list[Any], path: tuple[Any, ...]) -> list[FieldChange]:
    here = _format(path)
    old_named, new_named = _named_items(old), _named_items(new)
    if old_named is not None and new_named is not None:
        changes: list[FieldChange] = []
        for name in sorted(set(old_named) | set(new_named)):
            changes += diff_values(old_named.get(name, MISSING), new_named.get(name, MISSING), (*path, _Selected(name)))
        if not changes:
            return [FieldChange(f"{here} (order)", [i["name"] for i in old], [i["name"] for i in new])]
        return changes
    if all(_is_scalar(i) for i in old + new):
        # Lists of strings (CIDRs, args, hosts): say which entries came and went.
        removed = [i for i in old if i not in new]
        added = [i for i in new if i not in old]
        if not removed and not added:
            return [FieldChange(f"{here} (order)", old, new)]
        return [FieldChange(f"{here}[]", item, MISSING) for item in removed] + [
            FieldChange(f"{here}[]", MISSING, item) for item in added]
    changes = []
    for index in range(max(len(old), len(new))):
        changes += diff_values(old[index] if index < len(old) else MISSING,
                               new[index] if index < len(new) else MISSING, (*path, index))
    return changes


# --- Plans -------------------------------------------------------------------------------------------


def resource_key(urn: str) -> str:
    """The URN without `urn:pulumi:<stack>::<project>::`, so the same resource matches across stacks."""
    parts = urn.split("::", 2)
    return parts[2] if len(parts) == 3 and urn.startswith("urn:pulumi:") else urn


def _comparable_resource(resource: Mapping[str, Any]) -> dict[str, Any]:
    inputs = dict(resource["inputs"])
    if resource["type"] == CONFIG_GROUP:
        # The objects are compared one by one, by identity, in the Kubernetes objects section.
        inputs.pop("objs", None)
        inputs.pop("yaml", None)
    return {
        "provider": resource_key(resource["provider"]) if resource["provider"] else "",
        "dependencies": sorted(resource_key(d) for d in resource["dependencies"]),
        "options": resource["options"],
        "inputs": inputs,
    }


def _resource_label(resource: Mapping[str, Any]) -> str:
    return f"{resource['type']}  {resource['name']}"


def _diff_section(title: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> SectionDiff:
    section = SectionDiff(title)
    for key in sorted(set(old) | set(new)):
        if key not in new:
            section.entries.append(EntryDiff(key, "removed"))
        elif key not in old:
            section.entries.append(EntryDiff(key, "added"))
        else:
            changes = diff_values(old[key], new[key])
            if changes:
                section.entries.append(EntryDiff(key, "changed", tuple(changes)))
            else:
                section.unchanged += 1
    return section


def _resources_by_label(plan: Mapping[str, Any]) -> dict[str, Any]:
    by_key = {resource_key(r["urn"]): r for r in plan["resources"]}
    labels: dict[str, Any] = {}
    for key, resource in by_key.items():
        label = _resource_label(resource)
        # Type and name identify a resource unless two parents use the same name; then the URN path does.
        if sum(1 for r in by_key.values() if _resource_label(r) == label) > 1:
            label = f"{resource['type']}  {resource['name']}  ({key})"
        labels[label] = _comparable_resource(resource)
    return labels


def _objects_by_key(plan: Mapping[str, Any]) -> dict[str, Any]:
    objects: dict[str, Any] = {}
    for found in kubernetes_objects(plan).objects:
        key = found.key
        # A duplicate is a problem the offline checks report; here both stay visible.
        n = 2
        while key in objects:
            key, n = f"{found.key} #{n}", n + 1
        objects[key] = {"(applied by)": found.source, **found.obj}
    return objects


def diff_plans(a: Mapping[str, Any], b: Mapping[str, Any]) -> PlanDiff:
    return PlanDiff(
        resources=_diff_section("Resources", _resources_by_label(a), _resources_by_label(b)),
        outputs=_diff_section("Stack outputs", a["outputs"], b["outputs"]),
        objects=_diff_section("Kubernetes objects", _objects_by_key(a), _objects_by_key(b)),
        ownership=ownership_changes(classify(a), classify(b)),
        moves=move_lines(profile_moves(a, b)),
    )


# --- Report ------------------------------------------------------------------------------------------


def _value(value: Any) -> str:
    if value is MISSING:
        return "(absent)"
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= _VALUE_WIDTH else text[: _VALUE_WIDTH - 25] + f"... ({len(text)} characters)"


def _change_lines(change: FieldChange) -> list[str]:
    if isinstance(change.old, str) and isinstance(change.new, str) and ("\n" in change.old or "\n" in change.new):
        lines = list(difflib.unified_diff(change.old.splitlines(), change.new.splitlines(), lineterm="", n=1))[2:]
        shown = [f"        {line}" for line in lines[:_TEXT_DIFF_LINES]]
        if len(lines) > _TEXT_DIFF_LINES:
            shown.append(f"        ... {len(lines) - _TEXT_DIFF_LINES} more lines")
        return [f"      {change.path}: text changed"] + shown
    if change.old is MISSING:
        return [f"      {change.path}: + {_value(change.new)}"]
    if change.new is MISSING:
        return [f"      {change.path}: - {_value(change.old)}"]
    return [f"      {change.path}: {_value(change.old)} -> {_value(change.new)}"]


_MARKS = {"added": "+", "removed": "-", "changed": "~"}


def _is_schema_description(path: str) -> bool:
    return "openAPIV3Schema" in path and path.endswith("description")


def _entry_lines(entry: EntryDiff, full: bool) -> list[str]:
    changes = list(entry.changes)
    lines: list[str] = []
    if not full:
        # Upstream CRDs rewrap and reword their schema documentation on most releases: thousands of lines
        # that change no behaviour. Counted, not shown, unless asked for.
        described = [c for c in changes if _is_schema_description(c.path)]
        changes = [c for c in changes if not _is_schema_description(c.path)]
    for change in changes if full else changes[:_FIELDS_PER_ENTRY]:
        lines += _change_lines(change)
    if not full and len(changes) > _FIELDS_PER_ENTRY:
        lines.append(f"      ... {len(changes) - _FIELDS_PER_ENTRY} more changed fields (--full shows them)")
    if not full and described:
        lines.append(f"      ... {len(described)} schema descriptions changed (documentation only; --full shows them)")
    return lines


def render(diff: PlanDiff, label_a: str, label_b: str, full: bool = False) -> str:
    lines = [f"A: {label_a}", f"B: {label_b}", ""]
    for section in diff.sections:
        counts = ", ".join(f"{section.count(s)} {s}" for s in ("added", "removed", "changed"))
        lines.append(f"{section.title}: {counts}, {section.unchanged} unchanged")
        for entry in section.entries:
            if len(entry.changes) == 1 and not entry.changes[0].path:
                # A value with no fields (a string output): its change fits on the entry's line.
                lines.append(f"  {_MARKS[entry.status]} {entry.key}" + _change_lines(entry.changes[0])[0].strip())
                continue
            lines.append(f"  {_MARKS[entry.status]} {entry.key}")
            lines += _entry_lines(entry, full)
        lines.append("")
    lines.append(f"Ownership (created, patched, expected): {len(diff.ownership)} objects change class")
    lines += [f"  ~ {line}" for line in diff.ownership]
    lines.append("")
    if diff.moves:
        lines += [*diff.moves, ""]
    lines.append("The plans are the same." if diff.equal else "The plans differ (+ only in B, - only in A, ~ changed A -> B).")
    return "\n".join(lines) + "\n"


# --- The command -------------------------------------------------------------------------------------


def load_side(
    spec: str, *, manifests: Optional[str], kubeflow_version: Optional[str], stderr: TextIO
) -> tuple[dict[str, Any], str]:
    """A plan and a label for it: a directory's saved plan, or a stack evaluated now."""
    from tools.preview import Progress, display_path, evaluate

    path = Path(spec)
    if path.is_dir():
        if manifests or kubeflow_version:
            raise ValueError(f"{spec} is a saved plan; --manifests/--kubeflow options apply to stacks only")
        return load_plan(path), f"saved plan {display_path(path)}"
    if spec not in known_stacks():
        raise ValueError(f"{spec!r} is neither a directory with a plan.json nor a stack ({', '.join(known_stacks())})")
    plan, _ = evaluate(spec, manifests=manifests, kubeflow_version=kubeflow_version, progress=Progress(stderr, "diff"))
    details = [f"manifests {manifests}" if manifests else "", f"Kubeflow {kubeflow_version}" if kubeflow_version else ""]
    extra = ", ".join(d for d in details if d)
    return plan, f"stack {spec} (evaluated now{', ' + extra if extra else ''})"


#: What marks a directory as a fleet `make fleet` saved (tools/fleet.py): its stacks' plans are compared one by one.
FLEET_FILE = "fleet.json"


def _fleet_stacks(directory: Path) -> list[str]:
    described = json.loads((directory / FLEET_FILE).read_text())
    return [str(described["global"]), *(str(stack) for stack in described.get("regions") or [])]


def diff_fleets(a: Path, b: Path, stdout: TextIO, full: bool = False) -> int:
    """Two saved fleets, stack by stack (the global stack first, then each region): 0 same, 1 different."""
    from tools.preview import display_path

    stacks_a, stacks_b = _fleet_stacks(a), _fleet_stacks(b)
    stacks = list(dict.fromkeys([*stacks_a, *stacks_b]))
    differing = []
    for stack in stacks:
        stdout.write(f"=== {stack} ===\n")
        if stack not in stacks_a or stack not in stacks_b:
            side = "B" if stack not in stacks_a else "A"
            stdout.write(f"Only in {side}'s fleet.\n\n")
            differing.append(stack)
            continue
        diff = diff_plans(load_plan(a / stack), load_plan(b / stack))
        stdout.write(render(diff, f"saved plan {display_path(a / stack)}", f"saved plan {display_path(b / stack)}", full=full))
        stdout.write("\n")
        if not diff.equal:
            differing.append(stack)
    same = [stack for stack in stacks if stack not in differing]
    stdout.write(f"Fleet: {len(differing)} of {len(stacks)} stacks differ"
                 + (f" ({', '.join(differing)})" if differing else "")
                 + (f"; the same: {', '.join(same)}" if same else "") + "\n")
    return 1 if differing else 0


def main(argv: list[str], stdout: TextIO = sys.stdout, stderr: TextIO = sys.stderr) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.diff", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", help="stack name or saved plan directory (the before)")
    parser.add_argument("b", help="stack name or saved plan directory (the after)")
    for side in ("a", "b"):
        parser.add_argument(f"--manifests-{side}", help=f"rendered upstream manifests for stack {side.upper()}")
        parser.add_argument(f"--kubeflow-{side}", help=f"Kubeflow release of stack {side.upper()} (like 1.9.1)")
    parser.add_argument("--full", action="store_true", help="every changed field and text line, nothing counted instead")
    args = parser.parse_args(argv)
    fleets = [Path(side, FLEET_FILE).is_file() for side in (args.a, args.b)]
    if any(fleets):
        if not all(fleets) or args.manifests_a or args.manifests_b or args.kubeflow_a or args.kubeflow_b:
            print("error: a saved fleet (a directory make fleet wrote, with fleet.json) is compared with another saved "
                  "fleet only: make fleet OUT=<dir> for each side", file=stderr)
            return 2
        try:
            return diff_fleets(Path(args.a), Path(args.b), stdout, full=args.full)
        except (OSError, ValueError, KeyError) as error:
            print(f"error: cannot read the saved fleets: {error}", file=stderr)
            return 2
    try:
        plan_a, label_a = load_side(args.a, manifests=args.manifests_a, kubeflow_version=args.kubeflow_a, stderr=stderr)
        plan_b, label_b = load_side(args.b, manifests=args.manifests_b, kubeflow_version=args.kubeflow_b, stderr=stderr)
    except (pulumi.RunError, ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=stderr)
        return 2
    diff = diff_plans(plan_a, plan_b)
    stdout.write(render(diff, label_a, label_b, full=args.full))
    return 0 if diff.equal else 1


if __name__ == "__main__":
    try:
        status = main(sys.argv[1:])
    except Exception:  # noqa: BLE001 - reported, and never mistaken for "the plans differ"
        # An uncaught exception would exit 1, which CI reads as a difference; a crash is trouble (2).
        traceback.print_exc()
        status = 2
    sys.exit(status)
