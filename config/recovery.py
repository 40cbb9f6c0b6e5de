"""Recovery across two regions, active/passive: which side this stack is, its peer, and the data both share.

A regional stack is `primary` (its Kubeflow writes the database and the buckets, and its buckets replicate to
the peer's) or `standby` (its stores' writers are held at zero replicas, its database cluster is the Aurora
Global Database's read-only secondary, its buckets receive the primary's objects). Promotion is a change of
`recovery.mode`, reviewed like any other (docs/failover.md). Empty `recovery` (the default): one region, no
replication, nothing held.
"""

from __future__ import annotations

import re
import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Optional

from config import checks
from config.capacity import bucket_name
from config.loader import setting

if TYPE_CHECKING:
    from config import Settings

#: RDS cluster and global cluster identifiers: "1 to 63 letters, numbers, or hyphens; first character must be a
#: letter; can't end with a hyphen or contain two consecutive hyphens"
#: (https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_CreateGlobalCluster.html).
_RDS_IDENTIFIER = re.compile(r"^[A-Za-z](?:[A-Za-z0-9]|-(?!-)){0,62}$")
#: Aurora MySQL 3 is MySQL 8.0 compatible, the server line Kubeflow's bundled MySQL runs and KFP, ML Metadata and
#: Katib are tested against (contract `aurora-mysql-3-is-mysql-8`, manifests/facts/contracts/recovery.yaml).
AURORA_MYSQL_3 = re.compile(r"^8\.0\.mysql_aurora\.3\.\d+\.\d+$")
DEFAULT_ENGINE_VERSION = "8.0.mysql_aurora.3.08.2"


def rds_identifier(value: str) -> Optional[str]:
    if not _RDS_IDENTIFIER.match(value) or value.endswith("-"):
        return (f"{value!r} is not an RDS identifier: 1 to 63 letters, digits and single hyphens, starting with a "
                "letter and not ending with a hyphen")
    return None


def partition_of(region: str) -> str:
    """The ARN partition of a region (S3 bucket ARNs carry no region, only the partition)."""
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def _arn_region(arn: str) -> str:
    parts = arn.split(":", 5)
    return parts[3] if len(parts) == 6 else ""


@dataclass(frozen=True, kw_only=True)
class PeerSettings:
    region: str = setting(check=checks.aws_region)
    """Region of the other regional stack of the pair."""
    stack: str = setting(check=checks.not_empty)
    """Name of the other regional stack (like prod-us-east-1): the fleet check pairs the two stacks by it, and names both in every problem."""
    bucket_prefix: str = setting(check=bucket_name)
    """The peer stack's `artifacts.bucketPrefix`: its buckets are `<bucketPrefix>-<purpose>`, the replication destinations (names are chosen, so ARNs are known at preview; the fleet check holds both stacks to it)."""
    kms_key_arns: Mapping[str, str] = setting(types.MappingProxyType({}))
    """The peer's KMS key by bucket purpose (its `artifacts.buckets[].kmsKeyArn`, in the peer region): replicas of KMS-encrypted objects are encrypted with it; required for every bucket of this stack with a kmsKeyArn."""

    def cross_check(self) -> Iterator[tuple[str, str]]:
        check = checks.arn("kms", "key/")
        for purpose, arn in self.kms_key_arns.items():
            message = check(arn)
            if message:
                yield f"kmsKeyArns.{purpose}", message
            elif _arn_region(arn) != self.region:
                yield f"kmsKeyArns.{purpose}", (f"is a key of region {_arn_region(arn)!r}; the replicas live in the peer "
                                                f"region {self.region!r}: name a key there (KMS keys are regional)")


@dataclass(frozen=True, kw_only=True)
class ReplicationSettings:
    enabled: bool = setting(True)
    """While this stack is primary, replicate its artifact buckets to the peer's (S3 replication); false while the peer region is down (an unplanned failover), as S3 checks the destination when the rule is written."""
    delete_markers: bool = setting(True)
    """Replicate delete markers, so an object deleted in the primary is deleted (a marker over its versions) in the standby too; versions themselves are never deleted by replication (docs/failover.md)."""
    time_control: bool = setting(True)
    """S3 Replication Time Control: 99.99 % of objects within 15 minutes, with replication metrics and events (extra cost per GB)."""


@dataclass(frozen=True, kw_only=True)
class GlobalDatabaseSettings:
    global_cluster_identifier: str = setting(check=rds_identifier)
    """The Aurora Global Database both regional stacks belong to."""
    cluster_identifier: str = setting(check=rds_identifier)
    """This region's Aurora cluster in it; `kubeflow.database.host` must be its cluster endpoint (`<clusterIdentifier>.cluster-<id>.<region>.rds.amazonaws.com`)."""
    create: bool = setting(False)
    """Create this region's cluster, joined to the global cluster; false: the cluster exists, and the estate check (`make preview ESTATE=...`) verifies the global cluster, this region's membership and the writer region."""
    create_global_cluster: bool = setting(False)
    """This stack creates the global cluster itself, and its regional cluster is the first writer (it alone carries the master user, `kubeflow.database.user` with the secret `databasePassword`); true on exactly one stack of the pair, and it stays there through switchovers (the writer moves inside Aurora, not between stacks)."""
    engine_version: str = setting(DEFAULT_ENGINE_VERSION)
    """Aurora MySQL 3 (MySQL 8.0 compatible) version, the same on both stacks."""
    instance_class: str = setting("db.r6g.large", check=checks.not_empty)
    """Instance class of the cluster's instances (Aurora Global Database needs a memory-optimised db.r* class)."""
    instances: int = setting(2, check=checks.between(1, 16))
    """Instances in this region's cluster (a writer and readers in the primary; readers, one of which is promoted, in the standby)."""
    subnet_group_name: Optional[str] = setting(None)
    """DB subnet group (in the cluster's VPC) the created cluster uses; required with create."""
    security_group_ids: tuple[str, ...] = setting((), check=checks.security_groups)
    """Security groups of the created cluster: they must admit MySQL from the EKS cluster's nodes."""
    kms_key_arn: Optional[str] = setting(None, check=checks.arn("kms", "key/"))
    """KMS key in this region the created cluster's storage is encrypted with; required with create (an encrypted secondary needs a key of its own region)."""


@dataclass(frozen=True, kw_only=True)
class RecoverySettings:
    mode: Optional[Literal["primary", "standby"]] = setting(None)
    """`primary`: this region's Kubeflow serves and writes; `standby`: its stores' writers (KFP API server, persistence agent, scheduled workflow controller, cache server, ML Metadata and its writer, Katib DB manager) are scaled to 0 and the database setup Job left out until promoted. Unset: one region, no recovery."""
    peer: Optional[PeerSettings] = setting(None)
    """The other regional stack; required with a mode."""
    replication: ReplicationSettings = setting(ReplicationSettings())
    """S3 replication of the artifact buckets to the peer's, while primary."""
    database: Optional[GlobalDatabaseSettings] = setting(None)
    """The Aurora Global Database `kubeflow.database` is this region's cluster of."""

    @property
    def standby(self) -> bool:
        return self.mode == "standby"

    @property
    def replicates(self) -> bool:
        """This stack writes the replication rules of its buckets (it is primary and replication is on)."""
        return self.mode == "primary" and self.peer is not None and self.replication.enabled


def recovery_cross_checks(settings: "Settings") -> Iterator[tuple[str, str]]:
    """What `recovery` needs from the rest of the stack: a peer, the peer's keys, the regional database."""
    recovery = settings.recovery
    if recovery.mode is None:
        for key in ("peer", "database"):
            if getattr(recovery, key) is not None:
                yield f"recovery.{key}", "takes effect only with recovery.mode: set mode primary or standby, or remove it"
        return
    if recovery.peer is None:
        yield "recovery.peer", f"is required with mode {recovery.mode}: the other region's stack, region and bucketPrefix"
    else:
        peer = recovery.peer
        if peer.region == settings.aws.region:
            yield "recovery.peer.region", (f"{peer.region!r} is this stack's own region (aws.region): the peer must run "
                                           "in another region to survive a regional outage")
        if peer.bucket_prefix == settings.artifacts.bucket_prefix:
            yield "recovery.peer.bucketPrefix", (f"{peer.bucket_prefix!r} is this stack's own artifacts.bucketPrefix: the "
                                                 f"peer's ({peer.stack}'s) buckets are other buckets (S3 names are global), "
                                                 "and two regions never write one bucket")
        purposes = [b.purpose for b in settings.artifacts.buckets]
        for i, bucket in enumerate(settings.artifacts.buckets):
            if bucket.kms_key_arn and bucket.purpose not in peer.kms_key_arns:
                yield f"recovery.peer.kmsKeyArns.{bucket.purpose}", (
                    f"is required: artifacts.buckets[{i}] is encrypted with a KMS key, so its replicas need a key in "
                    f"{peer.region}; set it to the peer stack's kmsKeyArn of bucket {bucket.purpose!r}")
        for purpose in peer.kms_key_arns:
            if purpose not in purposes:
                yield f"recovery.peer.kmsKeyArns.{purpose}", (f"{purpose!r} is not a bucket of this stack "
                                                              f"(artifacts.buckets: {', '.join(purposes)})")
    database = recovery.database
    if database is None:
        return
    if settings.kubeflow.database is None:
        yield "recovery.database", ("needs kubeflow.database: Kubeflow's stores must be on the global database's "
                                    "regional cluster (set kubeflow.database.host to its cluster endpoint)")
    else:
        host, region = settings.kubeflow.database.host.lower(), settings.aws.region
        endpoint = re.compile(rf"^{re.escape(database.cluster_identifier.lower())}\.cluster-[a-z0-9]+\.{re.escape(region)}\.rds\.amazonaws\.com$")
        if not endpoint.match(host):
            yield "kubeflow.database.host", (
                f"{settings.kubeflow.database.host!r} is not the cluster endpoint of recovery.database.clusterIdentifier "
                f"{database.cluster_identifier!r} in {region} (`{database.cluster_identifier}.cluster-<id>.{region}."
                "rds.amazonaws.com`): after a switchover only the regional cluster endpoint follows the writer "
                "into this region"
                + (f"; it is a database of the peer's region {recovery.peer.region} ({recovery.peer.stack}'s), and two "
                   "regions never write one database" if recovery.peer is not None
                   and host.endswith(f".{recovery.peer.region}.rds.amazonaws.com") else ""))
    if not AURORA_MYSQL_3.match(database.engine_version):
        yield "recovery.database.engineVersion", (f"{database.engine_version!r} is not an Aurora MySQL 3 version (like "
                                                  f"{DEFAULT_ENGINE_VERSION}): Kubeflow's stores need MySQL 8.0")
    if not database.instance_class.startswith("db.r"):
        yield "recovery.database.instanceClass", (f"{database.instance_class!r}: an Aurora Global Database runs on "
                                                  "memory-optimised db.r* classes")
    if database.create_global_cluster and not database.create:
        yield "recovery.database.createGlobalCluster", "needs create: true (the global cluster's first writer is this stack's cluster)"
    if database.create:
        if not database.subnet_group_name:
            yield "recovery.database.subnetGroupName", "is required with create: the DB subnet group of the cluster's VPC"
        if not database.kms_key_arn:
            yield "recovery.database.kmsKeyArn", "is required with create: a KMS key of this region for the cluster's storage"
        elif _arn_region(database.kms_key_arn) != settings.aws.region:
            yield "recovery.database.kmsKeyArn", (f"is a key of region {_arn_region(database.kms_key_arn)!r}; the cluster "
                                                  f"runs in {settings.aws.region} (KMS keys are regional)")
