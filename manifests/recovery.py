"""A standby region's Kubeflow: the writers of its stores held at zero replicas until the region is promoted.

In the standby region the database is the Aurora Global Database's read-only secondary and the buckets receive the
primary's replicas. Kubeflow's store writers must not run there: each writes at start or in a loop (the sources are
the contracts in manifests/facts/contracts/recovery.yaml, read at 26.03's tags):

- the KFP API server runs GORM AutoMigrate (DDL) on `mlpipeline` at start;
- the persistence agent reports every workflow to the API server, which writes the run rows;
- the scheduled workflow controller creates runs through the API server when a recurring run fires;
- the cache server runs CREATE DATABASE and AutoMigrate on `cachedb` at start; its webhook fails open
  (`failurePolicy: Ignore`), so pods are admitted unchanged while it is held;
- ML Metadata (metadata-grpc) upgrades `metadb`'s schema at start (`--enable_database_upgrade=true`), and the
  metadata writer writes executions and artifacts into it;
- Katib's DB manager creates `observation_logs` at start and deletes a trial's rows when the trial goes.

Everything else (UIs, controllers, webhooks) stays up, so the standby is a warm copy: promotion scales the held
Deployments back (`recovery.mode: primary`) and nothing else changes. The database setup Job, which creates
databases, is left out in the standby (it would fail against the read-only secondary and `pulumi up` waits for
it) and returns with the promotion.

Pure Python over plain dicts; no Pulumi.
"""

from __future__ import annotations

import copy

from manifests.objects import Change, TransformResult, object_ref
from manifests.stores import DATABASE_SETUP_JOB

#: Annotation on each held Deployment: the trace and the upgrade plan read it.
HELD = "kubeflow-platform/held"
HELD_VALUE = "standby"

#: Deployment name -> what it writes, in the namespace of Kubeflow's platform components.
STORE_WRITERS: dict[str, str] = {
    "ml-pipeline": "KFP API server: AutoMigrate of mlpipeline at start, every run and pipeline row",
    "ml-pipeline-persistenceagent": "reports every workflow to the API server, which writes its run",
    "ml-pipeline-scheduledworkflow": "creates runs through the API server when a recurring run fires",
    "cache-server": "CREATE DATABASE and AutoMigrate of cachedb at start, cache entries per step",
    "metadata-grpc-deployment": "ML Metadata: schema upgrade of metadb at start, every execution and artifact",
    "metadata-writer": "writes executions and artifacts of v1 runs into ML Metadata",
    "katib-db-manager": "CREATE TABLE observation_logs at start, a trial's logs and their deletion",
}


def hold_store_writers(objects: list[dict], namespace: str) -> TransformResult:
    """Every store writer in `namespace` scaled to 0 and annotated held, and the database setup Job left out."""
    result, changes = [], []
    for obj in objects:
        meta = obj.get("metadata") or {}
        if meta.get("namespace") != namespace:
            result.append(obj)
            continue
        name, kind = meta.get("name"), obj.get("kind")
        if kind == "Job" and name == DATABASE_SETUP_JOB:
            changes.append(Change(object_ref(obj), "left out: held: standby (it creates databases; the secondary is read-only)"))
            continue
        if kind == "Deployment" and name in STORE_WRITERS:
            held = copy.deepcopy(obj)
            held.setdefault("spec", {})["replicas"] = 0
            held["metadata"].setdefault("annotations", {})[HELD] = HELD_VALUE
            changes.append(Change(object_ref(obj), f"spec.replicas: 0 (held: standby; {STORE_WRITERS[name]})"))
            result.append(held)
            continue
        result.append(obj)
    return TransformResult(result, tuple(changes))


def held_workloads(objects: list[dict]) -> dict[tuple[str, str], str]:
    """(namespace, name) of every Deployment the plan holds, and why (its annotation's value)."""
    return {(o["metadata"].get("namespace", ""), o["metadata"]["name"]): o["metadata"]["annotations"][HELD]
            for o in objects
            if o.get("kind") == "Deployment" and HELD in ((o.get("metadata") or {}).get("annotations") or {})}


def replication_policy(*, pairs: list[tuple[str, str, str | None, str | None]], region: str, peer_region: str,
                       partition: str = "aws") -> dict:
    """What the S3 replication role may do, and nothing more: read the replication rules and the versions of this
    stack's buckets, write replicas (objects, delete markers, tags) into the peer's buckets, decrypt with the source
    keys through S3 in this region and encrypt with the destination keys through S3 in the peer region, each only for
    its own bucket (the actions S3 needs: docs.aws.amazon.com/AmazonS3/latest/userguide/setting-repl-config-perm-overview.html;
    the KMS conditions: .../replication-config-for-kms-objects.html). `pairs`: (source bucket, destination bucket,
    source KMS key ARN or None, destination KMS key ARN or None)."""
    if not pairs:
        raise ValueError("at least one bucket pair is required")

    def arn(bucket: str) -> str:
        return f"arn:{partition}:s3:::{bucket}"

    sources, destinations = sorted(arn(s) for s, _, _, _ in pairs), sorted(arn(d) for _, d, _, _ in pairs)
    statements: list[dict] = [
        {"Sid": "ReadReplicationRules", "Effect": "Allow",
         "Action": ["s3:GetReplicationConfiguration", "s3:ListBucket"], "Resource": sources},
        {"Sid": "ReadSourceVersions", "Effect": "Allow",
         "Action": ["s3:GetObjectVersionForReplication", "s3:GetObjectVersionAcl", "s3:GetObjectVersionTagging"],
         "Resource": [f"{s}/*" for s in sources]},
        {"Sid": "WriteReplicas", "Effect": "Allow",
         "Action": ["s3:ReplicateObject", "s3:ReplicateDelete", "s3:ReplicateTags"],
         "Resource": [f"{d}/*" for d in destinations]},
    ]
    for i, (source, destination, source_key, destination_key) in enumerate(sorted(pairs)):
        if source_key:
            statements.append({
                "Sid": f"DecryptSource{i}", "Effect": "Allow", "Action": "kms:Decrypt", "Resource": source_key,
                "Condition": {"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"},
                              "StringLike": {"kms:EncryptionContext:aws:s3:arn": [arn(source), f"{arn(source)}/*"]}}})
        if destination_key:
            statements.append({
                "Sid": f"EncryptReplicas{i}", "Effect": "Allow", "Action": ["kms:Encrypt", "kms:GenerateDataKey"],
                "Resource": destination_key,
                "Condition": {"StringEquals": {"kms:ViaService": f"s3.{peer_region}.amazonaws.com"},
                              "StringLike": {"kms:EncryptionContext:aws:s3:arn": [arn(destination), f"{arn(destination)}/*"]}}})
    return {"Version": "2012-10-17", "Statement": statements}
