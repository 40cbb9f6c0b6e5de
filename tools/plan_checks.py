"""Offline validation of a plan: the checks `make preview` runs before anyone deploys it.

`validate_plan(plan)` takes the plan exactly as `plan.json` holds it (see tools/plan.py: secrets are
`[secret]`, deploy-time values `(known after deploy)`) and returns every problem found, one readable line
each, naming the resource or object. An empty list means the plan passes.

To add a check (schemas, guardrails, ...), write a function `(plan) -> Iterable[str]` and append it to
`CHECKS`. `kubernetes_objects(plan)` gives every object the plan would apply, with the resource that
applies it. Checks must not raise on a plan they do not understand; they report it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import yaml

from analysis import admission
from analysis.plan_objects import read_once
from manifests import guardrails
from manifests.namespace import default_namespace_references
from manifests.mesh import PROFILE_LABELS_KEY, is_profile_labels_config_map
from manifests.guardrails import GuardrailParams, GuardrailReport, PlannedObject, PlannedResource
from tools.admission_verdicts import StoredVerdicts, verdicts_dir
from tools.kept import REPO_ROOT, Kept, code_digest, key
from tools.plan import (
    CONFIG_GROUP,
    IMAGE_MIRROR_EXPORT,
    KNOWN_AFTER_DEPLOY,
    SECRET,
    TRANSFORM_REPORT_EXPORT,
    KubernetesObjects,
    image_mirror_pairs,
    kubernetes_objects,
)

Plan = Mapping[str, Any]

#: The stack output stating the rules the stack is held to, in the policy pack's config format.
POLICY_PACK_CONFIG_EXPORT = "policyPackConfig"


@contextmanager
def objects_read_once(plan: Plan, objects: KubernetesObjects | None = None) -> Iterator[KubernetesObjects]:
    """While the block runs, every check of `plan` reads its objects from one reading (`objects`, when the caller
    read them already) instead of parsing every ConfigGroup's text again: at 1,000 profiles each reading is a
    fifth of a second, and five checks read them. The checks only read the objects, never change them
    (analysis.plan_objects.read_once, which the whole preview holds)."""
    with read_once(plan, objects) as found:
        yield found


def plan_objects(plan: Plan) -> KubernetesObjects:
    """`kubernetes_objects(plan)`: the reading `objects_read_once` holds for this very plan, if any."""
    return kubernetes_objects(plan)


def objects_are_identified(plan: Plan) -> Iterable[str]:
    """The provider needs apiVersion, kind and metadata.name to apply an object at all."""
    for found in plan_objects(plan).objects:
        obj = found.obj
        metadata = obj.get("metadata")
        missing = [field for field, present in (
            ("apiVersion", isinstance(obj.get("apiVersion"), str)),
            ("kind", isinstance(obj.get("kind"), str)),
            ("metadata.name", isinstance(metadata, Mapping) and isinstance(metadata.get("name"), str)),
        ) if not present]
        if missing:
            yield f"{found.source}: object {found.key} has no {', '.join(missing)}"


def objects_are_applied_once(plan: Plan) -> Iterable[str]:
    """Two resources applying the same object fight over it on every `pulumi up`."""
    sources: dict[str, list[str]] = {}
    for found in plan_objects(plan).objects:
        sources.setdefault(found.key, []).append(found.source)
    for key, where in sorted(sources.items()):
        if len(where) > 1:
            yield f"object {key} is applied {len(where)} times (by {', '.join(sorted(where))})"


def exports_have_the_shapes_the_preview_reads(plan: Plan) -> Iterable[str]:
    """images.txt and the transformation report are only as good as the exports they are read from."""
    outputs = plan["outputs"]
    if IMAGE_MIRROR_EXPORT in outputs:
        _, problem = image_mirror_pairs(outputs[IMAGE_MIRROR_EXPORT])
        if problem:
            yield f"stack output {problem}"
    report = outputs.get(TRANSFORM_REPORT_EXPORT)
    if report is not None:
        if not isinstance(report, Mapping):
            yield f"stack output {TRANSFORM_REPORT_EXPORT} is a {type(report).__name__}; expected a mapping"
            return
        for key, expected in (("changes", Mapping), ("excluded", Mapping), ("exclusions", Mapping), ("added", list)):
            if key in report and not isinstance(report[key], expected):
                yield f"stack output {TRANSFORM_REPORT_EXPORT}.{key} is a {type(report[key]).__name__}; expected a {expected.__name__.lower()}"


def _as_planned(value: Any, path: str = "") -> Any:
    """plan.json's stand-ins as the guardrails' model: `[secret]` a Secret, `(known after deploy)` Unknown."""
    if value == SECRET:
        return guardrails.Secret()
    if value == KNOWN_AFTER_DEPLOY:
        return guardrails.Unknown(path)
    if isinstance(value, Mapping):
        return {key: _as_planned(item, f"{path}.{key}" if path else key) for key, item in value.items()}
    if isinstance(value, list):
        return [_as_planned(item, f"{path}[{index}]") for index, item in enumerate(value)]
    return value


def _guardrail_modules() -> list[str]:
    """What the object guardrails' findings are a function of besides the objects and the rules: the rules' code and
    everything it may import (every module of manifests/, whatever it is), and this module."""
    return sorted(str(path.relative_to(REPO_ROOT)) for path in (REPO_ROOT / "manifests").glob("*.py")) + ["tools/plan_checks.py"]


class KeptFindings:
    """The object guardrails' findings in each ConfigGroup's objects (tools.kept, by the group's source, the stack's
    rules and the guardrails' code): read back for a group found before, found and kept otherwise. Called by
    check_plan per object."""

    def __init__(self, found: KubernetesObjects, sources: Mapping[str, str], rules: Mapping[str, Any]) -> None:
        self.kept = Kept("guardrails")
        stamp = code_digest(_guardrail_modules()) + json.dumps(rules, sort_keys=True).encode()
        #: Each object of a group's file: the group's key and the object's index in the file.
        self.places: dict[int, tuple[str, str]] = {}
        #: Group key -> (what was kept of it: index of an object with findings -> its findings, or None; what is found).
        self.groups: dict[str, Any] = {}
        files: dict[str, list[Any]] = {}  # file -> [the group's key, the next object's index]
        for obj in found.objects:
            source = sources.get(obj.file)
            if source is None:
                continue
            place = files.get(obj.file)
            if place is None:
                group = key(stamp, source)
                kept = self.kept.get(group)
                self.groups[group] = (kept, {}) if isinstance(kept, dict) else (None, {})
                place = files[obj.file] = [group, 0]
            self.places[id(obj.obj)] = (place[0], str(place[1]))
            place[1] += 1
        self.unkept: set[str] = set()

    def __call__(self, each: PlannedObject, check: Callable[[PlannedObject], list[str] | None]) -> list[str] | None:
        place = self.places.get(id(each.obj))
        if place is None:
            return check(each)
        group, index = place
        kept, now = self.groups[group]
        if kept is not None:
            found = kept.get(index, [])
            if isinstance(found, list) and all(isinstance(message, str) for message in found):
                if found:
                    now[index] = list(found)
                return list(found)
            self.unkept.add(group)  # a kept entry that is not a list of messages: found again, and next time
        found = check(each)
        if found is None:
            self.unkept.add(group)  # not a plain object: always checked
        elif found:
            now[index] = found
        return found

    def save(self) -> None:
        for group, (_, now) in self.groups.items():
            if group not in self.unkept:
                self.kept.put(group, now)
        self.kept.save()


def guardrail_report(plan: Plan, sources: Mapping[str, str] | None = None) -> GuardrailReport:
    """The guardrails (manifests/guardrails.py, the policy pack's own checks) over the plan, against the
    rules the stack states in its policyPackConfig output. What only deploy can tell is deferred; so are
    the objects of ConfigGroups whose text is not known offline. With `sources` (tools.plan.group_sources), what the
    object rules find in each ConfigGroup's objects is kept between previews (KeptFindings)."""
    config = plan["outputs"].get(POLICY_PACK_CONFIG_EXPORT)
    if not isinstance(config, Mapping):
        return GuardrailReport([f"stack output {POLICY_PACK_CONFIG_EXPORT} is {config!r}; without the rules the stack states, "
                                "its guardrails cannot be checked"])
    types = {resource["urn"]: resource["type"] for resource in plan["resources"]}
    found = plan_objects(plan)
    # Documents of a ConfigGroup are JSON text, which holds no stand-ins; typed resources' inputs may.
    objects = [PlannedObject(o.obj) if types.get(o.urn) == CONFIG_GROUP else PlannedObject(_as_planned(o.obj), typed=True)
               for o in found.objects]
    resources = [PlannedResource(r["type"], r["name"], _as_planned(r["inputs"]), r["urn"], tuple(r["dependencies"]))
                 # Karpenter's NodePool is a Kubernetes resource a resource rule reads (the GPU pool's taints).
                 for r in plan["resources"] if not r["type"].startswith("kubernetes:") or r["type"] == guardrails.NODE_POOL_TYPE]
    kept = KeptFindings(found, sources, config) if sources is not None else None
    report = guardrails.check_plan(resources, GuardrailParams.from_policy_config(config), objects, reuse=kept)
    if kept is not None:
        kept.save()
    return GuardrailReport(report.violations, report.deferred + [f"objects not known offline: {line}" for line in found.not_expanded])


def guardrails_hold(plan: Plan) -> Iterable[str]:
    """Every guardrail violation, each with its policy's name and message (`make preview` fails on any)."""
    return guardrail_report(plan).violations


_LAST_POD_ADMISSION: list[tuple[int, admission.PodAdmission]] = []


def plan_pod_admission(plan: Plan) -> admission.PodAdmission:
    """The program's pod admission policy over the plan (analysis/admission.py), on the stack's data plane.
    The last answer is kept for the same plan object: the preview reports its figures after the check ran."""
    if _LAST_POD_ADMISSION and _LAST_POD_ADMISSION[0][0] == id(plan):
        return _LAST_POD_ADMISSION[0][1]
    found = _plan_pod_admission(plan)
    _LAST_POD_ADMISSION[:] = [(id(plan), found)]
    return found


def _plan_pod_admission(plan: Plan) -> admission.PodAdmission:
    objects = [found.obj for found in plan_objects(plan).objects]
    report = plan["outputs"].get(TRANSFORM_REPORT_EXPORT)
    mesh = (report.get("mesh") if isinstance(report, Mapping) else None) or {}
    profile_labels = None
    for obj in objects:
        if is_profile_labels_config_map(obj):
            loaded = yaml.safe_load(obj["data"][PROFILE_LABELS_KEY] or "") or {}
            profile_labels = loaded if isinstance(loaded, dict) else None
    # Verdicts of earlier previews, by content: only pods and policies that changed are evaluated again.
    return admission.pod_admission(objects, profile_labels, str(mesh.get("dataPlane") or "sidecar-init"),
                                   bool(mesh.get("nativeSidecars")), StoredVerdicts(verdicts_dir()))


def pods_are_held_to_baseline(plan: Plan) -> Iterable[str]:
    """No namespace where pods run is effectively `privileged`; the release's pods, injected, pass the policy; hostile pods do not."""
    return plan_pod_admission(plan).problems


def no_default_namespace_is_left(plan: Plan) -> Iterable[str]:
    """With `kubeflow.namespace` (or `kubeflow.systemNamespace`) chosen, no object the plan applies still names
    upstream's namespace outside the allow-list (manifests.namespace.ALLOWED)."""
    report = plan["outputs"].get(TRANSFORM_REPORT_EXPORT)
    chosen = (report.get("namespaces") if isinstance(report, Mapping) else None) or {}
    moved = tuple(sorted(old for old, new in chosen.items() if old != new))
    if not moved:
        return
    objects = [found.obj for found in plan_objects(plan).objects]
    left = default_namespace_references(objects, moved)
    for line in left[:20]:
        yield f"namespace: {line} still names {' or '.join(moved)} (kubeflow.namespace, kubeflow.systemNamespace)"
    if len(left) > 20:
        yield f"namespace: and {len(left) - 20} more references to {' or '.join(moved)}"


CHECKS: list[Callable[[Plan], Iterable[str]]] = [
    objects_are_identified,
    objects_are_applied_once,
    exports_have_the_shapes_the_preview_reads,
    guardrails_hold,
    pods_are_held_to_baseline,
    no_default_namespace_is_left,
]


def validate_plan(plan: Plan, guardrails: GuardrailReport | None = None) -> list[str]:
    """Every problem every check finds in `plan`; empty when it passes. `guardrails`: the plan's guardrail report
    when the caller has it already (the preview reads its deferred rules too): not computed twice."""
    problems: list[str] = []
    with objects_read_once(plan, plan_objects(plan)):
        for check in CHECKS:
            problems += list(guardrails.violations if check is guardrails_hold and guardrails is not None else check(plan))
    return problems
