"""What the databases, the object store, the external Argo and the operators' own images need to work,
over both real upstream releases: each consumer gets what its source reads (manifests/facts/contracts/)."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from manifests.objects import containers_of, object_ref, pod_template
from manifests.stores import DATABASE_SETUP_JOB, database_setup_script
from tests.manifests.conftest import ENTERPRISE, MIRROR, enterprise_result
from tests.upstream import upstream_objects

STORES = ENTERPRISE.stores


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
    assert env["MYSQL_PWD"] == _secret(STORES.keys.db_password) and env["DB_USER"] == _secret(STORES.keys.db_username)
    assert env["DB_HOST"] == STORES.mysql_host and env["DB_PORT"] == str(STORES.mysql_port)
    # Its client is upstream's bundled MySQL image, mirrored, so the registry team mirrors it too.
    assert container["image"] == f"{MIRROR}/dockerhub/library/mysql:8.0.29"
    assert result.image_map["docker.io/library/mysql:8.0.29"] == container["image"]
    assert pod_template(job)["spec"]["restartPolicy"] == "Never"


def test_no_stores_no_database_setup_job(version):
    from dataclasses import replace

    from manifests.pipeline import transform

    result = transform(upstream_objects(version), replace(ENTERPRISE, stores=None))
    assert not [o for o in result.objects if o["kind"] == "Job" and o["metadata"]["name"] == DATABASE_SETUP_JOB]


def _fake_mysql(tmp_path: Path, account: str, login_ok: bool = True) -> Path:
    """A `mysql` client that logs its statements and answers SHOW CREATE USER with `account`."""
    log = tmp_path / "statements.log"
    client = tmp_path / "mysql"
    client.write_text(
        "#!/bin/sh\n"
        f'for last; do :; done\necho "$last" >> {log}\n'
        + ("" if login_ok else 'echo "ERROR 1045 (28000): Access denied" >&2; exit 1\n')
        + f'case "$last" in "SHOW CREATE USER"*) echo "{account}";; esac\n'
    )
    client.chmod(client.stat().st_mode | stat.S_IEXEC)
    return log


def _run_setup(tmp_path: Path, account: str, login_ok: bool = True):
    log = _fake_mysql(tmp_path, account, login_ok)
    script = database_setup_script(("katib",), refuse_plugins=True)
    env = {"PATH": f"{tmp_path}:{os.environ['PATH']}", "DB_HOST": "db.example", "DB_PORT": "3306", "DB_USER": "kubeflow"}
    done = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=30)
    statements = log.read_text().splitlines() if log.exists() else []
    return done, statements


def test_database_setup_creates_the_databases_no_consumer_creates(tmp_path):
    done, statements = _run_setup(tmp_path, "CREATE USER `kubeflow`@`%` IDENTIFIED WITH 'mysql_native_password' AS '*ABC'")
    assert done.returncode == 0, done.stderr
    assert "CREATE DATABASE IF NOT EXISTS `katib`" in statements
    assert "database katib is ready" in done.stdout


def test_database_setup_refuses_a_user_ml_metadata_cannot_log_in_as(tmp_path):
    done, statements = _run_setup(tmp_path, "CREATE USER `kubeflow`@`%` IDENTIFIED WITH 'caching_sha2_password' AS '$A$005$x'")
    assert done.returncode == 1
    assert "mysql_native_password" in done.stderr and "ALTER USER" in done.stderr
    assert not [s for s in statements if s.startswith("CREATE DATABASE")]


def test_database_setup_says_what_to_do_when_it_cannot_log_in(tmp_path):
    done, _ = _run_setup(tmp_path, "", login_ok=False)
    assert done.returncode == 1
    assert "cannot log in to MySQL at db.example:3306 as kubeflow" in done.stderr
