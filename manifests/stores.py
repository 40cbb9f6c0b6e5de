"""Pipelines, metadata, cache and Katib on the organisation's MySQL and object store (issue 4, point 8).

Every consumer's `secretKeyRef` to a bundled credentials Secret (`mysql-secret`, `katib-mysql-secrets`,
`mlpipeline-minio-artifact`, the model registry's database Secret) is pointed at one central Secret.
This module only references that Secret by name and key: its values come from Pulumi secrets, so no
credential ever passes through here. Host and port go where each consumer reads them.
"""

from __future__ import annotations

from manifests.objects import Change, TransformResult, clone, containers_of, object_ref, pod_template
from manifests.options import ExternalStoresOptions
from manifests.sources import ManifestError, Problem

#: Bundled Secret name -> {its key -> the central Secret's key (a CentralSecretKeys field)}.
BUNDLED_SECRET_KEYS: dict[str, dict[str, str]] = {
    "mysql-secret": {"username": "db_username", "password": "db_password"},
    "katib-mysql-secrets": {"MYSQL_ROOT_PASSWORD": "db_password", "MYSQL_USER": "db_username", "MYSQL_PASSWORD": "db_password"},
    "mlpipeline-minio-artifact": {"accesskey": "object_store_access_key", "secretkey": "object_store_secret_key"},
    # model registry (where installed): its MySQL credentials Secret
    "model-registry-db-secrets": {"MYSQL_USER_NAME": "db_username", "MYSQL_ROOT_PASSWORD": "db_password", "MYSQL_PASSWORD": "db_password"},
}

#: pipeline-install-config keys read by the API server, metadata-grpc and the cache server.
_INSTALL_CONFIG_HOST_KEYS = ("dbHost", "mysqlHost")
_INSTALL_CONFIG_PORT_KEYS = ("dbPort", "mysqlPort")


def _set_env(container: dict, name: str, entry: dict) -> bool:
    env = container.setdefault("env", [])
    for index, existing in enumerate(env):
        if existing.get("name") == name:
            if existing == {"name": name, **entry}:
                return False
            env[index] = {"name": name, **entry}
            return True
    env.append({"name": name, **entry})
    return True


def use_external_stores(objects: list[dict], stores: ExternalStoresOptions) -> TransformResult:
    keys = stores.keys
    result, changes, problems = [], [], []
    for obj in objects:
        ref = object_ref(obj)
        if obj.get("kind") == "ConfigMap" and (obj.get("metadata") or {}).get("name") == "pipeline-install-config":
            copy = clone(obj)
            data = copy.setdefault("data", {})
            for key in _INSTALL_CONFIG_HOST_KEYS:
                changes.append(Change(ref, f"data.{key}: {data.get(key)!r} -> {stores.mysql_host!r}"))
                data[key] = stores.mysql_host
            for key in _INSTALL_CONFIG_PORT_KEYS:
                data[key] = str(stores.mysql_port)
                changes.append(Change(ref, f"data.{key}: {str(stores.mysql_port)!r}"))
            data["bucketName"] = stores.bucket
            result.append(copy)
            continue
        template = pod_template(obj)
        if template is None or not _references_bundled_secret(template):
            result.append(obj)
            continue
        copy = clone(obj)
        namespace = (obj.get("metadata") or {}).get("namespace")
        if namespace != stores.secret_namespace:
            problems.append(Problem(ref, f"reads bundled credentials but runs in {namespace!r}, and the central Secret is in {stores.secret_namespace!r}", "pods can only read Secrets of their own namespace: set the central Secret's namespace to the consumers'"))
        for container in containers_of(pod_template(copy).get("spec") or {}):
            used = set()
            for entry in container.get("env") or []:
                secret_ref = (entry.get("valueFrom") or {}).get("secretKeyRef")
                if not secret_ref or secret_ref.get("name") not in BUNDLED_SECRET_KEYS:
                    continue
                bundled, key = secret_ref["name"], secret_ref.get("key")
                central_field = BUNDLED_SECRET_KEYS[bundled].get(key)
                if central_field is None:
                    problems.append(Problem(f"{ref} env {entry.get('name')}", f"key {key!r} of bundled Secret {bundled!r} has no central equivalent", "add it to BUNDLED_SECRET_KEYS"))
                    continue
                used.add(bundled)
                central_key = getattr(keys, central_field)
                secret_ref["name"], secret_ref["key"] = stores.secret_name, central_key
                changes.append(Change(ref, f"container {container.get('name')} env {entry['name']}: secret {bundled}/{key} -> {stores.secret_name}/{central_key}"))
            for source in container.get("envFrom") or []:
                if (source.get("secretRef") or {}).get("name") in BUNDLED_SECRET_KEYS:
                    problems.append(Problem(ref, f"envFrom bundled Secret {source['secretRef']['name']!r}: its key names differ from the central Secret's", "reference the central Secret's keys one by one"))
            changes.extend(Change(ref, what) for what in _point_at_endpoints(container, used, stores))
        result.append(copy)
    if problems:
        raise ManifestError(problems)
    return TransformResult(result, tuple(changes))


def _references_bundled_secret(template: dict) -> bool:
    for container in containers_of(template.get("spec") or {}):
        for entry in container.get("env") or []:
            if ((entry.get("valueFrom") or {}).get("secretKeyRef") or {}).get("name") in BUNDLED_SECRET_KEYS:
                return True
        for source in container.get("envFrom") or []:
            if (source.get("secretRef") or {}).get("name") in BUNDLED_SECRET_KEYS:
                return True
    return False


def _point_at_endpoints(container: dict, used: set[str], stores: ExternalStoresOptions) -> list[str]:
    """Host, port and region where each consumer reads them, besides the credentials."""
    changed: list[str] = []
    env_names = {entry.get("name") for entry in container.get("env") or []}
    name = container.get("name")
    wanted: dict[str, dict] = {}
    if "katib-mysql-secrets" in used:
        # Katib's db-manager defaults to root@katib-mysql:3306 (pkg/db/v1beta1/common/const.go).
        wanted.update({
            "DB_USER": {"valueFrom": {"secretKeyRef": {"name": stores.secret_name, "key": stores.keys.db_username}}},
            "DB_HOST": {"value": stores.mysql_host},
            "DB_PORT": {"value": str(stores.mysql_port)},
        })
    if "OBJECTSTORECONFIG_BUCKETNAME" in env_names:
        # KFP API server: without a host it talks to minio-service.kubeflow:9000.
        wanted.update({
            "OBJECTSTORECONFIG_HOST": {"value": stores.object_store_host},
            "OBJECTSTORECONFIG_PORT": {"value": stores.object_store_port},
            "OBJECTSTORECONFIG_REGION": {"value": stores.region},
            "OBJECTSTORECONFIG_SECURE": {"value": "true" if stores.secure else "false"},
        })
    if "MINIO_NAMESPACE" in env_names:
        # KFP UI: reads s3:// artifacts with the AWS settings.
        wanted.update({
            "AWS_REGION": {"value": stores.region},
            "AWS_S3_ENDPOINT": {"value": stores.endpoint or f"s3.{stores.region}.amazonaws.com"},
            "AWS_SSL": {"value": "true" if stores.secure else "false"},
        })
    for env_name, entry in wanted.items():
        if _set_env(container, env_name, entry):
            changed.append(f"container {name} env {env_name} -> {entry.get('value', entry.get('valueFrom'))}")
    return changed
