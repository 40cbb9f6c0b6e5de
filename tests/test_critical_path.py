"""The deploy estimate: Kubeflow waits only for what it needs, and the critical chain is a real chain."""

from __future__ import annotations

import pytest

from tools.critical_path import PROVISIONING, all_waits, estimate, provisioning, waits_for
from tools.plan import CONFIG_GROUP, build_plan

#: What Kubeflow and the profiles must never wait for: GPU capacity and a certificate being issued.
SLOW_AND_UNRELATED = ("aws:eks/nodeGroup:NodeGroup", "aws:acm/certificateValidation:CertificateValidation",
                      "kubeflow-platform:gpu:GpuNodePools", "kubeflow-platform:certificate:Certificate")


def plan_of(run) -> dict:
    return build_plan(run)[0]


def kubeflow_groups(plan: dict) -> list[dict]:
    return [r for r in plan["resources"] if r["type"] == CONFIG_GROUP and r["name"].startswith(("kubeflow-", "tenancy-"))]


def test_kubeflow_and_profile_groups_never_wait_for_gpu_nodes_or_certificate_validation(stack_run):
    plan = plan_of(stack_run)
    types = {r["urn"]: r["type"] for r in plan["resources"]}
    groups = kubeflow_groups(plan)
    assert len(groups) >= 8
    for group in groups:
        waited = {types[urn] for urn in all_waits(plan, group["urn"])}
        assert not waited & set(SLOW_AND_UNRELATED), (group["name"], sorted(waited & set(SLOW_AND_UNRELATED)))


def test_the_check_sees_a_wait_through_a_parent_component():
    # A group whose component depends on a node group waits for it too: the SDK registers children only
    # after their parent's registration returned.
    plan = {"stack": "t", "resources": [
        {"urn": "pool", "type": "aws:eks/nodeGroup:NodeGroup", "name": "pool", "custom": True, "dependencies": []},
        {"urn": "kf", "type": "kubeflow-platform:kubeflow:Kubeflow", "name": "kubeflow", "custom": False,
         "dependencies": ["pool"]},
        {"urn": "core", "type": CONFIG_GROUP, "name": "kubeflow-core", "custom": True, "parent": "kf",
         "dependencies": [], "inputs": {"yaml": '{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"}}'}},
    ]}
    assert all_waits(plan, "core") == {"kf", "pool"}
    result = estimate(plan)
    assert [step.name for step in result.chain] == ["pool", "kubeflow", "kubeflow-core"]
    assert result.seconds == PROVISIONING["aws:eks/nodeGroup:NodeGroup"].seconds + provisioning(plan["resources"][2]).seconds


def test_the_critical_chain_is_a_chain_of_waits_and_adds_up(stack_run):
    plan = plan_of(stack_run)
    result = estimate(plan)
    by_name = {(r["type"], r["name"]): r for r in plan["resources"]}
    urns = {r["urn"] for r in plan["resources"]}
    steps = result.chain
    for earlier, later in zip(steps, steps[1:]):
        assert by_name[(earlier.type, earlier.name)]["urn"] in waits_for(by_name[(later.type, later.name)], urns)
        assert later.start == pytest.approx(earlier.start + earlier.seconds)
    assert result.seconds == pytest.approx(steps[-1].start + steps[-1].seconds)
    assert max(result.milestones.values()) == pytest.approx(result.seconds)
    # Kubeflow is ready before the slowest chain ends: it does not sit on the certificate's path.
    assert result.milestones["kubeflow"] <= result.seconds


def test_every_resource_type_of_the_stacks_has_a_sourced_time(stack_run):
    for resource in plan_of(stack_run)["resources"]:
        cost = provisioning(resource)
        if cost.seconds:
            assert cost.source.startswith(("https://", "estimate")), resource["type"]
            assert cost.what != "other AWS resource", resource["type"]


# --- The engine's parallelism and tenancy at scale -------------------------------------------------------


def test_with_slots_for_everything_the_schedule_is_the_critical_chain(stack_run):
    from tools.critical_path import schedule

    plan = plan_of(stack_run)
    assert schedule(plan, 10**9).seconds == estimate(plan).seconds


def test_one_slot_takes_every_operation_in_turn_and_fewer_slots_never_finish_sooner(stack_run):
    from tools.critical_path import schedule

    plan = plan_of(stack_run)
    one = schedule(plan, 1)
    assert one.seconds == one.busy_seconds == sum(provisioning(r).seconds for r in plan["resources"])
    times = [schedule(plan, slots).seconds for slots in (1, 2, 4, 8, 16, 10**9)]
    assert times == sorted(times, reverse=True) and times[0] > times[-1]


def test_operations_wait_for_a_free_slot_and_for_what_they_wait_for():
    from tools.critical_path import schedule

    role = "aws:iam/role:Role"  # 10 s each
    plan = {"stack": "t", "resources": [
        {"urn": f"r{i}", "type": role, "name": f"r{i}", "custom": True, "dependencies": []} for i in range(4)
    ] + [{"urn": "after", "type": role, "name": "after", "custom": True, "dependencies": ["r3"]}]}
    assert schedule(plan, 2).seconds == 30  # r0 r1, then r2 r3, then after
    assert schedule(plan, 4).seconds == 20
    with pytest.raises(ValueError):
        schedule(plan, 0)


def _table_seconds(cell: str) -> int:
    import re

    found = re.match(r"\**(?:(\d+) h )?(\d+) min", cell.strip())
    assert found, cell
    return int(found.group(1) or 0) * 3600 + int(found.group(2)) * 60


def test_the_at_scale_table_adds_the_platform_to_the_largest_or_to_every_tenancy_stack():
    from tools.critical_path import at_scale_table

    stack = {"seconds": 0, "operations": 6}
    row = {"profiles": 20, "parallel": 8, "oneStack": {**stack, "seconds": 3600 * 2}, "platform": {**stack, "seconds": 600},
           "tenancyStacks": [{**stack, "seconds": 1200}, {**stack, "seconds": 1800}]}
    line = at_scale_table([row])[2]
    cells = [cell.strip() for cell in line.strip("|").split("|")]
    assert cells[0] == "20" and cells[1] == "8"
    assert [_table_seconds(cell) for cell in cells[2:]] == [7200, 600, 1800, 2400, 3600]


def test_performance_md_at_scale_table_adds_up():
    """The generated table's split columns are the platform plus the largest tenancy stack, or plus all ten of
    equal size (the generated profiles are alike in every part), within the table's rounding to minutes."""
    from tools.critical_path import AT_SCALE_BEGIN, AT_SCALE_END, AT_SCALE_PARTS
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "performance.md").read_text()
    table = text[text.index(AT_SCALE_BEGIN) + len(AT_SCALE_BEGIN):text.index(AT_SCALE_END)].strip().splitlines()
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in table[2:]]
    assert [(row[0], row[1]) for row in rows] == [("1,000", "8"), ("1,000", "32"), ("10,000", "8"), ("10,000", "32")]
    for row in rows:
        one, platform, largest, together, sequence = (_table_seconds(cell) for cell in row[2:])
        assert abs(together - (platform + largest)) <= 60
        assert abs(sequence - (platform + AT_SCALE_PARTS * largest)) <= 60 * (AT_SCALE_PARTS + 1)
        # Split and deployed in parallel, the whole is shorter than one stack holding every profile.
        assert together < one
