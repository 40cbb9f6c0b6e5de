"""A profile removed from the stack keeps its namespace (and its users' notebooks and models), and nobody
reaches them any more: traced through the mesh over the dev plan with the removal applied as the cluster
would see it."""

from __future__ import annotations

import pytest

from analysis import trace as t
from analysis.plan_objects import kubernetes_objects
from manifests.argo import FIELD_MANAGER
from manifests.tenancy import CLOSED_WHEN_REMOVED_POLICY
from tests.plans import evaluated_plan

REMOVED = "bob"


def _after_removal(plan: dict, keep_closing_policy: bool = True) -> t.MeshModel:
    """The mesh once `REMOVED` has left `tenancy.profiles`: Pulumi deletes what it registered except the retained
    group (the Namespace and its closing policy); the profile controller's `ns-owner-access-istio` goes with the
    Profile (owner reference); the notebook, its Service and VirtualService, which users made, stay."""
    settings = t.MeshSettings.from_plan(plan)
    registered = [o.obj for o in kubernetes_objects(plan).objects]
    runtime = t.runtime_objects(registered, settings)

    def kept(obj: dict) -> bool:
        metadata = obj.get("metadata") or {}
        if obj.get("kind") == "Profile" and metadata.get("name") == REMOVED:
            return False
        if metadata.get("namespace") != REMOVED:
            return True
        if obj.get("kind") == "Namespace":
            return True
        return keep_closing_policy and obj.get("kind") == "AuthorizationPolicy" and metadata.get("name") == CLOSED_WHEN_REMOVED_POLICY

    users_objects = [o for o in runtime if (o.get("metadata") or {}).get("namespace") == REMOVED and o.get("kind") != "AuthorizationPolicy"]
    others = [o for o in runtime if (o.get("metadata") or {}).get("namespace") != REMOVED]
    return t.MeshModel([o for o in registered if kept(o)] + others + users_objects, settings)


@pytest.fixture(scope="module")
def dev_plan() -> dict:
    return evaluated_plan("dev")[0]


def _callers(model: t.MeshModel) -> list[tuple[str, t.Caller]]:
    host = model.settings.hosts[0]
    notebook = f"https://{host}/notebook/{REMOVED}/{t.TRACE_NOTEBOOK}/"
    in_mesh = f"http://{t.TRACE_NOTEBOOK}.{REMOVED}.svc.cluster.local/"
    return [
        (notebook, t.browser("dan@example.com")),
        (notebook, t.browser("bob@example.com", "bob (its former owner)")),
        (in_mesh, t.workload("alice", "default-editor", {"notebook-name": "x"})),
    ]


def test_nobody_reaches_a_removed_profiles_notebooks(dev_plan):
    model = _after_removal(dev_plan)
    for url, caller in _callers(model):
        result = t.trace_request(model, url, caller)
        assert not result.reached, f"{caller.label} -> {url}:\n{t.render(result)}"


def test_without_the_closing_policy_everyone_would(dev_plan):
    # The finding itself: Istio allows every request to a workload no ALLOW policy selects.
    model = _after_removal(dev_plan, keep_closing_policy=False)
    for url, caller in _callers(model):
        assert t.trace_request(model, url, caller).reached, caller.label


def test_the_closing_policy_outlives_the_profile_and_changes_nothing_while_it_is_there(dev_plan):
    # Its own registration, retained on delete like the namespace, and a server-side apply patch: a profile added
    # again applies onto the policy its removal left (a created object would fail with AlreadyExists).
    (resource,) = [r for r in dev_plan["resources"] if r["name"] == f"tenancy-{REMOVED}-closed-when-removed"]
    assert resource["type"] == "kubernetes:security.istio.io/v1beta1:AuthorizationPolicyPatch"
    assert resource["options"]["retainOnDelete"] is True
    assert resource["inputs"]["metadata"] == {"name": CLOSED_WHEN_REMOVED_POLICY, "namespace": REMOVED,
                                              "annotations": {"pulumi.com/patchForce": "true",
                                                              "pulumi.com/patchFieldManager": FIELD_MANAGER}}
    assert resource["inputs"]["spec"] == {"action": "ALLOW"}  # no rules: allows nothing
    applied = {(o.obj["kind"], o.obj["metadata"]["name"]) for o in kubernetes_objects(dev_plan).objects
               if (o.obj.get("metadata") or {}).get("namespace") == REMOVED}
    assert ("AuthorizationPolicy", CLOSED_WHEN_REMOVED_POLICY) in applied
    # With the profile in place its owner still reaches the notebook (the policy allows nothing, adds nothing).
    model = t.model_from_plan(dev_plan)
    url = f"https://{model.settings.hosts[0]}/notebook/{REMOVED}/{t.TRACE_NOTEBOOK}/"
    assert t.trace_request(model, url, t.browser("bob@example.com")).reached
