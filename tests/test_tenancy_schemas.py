"""Every object the profiles generate is valid for the API server that will receive it.

Built-in kinds are checked with kubernetes-validate (strict: an unknown field is an error, where the API
server would silently drop it); the Profile and AuthorizationPolicy against the openAPIV3Schema of the CRDs
in the upstream release. This is a small validator local to these tests, until the shared manifests
validation lands.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from tests.test_tenancy import objects_of, tenancy_groups
from tests.upstream import upstream_objects

#: The Kubernetes minor version the EKS clusters run (the mocks answer 1.31 for the cluster).
KUBERNETES_VERSION = "1.31"
BUILT_IN_GROUPS = ("v1", "rbac.authorization.k8s.io/v1", "networking.k8s.io/v1")


def _strict(schema: Any) -> Any:
    """The CRD schema with unknown fields refused wherever the API server would prune them."""
    if isinstance(schema, dict):
        schema = {key: _strict(value) for key, value in schema.items()}
        if (
            schema.get("type") == "object"
            and "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    return schema


@functools.lru_cache(maxsize=None)
def crd_validator(api_version: str, kind: str) -> jsonschema.protocols.Validator:
    group, version = api_version.split("/")
    for obj in upstream_objects():
        if obj["kind"] != "CustomResourceDefinition":
            continue
        spec = obj["spec"]
        if spec["group"] == group and spec["names"]["kind"] == kind:
            for served in spec["versions"]:
                if served["name"] == version and served.get("served"):
                    schema = copy.deepcopy(served["schema"]["openAPIV3Schema"])
                    # The API server accepts these on every object even where a CRD's schema omits them (Istio's).
                    for field in ("apiVersion", "kind"):
                        schema["properties"].setdefault(field, {"type": "string"})
                    schema["properties"].setdefault("metadata", {"type": "object"})
                    schema = _strict(schema)
                    return jsonschema.Draft7Validator(schema)
    raise LookupError(f"no served CRD version for {api_version} {kind} in the upstream release")


def validate(obj: dict[str, Any]) -> None:
    if obj["apiVersion"] in BUILT_IN_GROUPS:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    else:
        crd_validator(obj["apiVersion"], obj["kind"]).validate(obj)


def test_every_generated_object_is_valid_for_its_schema(stack_run):
    kinds = set()
    for group in tenancy_groups(stack_run).values():
        for obj in objects_of(group):
            validate(obj)
            kinds.add((obj["apiVersion"], obj["kind"]))
    assert {("kubeflow.org/v1", "Profile"), ("security.istio.io/v1beta1", "AuthorizationPolicy"),
            ("v1", "Namespace"), ("rbac.authorization.k8s.io/v1", "RoleBinding")} <= kinds


@pytest.mark.parametrize(
    "obj",
    [
        {"apiVersion": "kubeflow.org/v1", "kind": "Profile", "metadata": {"name": "a"}, "spec": {"owners": {}}},
        {"apiVersion": "security.istio.io/v1beta1", "kind": "AuthorizationPolicy", "metadata": {"name": "a"},
         "spec": {"rules": [{"form": [{"source": {"principals": ["x"]}}]}]}},
        {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "a"}, "spec": {"hrad": {}}},
    ],
    ids=["profile", "authorization-policy", "resource-quota"],
)
def test_the_validator_refuses_a_misspelt_field(obj):
    with pytest.raises((jsonschema.ValidationError, kubernetes_validate.ValidationError)):
        validate(obj)
