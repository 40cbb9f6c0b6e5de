"""The upgrade plan for a live stack switching identity.mechanism or a GPU pool's provisioner."""

from __future__ import annotations

import copy
import io

from analysis.capacity_switch import mechanism
from analysis.upgrade import plan_upgrade, render
from tests.conftest import MARKER_SECRETS
from tests.plans import evaluated_plan
from tests.upstream import CURRENT_VERSION, manifests_path
from tools.preview import Progress, evaluate

_PLANS: dict[str, dict] = {}


def _dev_plan(**settings) -> dict:
    key = repr(sorted(settings.items()))
    if key not in _PLANS:
        _PLANS[key] = evaluate("dev", manifests=str(manifests_path(CURRENT_VERSION)), kubeflow_version=CURRENT_VERSION,
                               secrets=MARKER_SECRETS, progress=Progress(io.StringIO()), settings=settings or None)[0]
    return copy.deepcopy(_PLANS[key])


def test_irsa_to_pod_identity_tells_that_running_pods_keep_their_old_credentials_until_restarted():
    # dev shows Pod Identity; the same stack on IRSA is the live stack before the switch.
    irsa, pod_identity = _dev_plan(**{"identity.mechanism": "irsa"}), _dev_plan()
    assert (mechanism(irsa), mechanism(pod_identity)) == ("irsa", "podIdentity")
    plan = plan_upgrade(irsa, pod_identity, "irsa", "podIdentity")
    (finding,) = [f for f in plan.attention if f.kind == "identity-mechanism"]
    assert finding.subject == "identity.mechanism irsa -> podIdentity"
    assert "keep the IRSA credentials" in finding.what and "restart" in finding.what
    assert plan.needs_attention and "identity.mechanism irsa -> podIdentity" in render(plan)
    (back,) = [f for f in plan_upgrade(pod_identity, irsa).attention if f.kind == "identity-mechanism"]
    assert "no longer serves them" in back.what
    # Without a switch there is no such finding, on either mechanism.
    assert not [f for f in plan_upgrade(irsa, _dev_plan(**{"identity.mechanism": "irsa"})).attention
                if f.kind == "identity-mechanism"]
    assert not [f for f in plan_upgrade(pod_identity, _dev_plan()).attention if f.kind == "identity-mechanism"]


def test_prod_on_irsa_taking_devs_pod_identity_gets_the_identity_mechanism_finding():
    """`make upgrade-plan FROM=26.03 TO=26.03 STACK=prod TO_SET='identity.mechanism=podIdentity'`."""
    live, switched = evaluated_plan("prod"), evaluated_plan("prod", settings={"identity.mechanism": "podIdentity"})
    assert (mechanism(live[0]), mechanism(switched[0])) == ("irsa", "podIdentity")
    (finding,) = [f for f in plan_upgrade(live[0], switched[0]).attention if f.kind == "identity-mechanism"]
    assert finding.subject == "identity.mechanism irsa -> podIdentity" and "restart" in finding.what


def test_moving_a_pool_from_its_node_group_to_karpenter_warns_that_running_gpu_pods_are_evicted():
    groups, karpenter = _dev_plan(**{"gpu.provisioner": "nodeGroups"}), _dev_plan()
    (finding,) = [f for f in plan_upgrade(groups, karpenter).attention if f.kind == "gpu-provisioner"]
    assert finding.subject == "gpu pool gpu-a10g nodeGroups -> karpenter" and "evicting running GPU pods" in finding.what
    (back,) = [f for f in plan_upgrade(karpenter, groups).attention if f.kind == "gpu-provisioner"]
    assert back.subject == "gpu pool gpu-a10g karpenter -> nodeGroups"


def test_moving_a_karpenter_pools_pinned_ami_names_the_drift_that_replaces_its_nodes():
    from analysis.capacity_switch import switch_findings

    source, _ = evaluated_plan("dev")
    from tools.mock_runtime import stack_config

    (pool,) = stack_config("dev")["kubeflow-platform:gpu"]["pools"]
    target, _ = evaluated_plan("dev", settings={"gpu.pools": [{**pool, "amiAlias": "al2023@v20260801"}]})
    (finding,) = [f for f in switch_findings(source, target) if f.kind == "gpu-ami"]
    assert finding.subject == "gpu pool gpu-a10g amiAlias al2023@v20260724 -> al2023@v20260801"
    assert "drifted and replaces it" in finding.what and "do-not-disrupt" in finding.what
    assert not [f for f in switch_findings(source, source) if f.kind == "gpu-ami"]
