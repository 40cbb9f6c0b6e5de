"""Each stack's settings as the pure pipeline's options, and the guardrail parameters they imply.

The scanners and guardrail tests check what each stack would apply. Until the Kubeflow component maps
settings to `TransformOptions` itself, this mapping follows the settings' documented meaning (an image
no rule matches goes to `<mirror>/<registry>/<path>`); replace it with the component's once merged.
"""

from __future__ import annotations

import functools

from manifests.guardrails import GuardrailParams
from manifests.images import PUBLIC_REGISTRIES
from manifests.options import (
    ExternalArgoOptions,
    ExternalStoresOptions,
    GatewayOptions,
    ImageMirrorOptions,
    ImageMirrorRule,
    MeshOptions,
    PodTemplateOptions,
    TransformOptions,
)
from manifests.pipeline import TransformReport, transform
from tests.upstream import upstream_objects
from tools.mock_runtime import stack_config


def _setting(stack: str, key: str) -> dict:
    return dict(stack_config(stack).get(f"kubeflow-platform:{key}") or {})


def transform_options(stack: str) -> TransformOptions:
    kubeflow, ingress, dns, artifacts, aws = (_setting(stack, k) for k in ("kubeflow", "ingress", "dns", "artifacts", "aws"))
    images = kubeflow.get("images") or {}
    mirror = images["mirror"].rstrip("/")
    rules = [ImageMirrorRule(rule["source"], rule["target"]) for rule in images.get("rules") or []]
    rules += [ImageMirrorRule(registry, f"{mirror}/{registry}") for registry in PUBLIC_REGISTRIES]
    bucket = f"{artifacts['bucketPrefix']}-pipelines"
    region = aws["region"]
    argo = kubeflow.get("argo") or {}
    database = kubeflow.get("database")
    mesh = kubeflow.get("mesh") or {}
    return TransformOptions(
        exclusions=tuple(kubeflow.get("exclude") or ()),
        mesh=MeshOptions(revision=mesh.get("revision")),
        pod_templates=PodTemplateOptions(
            labels=tuple(sorted((kubeflow.get("podLabels") or {}).items())),
            annotations=tuple(sorted((kubeflow.get("podAnnotations") or {}).items())),
        ),
        images=ImageMirrorOptions(tuple(rules)),
        gateway=GatewayOptions(
            f"{ingress.get('gatewayNamespace', 'kubeflow')}/{ingress.get('gatewayName', 'kubeflow-gateway')}",
            (dns["host"], *dns.get("extraHosts", [])),
        ),
        argo=ExternalArgoOptions(namespace=argo.get("namespace", "argo"), bucket=bucket, region=region)
        if argo.get("external", True) else None,
        stores=ExternalStoresOptions(
            mysql_host=database["host"], mysql_port=database.get("port", 3306),
            secret_name=kubeflow.get("centralSecret", "kubeflow-platform-credentials"), bucket=bucket, region=region,
        ) if database else None,
    )


def guardrail_params(stack: str) -> GuardrailParams:
    kubeflow, ingress = _setting(stack, "kubeflow"), _setting(stack, "ingress")
    return GuardrailParams(
        mirror=kubeflow["images"]["mirror"],
        gateway_service=f"{ingress.get('namespace', 'istio-system')}/{ingress.get('serviceName', 'istio-ingressgateway')}",
        mesh_revision=(kubeflow.get("mesh") or {}).get("revision"),
    )


@functools.lru_cache(maxsize=None)
def stack_transform(stack: str) -> TransformReport:
    """The objects `stack` would apply, from the real upstream release it pins. Cached per session."""
    version = _setting(stack, "kubeflow")["version"]
    return transform(upstream_objects(version), transform_options(stack))
