"""What the databases, the object store, the external Argo and the operators' own images need to work,
over both real upstream releases: each consumer gets what its source reads (manifests/facts/contracts/)."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from manifests.images import CODE_DEFAULT_IMAGES, normalize_image, parse_image
from manifests.objects import containers_of, object_ref, pod_template
from manifests.release_changes import profile_controller_calls_iam
from manifests.stores import DATABASE_SETUP_JOB, database_setup_script
from manifests.tenancy import DataLake, MeshPolicy, ProfileSpec, static_objects
from tests.manifests.conftest import ENTERPRISE, MIRROR, enterprise_result
from tests.upstream import upstream_objects

STORES = ENTERPRISE.stores
ARGO = ENTERPRISE.argo


def _find(objects, kind, name, namespace="kubeflow"):
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name
                and (o["metadata"].get("namespace") or "") == namespace)


def _container(obj, name):
    return next(c for c in containers_of(pod_template(obj)["spec"]) if c["name"] == name)


def _env(container) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env") or []}


def _secret(key):
    return {"secretKeyRef": {"name": STORES.secret_name, "key": key}}


# ------------------------------------------------------------------------------------------ Katib and MySQL


def test_katib_db_manager_reads_the_external_database(version):
    objects = enterprise_result(version).objects
    env = _env(_container(_find(objects, "Deployment", "katib-db-manager"), "katib-db-manager"))
    # kubeflow/katib@v0.18.0 and v0.17.0 pkg/db/v1beta1/common/const.go:24-37: the only names it reads.
    assert env["KATIB_MYSQL_DB_HOST"] == STORES.mysql_host
    assert env["KATIB_MYSQL_DB_PORT"] == str(STORES.mysql_port)
    assert env["DB_USER"] == _secret(STORES.keys.db_username)
    assert env["DB_PASSWORD"] == _secret(STORES.keys.db_password)
    assert env["DB_NAME"] == "mysql"
    # The database it opens is the one the setup Job creates.
    job = _find(objects, "Job", DATABASE_SETUP_JOB)
    script = _container(job, "databases")["command"][-1]
    assert f"CREATE DATABASE IF NOT EXISTS \\`{env['KATIB_MYSQL_DB_DATABASE']}\\`" in script
    assert not {"DB_HOST", "DB_PORT"} & set(env), "names Katib never reads"


def test_the_database_setup_job_runs_before_katib_with_the_central_credentials(version):
    result = enterprise_result(version)
    groups = list(result.groups.objects)
    group_of = {object_ref(o): name for name, objs in result.groups.objects.items() for o in objs}
    job_ref = f"Job kubeflow/{DATABASE_SETUP_JOB}"
    assert groups.index(group_of[job_ref]) < groups.index(group_of["Deployment kubeflow/katib-db-manager"])
    job = _find(result.objects, "Job", DATABASE_SETUP_JOB)
    container = _container(job, "databases")
    env = _env(container)
    assert env == {"DB_HOST": STORES.mysql_host, "DB_PORT": str(STORES.mysql_port)}
    volume = next(v for v in pod_template(job)["spec"]["volumes"] if v["name"] == "credentials")
    assert volume["secret"]["secretName"] == STORES.secret_name
    assert {item["key"] for item in volume["secret"]["items"]} == {STORES.keys.db_username, STORES.keys.db_password}
    # Its client is upstream's bundled MySQL image (katib-mysql's: mysql:8.0.29 up to 1.10, mysql:8.0 from
    # 1.11 on), mirrored, so the registry team mirrors it too.
    katib_mysql = _find(upstream_objects(version), "Deployment", "katib-mysql")
    bundled = normalize_image(_container(katib_mysql, "katib-mysql")["image"])
    assert container["image"] == f"{MIRROR}/dockerhub/" + bundled.removeprefix("docker.io/")
    assert result.image_map[bundled] == container["image"]
    assert pod_template(job)["spec"]["restartPolicy"] == "Never"


def test_no_stores_no_database_setup_job(version):
    from dataclasses import replace

    from manifests.pipeline import transform

    # The bundled stores with the bundled Argo (from KFP 2.15 the external Argo needs the external stores).
    result = transform(upstream_objects(version), replace(ENTERPRISE, stores=None, argo=None))
    assert not [o for o in result.objects if o["kind"] == "Job" and o["metadata"]["name"] == DATABASE_SETUP_JOB]


def _fake_mysql(tmp_path: Path, account: str, login_ok: bool = True) -> Path:
    """A `mysql` client that logs its statements and answers SHOW CREATE USER with `account`."""
    log = tmp_path / "statements.log"
    client = tmp_path / "mysql"
    client.write_text(
        "#!/bin/sh\n"
        f'for last; do :; done\necho "$last" >> {log}\necho "password $MYSQL_PWD" >> {log}\n'
        + ("" if login_ok else 'echo "ERROR 1045 (28000): Access denied" >&2; exit 1\n')
        + f'case "$last" in "SHOW CREATE USER"*) echo "{account}";; esac\n'
    )
    client.chmod(client.stat().st_mode | stat.S_IEXEC)
    return log


def _run_setup(tmp_path: Path, account: str, login_ok: bool = True):
    log = _fake_mysql(tmp_path, account, login_ok)
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / STORES.keys.db_username).write_text("kubeflow")
    (credentials / STORES.keys.db_password).write_text("s3cret")
    script = database_setup_script(("katib",), refuse_plugins=True)
    env = {"PATH": f"{tmp_path}:{os.environ['PATH']}", "DB_HOST": "db.example", "DB_PORT": "3306",
           "DB_CREDENTIALS_DIR": str(credentials)}
    done = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=30)
    statements = log.read_text().splitlines() if log.exists() else []
    return done, statements


def test_database_setup_creates_the_databases_no_consumer_creates(tmp_path):
    done, statements = _run_setup(tmp_path, "CREATE USER `kubeflow`@`%` IDENTIFIED WITH 'mysql_native_password' AS '*ABC'")
    assert done.returncode == 0, done.stderr
    assert "CREATE DATABASE IF NOT EXISTS `katib`" in statements
    assert "database katib is ready" in done.stdout
    # The password reaches the client from the mounted Secret, never from the Job's environment.
    assert "password s3cret" in statements


def test_database_setup_refuses_a_user_ml_metadata_cannot_log_in_as(tmp_path):
    done, statements = _run_setup(tmp_path, "CREATE USER `kubeflow`@`%` IDENTIFIED WITH 'caching_sha2_password' AS '$A$005$x'")
    assert done.returncode == 1
    assert "mysql_native_password" in done.stderr and "ALTER USER" in done.stderr
    assert not [s for s in statements if s.startswith("CREATE DATABASE")]


def test_database_setup_says_what_to_do_when_it_cannot_log_in(tmp_path):
    done, _ = _run_setup(tmp_path, "", login_ok=False)
    assert done.returncode == 1
    assert "cannot log in to MySQL at db.example:3306 as kubeflow" in done.stderr


# ------------------------------------------------------------------------------------------ Argo and the KFP UI

#: The templates the KFP UI resolves in a log key (kubeflow/pipelines@2.5.0 frontend/server/workflow-helper.ts:245-252).
UI_TEMPLATES = {"{{workflow.name}}", "{{workflow.creationTimestamp.Y}}", "{{workflow.creationTimestamp.m}}",
                "{{workflow.creationTimestamp.d}}", "{{pod.name}}", "{{workflow.namespace}}"}


def test_pipelines_ui_reads_archived_logs_from_the_artifact_repository(version):
    objects = enterprise_result(version).objects
    env = _env(_container(_find(objects, "Deployment", "ml-pipeline-ui"), "ml-pipeline-ui"))
    controller = yaml.safe_load(_find(objects, "ConfigMap", ARGO.configmap_name, ARGO.namespace)["data"]["artifactRepository"])
    # Where the external controller writes logs is where the UI reads them (configs.ts:88-105).
    assert env["ARGO_ARCHIVE_LOGS"] == "true"
    assert env["ARGO_ARCHIVE_ARTIFACTORY"] == "s3"
    assert env["ARGO_ARCHIVE_BUCKETNAME"] == controller["s3"]["bucket"]
    assert env["ARGO_KEYFORMAT"] == controller["s3"]["keyFormat"]
    assert set(re.findall(r"{{[^}]*}}", env["ARGO_KEYFORMAT"])) <= UI_TEMPLATES
    assert env["ARGO_ARTIFACT_REPOSITORIES_LOOKUP"] == "true"
    # The S3 client it uses for the archive (AWS_*) points at the same region.
    assert env["AWS_REGION"] == ARGO.region


LAKE = DataLake(bucket="kf-artifacts", prefix="profiles/ana", region="eu-west-1",
                argo_key_format="artifacts/{{workflow.namespace}}/{{workflow.name}}/{{pod.name}}")
MESH = MeshPolicy(
    trusted_principals=("cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account",),
    serving_namespaces=("knative-serving",),
    serving_principals=("cluster.local/ns/knative-serving/sa/activator",),
)


def test_data_lake_profiles_logs_are_found_by_the_ui_lookup():
    objects = static_objects(ProfileSpec(name="ana", owner="ana@x.io", data_lake=LAKE), MESH)
    repositories = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "artifact-repositories")
    # The UI reads data key `artifact-repositories` (workflow-helper.ts:174-178); Argo the annotated key.
    key = repositories["metadata"]["annotations"]["workflows.argoproj.io/default-artifact-repository"]
    assert key == "artifact-repositories"
    assert json.loads(repositories["data"][key])["s3"]["keyFormat"].startswith("profiles/ana/")
    # Upstream's ml-pipeline-ui ClusterRole grants no ConfigMaps: the profile lets it read this one.
    role = next(o for o in objects if o["kind"] == "Role" and o["metadata"]["name"] == "ml-pipeline-ui-artifact-repositories")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["artifact-repositories"], "verbs": ["get"]}]
    binding = next(o for o in objects if o["kind"] == "RoleBinding" and o["metadata"]["name"] == role["metadata"]["name"])
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "ml-pipeline-ui", "namespace": "kubeflow"}]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]


def test_profiles_without_a_data_lake_get_no_pipeline_root_they_cannot_use(version):
    objects = enterprise_result(version).objects
    # KFP's profile sync writes a `kfp-launcher` into every pipelines-enabled namespace when this is set
    # (sync.py:113-125): it must stay empty, or profiles without a role get a root they cannot write.
    install = _find(objects, "ConfigMap", "pipeline-install-config")
    assert install["data"]["defaultPipelineRoot"] == ""
    if profile_controller_calls_iam(upstream_objects(version)):
        # KFP 2.15 on: its profile sync is excluded with external stores (the contracts' newest-releases
        # file), so nothing writes a root into the namespaces but the program.
        excluded = enterprise_result(version).excluded
        assert excluded["Deployment kubeflow/kubeflow-pipelines-profile-controller"] == "pipelines-profile-controller"
        return _assert_profile_roots_follow_the_data_lake()
    sync = _find(objects, "Deployment", "kubeflow-pipelines-profile-controller")
    root_env = next(e for c in containers_of(pod_template(sync)["spec"]) for e in c.get("env") or []
                    if e["name"] == "KFP_DEFAULT_PIPELINE_ROOT")
    assert root_env["valueFrom"]["configMapKeyRef"] == {"key": "defaultPipelineRoot", "name": "pipeline-install-config", "optional": True}
    _assert_profile_roots_follow_the_data_lake()


def _assert_profile_roots_follow_the_data_lake():
    without = static_objects(ProfileSpec(name="carol", owner="carol@x.io"), MESH)
    assert not [o for o in without if o["metadata"]["name"] in {"kfp-launcher", "artifact-repositories"}]
    with_lake = static_objects(ProfileSpec(name="ana", owner="ana@x.io", data_lake=LAKE), MESH)
    launcher = next(o for o in with_lake if o["metadata"]["name"] == "kfp-launcher")
    assert launcher["data"]["defaultPipelineRoot"] == "s3://kf-artifacts/profiles/ana"


def test_argo_executor_settings_survive_the_argo_exclusion(version):
    upstream = next(o for o in upstream_objects(version)
                    if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "workflow-controller-configmap")
    assert upstream["data"]["executor"]
    result = enterprise_result(version)
    assert f"ConfigMap kubeflow/workflow-controller-configmap" in result.excluded
    produced = _find(result.objects, "ConfigMap", ARGO.configmap_name, ARGO.namespace)
    assert produced["data"]["executor"] == upstream["data"]["executor"]


# ------------------------------------------------------------------------------------------ operators' images


def test_images_operators_pull_by_default_are_mirrored(version):
    result = enterprise_result(version)
    deployed = {o["metadata"]["name"] for o in result.objects if o["kind"] == "Deployment"}
    # The training-operator left the example in 1.11 (Trainer v2 ships its images in its runtimes).
    entries = [entry for entry in CODE_DEFAULT_IMAGES if entry.deployment in deployed]
    assert entries, "the table names no Deployment of this release"
    named = 0
    for entry in entries:
        deployment = _find(result.objects, "Deployment", entry.deployment)
        container = _container(deployment, entry.container)
        if entry.setting.startswith("env:"):
            values = [e["value"] for e in container.get("env") or [] if e["name"] == entry.setting[4:]]
        else:
            values = [a.split("=", 1)[1] for a in container.get("args") or [] if a.startswith(entry.setting + "=")]
        assert len(values) == 1, f"{object_ref(deployment)} names {entry.setting} {len(values)} times"
        assert values[0].startswith(MIRROR + "/"), values[0]
        named += 1
    if "training-operator" in deployed:
        # The PyTorch init container and the MPI launcher's kubectl-delivery, which the training-operator
        # pulls from Docker Hub unless told otherwise, are in the image map the registry team mirrors.
        assert result.image_map["docker.io/library/alpine:3.10"] == f"{MIRROR}/dockerhub/library/alpine:3.10"
        assert "docker.io/kubeflow/kubectl-delivery:latest" in result.image_map
    assert named == len(entries)


@pytest.mark.parametrize("image", ["ghcr.io/kubeflow/training-operator:v1-3f15cb8", "kubeflow/training-operator:v1-04f9f13"])
def test_every_training_operator_version_gets_its_init_container_image(image):
    from manifests.images import name_code_default_images

    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "training-operator", "namespace": "kubeflow"},
                  "spec": {"template": {"spec": {"containers": [{"name": "training-operator", "image": image, "command": ["/manager"]}]}}}}
    result = name_code_default_images([deployment])
    args = result.objects[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--pytorch-init-container-image=alpine:3.10" in args
    assert parse_image(image).tag  # the table is keyed by tag; "*" covers both


def test_an_operator_version_whose_default_is_unknown_is_left_alone_and_reported():
    from manifests.images import name_code_default_images

    api_server = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "ml-pipeline", "namespace": "kubeflow"},
                  "spec": {"template": {"spec": {"containers": [{"name": "ml-pipeline-api-server",
                                                                 "image": "ghcr.io/kubeflow/kfp-api-server:9.9.9"}]}}}}
    result = name_code_default_images([api_server])
    assert result.objects[0] is api_server
    assert [c.what for c in result.changes] == [
        f"container ml-pipeline-api-server {setting} left unset, the code default of version '9.9.9' is not known (pulled unmirrored)"
        for setting in ("env V2_LAUNCHER_IMAGE", "env V2_DRIVER_IMAGE")
    ]
