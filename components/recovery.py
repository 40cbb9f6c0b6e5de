"""Recovery: S3 replication of the artifact buckets to the peer region, and the Aurora Global Database's cluster.

Registers nothing for a stack without `recovery.mode`. A primary with replication on writes one replication rule
per artifact bucket towards the peer's bucket of the same purpose (names from `recovery.peer.bucketPrefix`, so
ARNs are known at preview and the peer's state is never read), with its least-privilege role. With
`recovery.database.create` it registers this region's Aurora cluster, and with `createGlobalCluster` the global
cluster too. What a standby holds is in the Kubeflow objects (manifests.recovery), not here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import pulumi
import pulumi_aws as aws

from config import Settings
from config.recovery import GlobalDatabaseSettings, partition_of
from manifests.iam import assume_role_policy, role_name
from manifests.recovery import replication_policy

#: S3 Replication Time Control's one threshold: 15 minutes (docs.aws.amazon.com/AmazonS3/latest/userguide/replication-time-control.html).
RTC_MINUTES = 15
AURORA_ENGINE = "aurora-mysql"


@dataclass(frozen=True, kw_only=True)
class ReplicatedBucket:
    purpose: str
    source: str
    destination: str
    source_kms_key_arn: Optional[str] = None
    destination_kms_key_arn: Optional[str] = None


@dataclass(frozen=True, kw_only=True)
class RecoveryArgs:
    mode: Optional[str] = None
    region: str = ""
    peer_region: str = ""
    peer_stack: str = ""
    replicate: Sequence[ReplicatedBucket] = ()
    #: The peer's bucket of each purpose (replicated to while this stack is primary).
    peer_buckets: Mapping[str, str] = field(default_factory=dict)
    delete_markers: bool = True
    time_control: bool = True
    database: Optional[GlobalDatabaseSettings] = None
    database_user: str = "kubeflow"
    database_password: Optional[pulumi.Input[str]] = None
    protect: bool = False
    role_prefix: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> "RecoveryArgs":
        recovery = settings.recovery
        replicate: list[ReplicatedBucket] = []
        if recovery.replicates and recovery.peer is not None:
            names = settings.artifacts.names()
            replicate = [ReplicatedBucket(
                purpose=b.purpose, source=names[b.purpose], destination=f"{recovery.peer.bucket_prefix}-{b.purpose}",
                source_kms_key_arn=b.kms_key_arn, destination_kms_key_arn=recovery.peer.kms_key_arns.get(b.purpose),
            ) for b in settings.artifacts.buckets]
        return cls(
            mode=recovery.mode, region=settings.aws.region,
            peer_region=recovery.peer.region if recovery.peer is not None else "",
            peer_stack=recovery.peer.stack if recovery.peer is not None else "",
            replicate=replicate,
            peer_buckets={b.purpose: f"{recovery.peer.bucket_prefix}-{b.purpose}" for b in settings.artifacts.buckets}
            if recovery.peer is not None else {},
            delete_markers=recovery.replication.delete_markers,
            time_control=recovery.replication.time_control, database=recovery.database,
            database_user=settings.kubeflow.database.user if settings.kubeflow.database is not None else "kubeflow",
            database_password=settings.secrets.database_password, protect=settings.protect,
            role_prefix=settings.artifacts.bucket_prefix,
        )


class Recovery(pulumi.ComponentResource):
    """The replication rules of this stack's buckets and this region's member of the Aurora Global Database."""

    #: The replication role's ARN (None when this stack does not replicate).
    replication_role_arn: Optional[pulumi.Output[str]]
    #: This region's cluster endpoint, the writer's after a switchover into this region (None unless created here).
    cluster_endpoint: Optional[pulumi.Output[str]]

    def __init__(self, name: str, args: RecoveryArgs, versioning: Mapping[str, pulumi.Resource],
                 opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("kubeflow-platform:recovery:Recovery", name, None, opts)
        self._args = args
        self.replication_role_arn = None
        self.cluster_endpoint = None
        if args.replicate:
            self._replication(name, args, versioning)
        if args.database is not None and args.database.create:
            self._database(name, args, args.database)
        self.register_outputs({})

    @property
    def stack_outputs(self) -> dict[str, Any]:
        """What the fleet check and the runbook read: this stack's side of the pair."""
        args = self._args
        if args.mode is None:
            return {}
        database = args.database
        return {"recovery": {
            "mode": args.mode,
            "region": args.region,
            "peerRegion": args.peer_region,
            "peerStack": args.peer_stack,
            "peerBuckets": dict(args.peer_buckets),
            "replicatesTo": {b.purpose: b.destination for b in args.replicate},
            "globalClusterIdentifier": database.global_cluster_identifier if database else None,
            "clusterIdentifier": database.cluster_identifier if database else None,
            "createsCluster": bool(database and database.create),
            "createsGlobalCluster": bool(database and database.create_global_cluster),
        }}

    def _replication(self, name: str, args: RecoveryArgs, versioning: Mapping[str, pulumi.Resource]) -> None:
        partition = partition_of(args.region)
        role = aws.iam.Role(
            f"{name}-replication",
            name=role_name(args.role_prefix, "s3-replication"),
            description="S3 replication of Kubeflow's artifact buckets to the recovery region",
            assume_role_policy=json.dumps(assume_role_policy(service="s3.amazonaws.com"), sort_keys=True),
            opts=pulumi.ResourceOptions(parent=self),
        )
        policy = aws.iam.RolePolicy(
            f"{name}-replication",
            role=role.id,
            policy=json.dumps(replication_policy(
                pairs=[(b.source, b.destination, b.source_kms_key_arn, b.destination_kms_key_arn) for b in args.replicate],
                region=args.region, peer_region=args.peer_region, partition=partition), sort_keys=True),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.replication_role_arn = role.arn
        for bucket in args.replicate:
            destination: dict[str, Any] = {"bucket": f"arn:{partition}:s3:::{bucket.destination}", "storage_class": "STANDARD"}
            if args.time_control:
                # RTC needs metrics on; both at S3's one 15-minute threshold.
                destination["replication_time"] = {"status": "Enabled", "time": {"minutes": RTC_MINUTES}}
                destination["metrics"] = {"status": "Enabled", "event_threshold": {"minutes": RTC_MINUTES}}
            rule: dict[str, Any] = {
                "id": "kubeflow-recovery",
                "status": "Enabled",
                "priority": 0,
                # A filter makes this a V2 rule, the schema delete marker replication and RTC need.
                "filter": {"prefix": ""},
                "delete_marker_replication": {"status": "Enabled" if args.delete_markers else "Disabled"},
                "destination": destination,
            }
            if bucket.source_kms_key_arn:
                # SSE-KMS objects replicate only when selected, and their replicas need a key of the peer region.
                rule["source_selection_criteria"] = {"sse_kms_encrypted_objects": {"status": "Enabled"}}
                destination["encryption_configuration"] = {"replica_kms_key_id": bucket.destination_kms_key_arn}
            depends = [policy] + ([versioning[bucket.purpose]] if bucket.purpose in versioning else [])
            aws.s3.BucketReplicationConfig(
                f"{name}-{bucket.purpose}",
                bucket=bucket.source,
                role=role.arn,
                rules=[rule],
                # S3 accepts replication rules only on a versioned bucket.
                opts=pulumi.ResourceOptions(parent=self, depends_on=depends),
            )

    def _database(self, name: str, args: RecoveryArgs, database: GlobalDatabaseSettings) -> None:
        protect = pulumi.ResourceOptions(parent=self, protect=args.protect, retain_on_delete=args.protect)
        depends: list[pulumi.Resource] = []
        if database.create_global_cluster:
            depends.append(aws.rds.GlobalCluster(
                f"{name}-global-database",
                global_cluster_identifier=database.global_cluster_identifier,
                engine=AURORA_ENGINE,
                engine_version=database.engine_version,
                storage_encrypted=True,
                deletion_protection=args.protect,
                opts=protect,
            ))
        first_writer = database.create_global_cluster
        cluster = aws.rds.Cluster(
            f"{name}-database",
            cluster_identifier=database.cluster_identifier,
            global_cluster_identifier=database.global_cluster_identifier,
            engine=AURORA_ENGINE,
            engine_version=database.engine_version,
            # Only the global cluster's first writer has a master user; a secondary refuses one (it replicates the
            # primary's users), and RDS-managed master passwords are not supported in a global database.
            master_username=args.database_user if first_writer else None,
            master_password=pulumi.Output.secret(args.database_password) if first_writer and args.database_password is not None else None,
            db_subnet_group_name=database.subnet_group_name,
            vpc_security_group_ids=list(database.security_group_ids) or None,
            storage_encrypted=True,
            kms_key_id=database.kms_key_arn,
            backup_retention_period=7,
            copy_tags_to_snapshot=True,
            deletion_protection=args.protect,
            skip_final_snapshot=not args.protect,
            final_snapshot_identifier=f"{database.cluster_identifier}-final" if args.protect else None,
            opts=pulumi.ResourceOptions.merge(protect, pulumi.ResourceOptions(
                depends_on=depends,
                # Aurora sets the source of a secondary, and moves it at every switchover: not the program's to reset.
                ignore_changes=["replicationSourceIdentifier"])),
        )
        self.cluster_endpoint = cluster.endpoint
        for i in range(database.instances):
            aws.rds.ClusterInstance(
                f"{name}-database-{i}",
                identifier=f"{database.cluster_identifier}-{i}",
                cluster_identifier=cluster.id,
                engine=AURORA_ENGINE,
                engine_version=database.engine_version,
                instance_class=database.instance_class,
                db_subnet_group_name=database.subnet_group_name,
                publicly_accessible=False,
                opts=protect,
            )
