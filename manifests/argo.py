"""Pipelines on the organisation's Argo Workflows (issue 4, point 7).

The bundled controller is excluded (rule `argo`); the external controller's ConfigMap, which every Argo
installation ships (argoproj/argo-workflows@v3.7.8 manifests/base/workflow-controller/
workflow-controller-configmap.yaml:1-4, with no data), gets the keys the program needs: an S3 artifact
repository reached through IRSA (`useSDKCreds`, no static keys) with a key format per namespace and workflow,
upstream's executor settings and, when set, the workflows' service account. The ConfigMap is the enterprise
Argo's: the program patches those keys with server-side apply under its own field manager (`PATCH_ANNOTATIONS`)
and never creates or deletes it. KFP's own settings that name the bucket are patched
to the same bucket so the v2 launcher, the API server and Argo agree.
"""

from __future__ import annotations

import yaml

from manifests.objects import Change, TransformResult, clone, containers_of, object_ref, pod_template
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


#: Field manager of every server-side apply patch the program makes (pulumi-kubernetes reads the annotation:
#: pulumi/pulumi-kubernetes@v4.32.0 provider/pkg/provider/provider.go:2878-2896). A fixed name keeps the
#: program's fields its own across runs and machines, and names it in a conflict.
FIELD_MANAGER = "kubeflow-platform"
#: What marks an object as a patch of someone else's object rather than one the program creates. No
#: `patchForce`: a key another manager already set is a conflict that stops `pulumi up` and names that
#: manager, rather than overwriting the enterprise controller's settings for every Argo user.
PATCH_ANNOTATIONS = {"pulumi.com/patchFieldManager": FIELD_MANAGER}


def is_patch(obj: dict) -> bool:
    """Whether `obj` is applied as a server-side apply patch of an existing object (see `PATCH_ANNOTATIONS`)."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return annotations.get("pulumi.com/patchFieldManager") == FIELD_MANAGER


def workflow_controller_configmap(argo: ExternalArgoOptions, executor: str | None = None) -> dict:
    """The keys of the external controller's ConfigMap the program sets, as a patch: no labels, nothing of the
    enterprise's own keys. Argo joins every data key into one document, unless the ConfigMap holds a single
    `config` key (argoproj/argo-workflows@v3.7.8 config/controller.go:35-54): a ConfigMap written that way
    refuses the extra keys, so it must be converted to per-key form first (docs/kubeflow-manifests.md)."""
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
            "annotations": dict(PATCH_ANNOTATIONS),
        },
        "data": data,
    }


def launcher_providers(argo: ExternalArgoOptions) -> str:
    # kfp-launcher `providers` (KFP >= 2.2): credentials fromEnv uses the pod's default chain (IRSA).
    return yaml.safe_dump(
        {"s3": {"default": {"endpoint": argo.s3_endpoint, "region": argo.region, "disableSSL": False, "credentials": {"fromEnv": True}}}},
        sort_keys=False,
    )


#: The KFP UI reads a finished step's log from the archive with these (kubeflow/pipelines@2.5.0
#: frontend/server/configs.ts:88-105; frontend/server/handlers/pod-logs.ts:50-71): upstream leaves them at
#: MinIO, bucket `mlpipeline` and a key format without the namespace.
KFP_UI = ("ml-pipeline-ui", "ml-pipeline-ui")


def kfp_ui_archive_env(argo: ExternalArgoOptions) -> dict[str, str]:
    """Where the KFP UI finds archived step logs: where the external controller writes them. With the
    lookup on (KFP >= 2.5), a namespace's own `artifact-repositories` ConfigMap (a data-lake profile's)
    gives the key format under the profile's prefix; elsewhere the controller's key format applies."""
    return {
        "ARGO_ARCHIVE_LOGS": "true",
        "ARGO_ARCHIVE_ARTIFACTORY": "s3",
        "ARGO_ARCHIVE_BUCKETNAME": argo.bucket,
        "ARGO_KEYFORMAT": argo.key_format,
        "ARGO_ARTIFACT_REPOSITORIES_LOOKUP": "true",
    }


def upstream_executor(objects: list[dict]) -> str | None:
    """The `executor` block of upstream's own workflow-controller-configmap, read before the `argo`
    exclusion removes that ConfigMap, so the external controller's ConfigMap carries it over."""
    for obj in objects:
        metadata = obj.get("metadata") or {}
        if obj.get("kind") == "ConfigMap" and metadata.get("name") == "workflow-controller-configmap":
            executor = (obj.get("data") or {}).get("executor")
            if executor:
                return executor
    return None


def use_external_argo(objects: list[dict], argo: ExternalArgoOptions, executor: str | None = None) -> TransformResult:
    """`executor`: upstream's executor settings (see `upstream_executor`), carried into the ConfigMap produced
    for the external controller."""
    pipeline_root = f"s3://{argo.bucket}/{PIPELINE_ROOT_PREFIX}"
    result, changes = [], []
    for obj in objects:
        metadata = obj.get("metadata") or {}
        name = metadata.get("name", "")
        if obj.get("kind") == "Deployment" and name == KFP_UI[0]:
            copy, what = _with_env(obj, KFP_UI[1], kfp_ui_archive_env(argo))
            changes.extend(Change(object_ref(obj), w) for w in what)
            result.append(copy)
            continue
        if obj.get("kind") != "ConfigMap":
            result.append(obj)
            continue
        wanted: dict[str, str] = {}
        if name == "kfp-launcher":
            # Runs in the kubeflow namespace itself (single-user style) use this one; profiles have their own.
            wanted = {"defaultPipelineRoot": pipeline_root, "providers": launcher_providers(argo)}
        elif name == "pipeline-install-config":
            # No cluster-wide pipeline root: KFP's profile sync copies a non-empty one into a `kfp-launcher`
            # of every pipelines-enabled namespace (kubeflow/pipelines@2.5.0 manifests/kustomize/base/installs/
            # multi-user/pipelines-profile-controller/sync.py:113-125), also into profiles without a data lake,
            # whose pods have no role for it. Data-lake profiles get their own `kfp-launcher` (manifests.tenancy).
            # KFP 2.15+'s sync no longer reads the key (it writes its own minio:// root, 2.16.0 sync.py:198-210)
            # and is left out with the external stores (manifests.release_changes); the empty value is harmless there.
            wanted = {"bucketName": argo.bucket, "defaultPipelineRoot": ""}
        data = obj.get("data") or {}
        if not wanted or all(data.get(k) == v for k, v in wanted.items()):
            result.append(obj)
            continue
        copy = clone(obj)
        copy.setdefault("data", {}).update(wanted)
        changes.extend(Change(object_ref(obj), f"data.{k}: {data.get(k)!r} -> {v!r}") for k, v in wanted.items() if data.get(k) != v)
        result.append(copy)
    configmap = workflow_controller_configmap(argo, executor)
    carried = "; upstream's executor settings carried over" if executor else ""
    changes.append(Change(object_ref(configmap), f"keys patched into the external controller's ConfigMap: S3 bucket {argo.bucket} via IRSA, keyFormat {argo.key_format}{carried}"))
    return TransformResult(result, tuple(changes), added=(configmap,))


def _with_env(obj: dict, container_name: str, wanted: dict[str, str]) -> tuple[dict, list[str]]:
    copy = clone(obj)
    what: list[str] = []
    for container in containers_of(pod_template(copy).get("spec") or {}):
        if container.get("name") != container_name:
            continue
        env = container.setdefault("env", [])
        for env_name, value in wanted.items():
            entry = {"name": env_name, "value": value}
            index = next((i for i, e in enumerate(env) if e.get("name") == env_name), None)
            if index is None:
                env.append(entry)
            elif env[index] != entry:
                env[index] = entry
            else:
                continue
            what.append(f"container {container_name} env {env_name} -> {value}")
    return (copy, what) if what else (obj, [])
