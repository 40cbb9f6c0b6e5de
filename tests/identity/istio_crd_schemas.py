"""Validation of Istio objects against the CRD schemas shipped in the rendered upstream Kubeflow release."""

from __future__ import annotations

import jsonschema

from manifests.validate import strict_crd_schema
from tests.upstream import upstream_objects


def istio_crd(kind: str, kubeflow_version: str) -> dict:
    for obj in upstream_objects(kubeflow_version):
        if (
            obj.get("kind") == "CustomResourceDefinition"
            and obj["spec"]["group"].endswith("istio.io")
            and obj["spec"]["names"]["kind"] == kind
        ):
            return obj
    raise LookupError(f"no Istio CRD for {kind} in Kubeflow v{kubeflow_version}")


def istio_version_of(kubeflow_version: str) -> str:
    """The Istio release the upstream manifests pin: the tag of istiod's `pilot` image."""
    for obj in upstream_objects(kubeflow_version):
        if obj.get("kind") != "Deployment":
            continue
        for container in obj["spec"]["template"]["spec"].get("containers", []):
            repository, _, tag = container.get("image", "").rpartition(":")
            if repository.endswith("/pilot") and tag:
                return tag
    raise LookupError(f"no istiod (pilot) image in Kubeflow v{kubeflow_version}")


def schema_errors(obj: dict, kubeflow_version: str) -> list[str]:
    """Every way `obj` breaks its CRD's openAPIV3Schema (CEL rules aside), as `path: message` lines."""
    group, _, version = obj["apiVersion"].partition("/")
    crd = istio_crd(obj["kind"], kubeflow_version)
    if crd["spec"]["group"] != group:
        return [f"apiVersion: group {group} is not {crd['spec']['group']}"]
    served = {entry["name"]: entry for entry in crd["spec"]["versions"] if entry.get("served")}
    if version not in served:
        return [f"apiVersion: {version} is not served; served are {sorted(served)}"]
    # Unknown fields refused wherever the API server would prune them: a misspelt `workloadSelector` would
    # otherwise apply a filter to nothing without any error.
    schema = strict_crd_schema(served[version]["schema"]["openAPIV3Schema"])
    # apiVersion, kind and metadata are the API server's, not the CRD schema's, to check.
    body = {key: value for key, value in obj.items() if key not in ("apiVersion", "kind", "metadata")}
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{'.'.join(str(part) for part in error.absolute_path) or '<root>'}: {error.message}"
        for error in sorted(validator.iter_errors(body), key=lambda error: list(map(str, error.absolute_path)))
    ]
