"""docs/failover.md is a runbook: every command in its `sh` blocks runs, in the page's order, and succeeds.

The page runs in a copy of the project holding the repository's example fleet (the regional stacks prod-us-west-2
and prod-us-east-1, the global stack, their shared tenancy file), as a platform engineer would run it from a clone. `aws` is a fake Aurora Global Database (and the one
CloudWatch metric the page reads): `describe-global-clusters` answers with the writer and the status, a
switchover is refused unless the target is an in-sync secondary and a failover unless `--allow-data-loss` is
given, and the status is `switching-over`/`failing-over` until the next look. `pulumi` is a fake CLI that
writes `config set --path` into the stack file (list items as `key[0]`), as the real one does, and whose `up`
loads the stack's settings as the program does and records the stack's role (the global stack's: its PRIMARY). `make` runs for real (previews and the upgrade plan).
The fakes are written into the test's directory from this file.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT
from tests.stack_files import stack_document
from tests.test_deploying_runbook import _venv_view, copy_project, shell_blocks
from tests.upstream import manifests_dir

PAGE = REPO_ROOT / "docs" / "failover.md"
PROJECT_PARTS = ("Makefile", "Pulumi.yaml", "__main__.py", "requirements.txt", "requirements-dev.txt",
                 "requirements-scan.txt", "config", "components", "manifests", "analysis", "tools", "policy", "fleet")
GLOBAL, WEST, EAST = "global", "prod-us-west-2", "prod-us-east-1"
FLEET_STACKS = (GLOBAL, WEST, EAST)


def _cluster_arn(stack: str) -> str:
    """The ARN of the stack's Aurora cluster, from its stack file (region, account, recovery.database)."""
    config = stack_document(stack)["config"]
    aws = config["kubeflow-platform:aws"]
    cluster = config["kubeflow-platform:recovery"]["database"]["clusterIdentifier"]
    return f"arn:aws:rds:{aws['region']}:{aws['allowedAccountIds'][0]}:cluster:{cluster}"


WEST_ARN, EAST_ARN = _cluster_arn(WEST), _cluster_arn(EAST)

FAKE_AWS = r'''
import json, os, sys
import jmespath

def option(args, name):
    return args[args.index(name) + 1] if name in args else None

def main(args):
    with open(os.environ["FAKE_CLI_LOG"], "a") as log:
        log.write(json.dumps(["aws", *args]) + "\n")
    path = os.path.join(os.environ["FAKE_CLI_DIR"], "rds.json")
    state = json.load(open(path))
    service, operation = args[0], args[1]
    if service == "cloudwatch" and operation == "get-metric-statistics":
        answer = {"Label": option(args, "--metric-name"), "Datapoints": [{"Maximum": 640.0, "Unit": "Milliseconds"}]}
    elif service == "rds":
        identifier = option(args, "--global-cluster-identifier")
        cluster = state["globalClusters"].get(identifier)
        if cluster is None:
            sys.stderr.write(f"An error occurred (GlobalClusterNotFoundFault): {identifier} not found\n")
            return 254
        members = cluster["GlobalClusterMembers"]
        if operation == "describe-global-clusters":
            shown = json.loads(json.dumps(cluster))
            shown.pop("Target", None)
            if cluster["Status"] != "available":
                # The move completes between two looks: this one still sees the old writer.
                target = cluster.pop("Target")
                for member in members:
                    member["IsWriter"] = member["DBClusterArn"] == target
                cluster["Status"] = "available"
            answer = {"GlobalClusters": [shown]}
        elif operation in ("switchover-global-cluster", "failover-global-cluster"):
            target = option(args, "--target-db-cluster-identifier")
            member = next((m for m in members if m["DBClusterArn"] == target), None)
            if member is None or member["IsWriter"]:
                sys.stderr.write(f"An error occurred (InvalidParameterValue): {target} is not a secondary of {identifier}\n")
                return 254
            if cluster["Status"] != "available":
                sys.stderr.write(f"An error occurred (InvalidGlobalClusterStateFault): {identifier} is {cluster['Status']}\n")
                return 254
            if operation == "failover-global-cluster" and "--allow-data-loss" not in args:
                sys.stderr.write("An error occurred: a failover needs --allow-data-loss (or use switchover-global-cluster)\n")
                return 252
            cluster["Status"], cluster["Target"] = "switching-over", target
            answer = {"GlobalCluster": {"GlobalClusterIdentifier": identifier, "Status": "switching-over"}}
        else:
            sys.stderr.write(f"fake aws: unknown rds operation {operation}\n")
            return 255
    else:
        sys.stderr.write(f"fake aws: unknown command {service} {operation}\n")
        return 255
    json.dump(state, open(path, "w"))
    query = option(args, "--query")
    if query:
        answer = jmespath.search(query, answer)
    if option(args, "--output") == "text":
        items = answer if isinstance(answer, list) else [answer]
        print("\t".join(str(i) for i in items))
    else:
        print(json.dumps(answer))
    return 0

sys.exit(main(sys.argv[1:]))
'''

FAKE_PULUMI = r'''
import json, os, re, sys
from pathlib import Path
import yaml

PROJECT = "kubeflow-platform"

def fail(message):
    sys.stderr.write(f"error: {message}\n")
    return 255

def main(args):
    with open(os.environ["FAKE_CLI_LOG"], "a") as log:
        log.write(json.dumps(["pulumi", *args]) + "\n")
    state_path = Path(os.environ["FAKE_CLI_DIR"]) / "pulumi-state.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {"stack": None, "ups": []}
    sys.path.insert(0, os.getcwd())
    import config
    if args[:2] == ["stack", "select"]:
        if not Path(f"Pulumi.{args[2]}.yaml").is_file():
            return fail(f"no stack file Pulumi.{args[2]}.yaml")
        state["stack"] = args[2]
    elif args[:2] == ["config", "set"]:
        rest = [a for a in args[2:] if a != "--path"]
        if "--path" not in args or len(rest) != 2:
            return fail(f"the runbook sets nested keys with --path: {args}")
        key, value = rest
        top, *path = [int(p[1:-1]) if p.startswith("[") else p for p in re.findall(r"\[\d+\]|[^.\[\]]+", key)]
        if top not in config.settings_keys():
            return fail(f"{top!r} is not a setting the program reads")
        stack_file = Path(f"Pulumi.{state['stack']}.yaml")
        document = yaml.safe_load(stack_file.read_text())
        node = document["config"].setdefault(f"{PROJECT}:{top}", {})
        for part in path[:-1]:
            if isinstance(part, int):
                if not isinstance(node, list) or part >= len(node):
                    return fail(f"{key}: no item {part} there")
                node = node[part]
            else:
                node = node.setdefault(part, {})
        node[path[-1]] = value  # the CLI stores a string; the program reads "true"/"false" as booleans
        stack_file.write_text(yaml.safe_dump(document, sort_keys=False))
    elif args and args[0] in ("up", "preview"):
        from tools.mock_runtime import stack_config
        raw = {k.split(":", 1)[1]: v for k, v in stack_config(state["stack"], Path.cwd()).items() if k.startswith(PROJECT + ":")}
        try:
            settings = config.parse(raw, config.Secrets(), set(config.SECRET_KEYS), state["stack"])
        except config.SettingsError as error:
            return fail(str(error))
        if args[0] == "up" and settings.fleet.role == "global":
            state["ups"].append([state["stack"], [r.stack for r in settings.fleet.regions if r.failover == "PRIMARY"]])
        elif args[0] == "up":
            state["ups"].append([state["stack"], settings.recovery.mode, settings.recovery.replicates])
    else:
        return fail(f"the runbook test does not know `pulumi {' '.join(args)}`")
    state_path.write_text(json.dumps(state))
    return 0

sys.exit(main(sys.argv[1:]))
'''


def _wrapper(path: Path, source: str) -> None:
    # Not `<name>.py`: the script's directory comes first on sys.path, and `pulumi.py` would shadow the SDK.
    script = path.with_name(f"fake_{path.name}_cli.py")
    script.write_text(source)
    path.write_text(f"#!{sys.executable}\nimport runpy\nrunpy.run_path({str(script)!r}, run_name='__main__')\n")
    path.chmod(0o755)


@pytest.fixture
def pair_clone(tmp_path: Path) -> Path:
    import shutil

    project = copy_project(tmp_path / "project", PROJECT_PARTS)
    for name in FLEET_STACKS:
        shutil.copy2(REPO_ROOT / f"Pulumi.{name}.yaml", project / f"Pulumi.{name}.yaml")
    _venv_view(project / ".venv")
    return project


def _global_cluster() -> dict:
    return {"globalClusters": {"kubeflow-prod-global": {
        "GlobalClusterIdentifier": "kubeflow-prod-global", "Engine": "aurora-mysql", "Status": "available",
        "GlobalClusterMembers": [{"DBClusterArn": WEST_ARN, "IsWriter": True, "Readers": [EAST_ARN]},
                                 {"DBClusterArn": EAST_ARN, "IsWriter": False, "Readers": []}]}}}


def test_every_command_of_the_failover_runbook_runs_in_order(pair_clone: Path, tmp_path: Path):
    blocks = shell_blocks(PAGE.read_text())
    assert len(blocks) >= 6, "the runbook lost its steps"
    state = tmp_path / "state"
    state.mkdir()
    (state / "rds.json").write_text(json.dumps(_global_cluster()))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _wrapper(bin_dir / "aws", FAKE_AWS)
    _wrapper(bin_dir / "pulumi", FAKE_PULUMI)
    # The runbook's polling loops wait for real; here the fake's state moves on at the next look instead.
    (bin_dir / "sleep").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "sleep").chmod(0o755)
    log = tmp_path / "calls.log"
    env = {"PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path),
           "KUBEFLOW_MANIFESTS_DIR": str(manifests_dir()), "FAKE_CLI_DIR": str(state), "FAKE_CLI_LOG": str(log)}
    outputs = []
    for i, block in enumerate(blocks, start=1):
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=pair_clone, env=env, capture_output=True,
                              text=True, timeout=900)
        assert done.returncode == 0, f"block {i} of docs/failover.md failed:\n{block}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        outputs.append(done.stdout)
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    rds = [c[2] for c in calls if c[:2] == ["aws", "rds"] and c[2] != "describe-global-clusters"]
    assert rds == ["switchover-global-cluster", "switchover-global-cluster", "failover-global-cluster"]
    ups = json.loads((state / "pulumi-state.json").read_text())["ups"]
    assert ups == [
        # planned switchover: the primary stops writing before the writer moves, the standby starts after, then the
        # global host's PRIMARY follows
        [WEST, "standby", False], [EAST, "primary", True], [GLOBAL, [EAST]],
        # fail-back, the same the other way
        [EAST, "standby", False], [WEST, "primary", True], [GLOBAL, [WEST]],
        # unplanned failover: promoted at once, replicating nowhere while the peer's region is down; the global host
        # stays with it when the old region comes back
        [EAST, "primary", False], [GLOBAL, [EAST]],
        # the old region back: demoted before anything else, then replication towards it again
        [WEST, "standby", False], [EAST, "primary", True],
    ]
    # Each planned Aurora move happens between a demotion and a promotion; the failover is followed by the promotion.
    order = [("up", c[0]) if c[0] == "pulumi" and c[1] == "up" else ("move", c[2]) for c in calls
             if (c[0] == "pulumi" and c[1] == "up") or (c[:2] == ["aws", "rds"] and c[2].endswith("-global-cluster")
                                                          and not c[2].startswith("describe"))]
    assert [kind for kind, _ in order] == ["up", "move", "up", "up", "up", "move", "up", "up", "move", "up", "up", "up",
                                           "up"]
    # `make fleet` passed before the switchover and after it (east primary, west standby, the global host east's).
    fleets = [out for out in outputs if "Fleet check: " in out]
    assert len(fleets) == 2 and all("Fleet check: passed" in out for out in fleets), fleets
    # The writer the page shows is the one the stacks expect at that moment.
    shown = [line.strip() for out in outputs for line in out.splitlines() if line.startswith("arn:aws:rds:")]
    assert shown == [WEST_ARN, EAST_ARN]
    writer = [m["DBClusterArn"] for m in json.loads((state / "rds.json").read_text())["globalClusters"][
        "kubeflow-prod-global"]["GlobalClusterMembers"] if m["IsWriter"]]
    assert writer == [EAST_ARN]
    # The promotion's upgrade plan names what it does before `pulumi up` does it.
    promotion = next(out for out in outputs if "recovery-promoted" in out)
    assert "ml-pipeline" in promotion and "example-ml-prod-use1-pipelines replicates to example-ml-prod-usw2-pipelines" in promotion
    # The stack files end where the writer is: prod-us-east-1 primary (replicating again), prod-us-west-2 standby.
    for name, mode in ((WEST, "standby"), (EAST, "primary")):
        recovery = yaml.safe_load((pair_clone / f"Pulumi.{name}.yaml").read_text())["config"]["kubeflow-platform:recovery"]
        assert recovery["mode"] == mode
    regions = yaml.safe_load((pair_clone / "Pulumi.global.yaml").read_text())["config"]["kubeflow-platform:fleet"]["regions"]
    assert [(r["stack"], r["failover"]) for r in regions] == [(WEST, "SECONDARY"), (EAST, "PRIMARY")]


def test_a_failover_without_allow_data_loss_is_refused_by_the_fake_as_by_aws(tmp_path: Path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "rds.json").write_text(json.dumps(_global_cluster()))
    _wrapper(tmp_path / "aws", FAKE_AWS)
    env = {**os.environ, "FAKE_CLI_DIR": str(state), "FAKE_CLI_LOG": str(tmp_path / "log")}
    base = [str(tmp_path / "aws"), "rds", "failover-global-cluster", "--global-cluster-identifier", "kubeflow-prod-global",
            "--target-db-cluster-identifier"]
    assert subprocess.run(base + [EAST_ARN], env=env, capture_output=True).returncode != 0
    # Nor can the writer be the target.
    assert subprocess.run(base + [WEST_ARN, "--allow-data-loss"], env=env, capture_output=True).returncode != 0


def test_the_runbooks_stacks_clusters_and_settings_are_the_example_fleets():
    text = PAGE.read_text()
    for name in FLEET_STACKS:
        assert f"stack select {name}" in text
    for arn in (WEST_ARN, EAST_ARN):
        assert arn in text
    west = stack_document(WEST)["config"]
    assert west["kubeflow-platform:recovery"]["database"]["globalClusterIdentifier"] in text
    # The settings the page shows are prod-us-west-2's, as its stack file holds them.
    shown = yaml.safe_load(re.search(r"^```yaml\n(.*?)^```", text, flags=re.S | re.M).group(1))
    assert shown == {"kubeflow-platform:recovery": west["kubeflow-platform:recovery"]}
    # fleet.regions[0] and [1], which the page swaps, are the two regional stacks in that order.
    regions = yaml.safe_load((REPO_ROOT / f"Pulumi.{GLOBAL}.yaml").read_text())["config"]["kubeflow-platform:fleet"]["regions"]
    assert [r["stack"] for r in regions] == [WEST, EAST]
    for block in shell_blocks(text):
        for line in block.splitlines():
            assert not re.search(r"<[a-z-]+>", line), f"a placeholder in {line!r}"
