"""A fleet: regional stacks and a global stack of this program, previewed together and held together offline.

The example fleet (Pulumi.global.yaml, Pulumi.prod-us-west-2.yaml, Pulumi.prod-us-east-1.yaml) passes `make fleet`;
a region pointed at the other's bucket or database, or given other profiles, fails it (exit 1) naming both stacks.
Each rule of the fleet check is also held on its own over the example fleet's saved plans, changed by hand.
"""

from __future__ import annotations

import copy
import io
import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from pulumi.runtime import rpc

import config
from analysis import fleet as fleet_check
from analysis import fleet_recovery
from config import pulumi_project as cli
from manifests.auth_proxy import COOKIE_SECRET_KEY
from manifests.objects import yaml_stream_documents
from manifests.recovery import STORE_WRITERS
from tests.conftest import MARKER_SECRETS, REPO_ROOT
from tests.stack_files import copy_program
from tests.upstream import manifests_path
from tools import diff as diff_tool
from tools import fleet as fleet_tool
from tools.mock_runtime import StackReferenceError, referenced_secret, run_program
from tools.plan import load_plan
from tools.preview import display_path, preview

GLOBAL, WEST, EAST = "global", "prod-us-west-2", "prod-us-east-1"
FLEET_STACKS = (GLOBAL, WEST, EAST)


def _program_with_fleet(directory: Path) -> Path:
    """The program, its fleet's stack files and the shared tenancy file, in `directory`."""
    program = copy_program(directory)
    shutil.copytree(REPO_ROOT / "fleet", program / "fleet", dirs_exist_ok=True)
    for stack in FLEET_STACKS:
        shutil.copy2(REPO_ROOT / f"Pulumi.{stack}.yaml", program / f"Pulumi.{stack}.yaml")
    return program


def _run_fleet(program: Path, out: Path, *assignments: str) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    status = fleet_tool.run_fleet(assignments=list(assignments), manifests=str(manifests_path()), out=out,
                                  root=program, stdout=stdout, stderr=stderr)
    return status, stdout.getvalue(), stderr.getvalue()


@pytest.fixture(scope="module")
def example_fleet(tmp_path_factory) -> tuple[Path, int, str, str]:
    """`make fleet` over the repository's example fleet: the program, the saved fleet, status, stdout, stderr."""
    program = _program_with_fleet(tmp_path_factory.mktemp("program"))
    out = program / "build" / "fleet"
    status, stdout, stderr = _run_fleet(program, out)
    return out, status, stdout, stderr


@pytest.fixture()
def fleet_plans(example_fleet) -> dict[str, dict]:
    out = example_fleet[0]
    return {stack: load_plan(out / stack) for stack in FLEET_STACKS}


def _check(plans: dict[str, dict]) -> list[str]:
    return fleet_check.check(fleet_check.Fleet(global_stack=GLOBAL, plans=plans))


# --- make fleet, end to end ------------------------------------------------------------------------------


def test_the_example_fleet_previews_together_and_passes_the_fleet_check(example_fleet):
    out, status, stdout, stderr = example_fleet
    assert status == 0, stdout + stderr
    assert f"Fleet: {GLOBAL} -> {WEST} (PRIMARY), {EAST} (SECONDARY)" in stdout
    assert f"{WEST}: previewed, offline checks passed" in stdout and f"{EAST}: previewed, offline checks passed" in stdout
    assert f"Fleet check: passed ({len(fleet_check.RULES)} rules over 3 stacks)" in stdout
    assert json.loads((out / fleet_tool.FLEET_FILE).read_text())["regions"] == [WEST, EAST]
    for stack in (WEST, EAST):
        # Each region's full preview ran its own checks and mesh trace, and read the global stack's saved preview.
        assert "Offline checks: passed" in (out / stack / fleet_tool.PREVIEW_OUTPUT).read_text()
        assert load_plan(out / stack)["stackReferences"] == [
            {"name": f"example-org/kubeflow-platform/{GLOBAL}", "stack": GLOBAL, "resolved": True}]


def _fleet_problems(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("    - ")]


def test_a_region_on_the_other_regions_bucket_and_database_or_with_other_profiles_fails_naming_both(tmp_path):
    """East's bucket prefix and recovery peer swapped (the stack's own check sees two different prefixes), its database
    pointed at west's (no global database declared, so no cluster endpoint to hold it to), and a profile less."""
    program = _program_with_fleet(tmp_path / "program")
    tenancy = yaml.safe_load((program / "fleet" / "tenancy.yaml").read_text())
    tenancy["profiles"] = [p for p in tenancy["profiles"] if p["name"] != "carol"]
    (program / "fleet" / "tenancy-east.yaml").write_text(yaml.safe_dump(tenancy))
    west = yaml.safe_load((program / f"Pulumi.{WEST}.yaml").read_text())["config"]
    status, stdout, stderr = _run_fleet(
        program, tmp_path / "fleet",
        f"{EAST}:artifacts.bucketPrefix={west['kubeflow-platform:artifacts']['bucketPrefix']}",
        f"{EAST}:recovery.peer.bucketPrefix=example-ml-prod-use1",
        f"{EAST}:recovery.database=null",
        f"{EAST}:kubeflow.database.host={west['kubeflow-platform:kubeflow']['database']['host']}",
        f"{EAST}:tenancy.file=fleet/tenancy-east.yaml")
    assert status == 1, stdout + stderr
    problems = _fleet_problems(stdout)
    assert problems and all(WEST in line and EAST in line for line in problems), problems
    assert any("stores_are_not_shared" in line and "example-ml-prod-usw2-pipelines" in line for line in problems)
    assert any("stores_are_not_shared" in line and "both write the databases" in line for line in problems)
    # East's replication would go to buckets nobody has, and west's to east's, which are now its own.
    assert any("replication_pairs_point_at_each_other" in line and "example-ml-prod-use1-models is not a bucket of" in line
               for line in problems)
    assert any("profiles_are_identical" in line and "'carol' exists in prod-us-west-2 only" in line for line in problems)


def test_a_region_with_recovery_pointed_at_the_others_bucket_or_database_is_refused_by_its_own_settings(tmp_path):
    """With recovery declared, the region's own settings already refuse the other region's bucket prefix and database
    (before anything is registered, naming the keys and the other stack): problems of the fleet (exit 1), each naming
    both stacks, and the fleet check is not run on a fleet missing a stack's plan."""
    program = _program_with_fleet(tmp_path / "program")
    west = yaml.safe_load((program / f"Pulumi.{WEST}.yaml").read_text())["config"]
    status, stdout, stderr = _run_fleet(
        program, tmp_path / "fleet",
        f"{EAST}:artifacts.bucketPrefix={west['kubeflow-platform:artifacts']['bucketPrefix']}",
        f"{EAST}:kubeflow.database.host={west['kubeflow-platform:kubeflow']['database']['host']}")
    assert status == 1, stdout + stderr
    refused = [line.strip() for line in stdout.splitlines() if line.strip().startswith("- ")]
    assert len(refused) == 2 and all(line.startswith(f"- {EAST}: ") and WEST in line for line in refused), stdout
    assert refused[0].startswith(f"- {EAST}: recovery.peer.bucketPrefix: 'example-ml-prod-usw2' is this stack's own")
    assert refused[1].startswith(f"- {EAST}: kubeflow.database.host: 'kubeflow-prod.cluster-c9b8a7d6e5f4.us-west-2.rds.amazonaws.com'")
    assert "Stacks' settings: 2 problems" in stdout and "Fleet check" not in stdout and "error" not in stderr


# --- the example fleet is an active/passive pair --------------------------------------------------------------


def test_the_primary_replicates_its_buckets_to_the_standbys_and_creates_the_global_database(fleet_plans):
    west, east = fleet_plans[WEST], fleet_plans[EAST]
    assert fleet_recovery.recovery_of(west)["mode"] == "primary" and fleet_recovery.recovery_of(east)["mode"] == "standby"
    east_key = "arn:aws:kms:us-east-1:222222222222:key/0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
    assert sorted(fleet_recovery.replication_rules(west)) == [
        ("example-ml-prod-usw2-models", "example-ml-prod-use1-models", east_key),
        ("example-ml-prod-usw2-pipelines", "example-ml-prod-use1-pipelines", east_key)]
    assert fleet_recovery.replication_rules(east) == []
    for rule in (r for r in west["resources"] if r["type"] == fleet_recovery._REPLICATION):
        destination = rule["inputs"]["rules"][0]["destination"]
        assert destination["replicationTime"]["status"] == "Enabled" and destination["metrics"]["status"] == "Enabled"
        assert rule["inputs"]["rules"][0]["deleteMarkerReplication"]["status"] == "Enabled"
    created = {stack: sorted(r["type"] for r in fleet_plans[stack]["resources"] if r["type"].startswith("aws:rds/"))
               for stack in (WEST, EAST)}
    assert created[WEST] == ["aws:rds/cluster:Cluster", "aws:rds/clusterInstance:ClusterInstance",
                             "aws:rds/clusterInstance:ClusterInstance", "aws:rds/globalCluster:GlobalCluster"]
    assert created[EAST] == created[WEST][:-1]  # its regional cluster only, a secondary of west's global cluster
    clusters = {stack: next(r["inputs"] for r in fleet_plans[stack]["resources"] if r["type"] == "aws:rds/cluster:Cluster")
                for stack in (WEST, EAST)}
    assert clusters[WEST]["clusterIdentifier"] == "kubeflow-prod" and "masterUsername" in clusters[WEST]
    assert clusters[EAST]["clusterIdentifier"] == "kubeflow-prod-use1" and "masterUsername" not in clusters[EAST]
    assert clusters[EAST]["globalClusterIdentifier"] == "kubeflow-prod-global"
    # Each region's Kubeflow on its own regional cluster's endpoint.
    assert fleet_recovery.database_hosts(west) == {"kubeflow-prod.cluster-c9b8a7d6e5f4.us-west-2.rds.amazonaws.com"}
    assert fleet_recovery.database_hosts(east) == {"kubeflow-prod-use1.cluster-d8c7b6a5f4e3.us-east-1.rds.amazonaws.com"}


def test_the_standbys_stores_are_held_and_its_run_time_trace_shows_them_held(example_fleet, fleet_plans):
    assert fleet_recovery.store_writers(fleet_plans[EAST]) == {
        writer: (0, "standby") for writer in STORE_WRITERS}
    assert not [w for w, (replicas, held) in fleet_recovery.store_writers(fleet_plans[WEST]).items() if replicas == 0 or held]
    trace = (example_fleet[0] / EAST / fleet_tool.PREVIEW_OUTPUT).read_text()
    held = [line for line in trace.splitlines() if line.rstrip().endswith("held: standby")]
    for service in ("ml-pipeline.kubeflow:8887", "metadata-grpc-service.kubeflow:8080", "katib-db-manager.kubeflow:6789"):
        assert any(service in line for line in held), service
    assert "held: standby" not in (example_fleet[0] / WEST / fleet_tool.PREVIEW_OUTPUT).read_text()


def _run_writer(plan: dict, writer: str) -> dict:
    """`plan` with the Deployment `writer` scaled to 1 and its held annotation gone, wherever the plan holds it."""
    def unheld(obj):
        if isinstance(obj, dict) and obj.get("kind") == "Deployment" and obj["metadata"]["name"] == writer:
            obj = {**obj, "spec": {**obj["spec"], "replicas": 1},
                   "metadata": {**obj["metadata"], "annotations": {}}}
        return obj

    for resource in plan["resources"]:
        inputs = resource["inputs"]
        if resource["type"] != "kubernetes:yaml/v2:ConfigGroup":
            continue
        if isinstance(inputs.get("objs"), list):
            inputs["objs"] = [unheld(obj) for obj in inputs["objs"]]
        if isinstance(inputs.get("yaml"), str) and f'"name":"{writer}"' in inputs["yaml"]:
            inputs["yaml"] = "\n---\n".join(json.dumps(unheld(obj)) for obj in yaml_stream_documents(inputs["yaml"]) if obj)
    return plan


def test_a_standby_running_its_writers_is_named_with_both_stacks(fleet_plans):
    # No setting runs a standby's writers (recovery.mode holds them); the saved plan changed by hand stands for a
    # patch or an edit that would.
    plans = copy.deepcopy(fleet_plans)
    _run_writer(plans[EAST], "ml-pipeline")
    assert fleet_recovery.store_writers(plans[EAST])["ml-pipeline"] == (1, None)
    assert _check(plans) == [f"standby_stores_are_held: {EAST} is the standby of {WEST} but runs ml-pipeline, which "
                             "would write into the read-only secondary: they must be held at 0 replicas"]


def test_a_second_primary_fails_naming_both_stacks(tmp_path):
    status, stdout, stderr = _run_fleet(_program_with_fleet(tmp_path / "program"), tmp_path / "fleet",
                                        f"{EAST}:recovery.mode=primary")
    assert status == 1, stdout + stderr
    assert _fleet_problems(stdout) == [
        f"    - one_primary_per_global_database: global database kubeflow-prod-global: stacks {EAST} and {WEST} are both "
        "primary; an Aurora Global Database has one writer region: set recovery.mode standby on all but one"]
    # docs/fleet.md shows this run's verdict.
    shown = (REPO_ROOT / "docs" / "fleet.md").read_text().split("```text\nFleet check: 1 problem\n", 1)[1].split("```", 1)[0]
    assert stdout.endswith("Fleet check: 1 problem\n" + shown)


def test_a_switchover_that_leaves_the_global_hosts_primary_on_the_standby_fails_naming_both_stacks(tmp_path):
    status, stdout, stderr = _run_fleet(_program_with_fleet(tmp_path / "program"), tmp_path / "fleet",
                                        f"{WEST}:recovery.mode=standby", f"{EAST}:recovery.mode=primary")
    assert status == 1, stdout + stderr
    assert _fleet_problems(stdout) == [
        f"    - failover_primary_is_the_recovery_primary: {GLOBAL} and {WEST}: {GLOBAL} answers the global host with {WEST} "
        f"(its fleet.regions failover PRIMARY), which is a recovery standby whose store writers are held; {EAST} is "
        f"recovery primary: make the recovery primary the PRIMARY on {GLOBAL}"]


def test_replication_pointed_at_buckets_other_than_the_peers_fails_naming_both_stacks(tmp_path):
    status, stdout, stderr = _run_fleet(_program_with_fleet(tmp_path / "program"), tmp_path / "fleet",
                                        f"{WEST}:recovery.peer.bucketPrefix=example-ml-archive")
    assert status == 1, stdout + stderr
    problems = _fleet_problems(stdout)
    assert problems == [
        f"    - replication_pairs_point_at_each_other: {WEST}: the peer's {purpose} bucket example-ml-archive-{purpose} is "
        f"not a bucket of {EAST} (example-ml-prod-use1-models, example-ml-prod-use1-pipelines); set "
        f"recovery.peer.bucketPrefix to {EAST}'s artifacts.bucketPrefix" for purpose in ("models", "pipelines")]


def test_fleet_set_with_a_bad_item_or_a_stack_outside_the_fleet_is_an_error(tmp_path):
    program = _program_with_fleet(tmp_path / "program")
    shutil.copy2(REPO_ROOT / "Pulumi.dev.yaml", program / "Pulumi.dev.yaml")
    for assignment, message in ((f"{EAST}artifacts.bucketPrefix=x", "is not <stack>:<key>=<value>"),
                                ("dev:artifacts.bucketPrefix=x", "which is not in global's fleet"),
                                ("nowhere:a=b", "is not a stack of this project")):
        status, stdout, stderr = _run_fleet(program, tmp_path / "fleet", assignment)
        assert status == 2 and message in stderr, stderr


def test_the_makefile_runs_the_fleet_with_fleet_set_items_as_arguments():
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert "export MAKEARG_FLEET_SET = $(FLEET_SET)" in makefile
    recipe = makefile.split("\nfleet:\n", 1)[1].split("\n\n", 1)[0]
    # Each item one argument, never pasted into the recipe's shell text; the exit status is the tool's own.
    assert 'for s in $$MAKEARG_FLEET_SET; do set -- "$$@" --set "$$s"; done' in recipe
    assert "$(BIN)/python -m tools.fleet" in recipe and "$(FLEET_SET)" not in recipe
    assert "fleet" in makefile.split("STATUS_GOAL := $(filter ", 1)[1].split(")", 1)[0]


def test_a_saved_fleet_is_diffed_region_by_region(example_fleet, tmp_path):
    out = example_fleet[0]
    changed = tmp_path / "changed"
    shutil.copytree(out, changed)
    plan = json.loads((changed / EAST / "plan.json").read_text())
    plan["outputs"]["fleetRegion"]["buckets"]["pipelines"] = "another-bucket"
    (changed / EAST / "plan.json").write_text(json.dumps(plan))
    stdout = io.StringIO()
    assert diff_tool.main([str(out), str(changed)], stdout=stdout, stderr=io.StringIO()) == 1
    text = stdout.getvalue()
    assert text.index(f"=== {GLOBAL} ===") < text.index(f"=== {WEST} ===") < text.index(f"=== {EAST} ===")
    assert f"Fleet: 1 of 3 stacks differ ({EAST}); the same: {GLOBAL}, {WEST}" in text
    assert "another-bucket" in text.split(f"=== {EAST} ===", 1)[1]
    assert diff_tool.main([str(out), str(out)], stdout=io.StringIO(), stderr=io.StringIO()) == 0
    assert diff_tool.main([str(out), str(out / WEST)], stdout=io.StringIO(), stderr=io.StringIO()) == 2


# --- the fleet check's rules, each over the example fleet changed by hand --------------------------------


def test_the_fleet_check_passes_the_example_fleets_plans(fleet_plans):
    assert _check(fleet_plans) == []


def test_a_region_previewed_before_its_global_stack_is_named(fleet_plans):
    plans = copy.deepcopy(fleet_plans)
    plans[EAST]["stackReferences"][0]["resolved"] = False
    assert _check(plans) == [f"references_resolve: {EAST} -> {GLOBAL}: {EAST} was previewed before {GLOBAL} had a saved "
                             f"preview, so it signs with its own cookie secret; preview {EAST} again"]


def test_a_region_without_a_saved_plan_or_without_the_fleets_outputs_is_named(fleet_plans):
    plans = copy.deepcopy(fleet_plans)
    del plans[EAST]
    assert any(p.startswith(f"references_resolve: {GLOBAL} -> {EAST}: the global stack reads {EAST}") for p in _check(plans))
    plans = copy.deepcopy(fleet_plans)
    del plans[EAST]["outputs"]["fleetRegion"]
    assert any(f"{GLOBAL} -> {EAST}: reads fleetRegion" in p for p in _check(plans))


def test_hosts_must_agree(fleet_plans):
    plans = copy.deepcopy(fleet_plans)
    region = plans[EAST]["outputs"]["fleetRegion"]
    region["hosts"] = [region["host"], fleet_plans[WEST]["outputs"]["fleetRegion"]["host"]]
    region["globalHost"] = "kubeflow.elsewhere.example.com"
    found = _check(plans)
    assert any(p.startswith("hosts_agree:") and f"{EAST} does not serve the global host" in p for p in found)
    assert any(p.startswith("hosts_agree:") and "fleet.host 'kubeflow.elsewhere.example.com'" in p for p in found)
    assert any(p.startswith(f"hosts_agree: {WEST} and {EAST}: both serve kubeflow.us-west-2.ml.example.com") for p in found)


def test_a_regions_certificate_must_name_what_the_global_stack_routes_to_it(fleet_plans):
    plans = copy.deepcopy(fleet_plans)
    names = plans[WEST]["outputs"]["fleetRegion"]["certificateNames"]
    names.remove("kubeflow.ml.example.com")
    assert _check(plans) == [f"certificate_names_agree: {WEST} and {GLOBAL}: {WEST}'s certificate lacks "
                             f"kubeflow.ml.example.com, which {GLOBAL} routes to it; TLS for those names would fail there"]


def test_redirect_uris_and_the_oidc_client_must_agree(fleet_plans):
    plans = copy.deepcopy(fleet_plans)
    plans[EAST]["outputs"]["fleetRegion"]["auth"]["clientId"] = "kubeflow-east"
    plans[GLOBAL]["outputs"]["oidcRedirectUris"].append("https://stale.ml.example.com/oauth2/callback")
    found = _check(plans)
    assert f"redirect_uris_agree: {GLOBAL}: exports the redirect URI 'https://stale.ml.example.com/oauth2/callback', which no region's login uses" in found
    assert any(p.startswith(f"redirect_uris_agree: {WEST} and {EAST}: auth.clientId differs") for p in found)


def test_profiles_must_be_identical_to_the_field(fleet_plans):
    plans = copy.deepcopy(fleet_plans)
    alice = next(p for p in plans[EAST]["outputs"]["fleetTenancy"]["profiles"] if p["name"] == "alice")
    alice["quota"]["gpus"] = 4
    assert _check(plans) == [f"profiles_are_identical: {WEST} and {EAST}: profile 'alice' differs in quota; every region "
                             "must apply the same definition (tenancy.file)"]


def test_a_role_trusting_the_other_regions_cluster_is_named_with_both_stacks(fleet_plans):
    plans = copy.deepcopy(fleet_plans)
    west_issuer = plans[WEST]["outputs"]["fleetRegion"]["clusterOidcIssuer"].removeprefix("https://")
    east_issuer = plans[EAST]["outputs"]["fleetRegion"]["clusterOidcIssuer"].removeprefix("https://")
    role = next(r for r in plans[EAST]["resources"] if r["type"] == "aws:iam/role:Role" and r["name"] == "identity-pipelines")
    role["inputs"]["assumeRolePolicy"] = role["inputs"]["assumeRolePolicy"].replace(east_issuer, west_issuer)
    found = _check(plans)
    assert f"identity_trust_covers_each_cluster: {EAST} and {WEST}: {EAST}'s role 'identity-pipelines' trusts the issuer " \
           f"{west_issuer} ({WEST}'s cluster), not {EAST}'s own cluster {east_issuer}" in found
    assert any(p.endswith("its pods could not assume it") for p in found)


def test_the_rules_are_a_plain_list_others_can_extend(fleet_plans):
    seen = []

    def standby_held(fleet):
        seen.append(fleet.region_stacks)
        return [f"{EAST}: extra rule"]

    assert fleet_check.check(fleet_check.Fleet(GLOBAL, fleet_plans), [*fleet_check.RULES, standby_held]) == [
        f"standby_held: {EAST}: extra rule"]
    assert seen == [[WEST, EAST]]


# --- the global stack and its records ---------------------------------------------------------------------


def test_the_global_stack_writes_failover_records_to_each_regions_load_balancer(fleet_plans):
    plan = fleet_plans[GLOBAL]
    records = [r for r in plan["resources"] if r["type"] == "aws:route53/record:Record"]
    assert sorted((r["inputs"]["setIdentifier"], r["inputs"]["type"]) for r in records) == [
        (EAST, "A"), (EAST, "AAAA"), (WEST, "A"), (WEST, "AAAA")]
    for record in records:
        assert record["inputs"]["name"] == "kubeflow.ml.example.com"
        failover = {WEST: "PRIMARY", EAST: "SECONDARY"}[record["inputs"]["setIdentifier"]]
        assert record["inputs"]["failoverRoutingPolicies"] == [{"type": failover}]
        # The example's load balancers are internal: each record follows its NLB's own target health.
        assert record["inputs"]["aliases"][0]["evaluateTargetHealth"] is True and "healthCheckId" not in record["inputs"]
    # No cluster, no Kubernetes object: the global stack is DNS and shared values only.
    assert {r["type"].split(":")[0] for r in plan["resources"] if r["custom"]} <= {"aws", "pulumi"}
    assert not [r for r in plan["resources"] if r["type"] == "aws:route53/healthCheck:HealthCheck"]
    assert plan["outputs"]["authCookieSecret"] == "[secret]"
    assert plan["outputs"]["oidcRedirectUris"] == ["https://kubeflow.us-east-1.ml.example.com/oauth2/callback",
                                                   "https://kubeflow.us-west-2.ml.example.com/oauth2/callback"]


def _global_run(program: Path, plans_dir: Path, **fleet):
    document = yaml.safe_load((program / "Pulumi.global.yaml").read_text())["config"]["kubeflow-platform:fleet"]
    return run_program(GLOBAL, config_overrides={"fleet": {**document, **fleet}}, secrets=MARKER_SECRETS, preview=True,
                       root=program, plans_dir=plans_dir)


def test_with_health_checks_each_regional_host_is_checked_over_https_and_its_records_name_the_check(tmp_path, example_fleet):
    run = _global_run(_program_with_fleet(tmp_path / "program"), example_fleet[0],
                      healthCheck={"enabled": True, "path": "/", "failureThreshold": 3, "requestInterval": 30})
    checks = {r.name: r.inputs for r in run.of_type("aws:route53/healthCheck:HealthCheck")}
    assert {name: (c["fqdn"], c["type"], c["port"], c["resourcePath"], c["enableSni"]) for name, c in checks.items()} == {
        f"fleet-{WEST}-health": ("kubeflow.us-west-2.ml.example.com", "HTTPS", 443, "/", True),
        f"fleet-{EAST}-health": ("kubeflow.us-east-1.ml.example.com", "HTTPS", 443, "/", True)}
    records = run.of_type("aws:route53/record:Record")
    assert len(records) == 4 and all("healthCheckId" in r.inputs for r in records)
    # Every AWS resource on the global stack's one explicit provider; stack references are the engine's own.
    providers = {r.urn for r in run.resources if r.type == "pulumi:providers:aws"}
    assert len(providers) == 1
    assert all(r.provider.rsplit("::", 1)[0] in providers for r in run.resources if r.custom and r.type.startswith("aws:"))


def test_health_checks_of_an_internal_load_balancer_are_named(fleet_plans):
    plans = copy.deepcopy(fleet_plans)
    plans[GLOBAL]["outputs"]["fleetGlobal"]["healthChecks"] = True
    found = _check(plans)
    assert len(found) == 2 and all(p.startswith("health_checks_reach_the_regions: ") and GLOBAL in p for p in found)
    assert any(f"{WEST}'s load balancer is internal" in p for p in found)


def test_latency_routing_writes_one_latency_record_per_region(tmp_path, example_fleet):
    run = _global_run(_program_with_fleet(tmp_path / "program"), example_fleet[0],
                      routing="latency", regions=[{"stack": WEST}, {"stack": EAST}])
    records = run.of_type("aws:route53/record:Record")
    assert sorted((r.inputs["setIdentifier"], r.inputs["latencyRoutingPolicies"][0]["region"]) for r in records) == [
        (EAST, "us-east-1"), (EAST, "us-east-1"), (WEST, "us-west-2"), (WEST, "us-west-2")]
    assert all("failoverRoutingPolicies" not in r.inputs for r in records)


# --- stack references offline -------------------------------------------------------------------------------


def _auth_cookie(run) -> tuple[str, list[str]]:
    """The login's cookie secret as the oauth2-proxy Secret holds it, and the Secret's secret paths."""
    secret = next(r for r in run.resources if r.type == "kubernetes:core/v1:Secret"
                  and COOKIE_SECRET_KEY in (rpc.unwrap_rpc_secret(r.inputs.get("stringData")) or {}))
    return rpc.unwrap_rpc_secret(secret.inputs["stringData"])[COOKIE_SECRET_KEY], secret.secret_paths


def test_a_region_signs_with_the_global_stacks_cookie_secret_which_stays_a_secret(example_fleet, tmp_path):
    out = example_fleet[0]
    program = _program_with_fleet(tmp_path / "program")
    overrides = {"kubeflow": {**yaml.safe_load((program / f"Pulumi.{WEST}.yaml").read_text())["config"]["kubeflow-platform:kubeflow"],
                              "manifests": str(manifests_path())}}
    shared = run_program(WEST, config_overrides=overrides, secrets=MARKER_SECRETS, root=program, plans_dir=out)
    value, secret_paths = _auth_cookie(shared)
    assert value == referenced_secret(GLOBAL, "authCookieSecret")
    assert secret_paths == ["stringData"]  # registered as a Pulumi secret, as the region's own would be
    # Before the global stack's first deploy (no saved preview of it), the region's own secret.
    alone = run_program(WEST, config_overrides=overrides, secrets=MARKER_SECRETS, root=program, plans_dir=tmp_path / "none")
    assert _auth_cookie(alone)[0] == MARKER_SECRETS["authCookieSecret"]
    assert alone.stack_references == [(f"example-org/kubeflow-platform/{GLOBAL}", None)]


def test_the_global_stack_names_a_region_to_preview_first(tmp_path):
    program = _program_with_fleet(tmp_path / "program")
    with pytest.raises(StackReferenceError, match=rf"no saved preview of stack '{WEST}'.*make preview STACK={WEST}"):
        run_program(GLOBAL, secrets=MARKER_SECRETS, preview=True, root=program, plans_dir=tmp_path / "none")
    # As make preview runs it (its manifests are every stack's; a global stack has no release): the message alone.
    stdout, stderr = io.StringIO(), io.StringIO()
    assert preview(GLOBAL, manifests=str(manifests_path()), out=tmp_path / "out", stdout=stdout, stderr=stderr,
                   root=program) == 1
    assert stderr.getvalue().splitlines()[-1] == (
        f"error: stack reference 'example-org/kubeflow-platform/{WEST}': no saved preview of stack '{WEST}' "
        f"(build/{WEST}/plan.json); preview it first: make preview STACK={WEST}")


def test_the_global_stack_previews_alone_once_its_regions_have(example_fleet, tmp_path):
    program = _program_with_fleet(tmp_path / "program")
    stdout, stderr = io.StringIO(), io.StringIO()
    status = preview(GLOBAL, manifests=str(manifests_path()), out=tmp_path / "out", stdout=stdout, stderr=stderr,
                     root=program, plans_dir=example_fleet[0])
    assert status == 0, stderr.getvalue()
    assert "Offline checks: passed" in stdout.getvalue() and "Kubernetes objects" not in stdout.getvalue()


def test_a_reference_to_a_stack_the_project_does_not_have_is_refused(tmp_path):
    program = _program_with_fleet(tmp_path / "program")
    document = yaml.safe_load((program / "Pulumi.global.yaml").read_text())
    document["config"]["kubeflow-platform:fleet"]["regions"][1]["stack"] = "prod-eu-west-1"
    (program / "Pulumi.global.yaml").write_text(yaml.safe_dump(document))
    with pytest.raises(StackReferenceError, match=r"this project has no stack 'prod-eu-west-1'"):
        run_program(GLOBAL, secrets=MARKER_SECRETS, preview=True, root=program, plans_dir=tmp_path / "none")


# --- settings and the CLI's checks --------------------------------------------------------------------------


@pytest.mark.parametrize("stack", FLEET_STACKS)
def test_the_fleets_stack_files_pass_the_cli_check(stack):
    assert cli.check_stack_files(REPO_ROOT, stack, cli.DEPLOYING_SECRETS,
                                 required_fields=cli.settings_required_fields()) == []


def _raw(stack: str) -> dict:
    return {key.split(":", 1)[1]: value
            for key, value in yaml.safe_load((REPO_ROOT / f"Pulumi.{stack}.yaml").read_text())["config"].items()}


def test_a_global_stack_refuses_kubeflow_settings_and_needs_the_fleets_cookie_secret():
    raw = {**_raw(GLOBAL), "dns": {"zoneName": "ml.example.com"}, "kubeflow": {}, "fleett": {}}
    with pytest.raises(config.SettingsError) as refused:
        config.parse(raw, config.Secrets(), {"authClientSecret"}, GLOBAL)
    assert refused.value.problems == [
        "fleett: unknown key; a global stack takes aws, fleet, protect",
        "dns: is not used by a global stack (fleet.role global creates no cluster objects); remove it from the stack file",
        "authCookieSecret: is required on the global stack: every region's login signs its cookies with it; set it with "
        "`pulumi config set --secret authCookieSecret <value>`",
    ]


@pytest.mark.parametrize("change, problem", [
    ({"regions": [{"stack": WEST, "failover": "PRIMARY"}, {"stack": EAST, "failover": "PRIMARY"}]},
     "fleet.regions: failover routing takes exactly two regions, one PRIMARY and one SECONDARY; use routing latency for more than two"),
    ({"regions": [{"stack": WEST}]}, "fleet.regions: a global stack leads to at least two regional stacks; list them as {stack: <name>}"),
    ({"host": "kubeflow.example.org"}, "fleet.host: 'kubeflow.example.org' is not inside the hosted zone 'ml.example.com' (fleet.zoneName)"),
    ({"routing": "latency"}, "fleet.regions[0].failover: applies only to routing failover; remove it for latency routing"),
    ({"organization": None}, "fleet.organization: is required with fleet.role: the Pulumi organization the fleet's stacks live in"),
])
def test_a_global_stacks_fleet_settings_are_checked_with_their_key_paths(change, problem):
    raw = _raw(GLOBAL)
    raw["fleet"] = {key: value for key, value in {**raw["fleet"], **change}.items() if value is not None}
    with pytest.raises(config.SettingsError) as refused:
        config.parse(raw, config.Secrets(), {"authClientSecret", "authCookieSecret"}, GLOBAL)
    assert problem in refused.value.problems


def test_a_region_must_serve_the_global_host_beside_a_host_of_its_own():
    raw = _raw(WEST)
    raw["dns"] = {**raw["dns"], "extraHosts": []}
    with pytest.raises(config.SettingsError) as refused:
        config.parse(raw, config.Secrets(), set(config.SECRET_KEYS), WEST)
    assert "dns.extraHosts: add the fleet's global host 'kubeflow.ml.example.com' (fleet.host): the region serves it too" \
        in refused.value.problems
    raw["dns"] = {**raw["dns"], "host": "kubeflow.ml.example.com"}
    with pytest.raises(config.SettingsError) as refused:
        config.parse(raw, config.Secrets(), set(config.SECRET_KEYS), WEST)
    assert any(line.startswith("dns.host: is the fleet's global host") for line in refused.value.problems)


def test_fleet_keys_of_other_roles_are_refused_on_a_stand_alone_stack():
    raw = {**_raw("dev"), "fleet": {"organization": "example-org"}}
    with pytest.raises(config.SettingsError) as refused:
        config.parse(raw, config.Secrets(), set(config.SECRET_KEYS), "dev")
    assert refused.value.problems == [
        "fleet.organization: applies only to a fleet's stacks: set fleet.role (regional or global), or remove it"]


def test_a_tenancy_file_gives_every_region_the_same_tenancy_and_keys_beside_it_are_refused(tmp_path):
    west = config.parse(_raw(WEST), config.Secrets(), set(config.SECRET_KEYS), WEST)
    east = config.parse(_raw(EAST), config.Secrets(), set(config.SECRET_KEYS), EAST)
    prod = config.parse(_raw("prod"), config.Secrets(), set(config.SECRET_KEYS), "prod")
    assert west.tenancy.profiles == east.tenancy.profiles == prod.tenancy.profiles
    raw = _raw(WEST)
    raw["tenancy"] = {"file": "fleet/tenancy.yaml", "users": ["x@example.com"]}
    with pytest.raises(config.SettingsError) as refused:
        config.parse(raw, config.Secrets(), set(config.SECRET_KEYS), WEST)
    assert refused.value.problems == ["tenancy.users: is set in the stack file and in 'fleet/tenancy.yaml'; keep it in one place"]
    raw["tenancy"] = {"file": "fleet/missing.yaml"}
    with pytest.raises(config.SettingsError) as refused:
        config.parse(raw, config.Secrets(), set(config.SECRET_KEYS), WEST)
    assert refused.value.problems[0] == (
        "tenancy.file: cannot read 'fleet/missing.yaml' (relative to the program's directory): No such file or directory")


def test_dev_and_prod_stay_stand_alone_stacks():
    for stack in ("dev", "prod"):
        settings = config.parse(_raw(stack), config.Secrets(), set(config.SECRET_KEYS), stack)
        assert settings.fleet.role is None and settings.tenancy.file is None


# --- the docs ------------------------------------------------------------------------------------------------


def test_fleet_md_shows_what_make_fleet_prints_and_lists_every_rule(example_fleet):
    out, _, stdout, _ = example_fleet
    page = (REPO_ROOT / "docs" / "fleet.md").read_text()
    sample = page.split("```\nFleet: ", 1)[1].split("```", 1)[0]
    printed = stdout.replace(display_path(out) + "/", "build/fleet/")
    assert "Fleet: " + sample == printed
    table = page.split("## What the fleet check holds", 1)[1]
    assert [rule.__name__ for rule in fleet_check.RULES] == re.findall(r"^\| `(\w+)` \|", table, flags=re.MULTILINE)
    assert "[A fleet](docs/fleet.md)" in (REPO_ROOT / "README.md").read_text()


@pytest.mark.parametrize("stack", (WEST, EAST))
def test_a_regional_stack_alone_holds_every_upstream_contract(stack, tmp_path):
    """A region previewed alone, before any global stack exists (no saved preview of it): the objects it applies hold
    every contract of the pinned release, as dev's and prod's do (tests/test_contracts.py)."""
    from tests.conftest import run_stack
    from tests.test_contracts import CONTRACTS, emitted_objects, flat_settings
    from tests.upstream import CURRENT_VERSION
    from manifests.contracts import contract_problems

    run = run_stack(stack, plans_dir=tmp_path)
    assert run.stack_references == [(f"example-org/kubeflow-platform/{GLOBAL}", None)]
    objects, values = emitted_objects(run), flat_settings(stack)
    assert [problem for contract in CONTRACTS if contract.applies_to(CURRENT_VERSION)
            for problem in contract_problems(contract, objects, values)] == []
