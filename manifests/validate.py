"""Offline schema validation of every object before it is registered.

Built-in kinds are checked against the Kubernetes OpenAPI schemas that PyPI `kubernetes-validate`
ships, in their strict form (unknown fields are errors, as with `kubectl apply --validate=strict`).
Custom resources are checked against the `openAPIV3Schema` of their CRD, found among the objects, in
`extra_crds` (CRDs the mesh or Argo installation owns), or in `schemas` supplied by the caller; those
schemas are made strict the same way (no unknown fields unless `x-kubernetes-preserve-unknown-fields`).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any, Iterable

import jsonschema
from jsonschema import Draft202012Validator
from kubernetes_validate import utils as kubernetes_schemas
from referencing import Registry, Resource

from manifests.objects import api_group, object_ref

#: EKS's standard-support versions are 1.30-1.33 at the time of writing; validate against the newest.
KUBERNETES_VERSION = "1.33"


@dataclass(frozen=True)
class SchemaProblem:
    ref: str
    #: dotted field path inside the object, e.g. `spec.template.spec.containers[0].image`
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.ref}: {self.path or '<root>'}: {self.message}"


def _schema_dir(version: str) -> str:
    available = [v for v in kubernetes_schemas.all_versions() if kubernetes_schemas.major_minor(v) <= version]
    if not available:
        raise ValueError(f"kubernetes-validate ships no schemas for Kubernetes {version} or older")
    return f"v{available[-1]}-local-strict"


@functools.lru_cache(maxsize=None)
def _definitions_registry(version: str) -> Registry:
    definitions = kubernetes_schemas.schema_contents(f"kubernetes-json-schema/{_schema_dir(version)}/_definitions.json", version)
    return Resource.from_contents(definitions) @ Registry()


@functools.lru_cache(maxsize=None)
def builtin_validator(kind: str, api_version: str, version: str = KUBERNETES_VERSION) -> Draft202012Validator | None:
    """One compiled validator per kind and apiVersion (reading the 1.4 MB definitions once), or None
    when Kubernetes has no such built-in kind."""
    # kubernetes-validate names files `<kind>-<group prefix>-<version>.json`: rbac.authorization.k8s.io/v1 -> rbac-v1
    group, _, group_version = api_version.rpartition("/")
    prefix = f"{group.split('.', 1)[0]}-{group_version}" if group else group_version
    try:
        schema = kubernetes_schemas.schema_contents(f"kubernetes-json-schema/{_schema_dir(version)}/{kind.lower()}-{prefix}.json", version)
    except FileNotFoundError:
        return None
    return Draft202012Validator(schema, registry=Resource.from_contents(schema) @ _definitions_registry(version))


def strict_crd_schema(schema: dict) -> dict:
    """The CRD schema with unknown fields rejected where the API server would prune them."""

    def tighten(node: Any) -> Any:
        if isinstance(node, list):
            return [tighten(item) for item in node]
        if not isinstance(node, dict):
            return node
        result = {key: tighten(value) for key, value in node.items()}
        if (
            "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            result["additionalProperties"] = False
        if node.get("x-kubernetes-int-or-string"):
            result.pop("type", None)
            result["type"] = ["integer", "string"]
        return result

    strict = tighten(schema)
    # Every object carries apiVersion, kind and metadata; many CRD schemas leave them out.
    properties = strict.setdefault("properties", {})
    for key in ("apiVersion", "kind"):
        properties.setdefault(key, {"type": "string"})
    properties.setdefault("metadata", {"type": "object"})
    return strict


def crd_schemas(crds: Iterable[dict]) -> dict[tuple[str, str, str], dict]:
    """(group, version, kind) -> openAPIV3Schema of every served version of the given CRDs."""
    schemas = {}
    for crd in crds:
        if crd.get("kind") != "CustomResourceDefinition":
            continue
        spec = crd.get("spec") or {}
        kind = (spec.get("names") or {}).get("kind")
        for version in spec.get("versions") or []:
            schema = ((version.get("schema") or {}).get("openAPIV3Schema"))
            if schema is not None and version.get("served", True):
                schemas[(spec.get("group", ""), version.get("name", ""), kind)] = schema
    return schemas


def _path(error: jsonschema.ValidationError) -> str:
    text = ""
    for step in error.absolute_path:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else str(step))
    return text


def _message(error: jsonschema.ValidationError) -> str:
    # Strict schemas say "Additional properties are not allowed ('foo' was unexpected)"; keep it short.
    best = jsonschema.exceptions.best_match([error]) or error
    return best.message if len(best.message) < 300 else best.message[:297] + "..."


def validate_objects(
    objects: Iterable[dict],
    extra_crds: Iterable[dict] = (),
    schemas: dict[tuple[str, str, str], dict] | None = None,
    kubernetes_version: str = KUBERNETES_VERSION,
) -> list[SchemaProblem]:
    """Every problem of every object; an empty list means all of them validate."""
    objects = list(objects)
    custom = crd_schemas(list(extra_crds) + objects)
    custom.update(schemas or {})
    compiled: dict[tuple[str, str, str], Draft202012Validator] = {}
    problems: list[SchemaProblem] = []
    seen: set[str] = set()
    for obj in objects:
        ref = object_ref(obj)
        # Identical objects validate identically; the JSON text is a cheaper key than re-validating.
        fingerprint = json.dumps(obj, sort_keys=True, default=str)
        if fingerprint in seen:
            continue
        seen.add(fingerprint)
        api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
        validator = builtin_validator(kind, api_version, kubernetes_version)
        if validator is None:
            group, _, version = api_version.rpartition("/")
            key = (group, version, kind)
            if key not in custom:
                problems.append(SchemaProblem(ref, "", f"no schema for {api_version} {kind}: neither a built-in kind nor a CRD in the manifests; supply its CRD or schema"))
                continue
            if key not in compiled:
                compiled[key] = Draft202012Validator(strict_crd_schema(custom[key]))
            validator = compiled[key]
        for error in validator.iter_errors(obj):
            problems.append(SchemaProblem(ref, _path(error), _message(error)))
    return problems
