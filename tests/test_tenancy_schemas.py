"""Every object the profiles generate is valid for the API server that will receive it.

Checked with the shared manifests validation (manifests/validate.py): built-in kinds against Kubernetes'
strict schemas (an unknown field is an error, where the API server would silently drop it); the Profile
and AuthorizationPolicy against the openAPIV3Schema of the CRDs in the upstream release, made strict the
same way.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest

from manifests.validate import SchemaProblem, validate_objects
from tests.test_tenancy import objects_of, namespace_patches, tenancy_groups
from tests.upstream import upstream_objects

#: The Kubernetes minor version the EKS clusters run (the mocks answer 1.31 for the cluster).
KUBERNETES_VERSION = "1.31"


@functools.lru_cache(maxsize=None)
def upstream_crds() -> tuple[dict, ...]:
    return tuple(obj for obj in upstream_objects() if obj["kind"] == "CustomResourceDefinition")


def problems(objects: list[dict[str, Any]]) -> list[SchemaProblem]:
    return validate_objects(objects, extra_crds=upstream_crds(), kubernetes_version=KUBERNETES_VERSION)


def test_every_generated_object_is_valid_for_its_schema(stack_run):
    objects = [obj for group in tenancy_groups(stack_run).values() for obj in objects_of(group)]
    # Kept profile namespaces are NamespacePatches: server-side apply holds them to the same schema.
    objects += [dict(patch.inputs) for patch in namespace_patches(stack_run).values()]
    assert [str(problem) for problem in problems(objects)] == []
    kinds = {(obj["apiVersion"], obj["kind"]) for obj in objects}
    assert {("kubeflow.org/v1", "Profile"), ("security.istio.io/v1beta1", "AuthorizationPolicy"),
            ("v1", "Namespace"), ("rbac.authorization.k8s.io/v1", "RoleBinding")} <= kinds


@pytest.mark.parametrize(
    "obj,field",
    [
        ({"apiVersion": "kubeflow.org/v1", "kind": "Profile", "metadata": {"name": "a"}, "spec": {"owners": {}}},
         "owners"),
        ({"apiVersion": "security.istio.io/v1beta1", "kind": "AuthorizationPolicy", "metadata": {"name": "a"},
          "spec": {"rules": [{"form": [{"source": {"principals": ["x"]}}]}]}}, "form"),
        ({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "a"}, "spec": {"hrad": {}}}, "hrad"),
    ],
    ids=["profile", "authorization-policy", "resource-quota"],
)
def test_the_validator_refuses_a_misspelt_field(obj, field):
    found = problems([obj])
    assert found, f"{obj['kind']} with the misspelt field {field!r} was accepted"
    assert any(field in str(problem) for problem in found), [str(problem) for problem in found]
