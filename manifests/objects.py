"""Identity of Kubernetes objects, cheap copy-on-write, and where pod templates live."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

#: Workload kinds and the path from the object to its pod template.
#: CronJob nests a Job template (spec.jobTemplate.spec.template).
POD_TEMPLATE_PATHS: dict[str, tuple[str, ...]] = {
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}

CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")


@dataclass(frozen=True, order=True)
class Change:
    """One thing a transformation did (or refused to do) to one object."""

    ref: str
    what: str


@dataclass(frozen=True)
class TransformResult:
    """What one transformation returns: the objects (changed ones are copies), what it did, and any
    objects it produced that are not in the input (they count separately in the accounting)."""

    objects: list[dict]
    changes: tuple[Change, ...]
    added: tuple[dict, ...] = ()


def api_group(obj: dict) -> str:
    api_version = obj.get("apiVersion", "")
    return api_version.split("/", 1)[0] if "/" in api_version else ""


def object_ref(obj: dict) -> str:
    """`Kind namespace/name` (cluster-scoped objects: `Kind name`), as errors and reports name objects."""
    metadata = obj.get("metadata") or {}
    namespace = metadata.get("namespace")
    name = metadata.get("name", "<unnamed>")
    return f"{obj.get('kind', '<no kind>')} {namespace}/{name}" if namespace else f"{obj.get('kind', '<no kind>')} {name}"


def object_key(obj: dict) -> tuple[str, str, str, str]:
    """A stable sort key: group, kind, namespace, name."""
    metadata = obj.get("metadata") or {}
    return (api_group(obj), obj.get("kind", ""), metadata.get("namespace") or "", metadata.get("name", ""))


def labels_of(obj: dict) -> dict:
    return (obj.get("metadata") or {}).get("labels") or {}


def clone(node: Any) -> Any:
    """Deep copy of parsed YAML/JSON data; several times faster than copy.deepcopy on such trees."""
    if isinstance(node, dict):
        return {key: clone(value) for key, value in node.items()}
    if isinstance(node, list):
        return [clone(value) for value in node]
    return node


def pod_template(obj: dict) -> dict | None:
    """The pod template of a workload object, or None for other kinds."""
    path = POD_TEMPLATE_PATHS.get(obj.get("kind", ""))
    if path is None:
        return None
    node: Any = obj
    for step in path:
        if not isinstance(node, dict) or step not in node:
            return None
        node = node[step]
    return node if isinstance(node, dict) else None


def containers_of(pod_spec: dict) -> Iterator[dict]:
    for list_name in CONTAINER_LISTS:
        for container in pod_spec.get(list_name) or []:
            if isinstance(container, dict):
                yield container
