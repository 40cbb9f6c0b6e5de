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
