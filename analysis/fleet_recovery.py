"""Fleet rules for recovery: what two regional stacks must agree on so the standby is a copy and never a writer.

Each rule is a function `(stacks: {stack name: plan}) -> [problem]` over the saved previews (plan.json) of the
fleet's stacks, and each problem names both stacks. A live database or bucket is never shared between two
Kubeflows (KFP's API server migrates its schema at start, ML Metadata fails initialising twice, Katib's
observation logs are keyed by trial name alone: docs/failover.md), so:

- one Aurora Global Database has exactly one primary stack, and exactly one stack creates it;
- a primary's replication rules point at its peer's buckets, the peer points back at the primary's, both sides
  versioned, and each replica KMS key is the key the peer's bucket is encrypted with;
- a standby's store writers are held at 0 replicas, a primary's are not;
- no two stacks create one bucket or point Kubeflow at one database endpoint.

Pure Python over plain dicts; no Pulumi.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any

from analysis.plan_objects import kubernetes_objects
from analysis.upgrade import Finding
from manifests.recovery import HELD, STORE_WRITERS

Plan = Mapping[str, Any]
Rule = Callable[[Mapping[str, Plan]], list[str]]

_BUCKET = "aws:s3/bucket:Bucket"
_REPLICATION = "aws:s3/bucketReplicationConfig:BucketReplicationConfig"
_ENCRYPTION = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
_VERSIONING = "aws:s3/bucketVersioning:BucketVersioning"


def recovery_of(plan: Plan) -> Mapping[str, Any]:
    """The stack's side of the pair (its `recovery` output), empty for a one-region stack."""
    return (plan.get("outputs") or {}).get("recovery") or {}


def _resources(plan: Plan, type_: str) -> list[Mapping[str, Any]]:
    return [r for r in plan.get("resources") or [] if r.get("type") == type_]


def buckets_of(plan: Plan) -> dict[str, str]:
    """Bucket name -> purpose of every artifact bucket the stack creates."""
    names = (plan.get("outputs") or {}).get("bucketNames") or {}
    created = {str(r["inputs"].get("bucket")) for r in _resources(plan, _BUCKET)}
    return {name: purpose for purpose, name in names.items() if name in created}


def _by_purpose(plan: Plan, type_: str, suffix: str) -> dict[str, Mapping[str, Any]]:
    # The artifact store names each bucket's settings `artifacts-<purpose>-<setting>` (components.artifacts).
    return {r["name"][len("artifacts-"):-len(suffix)]: r["inputs"] for r in _resources(plan, type_)
            if r["name"].startswith("artifacts-") and r["name"].endswith(suffix)}


def bucket_kms_keys(plan: Plan) -> dict[str, str | None]:
    """Bucket name -> the KMS key its objects are encrypted with (None: SSE-S3)."""
    encryption = _by_purpose(plan, _ENCRYPTION, "-encryption")
    keys: dict[str, str | None] = {}
    for name, purpose in buckets_of(plan).items():
        rules = (encryption.get(purpose) or {}).get("rules") or [{}]
        keys[name] = (rules[0].get("applyServerSideEncryptionByDefault") or {}).get("kmsMasterKeyId")
    return keys


def versioned_buckets(plan: Plan) -> set[str]:
    versioning = _by_purpose(plan, _VERSIONING, "-versioning")
    return {name for name, purpose in buckets_of(plan).items()
            if ((versioning.get(purpose) or {}).get("versioningConfiguration") or {}).get("status") == "Enabled"}


def replication_rules(plan: Plan) -> list[tuple[str, str, str | None]]:
    """(source bucket, destination bucket, replica KMS key) of every replication rule the stack writes."""
    found = []
    for resource in _resources(plan, _REPLICATION):
        inputs = resource["inputs"]
        for rule in inputs.get("rules") or []:
            destination = rule.get("destination") or {}
            key = (destination.get("encryptionConfiguration") or {}).get("replicaKmsKeyId")
            found.append((str(inputs.get("bucket")), str(destination.get("bucket", "")).rsplit(":", 1)[-1], key))
    return found


def database_hosts(plan: Plan) -> set[str]:
    """The database endpoints the stack's Kubeflow is pointed at (pipeline-install-config dbHost/mysqlHost)."""
    hosts = set()
    for item in kubernetes_objects(plan).objects:
        obj = item.obj
        if obj.get("kind") == "ConfigMap" and (obj.get("metadata") or {}).get("name") == "pipeline-install-config":
            data = obj.get("data") or {}
            hosts |= {str(data[k]).lower() for k in ("dbHost", "mysqlHost") if data.get(k)}
    return hosts


def store_writers(plan: Plan) -> dict[str, tuple[int | None, str | None]]:
    """Each of Kubeflow's store writers the plan applies: (its replicas, its held annotation)."""
    found = {}
    for item in kubernetes_objects(plan).objects:
        obj = item.obj
        meta = obj.get("metadata") or {}
        if obj.get("kind") == "Deployment" and meta.get("name") in STORE_WRITERS:
            found[meta["name"]] = ((obj.get("spec") or {}).get("replicas"), (meta.get("annotations") or {}).get(HELD))
    return found


def _writes(plan: Plan) -> bool:
    """A stack writes its stores unless it is a standby."""
    return recovery_of(plan).get("mode") != "standby"


# ------------------------------------------------------------------------------------------------ rules


def one_primary_per_global_database(stacks: Mapping[str, Plan]) -> list[str]:
    members: dict[str, list[str]] = defaultdict(list)
    for name, plan in sorted(stacks.items()):
        identifier = recovery_of(plan).get("globalClusterIdentifier")
        if identifier:
            members[identifier].append(name)
    problems = []
    for identifier, names in sorted(members.items()):
        primaries = [n for n in names if recovery_of(stacks[n]).get("mode") == "primary"]
        creators = [n for n in names if recovery_of(stacks[n]).get("createsGlobalCluster")]
        if len(primaries) > 1:
            problems.append(f"global database {identifier}: stacks {' and '.join(primaries)} are both primary; an Aurora "
                            "Global Database has one writer region: set recovery.mode standby on all but one")
        elif not primaries:
            problems.append(f"global database {identifier}: no stack of {' and '.join(names)} is primary; set "
                            "recovery.mode primary on the stack of the writer region")
        if len(creators) > 1:
            problems.append(f"global database {identifier}: stacks {' and '.join(creators)} both create it "
                            "(recovery.database.createGlobalCluster); keep it on one")
    return problems


def replication_pairs_point_at_each_other(stacks: Mapping[str, Plan]) -> list[str]:
    owner = {bucket: name for name, plan in stacks.items() for bucket in buckets_of(plan)}
    problems = []
    for name, plan in sorted(stacks.items()):
        side = recovery_of(plan)
        if not side:
            continue
        peer = side.get("peerStack")
        if peer and peer not in stacks:
            problems.append(f"{name}: recovery.peer.stack {peer} is not a stack of the fleet")
            continue
        if peer:
            back = recovery_of(stacks[peer])
            if back.get("peerStack") != name:
                problems.append(f"{name} names {peer} as its peer, but {peer} names {back.get('peerStack') or 'none'}: "
                                "set each stack's recovery.peer.stack to the other")
            if back.get("region") and side.get("peerRegion") != back.get("region"):
                problems.append(f"{name}: recovery.peer.region {side.get('peerRegion')} is not {peer}'s region "
                                f"{back.get('region')}")
        for purpose, bucket in sorted((side.get("peerBuckets") or {}).items()):
            holder = owner.get(bucket)
            if holder == name:
                problems.append(f"{name}: recovery.peer.bucketPrefix names its own bucket {bucket}")
            elif peer and holder != peer:
                problems.append(f"{name}: the peer's {purpose} bucket {bucket} is not a bucket of {peer} "
                                f"({', '.join(sorted(buckets_of(stacks[peer]))) or 'none'}); set "
                                f"recovery.peer.bucketPrefix to {peer}'s artifacts.bucketPrefix")
        keys_here = bucket_kms_keys(plan)
        versioned_here = versioned_buckets(plan)
        for source, destination, replica_key in replication_rules(plan):
            holder = owner.get(destination)
            if holder is None:
                continue
            if source not in versioned_here:
                problems.append(f"{name}: bucket {source} replicates to {holder} but is not versioned")
            if destination not in versioned_buckets(stacks[holder]):
                problems.append(f"{name}: replicates {source} into {holder}'s {destination}, which is not versioned")
            expected = bucket_kms_keys(stacks[holder]).get(destination)
            if keys_here.get(source) and replica_key != expected:
                problems.append(f"{name}: replicas of {source} are encrypted with {replica_key}, but {holder}'s "
                                f"{destination} uses {expected}: set recovery.peer.kmsKeyArns to {holder}'s bucket keys")
    return problems


def standby_stores_are_held(stacks: Mapping[str, Plan]) -> list[str]:
    problems = []
    for name, plan in sorted(stacks.items()):
        side = recovery_of(plan)
        if not side:
            continue
        writers = store_writers(plan)
        peer = side.get("peerStack") or "its peer"
        if side.get("mode") == "standby":
            running = sorted(w for w, (replicas, held) in writers.items() if replicas != 0)
            if running:
                problems.append(f"{name} is the standby of {peer} but runs {', '.join(running)}, which would write "
                                "into the read-only secondary: they must be held at 0 replicas")
        else:
            held = sorted(w for w, (replicas, annotation) in writers.items() if replicas == 0 or annotation)
            if held:
                problems.append(f"{name} is primary (the peer of {peer}) but holds {', '.join(held)}: a primary "
                                "serves pipelines, metadata and Katib")
    return problems


def no_two_stacks_write_one_store(stacks: Mapping[str, Plan]) -> list[str]:
    problems = []
    names = sorted(stacks)
    buckets = {n: set(buckets_of(stacks[n])) for n in names}
    hosts = {n: database_hosts(stacks[n]) for n in names}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            shared = sorted(buckets[a] & buckets[b])
            if shared:
                problems.append(f"stacks {a} and {b} both create bucket{'s' if len(shared) > 1 else ''} "
                                f"{', '.join(shared)}: each region has buckets of its own (artifacts.bucketPrefix)")
            common = sorted(hosts[a] & hosts[b])
            if common:
                both = _writes(stacks[a]) and _writes(stacks[b])
                problems.append(
                    f"stacks {a} and {b} both point Kubeflow at database {', '.join(common)}"
                    + (" and both write it" if both else "") +
                    ": each region's Kubeflow uses its own regional cluster endpoint (kubeflow.database.host); a "
                    "standby's becomes the writer when promoted")
    return problems


#: The rules the fleet check appends to its own.
RULES: tuple[Rule, ...] = (
    one_primary_per_global_database,
    replication_pairs_point_at_each_other,
    standby_stores_are_held,
    no_two_stacks_write_one_store,
)


def recovery_problems(stacks: Mapping[str, Plan]) -> list[str]:
    return [problem for rule in RULES for problem in rule(stacks)]


# ------------------------------------------------------------------------------------------------ upgrade plan

#: Where the order of a role change is written: the writer moves inside Aurora first, then the stacks follow.
SWITCHOVER_SOURCE = "https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/aurora-global-database-disaster-recovery.html"


def role_change_findings(source: Plan, target: Plan) -> list[Finding]:
    """What `pulumi up` does to a stack whose `recovery.mode` changes (primary -> standby or back), as upgrade-plan
    findings: the store writers scaled down or up, the setup Job, and the replication rules' direction."""
    before, after = recovery_of(source).get("mode"), recovery_of(target).get("mode")
    if before == after or None in (before, after):
        return []
    peer = recovery_of(target).get("peerStack") or "the peer stack"
    writers = ", ".join(sorted(store_writers(target)))
    outgoing = {s: d for s, d, _ in replication_rules(source)}
    incoming = {s: d for s, d, _ in replication_rules(target)}
    if after == "standby":
        stopped = "; ".join(f"{s} no longer replicates to {d}" for s, d in sorted(outgoing.items())) or "no replication rule to remove"
        return [Finding(
            "recovery-demoted", "recovery.mode: primary -> standby",
            f"this region stops writing: {writers} are scaled to 0 (held: standby) and the database setup Job is left "
            f"out; {stopped}. Apply it only once the Aurora writer has left this region (switchover or failover) and "
            f"{peer} is promoted, so its buckets replicate back here", SWITCHOVER_SOURCE)]
    started = "; ".join(f"{s} replicates to {d}" for s, d in sorted(incoming.items())) or "no replication (recovery.replication.enabled is false)"
    return [Finding(
        "recovery-promoted", "recovery.mode: standby -> primary",
        f"this region starts writing: {writers} are scaled up from 0 and the database setup Job runs; {started}. "
        f"Apply it only once the Aurora writer is in this region (switchover or failover done) and {peer} is demoted "
        "or down, or two regions write one database", SWITCHOVER_SOURCE)]


# ------------------------------------------------------------------------------------------------ the estate

#: The key of the estate command's answer about the global database, and of its record under `aws`.
GLOBAL_DATABASE = "global database"


def global_database_query(plan: Plan, region: str) -> tuple[str, ...] | None:
    """The read the estate command makes about the stack's Aurora Global Database: none when the stack creates the
    global cluster itself (it does not exist before the first `pulumi up`) or declares none."""
    side = recovery_of(plan)
    identifier = side.get("globalClusterIdentifier")
    if not identifier or side.get("createsGlobalCluster"):
        return None
    return ("aws", "rds", "describe-global-clusters", "--global-cluster-identifier", str(identifier),
            "--region", region, "--output", "json")


def record_global_database(answer: Any) -> dict[str, Any] | None:
    """The estate's record of the global cluster (`answer`: the command's Answer, or None when not asked)."""
    if answer is None:
        return None
    if answer.returncode != 0:
        return {"exists": False}
    import json  # noqa: PLC0415

    clusters = (json.loads(answer.stdout or "{}") or {}).get("GlobalClusters") or []
    if not clusters:
        return {"exists": False}
    members = [{"cluster": str(m.get("DBClusterArn", "")), "writer": bool(m.get("IsWriter"))}
               for m in clusters[0].get("GlobalClusterMembers") or []]
    return {"exists": True, "status": clusters[0].get("Status"), "members": members}


def _cluster_of(arn: str) -> tuple[str, str]:
    """(region, cluster identifier) of `arn:aws:rds:<region>:<account>:cluster:<id>`."""
    parts = arn.split(":")
    return (parts[3], parts[6]) if len(parts) >= 7 else ("", arn)


def global_database_problems(estate: Mapping[str, Any], plan: Plan) -> list[str]:
    """The stack's declared global database against the recorded one: it exists, this region's cluster is a member
    (unless the stack creates it), and the writer is where the stack's mode says."""
    side = recovery_of(plan)
    recorded = (estate.get("aws") or {}).get("globalDatabase")
    if not side.get("globalClusterIdentifier") or side.get("createsGlobalCluster") or recorded is None:
        return []
    identifier, region, peer = side["globalClusterIdentifier"], side.get("region", ""), side.get("peerRegion", "")
    if not recorded.get("exists"):
        return [f"recovery.database.globalClusterIdentifier: global cluster {identifier} does not exist; the stack that "
                "creates it (createGlobalCluster) goes first, or create it before `pulumi up`"]
    problems = []
    members = [(_cluster_of(m["cluster"]), m["writer"]) for m in recorded.get("members") or []]
    if not side.get("createsCluster") and not any(
            r == region and c == side.get("clusterIdentifier") for (r, c), _ in members):
        problems.append(f"recovery.database.clusterIdentifier: {side.get('clusterIdentifier')} in {region} is not a member "
                        f"of global cluster {identifier} (members: {', '.join(f'{c} in {r}' for (r, c), _ in members) or 'none'})")
    writers = [(r, c) for (r, c), writer in members if writer]
    wanted = region if side.get("mode") == "primary" else peer
    if writers and writers[0][0] != wanted:
        problems.append(
            f"recovery.mode: {side.get('mode')} expects the writer of global cluster {identifier} in {wanted}, but it is "
            f"{writers[0][1]} in {writers[0][0]}: after a switchover or failover change recovery.mode on both stacks "
            "(docs/failover.md)")
    return problems
