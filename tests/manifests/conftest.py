"""Shared options and the transformed upstream releases, computed once per session."""

from __future__ import annotations

import functools

import pytest

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
from manifests.pipeline import transform
from tests.upstream import SUPPORTED_VERSIONS, upstream_objects

VERSIONS = SUPPORTED_VERSIONS
MIRROR = "mirror.corp.example"

MIRROR_RULES = tuple(
    ImageMirrorRule(source, f"{MIRROR}/{prefix}")
    for source, prefix in (
        ("docker.io", "dockerhub"),
        ("gcr.io", "gcr"),
        ("ghcr.io", "ghcr"),
        ("quay.io", "quay"),
        ("registry.k8s.io", "k8s"),
        ("nvcr.io", "nvcr"),
        ("public.ecr.aws", "ecr-public"),
        # JobSet (Trainer v2, from Kubeflow 1.11 on) is pulled from Google Artifact Registry.
        ("us-central1-docker.pkg.dev", "gar-us-central1"),
    )
)

ENTERPRISE = TransformOptions(
    exclusions=("istio", "cert-manager", "dex", "oauth2-proxy"),
    mesh=MeshOptions(revision=None),
    pod_templates=PodTemplateOptions(labels=(("corp.example/team", "ml-platform"),), annotations=(("corp.example/cost-center", "ml"),)),
    images=ImageMirrorOptions(MIRROR_RULES),
    gateway=GatewayOptions("istio-ingress/central-gateway", ("kubeflow.corp.example",), "istio-ingress", "corp.example/ns/istio-ingress/sa/central-gateway"),
    argo=ExternalArgoOptions(namespace="argo", bucket="kf-artifacts", region="eu-west-1", service_account="pipeline-runner"),
    # Static keys: the way Kubeflow 1.11.0 (KFP 2.15.0) runs on external stores; the transformations of the
    # other releases do not depend on it.
    stores=ExternalStoresOptions(mysql_host="kubeflow.cluster-abc.eu-west-1.rds.amazonaws.com", secret_name="kubeflow-external-stores",
                                 bucket="kf-artifacts", region="eu-west-1", static_keys=True),
)


@functools.lru_cache(maxsize=None)
def enterprise_result(version: str):
    return transform(upstream_objects(version), ENTERPRISE)


@pytest.fixture(params=VERSIONS, ids=lambda v: f"v{v}")
def version(request) -> str:
    return request.param
