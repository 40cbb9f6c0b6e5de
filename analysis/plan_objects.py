"""The Kubernetes objects a plan (`make preview`'s plan.json) would apply, read back from its resources.

Pure Python over the plan's JSON: the preview writes them, and the diff and the upgrade plan compare them.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from manifests.objects import sharing_decoder, yaml_stream_documents

#: How the plan shows a secret and a value known only after deploy (tools.plan writes them).
SECRET = "[secret]"
KNOWN_AFTER_DEPLOY = "(known after deploy)"
CONFIG_GROUP = "kubernetes:yaml/v2:ConfigGroup"



@dataclass(frozen=True)
class KubernetesObject:
    """One object that would be applied, and which resource applies it."""

    obj: dict[str, Any]
    #: File under manifests/ it is written to.
    file: str
    #: The resource that applies it (`ConfigGroup kubeflow-core`, `ServiceAccount pipeline-runner`).
    source: str
    #: URN of that resource.
    urn: str = ""
    #: Server-side apply patch of an object that exists already (`kubernetes:*Patch` types).
    patch: bool = False

    @property
    def key(self) -> str:
        """`apiVersion kind namespace/name` (cluster-scoped: `apiVersion kind name`), as the diff matches them."""
        metadata = self.obj.get("metadata") if isinstance(self.obj.get("metadata"), Mapping) else {}
        namespace = metadata.get("namespace")
        name = metadata.get("name", "<unnamed>")
        where = f"{namespace}/{name}" if namespace else str(name)
        return f"{self.obj.get('apiVersion', '<no apiVersion>')} {self.obj.get('kind', '<no kind>')} {where}" + (
            " (patch)" if self.patch else "")


@dataclass(frozen=True)
class KubernetesObjects:
    objects: list[KubernetesObject]
    #: Resources whose objects cannot be known offline (charts, files, unknown inputs), one line each.
    not_expanded: list[str]


_NOT_OBJECT_TYPES = ("kubernetes:yaml/v2:", "kubernetes:yaml:", "kubernetes:helm.sh/", "kubernetes:kustomize")


def _safe_file_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def _config_group_order(groups: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """ConfigGroups in the order they are applied (their `dependsOn` chain), ties by name."""
    by_urn = {g["urn"]: g for g in groups}
    placed: list[Mapping[str, Any]] = []
    done: set[str] = set()
    remaining = sorted(groups, key=lambda g: (g["name"], g["urn"]))
    while remaining:
        ready = [g for g in remaining if all(d in done or d not in by_urn for d in g["dependencies"])]
        # A cycle cannot be deployed either; place the rest by name rather than loop.
        for group in ready or remaining:
            placed.append(group)
            done.add(group["urn"])
        remaining = [g for g in remaining if g["urn"] not in done]
    return placed


def _objects_of_config_group(resource: Mapping[str, Any], file: str,
                             decoder: Any = None) -> tuple[list[KubernetesObject], list[str]]:
    inputs = resource["inputs"]
    source = f"ConfigGroup {resource['name']}"
    objects: list[KubernetesObject] = []
    missing: list[str] = []
    objs = inputs.get("objs")
    if isinstance(objs, list):
        for obj in objs:
            if isinstance(obj, Mapping):
                objects.append(KubernetesObject(dict(obj), file, source, resource["urn"]))
            else:
                missing.append(f"{source}: an entry of objs is {obj!r}")
    elif objs is not None:
        missing.append(f"{source}: objs is {objs!r}")
    documents = inputs.get("yaml")
    for text in documents if isinstance(documents, list) else [documents] if documents else []:
        if text in (SECRET, KNOWN_AFTER_DEPLOY):
            missing.append(f"{source}: yaml is {text}")
            continue
        for obj in yaml_stream_documents(text, decoder):
            if obj:
                objects.append(KubernetesObject(obj, file, source, resource["urn"]))
    if inputs.get("files"):
        missing.append(f"{source}: files {inputs['files']!r} are read by the provider at deploy time")
    return objects, missing


#: Plans being read by one command (see `read_once`): id -> (the plan, its resources list, its objects or None).
_READ_ONCE: dict[int, tuple[Mapping[str, Any], Any, "KubernetesObjects | None"]] = {}


@contextlib.contextmanager
def read_once(plan: Mapping[str, Any], objects: "KubernetesObjects | None" = None) -> Iterator["KubernetesObjects"]:
    """Within: `kubernetes_objects(plan)` expands the plan's ConfigGroups once and gives every later caller the same
    answer (the preview's phases ask for it eight times; at 1,000 profiles each expansion is 17,560 objects), or
    `objects` when the caller has read them already. For a plan nobody changes meanwhile: the answer is kept for the
    same plan object and the same resources list. Nested for the same plan, the outermost reading holds."""
    key = id(plan)
    entry = _READ_ONCE.get(key)
    if entry is not None and entry[0] is plan:
        yield kubernetes_objects(plan)
        return
    _READ_ONCE[key] = (plan, plan["resources"], objects)
    try:
        yield kubernetes_objects(plan)
    finally:
        _READ_ONCE.pop(key, None)


def kubernetes_objects(plan: Mapping[str, Any]) -> KubernetesObjects:
    """Every Kubernetes object the plan would apply: per ConfigGroup in apply order, then per kind."""
    entry = _READ_ONCE.get(id(plan))
    if entry is not None and entry[0] is plan and entry[1] is plan["resources"]:
        if entry[2] is None:
            entry = (plan, plan["resources"], _expanded(plan))
            _READ_ONCE[id(plan)] = entry
        return entry[2]
    return _expanded(plan)


def _expanded(plan: Mapping[str, Any]) -> KubernetesObjects:
    resources = plan["resources"]
    groups = _config_group_order([r for r in resources if r["type"] == CONFIG_GROUP])
    objects: list[KubernetesObject] = []
    not_expanded: list[str] = []
    width = len(str(len(groups)))
    # One copy of each string for every group's objects: a plan of thousands of profiles holds the same few
    # thousand strings a hundred thousand times over (at 10,000 profiles, hundreds of MB).
    decoder = sharing_decoder({})
    for index, group in enumerate(groups, start=1):
        file = f"{index:0{width}d}-configgroup-{_safe_file_name(group['name'])}.yaml"
        found, missing = _objects_of_config_group(group, file, decoder)
        objects += found
        not_expanded += missing
    singles: list[KubernetesObject] = []
    for resource in resources:
        type_ = resource["type"]
        if not type_.startswith("kubernetes:") or type_ == CONFIG_GROUP:
            continue
        inputs = resource["inputs"]
        if type_.startswith(_NOT_OBJECT_TYPES) or not ("apiVersion" in inputs and "kind" in inputs):
            not_expanded.append(f"{type_} {resource['name']}: not an object the preview can expand")
            continue
        patch = type_.endswith("Patch")
        kind = str(inputs["kind"])
        file = f"{_safe_file_name(kind)}{'-patch' if patch else ''}.yaml"
        singles.append(KubernetesObject(dict(inputs), file, f"{type_.rsplit(':', 1)[-1]} {resource['name']}",
                                        resource["urn"], patch))
    singles.sort(key=lambda o: (o.file, o.key, o.source))
    return KubernetesObjects(objects + singles, sorted(not_expanded))
