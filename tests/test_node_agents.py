"""The estate's node agents: an NVIDIA device plugin that tolerates every GPU pool's taint, and the Pod Identity
agent where the plan has associations."""

from __future__ import annotations

from analysis.node_agents import gpu_taints, node_agent_problems, record_node_agents, tolerates
from tests.plans import evaluated_plan

PLUGIN = {"metadata": {"name": "nvidia-device-plugin-daemonset", "namespace": "kube-system"},
          "spec": {"template": {"spec": {"tolerations": [{"key": "workload", "operator": "Equal", "value": "ai-ml",
                                                          "effect": "NoSchedule"}]}}}}
AGENT = {"metadata": {"name": "eks-pod-identity-agent", "namespace": "kube-system"},
         "spec": {"template": {"spec": {"tolerations": [{"operator": "Exists"}]}}}}
OTHER = {"metadata": {"name": "aws-node", "namespace": "kube-system"}, "spec": {"template": {"spec": {}}}}


def _estate(*daemonsets) -> dict:
    return {"kubernetes": {"nodeAgents": record_node_agents(list(daemonsets))}}


def test_the_estate_keeps_only_the_device_plugins_and_the_pod_identity_agent():
    assert [a["name"] for a in record_node_agents([OTHER, PLUGIN, AGENT])] == ["eks-pod-identity-agent",
                                                                               "nvidia-device-plugin-daemonset"]


def test_a_device_plugin_that_tolerates_the_karpenter_pools_taint_passes_and_one_that_does_not_is_named():
    plan = evaluated_plan("dev")[0]
    assert gpu_taints(plan) == [("gpu-gpu-a10g-node-pool", {"key": "workload", "value": "ai-ml", "effect": "NoSchedule"})]
    # dev uses Pod Identity: each estate here runs its agent, so only the device plugin is judged.
    assert list(node_agent_problems(_estate(PLUGIN, AGENT), plan)) == []
    narrow = {**PLUGIN, "spec": {"template": {"spec": {"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}]}}}}
    (problem,) = node_agent_problems(_estate(narrow, AGENT), plan)
    assert "gpu-gpu-a10g-node-pool" in problem and "workload=ai-ml:NoSchedule" in problem
    (missing,) = node_agent_problems(_estate(OTHER, AGENT), plan)
    assert "no NVIDIA device plugin DaemonSet runs" in missing


def test_devs_pod_identity_plan_needs_the_agent_and_prods_irsa_plan_does_not():
    dev = evaluated_plan("dev")[0]
    (problem,) = node_agent_problems(_estate(PLUGIN), dev)
    assert problem.startswith("identity.mechanism is podIdentity") and "eks-pod-identity-agent" in problem
    prod = evaluated_plan("prod")[0]
    assert not [p for p in node_agent_problems(_estate(OTHER), prod) if "eks-pod-identity-agent" in p]


def test_the_node_group_pools_taints_are_read_in_the_kubernetes_spelling():
    plan = evaluated_plan("prod")[0]
    taints = gpu_taints(plan)
    assert taints and all(t["effect"] in ("NoSchedule", "NoExecute", "PreferNoSchedule") for _, t in taints)


def test_pod_identity_associations_need_the_agent():
    plan = {"resources": [{"type": "aws:eks/podIdentityAssociation:PodIdentityAssociation", "name": "a", "inputs": {}}]}
    (problem,) = node_agent_problems(_estate(), plan)
    assert "eks-pod-identity-agent" in problem
    assert list(node_agent_problems(_estate(AGENT), plan)) == []
    # An estate recorded before the agents were kept is not judged.
    assert list(node_agent_problems({"kubernetes": {}}, plan)) == []


def test_tolerations_match_as_kubernetes_matches_them():
    taint = {"key": "workload", "value": "ai-ml", "effect": "NoSchedule"}
    assert tolerates([{"operator": "Exists"}], taint)
    assert tolerates([{"key": "workload", "operator": "Exists"}], taint)
    assert not tolerates([{"key": "workload", "operator": "Equal", "value": "other"}], taint)
    assert not tolerates([{"key": "workload", "operator": "Exists", "effect": "NoExecute"}], taint)
    assert not tolerates([{"operator": "Equal", "value": "ai-ml"}], taint)
