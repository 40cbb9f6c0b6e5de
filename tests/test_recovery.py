"""Recovery across two regions, active/passive: settings, the standby's held writers, replication, the Aurora
Global Database's members, and the fleet rules over the previews of a pair of regional stacks built from prod."""

from __future__ import annotations

import copy
import functools
import io
import json
from typing import Any

import pytest

import config
from analysis import fleet_recovery as fleet
from analysis import runtime_trace as rt
from manifests.recovery import HELD, STORE_WRITERS, replication_policy
from tests.conftest import MARKER_SECRETS
from tests.iam_eval import allows
from tests.stack_files import stack_document
from tests.test_scanners_iam import IamDocument, lint
from tests.upstream import SUPPORTED_VERSIONS, manifests_path, upstream_objects
from tools.preview import Progress, evaluate

PROJECT = "kubeflow-platform"
WEST, EAST = "prod-us-west-2", "prod-us-east-1"
WEST_KEY = "arn:aws:kms:us-west-2:222222222222:key/6f1c2a9e-3b4d-4e5f-8a7b-9c0d1e2f3a4b"
EAST_KEY = "arn:aws:kms:us-east-1:222222222222:key/0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
WEST_HOST = "kubeflow-prod.cluster-c9b8a7d6e5f4.us-west-2.rds.amazonaws.com"
EAST_HOST = "kubeflow-prod-use1.cluster-c9b8a7d6e5f4.us-east-1.rds.amazonaws.com"
_DATABASE = {"globalClusterIdentifier": "kubeflow-prod-global", "create": True, "subnetGroupName": "ml-prod-db",
             "securityGroupIds": ["sg-0a1b2c3d4e5f60001"]}

#: The pair, as settings on top of Pulumi.prod.yaml (dotted keys, as `make preview` and the fleet take them).
PAIR: dict[str, dict[str, Any]] = {
    WEST: {
        "recovery": {
            "mode": "primary",
            "peer": {"stack": EAST, "region": "us-east-1", "bucketPrefix": "example-ml-prod-use1",
                     "kmsKeyArns": {"pipelines": EAST_KEY, "models": EAST_KEY}},
            "database": {**_DATABASE, "clusterIdentifier": "kubeflow-prod", "createGlobalCluster": True, "kmsKeyArn": WEST_KEY},
        },
    },
    EAST: {
        "aws.region": "us-east-1",
        "artifacts.bucketPrefix": "example-ml-prod-use1",
        "artifacts.buckets": [{"purpose": "pipelines", "noncurrentVersionDays": 90, "kmsKeyArn": EAST_KEY},
                              {"purpose": "models", "noncurrentVersionDays": 365, "kmsKeyArn": EAST_KEY}],
        "kubeflow.database.host": EAST_HOST,
        "recovery": {
            "mode": "standby",
            "peer": {"stack": WEST, "region": "us-west-2", "bucketPrefix": "example-ml-prod",
                     "kmsKeyArns": {"pipelines": WEST_KEY, "models": WEST_KEY}},
            "database": {**_DATABASE, "clusterIdentifier": "kubeflow-prod-use1", "kmsKeyArn": EAST_KEY},
        },
    },
}


def with_dotted(document: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """A stack document with `dotted.key: value` settings set on top (a copy)."""
    document = copy.deepcopy(document)
    for dotted, value in settings.items():
        top, *path = dotted.split(".")
        node = document["config"].setdefault(f"{PROJECT}:{top}", {})
        if not path:
            document["config"][f"{PROJECT}:{top}"] = copy.deepcopy(value)
            continue
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = copy.deepcopy(value)
    return document


def stack_settings(settings: dict[str, Any]) -> config.Settings:
    document = with_dotted(stack_document("prod"), settings)
    raw = {key.split(":", 1)[1]: value for key, value in document["config"].items()}
    return config.parse(raw, config.Secrets(), set(config.SECRET_KEYS), "prod")


def problems_of(settings: dict[str, Any]) -> list[str]:
    with pytest.raises(config.SettingsError) as error:
        stack_settings(settings)
    return error.value.problems


@functools.lru_cache(maxsize=None)
def _plan(name: str, overrides: str) -> str:
    plan, _ = evaluate("prod", manifests=str(manifests_path("26.03")), kubeflow_version="26.03", secrets=MARKER_SECRETS,
                       progress=Progress(io.StringIO()), settings=json.loads(overrides))
    plan["stack"] = name
    return json.dumps(plan)


def plan_of(name: str, settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """The preview plan of one stack of the pair (a fresh copy), evaluated once per session."""
    return json.loads(_plan(name, json.dumps(PAIR[name] if settings is None else settings, sort_keys=True)))


@pytest.fixture(scope="module")
def pair() -> dict[str, dict[str, Any]]:
    return {name: plan_of(name) for name in PAIR}


def resources(plan: dict[str, Any], type_: str) -> list[dict[str, Any]]:
    return [r for r in plan["resources"] if r["type"] == type_]


# ------------------------------------------------------------------------------------------ settings


def test_no_recovery_is_the_default_and_registers_nothing():
    settings = stack_settings({})
    assert settings.recovery.mode is None and not settings.recovery.replicates and not settings.recovery.standby
    prod = plan_of("prod", {})
    assert not [r for r in prod["resources"] if "recovery" in r["name"] or r["type"].startswith("aws:rds/")]
    assert "recovery" not in prod["outputs"]
    assert not [w for w, (replicas, held) in fleet.store_writers(prod).items() if replicas == 0 or held]


def test_a_mode_needs_a_peer_in_another_region_with_a_key_there_for_each_kms_bucket():
    problems = problems_of({"recovery": {"mode": "standby", "peer": {
        "stack": "prod-us-west-2", "region": "us-west-2", "bucketPrefix": "example-ml-prod", "kmsKeyArns": {"notebooks": EAST_KEY.replace("us-east-1", "us-west-2")}}}})
    assert "recovery.peer.region: 'us-west-2' is this stack's own region (aws.region): the peer must run in another region to survive a regional outage" in problems
    assert any(p.startswith("recovery.peer.bucketPrefix: 'example-ml-prod' is this stack's own") for p in problems)
    assert any(p.startswith("recovery.peer.kmsKeyArns.pipelines: is required") for p in problems)
    assert any(p.startswith("recovery.peer.kmsKeyArns.models: is required") for p in problems)
    assert any(p.startswith("recovery.peer.kmsKeyArns.notebooks: 'notebooks' is not a bucket of this stack") for p in problems)
    assert problems_of({"recovery": {"mode": "primary"}}) == [
        "recovery.peer: is required with mode primary: the other region's stack, region and bucketPrefix"]
    assert problems_of({"recovery": {"mode": "primary", "peer": {"region": "us-east-1", "bucketPrefix": "example-ml-prod-use1"}}}) == [
        "recovery.peer.stack: is required"]


def test_a_replica_key_of_another_region_is_refused_naming_the_key():
    problems = problems_of({"recovery": {"mode": "primary", "peer": {
        "stack": EAST, "region": "us-east-1", "bucketPrefix": "example-ml-prod-use1", "kmsKeyArns": {"pipelines": WEST_KEY, "models": EAST_KEY}}}})
    assert problems == ["recovery.peer.kmsKeyArns.pipelines: is a key of region 'us-west-2'; the replicas live in the peer "
                        "region 'us-east-1': name a key there (KMS keys are regional)"]


def test_peer_or_database_without_a_mode_are_refused():
    problems = problems_of({"recovery": {"peer": PAIR[WEST]["recovery"]["peer"], "database": PAIR[WEST]["recovery"]["database"]}})
    assert [p.split(":")[0] for p in problems] == ["recovery.peer", "recovery.database"]


def test_the_database_host_must_be_this_regions_cluster_endpoint():
    # Pointing the standby at the primary's endpoint would make a promoted standby write across regions.
    problems = problems_of({**PAIR[EAST], "kubeflow.database.host": WEST_HOST})
    assert len(problems) == 1 and problems[0].startswith(f"kubeflow.database.host: {WEST_HOST!r} is not the cluster endpoint "
                                                         "of recovery.database.clusterIdentifier 'kubeflow-prod-use1' in us-east-1")
    assert stack_settings(PAIR[EAST]).recovery.database.cluster_identifier == "kubeflow-prod-use1"


def test_a_created_cluster_needs_its_subnets_a_key_of_its_region_and_aurora_mysql_3():
    # Aurora MySQL 3 is the MySQL 8.0 line, the one Katib's bundled MySQL runs.
    (katib_mysql,) = [o for o in upstream_objects("26.03") if o.get("kind") == "Deployment" and o["metadata"]["name"] == "katib-mysql"]
    assert katib_mysql["spec"]["template"]["spec"]["containers"][0]["image"].startswith("mysql:8.0")
    database = {"globalClusterIdentifier": "kf-global", "clusterIdentifier": "kubeflow-prod", "create": True,
                "engineVersion": "5.7.mysql_aurora.2.12.1", "instanceClass": "db.t3.medium", "kmsKeyArn": EAST_KEY}
    problems = problems_of({"recovery": {**PAIR[WEST]["recovery"], "database": database}})
    assert [p.split(":")[0] for p in problems] == [
        "recovery.database.engineVersion", "recovery.database.instanceClass", "recovery.database.subnetGroupName",
        "recovery.database.kmsKeyArn"]
    problems = problems_of({"recovery": {**PAIR[WEST]["recovery"], "database": {
        **PAIR[WEST]["recovery"]["database"], "create": False}}})
    assert problems == ["recovery.database.createGlobalCluster: needs create: true (the global cluster's first writer is this stack's cluster)"]
    assert problems_of({"recovery": {**PAIR[WEST]["recovery"], "database": {"globalClusterIdentifier": "1kf--x",
                                                                          "clusterIdentifier": "kubeflow-prod"}}}) == [
        "recovery.database.globalClusterIdentifier: '1kf--x' is not an RDS identifier: 1 to 63 letters, digits and single "
        "hyphens, starting with a letter and not ending with a hyphen"]


def test_a_global_database_needs_kubeflow_on_an_external_database():
    document = stack_document("dev")
    raw = {key.split(":", 1)[1]: value for key, value in document["config"].items()}
    del raw["kubeflow"]["database"]
    raw["recovery"] = {"mode": "primary", "peer": {"stack": "dev-us-east-1", "region": "us-east-1", "bucketPrefix": "example-ml-dev-use1"},
                       "database": {"globalClusterIdentifier": "kf", "clusterIdentifier": "kf-dev"}}
    with pytest.raises(config.SettingsError) as error:
        config.parse(raw, config.Secrets(), set(config.SECRET_KEYS), "dev")
    assert any(p.startswith("recovery.database: needs kubeflow.database") for p in error.value.problems)


# ------------------------------------------------------------------------------------------ the standby's Kubeflow


def test_a_standby_holds_every_store_writer_at_zero_and_leaves_the_database_setup_job_out(pair):
    writers = fleet.store_writers(pair[EAST])
    assert set(writers) == set(STORE_WRITERS)
    assert all(replicas == 0 and held == "standby" for replicas, held in writers.values())
    jobs = [o.obj for o in fleet.kubernetes_objects(pair[EAST]).objects if o.obj.get("kind") == "Job"]
    assert "kubeflow-platform-databases" not in {j["metadata"]["name"] for j in jobs}
    primary = fleet.store_writers(pair[WEST])
    assert set(primary) == set(STORE_WRITERS) and all(replicas != 0 and held is None for replicas, held in primary.values())
    assert "kubeflow-platform-databases" in {o.obj["metadata"]["name"] for o in fleet.kubernetes_objects(pair[WEST]).objects
                                             if o.obj.get("kind") == "Job"}


@pytest.mark.parametrize("release", SUPPORTED_VERSIONS)
def test_every_held_writer_is_a_deployment_of_every_supported_release(release):
    names = {o["metadata"]["name"] for o in upstream_objects(release) if o.get("kind") == "Deployment"}
    assert set(STORE_WRITERS) <= names


def test_the_cache_webhook_fails_open_so_holding_its_server_admits_pods_unchanged():
    webhooks = [w for o in upstream_objects("26.03") if o.get("kind") == "MutatingWebhookConfiguration"
                and o["metadata"]["name"].startswith("cache-webhook") for w in o["webhooks"]]
    assert webhooks and all(w["failurePolicy"] == "Ignore" for w in webhooks)


def test_the_standby_trace_shows_the_stores_held_and_claims_no_path_to_them_works(pair):
    model, mesh = rt.model_from_plan(pair[EAST])
    found = rt.paths(model, mesh)
    held = {p.label for p in found if p.held}
    assert "driver -> ml-pipeline.kubeflow:8887" in held
    assert "launcher -> metadata-grpc-service.kubeflow:8080" in held
    assert "suggestion -> katib-db-manager.kubeflow:6789" in held
    assert not [p for p in found if p.held and p.ok] and rt.problems(found) == []
    table = rt.render_table(found)
    assert "held: standby" in table and f"{len(held)} held" in table
    model, mesh = rt.model_from_plan(pair[WEST])
    assert not [p for p in rt.paths(model, mesh) if p.held]


# ------------------------------------------------------------------------------------------ replication


def test_the_primary_replicates_each_bucket_to_the_peers_with_rtc_delete_markers_and_the_peers_keys(pair):
    configs = {r["inputs"]["bucket"]: r for r in resources(pair[WEST], "aws:s3/bucketReplicationConfig:BucketReplicationConfig")}
    assert set(configs) == {"example-ml-prod-pipelines", "example-ml-prod-models"}
    for source, resource in configs.items():
        (rule,) = resource["inputs"]["rules"]
        destination = rule["destination"]
        assert destination["bucket"] == "arn:aws:s3:::" + source.replace("example-ml-prod", "example-ml-prod-use1")
        assert destination["replicationTime"] == {"status": "Enabled", "time": {"minutes": 15}}
        assert destination["metrics"] == {"status": "Enabled", "eventThreshold": {"minutes": 15}}
        assert rule["deleteMarkerReplication"] == {"status": "Enabled"} and rule["filter"] == {"prefix": ""}
        assert rule["sourceSelectionCriteria"] == {"sseKmsEncryptedObjects": {"status": "Enabled"}}
        assert destination["encryptionConfiguration"] == {"replicaKmsKeyId": EAST_KEY}
        # Written only once the source bucket is versioned.
        versioning = next(r["urn"] for r in resources(pair[WEST], "aws:s3/bucketVersioning:BucketVersioning")
                          if r["name"] == f"artifacts-{source.rsplit('-', 1)[1]}-versioning")
        assert versioning in resource["dependencies"]
    assert not resources(pair[EAST], "aws:s3/bucketReplicationConfig:BucketReplicationConfig")
    assert not [r for r in resources(pair[EAST], "aws:iam/role:Role") if r["name"] == "recovery-replication"]


def test_delete_markers_and_rtc_can_be_turned_off_and_replication_paused():
    settings = copy.deepcopy(PAIR[WEST])
    settings["recovery"]["replication"] = {"deleteMarkers": False, "timeControl": False}
    plan = plan_of(WEST, settings)
    (config_,) = resources(plan, "aws:s3/bucketReplicationConfig:BucketReplicationConfig")[:1]
    rule = config_["inputs"]["rules"][0]
    assert rule["deleteMarkerReplication"] == {"status": "Disabled"}
    assert "replicationTime" not in rule["destination"] and "metrics" not in rule["destination"]
    settings["recovery"]["replication"] = {"enabled": False}
    assert not resources(plan_of(WEST, settings), "aws:s3/bucketReplicationConfig:BucketReplicationConfig")


def test_the_replication_role_may_replicate_into_the_peers_buckets_and_nothing_else(pair):
    (role,) = [r for r in resources(pair[WEST], "aws:iam/role:Role") if r["name"] == "recovery-replication"]
    trust = json.loads(role["inputs"]["assumeRolePolicy"])
    assert trust["Statement"] == [{"Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"}, "Action": "sts:AssumeRole"}]
    (inline,) = [r for r in resources(pair[WEST], "aws:iam/rolePolicy:RolePolicy") if r["name"] == "recovery-replication"]
    policy = json.loads(inline["inputs"]["policy"])
    source, destination = "arn:aws:s3:::example-ml-prod-pipelines", "arn:aws:s3:::example-ml-prod-use1-pipelines"
    assert allows(policy, "s3:GetObjectVersionForReplication", f"{source}/v2/a")
    assert allows(policy, "s3:ReplicateObject", f"{destination}/v2/a")
    assert allows(policy, "s3:ReplicateDelete", f"{destination}/v2/a")
    assert not allows(policy, "s3:ReplicateObject", f"{source}/v2/a")
    assert not allows(policy, "s3:GetObject", f"{source}/v2/a") and not allows(policy, "s3:PutObject", f"{destination}/v2/a")
    assert not allows(policy, "s3:ReplicateObject", "arn:aws:s3:::someone-elses-bucket/a")
    through_east = {"kms:ViaService": "s3.us-east-1.amazonaws.com", "kms:EncryptionContext:aws:s3:arn": destination}
    through_west = {"kms:ViaService": "s3.us-west-2.amazonaws.com", "kms:EncryptionContext:aws:s3:arn": f"{source}/v2/a"}
    assert allows(policy, "kms:Encrypt", EAST_KEY, through_east)
    assert allows(policy, "kms:Decrypt", WEST_KEY, through_west)
    assert not allows(policy, "kms:Encrypt", EAST_KEY, {**through_east, "kms:ViaService": "ec2.us-east-1.amazonaws.com"})
    assert not allows(policy, "kms:Decrypt", EAST_KEY, through_east)
    for kind, text in (("trust", role["inputs"]["assumeRolePolicy"]), ("identity", inline["inputs"]["policy"])):
        findings, _ = lint(IamDocument(f"recovery {kind}", kind, text))
        assert findings == []


def test_a_replication_policy_without_buckets_is_refused():
    with pytest.raises(ValueError, match="at least one bucket pair"):
        replication_policy(pairs=[], region="us-west-2", peer_region="us-east-1")


# ------------------------------------------------------------------------------------------ the global database


def test_the_primary_creates_the_global_cluster_and_the_first_writer_the_standby_only_a_secondary(pair):
    (global_,) = resources(pair[WEST], "aws:rds/globalCluster:GlobalCluster")
    assert global_["inputs"]["globalClusterIdentifier"] == "kubeflow-prod-global"
    assert global_["inputs"]["engine"] == "aurora-mysql" and global_["inputs"]["storageEncrypted"] is True
    clusters = {name: resources(plan, "aws:rds/cluster:Cluster")[0]["inputs"] for name, plan in pair.items()}
    assert clusters[WEST]["masterUsername"] == "kubeflow" and clusters[WEST]["masterPassword"] == "[secret]"
    assert "masterUsername" not in clusters[EAST] and "masterPassword" not in clusters[EAST]
    assert not resources(pair[EAST], "aws:rds/globalCluster:GlobalCluster")
    for name, inputs in clusters.items():
        assert inputs["globalClusterIdentifier"] == "kubeflow-prod-global"
        assert inputs["engineVersion"].startswith("8.0.mysql_aurora.3.")
        # prod is protected: deletion protection, a final snapshot, and the resource itself protected and retained.
        assert inputs["deletionProtection"] is True and inputs["skipFinalSnapshot"] is False
        (resource,) = resources(pair[name], "aws:rds/cluster:Cluster")
        assert resource["options"].get("protect") is True
        assert len(resources(pair[name], "aws:rds/clusterInstance:ClusterInstance")) == 2
    assert "MARKER-db-password-b5e8" not in json.dumps(pair[WEST])


def test_an_existing_global_database_registers_no_database_resource():
    settings = copy.deepcopy(PAIR[WEST])
    settings["recovery"]["database"] = {"globalClusterIdentifier": "kubeflow-prod-global", "clusterIdentifier": "kubeflow-prod"}
    plan = plan_of(WEST, settings)
    assert not [r for r in plan["resources"] if r["type"].startswith("aws:rds/")]
    assert plan["outputs"]["recovery"]["globalClusterIdentifier"] == "kubeflow-prod-global"
    assert plan["outputs"]["recovery"]["createsCluster"] is False


# ------------------------------------------------------------------------------------------ fleet rules


def test_the_pair_passes_every_recovery_rule(pair):
    assert fleet.recovery_problems(pair) == []


def test_recovery_resources_are_on_the_stacks_regional_aws_provider(pair):
    for name, plan in pair.items():
        region = "us-west-2" if name == WEST else "us-east-1"
        (provider,) = [r for r in plan["resources"] if r["type"] == "pulumi:providers:aws"]
        assert provider["inputs"]["region"] == region
        ours = [r for r in plan["resources"] if r["type"].startswith(("aws:rds/", "aws:s3/bucketReplicationConfig"))
                or r["name"] == "recovery-replication"]
        assert ours and all(r["provider"].startswith(provider["urn"]) for r in ours)


def test_two_primaries_of_one_global_database_are_named(pair):
    pair = copy.deepcopy(pair)
    pair[EAST]["outputs"]["recovery"]["mode"] = "primary"
    problems = fleet.one_primary_per_global_database(pair)
    assert problems == [f"global database kubeflow-prod-global: stacks {EAST} and {WEST} are both primary; an Aurora "
                        "Global Database has one writer region: set recovery.mode standby on all but one"]
    pair[EAST]["outputs"]["recovery"]["createsGlobalCluster"] = True
    assert any("both create it" in p for p in fleet.one_primary_per_global_database(pair))


def test_a_region_pointed_at_the_others_buckets_fails_naming_both_stacks():
    # Each stack alone is consistent (its peer's prefix differs from its own); only the fleet sees the clash.
    plan = plan_of(EAST, {**PAIR[EAST], "artifacts.bucketPrefix": "example-ml-prod",
                          "recovery.peer.bucketPrefix": "example-ml-prod-usw2"})
    problems = fleet.recovery_problems({WEST: plan_of(WEST), EAST: plan})
    assert (f"stacks {EAST} and {WEST} both create buckets example-ml-prod-models, example-ml-prod-pipelines: each region "
            "has buckets of its own (artifacts.bucketPrefix)") in problems
    assert any(p.startswith(f"{WEST}: the peer's pipelines bucket example-ml-prod-use1-pipelines is not a bucket of {EAST}")
               for p in problems)


def test_a_region_pointed_at_the_others_database_fails_naming_both_stacks(pair):
    pair = copy.deepcopy(pair)
    for resource in pair[EAST]["resources"]:
        if resource["type"] == "kubernetes:yaml/v2:ConfigGroup":
            resource["inputs"]["yaml"] = resource["inputs"]["yaml"].replace(EAST_HOST, WEST_HOST)
    assert fleet.database_hosts(pair[EAST]) == {WEST_HOST}
    problems = fleet.no_two_stacks_write_one_store(pair)
    assert len(problems) == 1 and problems[0].startswith(f"stacks {EAST} and {WEST} both point Kubeflow at database {WEST_HOST}")


def test_a_standby_that_runs_its_writers_or_a_primary_that_holds_them_fails():
    problems = fleet.standby_stores_are_held({WEST: plan_of(WEST), EAST: plan_of(EAST, {**PAIR[EAST], "recovery.mode": "primary"})})
    assert problems == []
    pair = {WEST: plan_of(WEST), EAST: plan_of(EAST)}
    pair[EAST]["outputs"]["recovery"]["mode"] = "primary"
    pair[WEST]["outputs"]["recovery"]["mode"] = "standby"
    problems = fleet.standby_stores_are_held(pair)
    assert problems[0].startswith(f"{EAST} is primary (the peer of {WEST}) but holds cache-server, katib-db-manager")
    assert problems[1].startswith(f"{WEST} is the standby of {EAST} but runs cache-server, katib-db-manager")


def test_replicas_under_a_key_the_peers_bucket_does_not_use_fail(pair):
    pair = copy.deepcopy(pair)
    for resource in resources(pair[WEST], "aws:s3/bucketReplicationConfig:BucketReplicationConfig"):
        resource["inputs"]["rules"][0]["destination"]["encryptionConfiguration"]["replicaKmsKeyId"] = EAST_KEY[:-4] + "ffff"
    problems = fleet.replication_pairs_point_at_each_other(pair)
    assert len(problems) == 2 and all(p.startswith(f"{WEST}: replicas of example-ml-prod-") and f"but {EAST}'s" in p for p in problems)


def test_an_unversioned_destination_and_peers_that_do_not_name_each_other_fail(pair):
    pair = copy.deepcopy(pair)
    for resource in resources(pair[EAST], "aws:s3/bucketVersioning:BucketVersioning"):
        resource["inputs"]["versioningConfiguration"]["status"] = "Suspended"
    pair[EAST]["outputs"]["recovery"]["peerStack"] = "prod-eu-west-1"
    problems = fleet.replication_pairs_point_at_each_other(pair)
    assert f"{WEST} names {EAST} as its peer, but {EAST} names prod-eu-west-1: set each stack's recovery.peer.stack to the other" in problems
    assert f"{WEST}: replicates example-ml-prod-pipelines into {EAST}'s example-ml-prod-use1-pipelines, which is not versioned" in problems
    assert f"{EAST}: recovery.peer.stack prod-eu-west-1 is not a stack of the fleet" in problems


# ------------------------------------------------------------------------------------------ the upgrade plan


def test_the_upgrade_plan_names_a_promotion_and_a_demotion_with_the_writers_and_the_replication_direction(pair):
    from analysis.upgrade import plan_upgrade  # noqa: PLC0415

    promoted = plan_of(EAST, {**PAIR[EAST], "recovery.mode": "primary"})
    (finding,) = [f for f in plan_upgrade(pair[EAST], promoted).attention if f.kind.startswith("recovery")]
    assert finding.kind == "recovery-promoted" and finding.subject == "recovery.mode: standby -> primary"
    assert "ml-pipeline, ml-pipeline-persistenceagent" in finding.what and "scaled up from 0" in finding.what
    assert "example-ml-prod-use1-pipelines replicates to example-ml-prod-pipelines" in finding.what
    assert f"Aurora writer is in this region (switchover or failover done) and {WEST} is demoted" in finding.what
    demoted = plan_of(WEST, {**PAIR[WEST], "recovery.mode": "standby"})
    (finding,) = [f for f in plan_upgrade(pair[WEST], demoted).attention if f.kind.startswith("recovery")]
    assert finding.kind == "recovery-demoted" and "scaled to 0 (held: standby)" in finding.what
    assert "example-ml-prod-pipelines no longer replicates to example-ml-prod-use1-pipelines" in finding.what
    assert not [f for f in plan_upgrade(pair[WEST], pair[WEST]).attention if f.kind.startswith("recovery")]


# ------------------------------------------------------------------------------------------ the estate


def _existing_database(mode: str) -> dict[str, Any]:
    settings = copy.deepcopy(PAIR[EAST])
    settings["recovery"]["mode"] = mode
    settings["recovery"]["database"] = {"globalClusterIdentifier": "kubeflow-prod-global", "clusterIdentifier": "kubeflow-prod-use1"}
    return plan_of(EAST, settings)


def _estate_of(plan: dict[str, Any], answer) -> dict[str, Any]:
    from analysis.estate import Answer, Target, commands, record  # noqa: PLC0415

    target = Target(stack=EAST, cluster_name="ml-prod", region="us-east-1", zone_name="ml.example.com",
                    argo_namespace="argo", argo_configmap="workflow-controller-configmap", gateway_selector={"istio": "ingressgateway"})
    planned = commands(plan, target)
    (query,) = [c for c in planned if c.argv[:3] == ("aws", "rds", "describe-global-clusters")]
    assert query.argv == ("aws", "rds", "describe-global-clusters", "--global-cluster-identifier", "kubeflow-prod-global",
                          "--region", "us-east-1", "--output", "json")
    answers = {c.key: Answer(1, "", "not recorded here") for c in planned}
    answers[query.key] = answer
    return record(plan, target, answers, planned)


def _members(writer: str) -> str:
    west = "arn:aws:rds:us-west-2:222222222222:cluster:kubeflow-prod"
    east = "arn:aws:rds:us-east-1:222222222222:cluster:kubeflow-prod-use1"
    return json.dumps({"GlobalClusters": [{"GlobalClusterIdentifier": "kubeflow-prod-global", "Status": "available",
                                           "GlobalClusterMembers": [{"DBClusterArn": west, "IsWriter": writer == "west"},
                                                                    {"DBClusterArn": east, "IsWriter": writer == "east"}]}]})


def test_an_existing_global_database_is_checked_against_the_estate_for_membership_and_its_writer():
    from analysis.estate import Answer  # noqa: PLC0415

    standby = _existing_database("standby")
    estate = _estate_of(standby, Answer(0, _members("west")))
    assert estate["aws"]["globalDatabase"]["members"][1] == {"cluster": "arn:aws:rds:us-east-1:222222222222:cluster:kubeflow-prod-use1", "writer": False}
    assert fleet.global_database_problems(estate, standby) == []
    # After a failover into this region the stack still says standby: the preview against the estate says so.
    moved = _estate_of(standby, Answer(0, _members("east")))
    assert fleet.global_database_problems(moved, standby) == [
        "recovery.mode: standby expects the writer of global cluster kubeflow-prod-global in us-west-2, but it is "
        "kubeflow-prod-use1 in us-east-1: after a switchover or failover change recovery.mode on both stacks (docs/failover.md)"]
    assert fleet.global_database_problems(moved, _existing_database("primary")) == []
    missing = _estate_of(standby, Answer(254, "", "An error occurred (GlobalClusterNotFoundFault): not found"))
    assert missing["failed"] and "describe-global-clusters" not in " ".join(missing["failed"])
    assert fleet.global_database_problems(missing, standby)[0].startswith(
        "recovery.database.globalClusterIdentifier: global cluster kubeflow-prod-global does not exist")
    stranger = json.loads(_members("west"))
    stranger["GlobalClusters"][0]["GlobalClusterMembers"].pop()
    assert fleet.global_database_problems(_estate_of(standby, Answer(0, json.dumps(stranger))), standby) == [
        "recovery.database.clusterIdentifier: kubeflow-prod-use1 in us-east-1 is not a member of global cluster "
        "kubeflow-prod-global (members: kubeflow-prod in us-west-2)"]


def test_the_stack_that_creates_the_global_cluster_does_not_look_for_it_before_it_exists(pair):
    from analysis.fleet_recovery import global_database_query  # noqa: PLC0415

    assert global_database_query(pair[WEST], "us-west-2") is None
    assert global_database_query(pair[EAST], "us-east-1") is not None
    assert global_database_query(plan_of("prod", {}), "us-west-2") is None
