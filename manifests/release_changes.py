"""What newer upstream releases ship that the organisation's cluster must not run as shipped.

Decided from the objects themselves (what the code does, what a workload runs) rather than from the
release number, so a patch release that backports a change is met the same way; the one exception is
said where it is made. Each fact is a contract in manifests/facts/contracts/newest-releases.yaml.

- From Kubeflow 1.11 (KFP 2.15), KFP's per-namespace sync (`pipelines-profile-controller`, a metacontroller
  hook whose Python code ships in a ConfigMap) creates an access key per profile namespace through an IAM
  API and writes `kfp-launcher` and `artifact-repositories` for the bundled SeaweedFS, bucket `mlpipeline`
  hard-coded (kubeflow/pipelines@2.16.0
  manifests/kustomize/base/installs/multi-user/pipelines-profile-controller/sync.py:24, 36-44, 198-254,
  378-409). It reads no setting that turns this off. With the organisation's object store the program
  writes each profile's `kfp-launcher` and `artifact-repositories` itself (manifests/tenancy.py) and pods
  reach S3 through IRSA, so the hook would only call IAM (AWS's own when `AWS_ENDPOINT_URL` is unset) and
  overwrite the program's per-profile config: it is left out (rule `pipelines-profile-controller`). KFP
  2.5's hook (Kubeflow 1.10) copies static keys and creates no IAM key; it is kept there.
- Kubeflow 1.11.0 ships KFP 2.15.0, whose API server refuses to start without static object-store keys
  (kubeflow/pipelines@2.15.0 backend/src/apiserver/client_manager/client_manager.go:991-1000, 1024-1037,
  1044-1052); KFP 2.16.0 makes them optional and takes the default AWS chain, i.e. IRSA
  (kubeflow/pipelines@2.16.0 backend/src/apiserver/client_manager/client_manager.go:1047-1056, 1064-1077).
  The platform reaches S3 through IRSA only (the central Secret's keys are empty), so 1.11.0 with an
  external object store is refused with that reason, before anything is applied. This one is decided by
  the API server's image tag: the behaviour is in the binary, and upstream gives no other handle.
- From 26.03 (KServe 0.16), KServe's LLM controller (llmisvc) routes every LLMInferenceService through
  Gateway API HTTPRoutes (kserve/kserve@v0.16.0 pkg/controller/v1alpha1/llmisvc/router.go:69-71, 92-100),
  and the release ships no Gateway API CRDs. Without them (`kubeflow.gatewayApi: false`, the default) the
  controller is left out (rule `kserve-llm`) rather than accepting services it cannot serve.
"""

from __future__ import annotations

import re

from manifests.exclusions import PIPELINES_PROFILE_CONTROLLER_LABEL, RULES_BY_NAME
from manifests.objects import labels_of, object_ref, pod_containers
from manifests.options import TransformOptions
from manifests.sources import Problem

#: Stack setting the release problems name.
MANIFESTS_KEY = "kubeflow.manifests"
#: KFP API server images: ghcr.io/kubeflow/kfp-api-server (2.5 on), gcr.io/ml-pipeline/api-server (before).
_API_SERVER_IMAGE = re.compile(r"/(kfp-api-server|api-server):(?P<tag>[\w.+-]+)$")
#: KFP releases whose API server requires ObjectStoreConfig.AccessKey/SecretAccessKey (no IAM chain).
_STATIC_KEYS_ONLY = re.compile(r"^2\.15\.")

#: What KFP's sync hook calls when it mints a per-namespace key (botocore's IAM client).
IAM_ACCESS_KEY_CALL = "create_access_key("


def profile_controller_calls_iam(objects: list[dict]) -> bool:
    """True when the release's KFP per-namespace sync creates access keys through an IAM API."""
    key, value = PIPELINES_PROFILE_CONTROLLER_LABEL
    for obj in objects:
        if obj.get("kind") not in {"ConfigMap", "Secret"} or labels_of(obj).get(key) != value:
            continue
        for text in {**(obj.get("data") or {}), **(obj.get("stringData") or {})}.values():
            if isinstance(text, str) and IAM_ACCESS_KEY_CALL in text:
                return True
    return False


def ships_llm_controller(objects: list[dict]) -> bool:
    rule = RULES_BY_NAME["kserve-llm"]
    return any(obj.get("kind") == "Deployment" and rule.matches(obj) for obj in objects)


def implied_exclusions(objects: list[dict], options: TransformOptions) -> dict[str, str]:
    """Rule name -> why, for the exclusions this release needs under `options` and the user did not ask for."""
    rules: dict[str, str] = {}
    if options.stores is not None and profile_controller_calls_iam(objects):
        rules["pipelines-profile-controller"] = (
            "KFP's per-namespace sync would create an IAM access key per profile for the bundled object store and "
            "overwrite the kfp-launcher and artifact-repositories the program writes for the external one"
        )
    if not options.gateway_api and ships_llm_controller(objects):
        rules["kserve-llm"] = (
            "KServe's LLM controller routes through Gateway API HTTPRoutes and the cluster has none "
            "(kubeflow.gatewayApi is false)"
        )
    return rules


def kfp_api_server_tag(objects: list[dict]) -> tuple[str, str] | None:
    """(tag, where) of the KFP API server's image, or None when the release has none."""
    for obj, container in pod_containers(objects, "Deployment"):
        match = _API_SERVER_IMAGE.search(str(container.get("image", "")).split("@", 1)[0])
        if match:
            return match.group("tag"), f"{container['image']} of {object_ref(obj)}"
    return None


#: KFP releases whose API server only warns when HeadBucket is refused (kubeflow/pipelines@2.16.0
#: backend/src/apiserver/client_manager/client_manager.go:956-960, 1121-1131); before 2.16 it exits
#: (@2.5.0 client_manager.go:546-551).
_HEAD_BUCKET_OPTIONAL_SINCE = (2, 16)


def api_server_needs_head_bucket(objects: list[dict]) -> bool:
    """Whether the release's KFP API server refuses to start unless HeadBucket (an unconditioned s3:ListBucket)
    succeeds; True when its version cannot be read, so a release of unknown make still starts."""
    api_server = kfp_api_server_tag(objects)
    if api_server is None:
        return False
    match = re.match(r"^v?(\d+)\.(\d+)", api_server[0])
    return match is None or (int(match.group(1)), int(match.group(2))) < _HEAD_BUCKET_OPTIONAL_SINCE


def release_problems(objects: list[dict], options: TransformOptions) -> list[Problem]:
    """Why this release cannot work with `options`, each with the way out; empty when it can."""
    problems = []
    api_server = kfp_api_server_tag(objects)
    if options.stores is not None and not options.stores.static_keys and api_server and _STATIC_KEYS_ONLY.match(api_server[0]):
        problems.append(Problem(
            MANIFESTS_KEY,
            f"ships KFP {api_server[0]} ({api_server[1]}), whose API server does not start without static "
            "object-store keys (ObjectStoreConfig.AccessKey is required); the platform reaches S3 only through its pods' "
            "IAM roles (IRSA or EKS Pod Identity), so its pipelines would never run",
            "apply Kubeflow 26.03 or later (KFP 2.16 takes the pod's role credentials, IRSA or Pod Identity); or give pipelines an IAM user's keys, "
            "limited to the artifacts bucket, with kubeflow.objectStore.staticKeys: true and the secrets "
            "objectStoreAccessKeyId and objectStoreSecretAccessKey; or stay on 1.10",
        ))
    if options.stores is None and options.argo is not None and profile_controller_calls_iam(objects):
        # KFP 2.15/2.16's per-namespace sync (kept with the bundled stores, which it serves) writes each
        # profile an `artifact-repositories` ConfigMap on the bundled SeaweedFS, annotated as the namespace's
        # default (kubeflow/pipelines@2.16.0 manifests/kustomize/base/installs/multi-user/
        # pipelines-profile-controller/sync.py:224-240; 2.15.0 sync.py:197-213), and Argo takes a namespace's
        # own repository before its controller's (argoproj/argo-workflows@v3.7.3
        # workflow/artifactrepositories/artifactrepositories.go:40-60).
        problems.append(Problem(
            "kubeflow.argo.external",
            f"with the bundled object store, KFP {api_server[0] if api_server else '2.15+'}'s per-namespace sync points "
            "every profile's workflows at the bundled SeaweedFS, which the external Argo prefers over its own S3 "
            "repository: logs and artifacts would go where the pipelines UI, reading the external Argo's bucket, "
            "does not look",
            "set kubeflow.database to use the external stores, or kubeflow.argo.external: false to use the "
            "bundled Argo with the bundled stores",
        ))
    return problems
