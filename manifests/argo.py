"""Pipelines on the organisation's Argo Workflows (issue 4, point 7).

The bundled controller is excluded (rule `argo`); the external controller gets the ConfigMap it reads,
in its own namespace, with an S3 artifact repository reached through IRSA (`useSDKCreds`, no static
keys) and a key format per namespace and workflow. KFP's own settings that name the bucket are patched
to the same bucket so the v2 launcher, the API server and Argo agree.
"""

from __future__ import annotations

import yaml

from manifests.objects import Change, TransformResult, clone, object_ref
from manifests.options import ExternalArgoOptions

PIPELINE_ROOT_PREFIX = "v2/artifacts"


def artifact_repository(argo: ExternalArgoOptions) -> dict:
    return {
        "archiveLogs": True,
        "s3": {
            "endpoint": argo.s3_endpoint,
            "bucket": argo.bucket,
            "region": argo.region,
            "insecure": False,
            "keyFormat": argo.key_format,
            # IRSA: the SDK's default chain reads the web identity token; no accessKeySecret at all.
            "useSDKCreds": True,
        },
    }


def workflow_controller_configmap(argo: ExternalArgoOptions, executor: str | None = None) -> dict:
    data = {"artifactRepository": yaml.safe_dump(artifact_repository(argo), sort_keys=False)}
    if executor:
        data["executor"] = executor
    if argo.service_account:
        data["workflowDefaults"] = yaml.safe_dump({"spec": {"serviceAccountName": argo.service_account}}, sort_keys=False)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": argo.configmap_name,
            "namespace": argo.namespace,
            "labels": {"app.kubernetes.io/part-of": "kubeflow-platform", "app.kubernetes.io/component": "argo-artifacts"},
        },
        "data": data,
    }


def launcher_providers(argo: ExternalArgoOptions) -> str:
    # kfp-launcher `providers` (KFP >= 2.2): credentials fromEnv uses the pod's default chain (IRSA).
    return yaml.safe_dump(
        {"s3": {"default": {"endpoint": argo.s3_endpoint, "region": argo.region, "disableSSL": False, "credentials": {"fromEnv": True}}}},
        sort_keys=False,
    )


def use_external_argo(objects: list[dict], argo: ExternalArgoOptions) -> TransformResult:
    pipeline_root = f"s3://{argo.bucket}/{PIPELINE_ROOT_PREFIX}"
    result, changes = [], []
    executor = None
    for obj in objects:
        metadata = obj.get("metadata") or {}
        name = metadata.get("name", "")
        if obj.get("kind") != "ConfigMap":
            result.append(obj)
            continue
        if name == "workflow-controller-configmap":
            executor = (obj.get("data") or {}).get("executor")
            result.append(obj)
            continue
        wanted: dict[str, str] = {}
        if name == "kfp-launcher":
            wanted = {"defaultPipelineRoot": pipeline_root, "providers": launcher_providers(argo)}
        elif name == "pipeline-install-config":
            wanted = {"bucketName": argo.bucket, "defaultPipelineRoot": pipeline_root}
        data = obj.get("data") or {}
        if not wanted or all(data.get(k) == v for k, v in wanted.items()):
            result.append(obj)
            continue
        copy = clone(obj)
        copy.setdefault("data", {}).update(wanted)
        changes.extend(Change(object_ref(obj), f"data.{k}: {data.get(k)!r} -> {v!r}") for k, v in wanted.items() if data.get(k) != v)
        result.append(copy)
    configmap = workflow_controller_configmap(argo, executor)
    changes.append(Change(object_ref(configmap), f"produced for the external controller: S3 bucket {argo.bucket} via IRSA, keyFormat {argo.key_format}"))
    return TransformResult(result, tuple(changes), added=(configmap,))
