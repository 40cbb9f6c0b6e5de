"""Pipelines, metadata, cache and Katib on the organisation's MySQL and object store (issue 4, point 8).

Every consumer's `secretKeyRef` to a bundled credentials Secret (`mysql-secret`, `katib-mysql-secrets`,
`mlpipeline-minio-artifact`, the model registry's database Secret) is pointed at one central Secret.
This module only references that Secret by name and key: its values come from Pulumi secrets, so no
credential ever passes through here. Host and port go where each consumer reads them.

The external MySQL must also hold each consumer's database. The KFP API server, the cache server and ML
Metadata create theirs; Katib's db-manager never does (the bundled `katib-mysql` did, through its
`MYSQL_DATABASE`), so a setup Job creates it before Katib starts. The same Job refuses a user whose
authentication plugin ML Metadata 1.14 cannot speak, with the line a database administrator acts on.
"""

from __future__ import annotations

from manifests.mesh import INJECT
from manifests.objects import Change, TransformResult, clone, containers_of, object_ref, pod_template
from manifests.options import CentralSecretKeys, ExternalStoresOptions, PodTemplateOptions
from manifests.sources import ManifestError, Problem

#: Bundled Secret name -> {its key -> the central Secret's key (a CentralSecretKeys field)}.
BUNDLED_SECRET_KEYS: dict[str, dict[str, str]] = {
    "mysql-secret": {"username": "db_username", "password": "db_password"},
    "katib-mysql-secrets": {"MYSQL_ROOT_PASSWORD": "db_password", "MYSQL_USER": "db_username", "MYSQL_PASSWORD": "db_password"},
    "mlpipeline-minio-artifact": {"accesskey": "object_store_access_key", "secretkey": "object_store_secret_key"},
    # model registry (where installed): its MySQL credentials Secret
    "model-registry-db-secrets": {"MYSQL_USER_NAME": "db_username", "MYSQL_ROOT_PASSWORD": "db_password", "MYSQL_PASSWORD": "db_password"},
}

#: The database Katib's db-manager opens. It connects to it and runs CREATE TABLE IF NOT EXISTS, but nothing
#: in Katib runs CREATE DATABASE (kubeflow/katib@v0.18.0 pkg/db/v1beta1/mysql/init.go, mysql.go:53-56).
KATIB_DATABASE = "katib"

#: Name of the Job that prepares the external MySQL before its consumers start.
DATABASE_SETUP_JOB = "kubeflow-platform-databases"

#: Upstream's own bundled MySQL servers, whose image serves as the setup Job's client: it is the release's,
#: so it is mirrored like every other image and lands in the image map.
_BUNDLED_MYSQL_DEPLOYMENTS = ("katib-mysql", "mysql")
#: Used only when a release bundles no MySQL: the image upstream's katib-mysql runs in v1.9.1 and v1.10.2.
FALLBACK_MYSQL_CLIENT_IMAGE = "mysql:8.0.29"

#: ML Metadata 1.14's MySQL client cannot authenticate with these plugins (google/ml-metadata issue #178;
#: MySQL 8's default is caching_sha2_password), so metadata-grpc crash-loops on such a user.
_PLUGINS_MLMD_CANNOT_USE = ("caching_sha2_password", "sha256_password")

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


def use_external_stores(
    objects: list[dict],
    stores: ExternalStoresOptions,
    client_image: str | None = None,
    pod_templates: PodTemplateOptions | None = None,
) -> TransformResult:
    """Points every consumer at the central Secret and the external endpoints, and adds the database setup
    Job when a consumer needs a database it does not create or ML Metadata will log in (`client_image`:
    the MySQL client image, see `bundled_mysql_image`; `pod_templates`: the organisation's pod labels and
    annotations, which the Job carries too)."""
    keys = stores.keys
    result, changes, problems = [], [], []
    databases: set[str] = set()
    mlmd = False
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
            if "katib-mysql-secrets" in used:
                databases.add(KATIB_DATABASE)
            if any(isinstance(arg, str) and arg.startswith("--mysql_config_host") for arg in container.get("args") or []):
                mlmd = True
        result.append(copy)
    if problems:
        raise ManifestError(problems)
    added: tuple[dict, ...] = ()
    if databases or mlmd:
        job = database_setup_job(stores, tuple(sorted(databases)), refuse_plugins=mlmd,
                                 image=client_image or FALLBACK_MYSQL_CLIENT_IMAGE,
                                 pod_templates=pod_templates or PodTemplateOptions())
        added = (job,)
        what = f"databases {', '.join(sorted(databases))} created if missing" if databases else "no database to create"
        if mlmd:
            what += f"; refuses a user authenticating with {' or '.join(_PLUGINS_MLMD_CANNOT_USE)} (ML Metadata)"
        changes.append(Change(object_ref(job), f"produced: {what}"))
    return TransformResult(result, tuple(changes), added=added)


def bundled_mysql_image(objects: list[dict]) -> str | None:
    """The image of upstream's bundled MySQL (read before the `mysql` exclusion removes it)."""
    for name in _BUNDLED_MYSQL_DEPLOYMENTS:
        for obj in objects:
            if obj.get("kind") == "Deployment" and (obj.get("metadata") or {}).get("name") == name:
                for container in containers_of((pod_template(obj) or {}).get("spec") or {}):
                    if container.get("image"):
                        return container["image"]
    return None


#: Where the setup Job mounts the central Secret's database user and password (files, not env: only this
#: process sees them; the mysql client reads the password from MYSQL_PWD, set inside the script).
DATABASE_CREDENTIALS_DIR = "/etc/kubeflow-platform/database"
#: The setup Job's user: any non-root UID works for the mysql client; high, so it matches no host user.
_SETUP_UID = 10001


def database_setup_script(databases: tuple[str, ...], refuse_plugins: bool, keys: CentralSecretKeys = CentralSecretKeys()) -> str:
    """The shell the setup Job runs. The user and password are read from the mounted central Secret
    (`DB_CREDENTIALS_DIR` overrides where), so nothing secret is in the object or its environment."""
    lines = [
        "set -eu",
        f'credentials="${{DB_CREDENTIALS_DIR:-{DATABASE_CREDENTIALS_DIR}}}"',
        f'DB_USER=`cat "$credentials/{keys.db_username}"`',
        f'MYSQL_PWD=`cat "$credentials/{keys.db_password}"`',
        "export MYSQL_PWD",
        'sql() { mysql --host="$DB_HOST" --port="$DB_PORT" --user="$DB_USER" --batch --skip-column-names -e "$1"; }',
        'if ! sql "SELECT 1" >/dev/null; then',
        '  echo "cannot log in to MySQL at $DB_HOST:$DB_PORT as $DB_USER (see the error above): the database '
        'administrator creates this user with the password of the stack secret databasePassword" >&2',
        "  exit 1",
        "fi",
    ]
    if refuse_plugins:
        patterns = "|".join(f"*{plugin}*" for plugin in _PLUGINS_MLMD_CANNOT_USE)
        lines += [
            # Every user may show its own account (MySQL reference manual, SHOW CREATE USER).
            'account=`sql "SHOW CREATE USER CURRENT_USER()" || true`',
            'case "$account" in',
            f"  {patterns})",
            '    echo "MySQL user $DB_USER authenticates with caching_sha2_password or sha256_password, which ML Metadata '
            '1.14 cannot use (google/ml-metadata#178): the database administrator runs ALTER USER for it '
            'IDENTIFIED WITH mysql_native_password BY its password" >&2',
            "    exit 1;;",
            '  "") echo "could not read the authentication plugin of $DB_USER; ML Metadata needs mysql_native_password";;',
            "esac",
        ]
    for database in databases:
        lines += [
            f'sql "CREATE DATABASE IF NOT EXISTS \`{database}\`" || {{ echo "cannot create database {database}: '
            f'the database administrator grants $DB_USER ALL on \`{database}\`.* (or creates it)" >&2; exit 1; }}',
            f'echo "database {database} is ready"',
        ]
    return "\n".join(lines) + "\n"


def database_setup_job(
    stores: ExternalStoresOptions,
    databases: tuple[str, ...],
    *,
    refuse_plugins: bool,
    image: str,
    pod_templates: PodTemplateOptions = PodTemplateOptions(),
) -> dict:
    """A Job in the consumers' namespace that creates the databases no consumer creates itself and refuses
    an authentication plugin a consumer cannot use; `pulumi up` waits for it before Katib is applied."""
    secret = stores.secret_name
    labels = {"app.kubernetes.io/part-of": "kubeflow-platform", "app.kubernetes.io/component": "external-stores"}
    pod_labels = {**dict(pod_templates.labels), **labels}
    # The database is outside the mesh, and an injected proxy keeps running after the client exits, so the
    # Job would never complete: the one pod template the program keeps out of the mesh.
    pod_annotations = {**dict(pod_templates.annotations), INJECT: "false"}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": DATABASE_SETUP_JOB,
            "namespace": stores.secret_namespace,
            "labels": dict(labels),
            "annotations": {
                # Pulumi waits for a Job to complete and fails the update when it fails; without this, the next
                # `pulumi up` (after the DBA's fix) would wait on the same failed Job instead of running it again
                # (pulumi-kubernetes Job await: https://www.pulumi.com/docs/reference/pkg/kubernetes/batch/v1/job).
                "pulumi.com/replaceUnready": "true",
                # Written down where the scanner reads it: the one checkov finding this Job keeps.
                "checkov.io/skip1": "CKV_K8S_43=the client is upstream's own bundled MySQL image, which upstream "
                                    "pins by tag only; it is mirrored by that tag like upstream's",
            },
        },
        "spec": {
            "backoffLimit": 3,
            "template": {
                "metadata": {"labels": dict(sorted(pod_labels.items())), "annotations": dict(sorted(pod_annotations.items()))},
                "spec": {
                    "restartPolicy": "Never",
                    # It talks to MySQL only, never to the Kubernetes API.
                    "automountServiceAccountToken": False,
                    "securityContext": {
                        "runAsNonRoot": True, "runAsUser": _SETUP_UID, "runAsGroup": _SETUP_UID, "fsGroup": _SETUP_UID,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [{
                        "name": "databases",
                        "image": image,
                        "imagePullPolicy": "Always",
                        "command": ["sh", "-c", database_setup_script(databases, refuse_plugins, stores.keys)],
                        "env": [
                            {"name": "DB_HOST", "value": stores.mysql_host},
                            {"name": "DB_PORT", "value": str(stores.mysql_port)},
                        ],
                        "volumeMounts": [{"name": "credentials", "mountPath": DATABASE_CREDENTIALS_DIR, "readOnly": True}],
                        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"cpu": "200m", "memory": "128Mi"}},
                        "securityContext": {
                            "allowPrivilegeEscalation": False,
                            "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]},
                        },
                    }],
                    "volumes": [{
                        "name": "credentials",
                        "secret": {
                            "secretName": secret,
                            "items": [{"key": key, "path": key} for key in (stores.keys.db_username, stores.keys.db_password)],
                            # owner root, group fsGroup: readable by the Job's user only
                            "defaultMode": 0o440,
                        },
                    }],
                },
            },
        },
    }


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
        # Katib's db-manager builds its DSN from DB_USER, DB_PASSWORD, KATIB_MYSQL_DB_HOST, KATIB_MYSQL_DB_PORT
        # and KATIB_MYSQL_DB_DATABASE, defaulting to root@katib-mysql:3306/katib
        # (kubeflow/katib@v0.18.0 pkg/db/v1beta1/common/const.go:24-37; pkg/db/v1beta1/mysql/mysql.go:44-57).
        # The database is named explicitly so the one the setup Job creates is the one it opens.
        wanted.update({
            "DB_USER": {"valueFrom": {"secretKeyRef": {"name": stores.secret_name, "key": stores.keys.db_username}}},
            "KATIB_MYSQL_DB_HOST": {"value": stores.mysql_host},
            "KATIB_MYSQL_DB_PORT": {"value": str(stores.mysql_port)},
            "KATIB_MYSQL_DB_DATABASE": {"value": KATIB_DATABASE},
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
