"""Offline schema validation of every object before it is registered.

Built-in kinds are checked against the Kubernetes OpenAPI schemas that PyPI `kubernetes-validate`
ships, in their strict form (unknown fields are errors, as with `kubectl apply --validate=strict`).
Custom resources are checked against the `openAPIV3Schema` of their CRD, found among the objects, in
`extra_crds` (CRDs the mesh or Argo installation owns), or in `schemas` supplied by the caller; those
schemas are made strict the same way (no unknown fields unless `x-kubernetes-preserve-unknown-fields`).

Almost every object is valid, and `jsonschema` spends most of its time on bookkeeping for errors that never
come (a new validator per node it descends into): about 0.3 s for the upstream release, two thirds of it
on the CRDs' own large schemas. So each object is first checked by `ValidityCheck`, a yes/no answer for the
keywords these schemas use, exact by construction (the same type checker, the same equality, the same
reference resolution); only an object it finds invalid, or a schema using a keyword it does not know,
goes through `jsonschema` for the problems and their paths.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable

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
        # A malformed CRD gives no schema here; the built-in CRD schema reports what is wrong with it.
        spec = _mapping(crd.get("spec"))
        kind = _mapping(spec.get("names")).get("kind")
        versions = spec.get("versions")
        for version in versions if isinstance(versions, list) else []:
            version = _mapping(version)
            schema = _mapping(version.get("schema")).get("openAPIV3Schema")
            if isinstance(schema, dict) and version.get("served", True):
                schemas[(str(spec.get("group", "")), str(version.get("name", "")), str(kind))] = schema
    return schemas


def _mapping(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


# ------------------------------------------------------------------------------- the validity check

try:
    from jsonschema._utils import equal as _json_equal
except ImportError:  # a jsonschema without it: `enum` and `const` go through jsonschema itself
    _json_equal = None


class _Unsupported(Exception):
    """A schema uses a keyword (or a nested `$id`) the check does not implement."""


#: Keywords that assert nothing about an instance for a validator without a format checker.
_ANNOTATIONS = frozenset(("$schema", "$defs", "$comment", "$anchor", "title", "description", "default",
                          "examples", "deprecated", "readOnly", "writeOnly", "format"))
_Check = Callable[[Any], bool]


def _always(instance: Any) -> bool:
    return True


def _never(instance: Any) -> bool:
    return False


class ValidityCheck:
    """Whether an instance is valid against a validator's schema, much faster than `is_valid`.

    Implements the Draft 2020-12 keywords Kubernetes' and CRDs' schemas use (type, properties,
    additionalProperties, required, items, enum, const, the bounds, pattern, allOf/anyOf/oneOf/not and
    `$ref` through the validator's own resolver) and ignores what `jsonschema` ignores (annotations,
    `x-kubernetes-*`, `format` without a format checker). Any other keyword raises `_Unsupported`, so the
    caller asks `jsonschema` instead: the answer is never a guess. Schema nodes are compiled into closures
    on first use, so a large schema costs only the parts instances reach.
    """

    def __init__(self, validator: Draft202012Validator) -> None:
        if validator.format_checker is not None:
            raise _Unsupported("format assertions")
        # `$ref` resolution goes through the validator's own resolver, a private attribute of the pinned
        # jsonschema: a release without it makes every object go through `jsonschema`, slower but the same.
        resolver = getattr(validator, "_resolver", None)
        if resolver is None:
            raise _Unsupported("a jsonschema without Validator._resolver")
        self._validator = validator
        self._types = validator.TYPE_CHECKER
        # id(schema node) -> (node, check); the node is kept so its id is not reused.
        self._compiled: dict[int, tuple[Any, _Check]] = {}
        self._root = self._check_of(validator.schema, resolver, root=True)

    def __call__(self, instance: Any) -> bool:
        return self._root(instance)

    def _check_of(self, schema: Any, resolver: Any, root: bool = False) -> _Check:
        found = self._compiled.get(id(schema))
        if found is not None:
            return found[1]
        if schema is True:
            return _always
        if schema is False:
            return _never
        if not isinstance(schema, dict):
            raise _Unsupported(f"schema {schema!r}")
        if "$id" in schema and not root:
            raise _Unsupported("$id below the root")
        # Compiled lazily: a node's children (and `$ref` targets, possibly this node again) are looked
        # up when an instance first reaches them.
        cell: list[_Check] = []

        def lazy(instance: Any) -> bool:
            if not cell:
                cell.append(self._compile(schema, resolver))
                self._compiled[id(schema)] = (schema, cell[0])
            return cell[0](instance)

        self._compiled[id(schema)] = (schema, lazy)
        return lazy

    def _is_type(self, name: str) -> _Check:
        # The exact Python types decide at once; anything else asks the validator's own type checker.
        fast = {"object": dict, "array": list, "string": str, "boolean": bool}.get(name)
        is_type = self._types.is_type
        if fast is not None:
            return lambda instance: type(instance) is fast or is_type(instance, name)
        if name == "integer":
            return lambda instance: type(instance) is int or is_type(instance, name)
        if name == "number":
            return lambda instance: type(instance) in (int, float) or is_type(instance, name)
        if name == "null":
            return lambda instance: instance is None
        raise _Unsupported(f"type {name!r}")

    def _compile(self, schema: dict, resolver: Any) -> _Check:
        checks: list[_Check] = []
        known = self._validator.VALIDATORS
        for keyword, value in schema.items():
            if keyword in _ANNOTATIONS or keyword in ("$id", "properties", "additionalProperties", "required") or keyword not in known:
                continue
            checks.append(self._keyword(keyword, value, schema, resolver))
        if any(key in schema for key in ("properties", "additionalProperties", "required")):
            checks.insert(0, self._object(schema, resolver))
        if not checks:
            return _always
        if len(checks) == 1:
            return checks[0]
        return lambda instance: all(check(instance) for check in checks)

    def _object(self, schema: dict, resolver: Any) -> _Check:
        properties = schema.get("properties", {})
        additional = schema.get("additionalProperties", True)
        required = tuple(schema.get("required", ()))
        if not isinstance(properties, dict):
            raise _Unsupported("properties")
        is_object = self._is_type("object")
        check_of = self._check_of

        def check(instance: Any) -> bool:
            if not is_object(instance):
                return True
            for key, value in instance.items():
                if key in properties:
                    if not check_of(properties[key], resolver)(value):
                        return False
                elif additional is not True and not check_of(additional, resolver)(value):
                    return False
            return all(name in instance for name in required)

        return check

    def _keyword(self, keyword: str, value: Any, schema: dict, resolver: Any) -> _Check:
        check_of = self._check_of
        if keyword == "type":
            tests = [self._is_type(name) for name in (value if isinstance(value, list) else [value])]
            return lambda instance: any(test(instance) for test in tests)
        if keyword == "$ref":
            resolved = resolver.lookup(value)
            return lambda instance: check_of(resolved.contents, resolved.resolver)(instance)
        if keyword == "items":
            if "prefixItems" in schema:
                raise _Unsupported("prefixItems")
            is_array = self._is_type("array")
            return lambda instance: not is_array(instance) or all(check_of(value, resolver)(item) for item in instance)
        if keyword in ("enum", "const") and _json_equal is not None:
            options = value if keyword == "enum" else [value]
            return lambda instance: any(_json_equal(option, instance) for option in options)
        if keyword in ("allOf", "anyOf", "oneOf"):
            combine = {"allOf": all, "anyOf": any}.get(keyword)
            if combine is not None:
                return lambda instance: combine(check_of(sub, resolver)(instance) for sub in value)
            return lambda instance: sum(1 for sub in value if check_of(sub, resolver)(instance)) == 1
        if keyword == "not":
            return lambda instance: not check_of(value, resolver)(instance)
        bounds = {
            "minimum": ("number", lambda x: x >= value), "maximum": ("number", lambda x: x <= value),
            "exclusiveMinimum": ("number", lambda x: x > value), "exclusiveMaximum": ("number", lambda x: x < value),
            "minLength": ("string", lambda x: len(x) >= value), "maxLength": ("string", lambda x: len(x) <= value),
            "minItems": ("array", lambda x: len(x) >= value), "maxItems": ("array", lambda x: len(x) <= value),
            "minProperties": ("object", lambda x: len(x) >= value), "maxProperties": ("object", lambda x: len(x) <= value),
        }
        if keyword in bounds:
            kind, within = bounds[keyword]
            applies = self._is_type(kind)
            return lambda instance: not applies(instance) or within(instance)
        if keyword == "pattern":
            is_string = self._is_type("string")
            search = re.compile(value).search
            return lambda instance: not is_string(instance) or search(instance) is not None
        raise _Unsupported(keyword)


def _fast_check(validator: Draft202012Validator) -> ValidityCheck | None:
    try:
        return ValidityCheck(validator)
    except _Unsupported:
        return None


def _is_valid(check: ValidityCheck | None, obj: dict) -> bool:
    """True only when the check is sure the object is valid; False means "ask jsonschema"."""
    if check is None:
        return False
    try:
        return check(obj)
    except _Unsupported:
        return False


# ----------------------------------------------------------------------------------------- problems


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
    compiled: dict[tuple[str, str, str], tuple[Draft202012Validator, ValidityCheck | None]] = {}
    problems: list[SchemaProblem] = []
    seen: set[str] = set()
    for obj in objects:
        api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
        validator = builtin_validator(kind, api_version, kubernetes_version)
        check = _builtin_check(kind, api_version, kubernetes_version) if validator is not None else None
        if validator is None:
            group, _, version = api_version.rpartition("/")
            key = (group, version, kind)
            if key in custom and key not in compiled:
                crd_validator = Draft202012Validator(strict_crd_schema(custom[key]))
                compiled[key] = (crd_validator, _fast_check(crd_validator))
            validator, check = compiled.get(key, (None, None))
        if validator is not None and _is_valid(check, obj):
            continue  # a valid object adds no problem, however many copies of it there are
        # Identical objects validate identically: each problem is reported once.
        fingerprint = json.dumps(obj, sort_keys=True, default=str)
        if fingerprint in seen:
            continue
        seen.add(fingerprint)
        ref = object_ref(obj)
        if validator is None:
            problems.append(SchemaProblem(ref, "", f"no schema for {api_version} {kind}: neither a built-in kind nor a CRD in the manifests; supply its CRD or schema"))
            continue
        for error in validator.iter_errors(obj):
            problems.append(SchemaProblem(ref, _path(error), _message(error)))
    return problems


@functools.lru_cache(maxsize=None)
def _builtin_check(kind: str, api_version: str, version: str) -> ValidityCheck | None:
    validator = builtin_validator(kind, api_version, version)
    return None if validator is None else _fast_check(validator)
