"""The fast validity check answers exactly as jsonschema does, or steps aside for it."""

from __future__ import annotations

import random

import pytest
from jsonschema import Draft202012Validator

from manifests.objects import clone
from manifests.validate import ValidityCheck, _Unsupported, builtin_validator, crd_schemas, strict_crd_schema, validate_objects
from tests.manifests.conftest import enterprise_result
from tests.upstream import upstream_objects


def check(schema: dict, instance: object) -> bool:
    return ValidityCheck(Draft202012Validator(schema))(instance)


@pytest.mark.parametrize(
    "schema, instance",
    [
        ({"type": "integer"}, 1.0),  # an integral float is an integer in Draft 2020-12
        ({"type": "integer"}, 1.5),
        ({"type": "integer"}, True),  # a bool is not
        ({"type": "number"}, False),
        ({"type": ["integer", "string"]}, "80"),
        ({"type": "object"}, []),
        ({"enum": [1]}, True),
        ({"enum": [True]}, 1),
        ({"enum": [[1, 2]]}, [1, 2]),
        ({"enum": [{"a": 1}]}, {"a": True}),
        ({"const": "x"}, "x"),
        ({"oneOf": [{"type": "integer"}, {"minimum": 0}]}, 3),  # valid under both: invalid
        ({"oneOf": [{"type": "integer"}, {"type": "string"}]}, 3),
        ({"anyOf": [{"type": "integer"}, {"type": "string"}]}, None),
        ({"not": {"type": "string"}}, "x"),
        ({"pattern": "b"}, "abc"),  # search, not match
        ({"pattern": "^b"}, "abc"),
        ({"pattern": "^b"}, 7),  # applies to strings only
        ({"minimum": 2, "maximum": 4}, 4),
        ({"exclusiveMaximum": 4}, 4),
        ({"maxLength": 2}, "ab"),
        ({"minItems": 1}, []),
        ({"maxProperties": 1}, {"a": 1, "b": 2}),
        ({"properties": {"a": {"type": "string"}}, "additionalProperties": False}, {"a": "x", "b": 1}),
        ({"properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "integer"}}, {"a": "x", "b": 1}),
        ({"properties": {"a": False}}, {"a": 1}),
        ({"required": ["a"]}, {"b": 1}),
        ({"required": ["a"]}, "not an object"),
        ({"items": {"type": "string"}}, ["a", 1]),
        ({"format": "date-time", "description": "annotations assert nothing"}, "yesterday"),
        ({"$defs": {"node": {"type": "object", "properties": {"child": {"$ref": "#/$defs/node"}}, "additionalProperties": False}},
          "$ref": "#/$defs/node"}, {"child": {"child": {"oops": 1}}}),
    ],
)
def test_answers_as_jsonschema_does(schema, instance):
    assert check(schema, instance) == Draft202012Validator(schema).is_valid(instance)


@pytest.mark.parametrize("schema", [
    {"patternProperties": {"^x-": {"type": "string"}}},
    {"uniqueItems": True},
    {"properties": {"a": {"$id": "https://corp.example/a", "type": "string"}}},
])
def test_a_keyword_it_does_not_implement_steps_aside(schema):
    instance = {"a": "x", "x-b": 1} if "uniqueItems" not in schema else [1, 1]
    with pytest.raises(_Unsupported):
        check(schema, instance)


def test_objects_it_steps_aside_for_are_still_validated_by_jsonschema():
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "widgets.corp.example"},
        "spec": {"group": "corp.example", "names": {"kind": "Widget", "plural": "widgets"}, "scope": "Namespaced",
                 "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                     "type": "object", "properties": {"spec": {"type": "object", "properties": {"ports": {"type": "array", "uniqueItems": True}}}}}}}]},
    }
    widget = {"apiVersion": "corp.example/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "ns"}, "spec": {"ports": [80, 80]}}
    (problem,) = validate_objects([crd, widget])
    assert problem.ref == "Widget ns/w" and problem.path == "spec.ports" and "non-unique" in problem.message


def _mutate(obj: dict, rng: random.Random) -> dict:
    """One random edit a user or a transformation could get wrong."""
    mutated = clone(obj)
    nodes = []

    def walk(node, parent, key):
        nodes.append((node, parent, key))
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, node, k)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, node, i)

    walk(mutated, None, None)
    node, parent, key = rng.choice(nodes[1:])
    replacements = [None, True, False, 0, 1, -1, 1.5, 2.0, "", "x", "80", [], {}, [1], {"a": 1}, "A" * 300, 10**12]
    roll = rng.random()
    if roll < 0.5 or parent is None:
        parent[key] = rng.choice(replacements)
    elif roll < 0.7 and isinstance(parent, dict):
        del parent[key]
    elif isinstance(node, dict):
        node[rng.choice(["bogus", "name", "value", "type", "key"])] = rng.choice(replacements)
    elif isinstance(node, list) and node:
        node.append(clone(rng.choice(node)))
    else:
        parent[key] = rng.choice(replacements)
    mutated["apiVersion"], mutated["kind"] = obj["apiVersion"], obj["kind"]
    return mutated


def test_agrees_with_jsonschema_on_mutated_upstream_objects():
    # The transformed release plus the CRDs of excluded components, as prepare_release validates them.
    objects = enterprise_result("1.10.2").objects
    custom = crd_schemas(upstream_objects() + objects)
    validators: dict = {}
    checks: dict = {}
    rng = random.Random(8)
    verdicts = {True: 0, False: 0}
    for _ in range(1500):
        original = rng.choice(objects)
        mutated = _mutate(original, rng)
        validator = builtin_validator(mutated["kind"], mutated["apiVersion"])
        if validator is None:
            group, _, version = mutated["apiVersion"].rpartition("/")
            key = (group, version, mutated["kind"])
            if key not in validators:
                validators[key] = Draft202012Validator(strict_crd_schema(custom[key]))
            validator = validators[key]
        expected = validator.is_valid(mutated)
        fast = checks.setdefault(id(validator), ValidityCheck(validator))
        assert fast(mutated) == expected, (original["kind"], original["metadata"]["name"])
        verdicts[expected] += 1
    assert min(verdicts.values()) > 300  # both answers were exercised


def test_a_jsonschema_without_the_private_resolver_leaves_every_object_to_jsonschema():
    from types import SimpleNamespace

    from manifests.validate import _fast_check

    validator = Draft202012Validator({"type": "object"})
    without_resolver = SimpleNamespace(format_checker=None, TYPE_CHECKER=validator.TYPE_CHECKER,
                                       VALIDATORS=validator.VALIDATORS, schema=validator.schema)
    assert _fast_check(without_resolver) is None
    assert _fast_check(validator) is not None
