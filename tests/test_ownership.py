"""Who owns what the plan touches (analysis.ownership), and the provider behaviour that makes it matter
(manifests/facts/contracts/pulumi-kubernetes.yaml): every test here holds one of those contracts."""

from __future__ import annotations

import copy
import io
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from analysis.ownership import (
    CREATED, EXPECTED, PATCHED, classify, ownership_changes, ownership_rows, ownership_table,
)
from analysis.plan_objects import kubernetes_objects
from manifests.tenancy import kfam_binding_name
from tests.conftest import STACKS
from tests.plans import config_group_plan, evaluated_plan, resource
from tests.upstream import manifests_path
from tools.mock_runtime import stack_config
from tools.preview import Progress, evaluate

REPO_ROOT = Path(__file__).resolve().parent.parent
FIELD_MANAGER = "kubeflow-platform"

#: What an Argo Workflows installation ships (argoproj/argo-workflows@v3.7.8 manifests/base and
#: manifests/cluster-install, as rendered in manifests/quick-start-minimal.yaml): (kind, namespace, name).
ARGO_SHIPS = [
    ("ConfigMap", "argo", "workflow-controller-configmap"),
    ("ServiceAccount", "argo", "argo"), ("ServiceAccount", "argo", "argo-server"),
    ("Role", "argo", "argo-role"), ("RoleBinding", "argo", "argo-binding"),
    ("Deployment", "argo", "workflow-controller"), ("Deployment", "argo", "argo-server"),
    ("Service", "argo", "argo-server"), ("PriorityClass", "", "workflow-controller"),
    *(("ClusterRole", "", name) for name in (
        "argo-aggregate-to-admin", "argo-aggregate-to-edit", "argo-aggregate-to-view", "argo-cluster-role",
        "argo-clusterworkflowtemplate-role", "argo-server-cluster-role", "argo-server-clusterworkflowtemplate-role")),
    *(("ClusterRoleBinding", "", name) for name in (
        "argo-binding", "argo-clusterworkflowtemplate-role-binding", "argo-server-binding",
        "argo-server-clusterworkflowtemplate-role-binding")),
    *(("CustomResourceDefinition", "", f"{plural}.argoproj.io") for plural in (
        "clusterworkflowtemplates", "cronworkflows", "workflowartifactgctasks", "workfloweventbindings", "workflows",
        "workflowtaskresults", "workflowtasksets", "workflowtemplates")),
]
#: What the mesh owner's Istio ships and the platform already has.
MESH_SHIPS = [
    ("Service", "istio-system", "istio-ingressgateway"), ("ConfigMap", "istio-system", "istio"),
    ("Namespace", "", "istio-system"), ("Namespace", "", "kube-system"), ("Namespace", "", "default"),
    ("Namespace", "", "argo"),
    *(("CustomResourceDefinition", "", f"{plural}.{group}") for plural, group in (
        ("virtualservices", "networking.istio.io"), ("gateways", "networking.istio.io"),
        ("authorizationpolicies", "security.istio.io"), ("envoyfilters", "networking.istio.io"))),
]


@pytest.fixture(scope="module", params=STACKS)
def plan(request) -> dict[str, Any]:
    evaluated, _ = evaluated_plan(request.param)
    return evaluated


def _by_kind(ownership, ownership_class: str) -> set[tuple[str, str, str]]:
    return {(r.kind, r.namespace, r.name) for r in ownership.of_class(ownership_class)}


def test_every_object_is_in_exactly_one_class_with_a_reason(plan):
    ownership = classify(plan)
    assert ownership.problems == ()
    keys = [row.key for row in ownership.rows]
    assert len(keys) == len(set(keys))
    assert all(row.ownership in (CREATED, PATCHED, EXPECTED) and row.reason for row in ownership.rows)
    written = {(o.obj["kind"], (o.obj["metadata"].get("namespace") or ""), o.obj["metadata"]["name"])
               for o in kubernetes_objects(plan).objects}
    assert written == _by_kind(ownership, CREATED) | _by_kind(ownership, PATCHED)
    # plan.json's record: one entry per row, with its class.
    assert [(r["kind"], r["namespace"], r["name"], r["class"]) for r in ownership_rows(ownership)] == \
        [(r.kind, r.namespace, r.name, r.ownership) for r in ownership.rows]


def test_no_object_an_enterprise_component_ships_is_created(plan):
    ownership = classify(plan)
    created = _by_kind(ownership, CREATED)
    assert [shipped for shipped in ARGO_SHIPS + MESH_SHIPS if shipped in created] == []
    patched, expected = _by_kind(ownership, PATCHED), _by_kind(ownership, EXPECTED)
    assert ("ConfigMap", "argo", "workflow-controller-configmap") in patched
    assert ("Service", "istio-system", "istio-ingressgateway") in patched
    assert {("Namespace", "", "argo"), ("Namespace", "", "istio-system"),
            ("CustomResourceDefinition", "", "workflows.argoproj.io")} <= expected
    revision = stack_config(plan["stack"])["kubeflow-platform:kubeflow"].get("mesh", {}).get("revision")
    mesh_config = ownership.by_key[("v1", "ConfigMap", "istio-system", f"istio-{revision}" if revision else "istio")]
    assert mesh_config.ownership == EXPECTED and "extensionProviders" in mesh_config.reason


def test_the_argo_configmap_patch_sets_only_the_programs_keys(plan):
    (patch,) = [r for r in plan["resources"] if r["type"] == "kubernetes:core/v1:ConfigMapPatch"]
    assert set(patch["inputs"]["data"]) <= {"artifactRepository", "executor", "workflowDefaults"}
    assert "artifactRepository" in patch["inputs"]["data"]
    # Someone else's ConfigMap: no labels of ours on it, and no key Argo would read as the single `config` form.
    assert "labels" not in patch["inputs"]["metadata"] and "config" not in patch["inputs"]["data"]


def test_a_contributor_made_in_the_dashboard_before_pulumi_up_does_not_make_it_fail(plan):
    """What kfam wrote for every contributor of the stack file (and one the stack does not know), as the
    cluster holds it before `pulumi up`: none of it is an object the stack creates, so no create meets
    AlreadyExists (contract pulumi-kubernetes-create-refuses-an-existing-object)."""
    ownership = classify(plan)
    dashboard: set[tuple[str, str, str, str]] = set()
    contributors = 0
    for row in ownership.of_class(CREATED):
        if row.kind == "RoleBinding" and row.name.startswith("kubeflow-platform-user-"):
            contributors += 1
            user_and_role = row.name.removeprefix("kubeflow-platform-")
            dashboard |= {("rbac.authorization.k8s.io/v1", "RoleBinding", row.namespace, user_and_role),
                          ("security.istio.io/v1beta1", "AuthorizationPolicy", row.namespace, user_and_role)}
    assert contributors
    dashboard.add(("rbac.authorization.k8s.io/v1", "RoleBinding", "alice", kfam_binding_name("dee@example.com", "view")))
    # The profile controller's own objects in every profile namespace, and the namespaces themselves as an
    # earlier removal of the profile left them.
    for namespace in {row.name for row in ownership.rows if row.kind == "Namespace" and "profile namespace" in row.reason}:
        dashboard |= {("rbac.authorization.k8s.io/v1", "RoleBinding", namespace, "namespaceAdmin"),
                      ("security.istio.io/v1beta1", "AuthorizationPolicy", namespace, "ns-owner-access-istio"),
                      ("v1", "ServiceAccount", namespace, "default-editor"), ("v1", "Namespace", "", namespace)}
    assert ownership.collisions(dashboard) == []


def test_a_created_object_that_exists_is_named_as_a_failing_create():
    # The same check fails where it must: the contributor objects as the stack named them before (kfam's name).
    obj = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
           "metadata": {"name": kfam_binding_name("bob@example.com", "edit"), "namespace": "alice"}}
    ownership = classify(config_group_plan([obj]))
    (line,) = ownership.collisions([("rbac.authorization.k8s.io/v1", "RoleBinding", "alice", obj["metadata"]["name"])])
    assert "AlreadyExists" in line and "ConfigGroup kubeflow" in line


def _with_ownership_export(plan: dict[str, Any], owners=(), expected=()) -> dict[str, Any]:
    plan = copy.deepcopy(plan)
    plan["outputs"]["ownership"] = {"owners": list(owners), "expected": list(expected)}
    return plan


def test_creating_an_object_someone_else_owns_is_a_problem():
    configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "workflow-controller-configmap", "namespace": "argo"}}
    owner = {"apiVersion": "v1", "kind": "ConfigMap", "namespace": "argo", "name": "workflow-controller-configmap",
             "owner": "the enterprise's Argo"}
    (problem,) = classify(_with_ownership_export(config_group_plan([configmap]), owners=[owner])).problems
    assert "belongs to the enterprise's Argo" in problem and "patch it instead" in problem
    expected = {**owner, "reason": "must exist"}
    (problem,) = classify(_with_ownership_export(config_group_plan([configmap]), expected=[expected])).problems
    assert "declares it expected" in problem


def _patch_plan(stack: str = "test") -> dict[str, Any]:
    plan = config_group_plan([])
    plan["resources"].append(resource(stack, "kubernetes:core/v1:ConfigMapPatch", "argo", plan["resources"][0]["parent"], {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "workflow-controller-configmap", "namespace": "argo"}, "data": {"executor": "{}"}}))
    return plan


def test_the_diff_names_an_object_that_moves_between_classes():
    configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "workflow-controller-configmap", "namespace": "argo"}}
    before, after = classify(config_group_plan([configmap])), classify(_patch_plan())
    assert ownership_changes(before, after) == [
        "v1 ConfigMap argo/workflow-controller-configmap: created -> patched "
        "(someone else's object: server-side apply of the stack's fields only)"]
    assert ownership_changes(after, after) == []


def test_the_preview_table_counts_each_class_and_lists_what_is_not_the_stacks_own(plan):
    lines = ownership_table(classify(plan))
    assert re.match(r"^Ownership: \d+ created, \d+ patched, \d+ expected$", lines[0])
    text = "\n".join(lines)
    assert "v1 ConfigMap argo/workflow-controller-configmap by ConfigMapPatch" in text
    assert "v1 Namespace istio-system: " in text
    assert "problem:" not in text


def _patches(plan: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [r for r in plan["resources"] if r["type"].startswith("kubernetes:") and r["type"].endswith("Patch")]


def test_every_patch_carries_the_programs_field_manager(plan):
    patches = _patches(plan)
    assert {r["type"].rsplit(":", 1)[1] for r in patches} >= {"ConfigMapPatch", "ServicePatch", "NamespacePatch"}
    for patch in patches:
        annotations = patch["inputs"]["metadata"].get("annotations")
        if annotations == "(known after deploy)":
            # The gateway Service's annotations wait for the certificate's ARN; its component sets the manager.
            assert patch["type"] == "kubernetes:core/v1:ServicePatch"
            continue
        assert annotations["pulumi.com/patchFieldManager"] == FIELD_MANAGER, patch["name"]


def test_only_patches_of_fields_the_stack_must_hold_are_forced(plan):
    for patch in _patches(plan):
        annotations = patch["inputs"]["metadata"].get("annotations")
        if not isinstance(annotations, Mapping):
            continue
        forced = annotations.get("pulumi.com/patchForce") == "true"
        # Profile namespaces carry the stack's labels, and the policy that closes a removed profile's namespace
        # is the stack's, also where an earlier stack left it; the enterprise's Argo keeps what it set.
        stacks_own = patch["type"] == "kubernetes:core/v1:NamespacePatch" or (
            patch["type"] == "kubernetes:security.istio.io/v1beta1:AuthorizationPolicyPatch"
            and patch["name"].endswith("-closed-when-removed"))
        assert forced == stacks_own, patch["name"]


def test_the_kubernetes_provider_neither_upserts_nor_forces_patches(plan):
    (provider,) = [r for r in plan["resources"] if r["type"] == "pulumi:providers:kubernetes"]
    inputs = provider["inputs"]
    assert "upsertExistingObjects" not in inputs and "enablePatchForce" not in inputs
    # Patch resources need server-side apply, the provider's default.
    assert inputs.get("enableServerSideApply") in (None, True, "true")


def test_patched_objects_are_never_deleted_and_the_argo_keys_go_with_the_stack(plan):
    ownership = classify(plan)
    configmap = ownership.by_key[("v1", "ConfigMap", "argo", "workflow-controller-configmap")]
    # Deleting the patch relinquishes the program's keys and leaves the ConfigMap.
    assert configmap.ownership == PATCHED and not configmap.retained
    for row in ownership.of_class(PATCHED):
        if row.kind == "Namespace":
            assert row.retained, row.ref


def test_crds_and_namespaces_are_retained_on_delete(plan):
    ownership = classify(plan)
    kept = [row for row in ownership.of_class(CREATED) if row.kind in ("CustomResourceDefinition", "Namespace")]
    assert kept
    assert [row.ref for row in kept if not row.retained and row.source.startswith("ConfigGroup ")] == []


def _ancestry(plan: Mapping[str, Any]):
    by_urn = {r["urn"]: r for r in plan["resources"]}
    children: dict[str, list[str]] = {}
    for r in plan["resources"]:
        children.setdefault(r["parent"], []).append(r["urn"])

    def descendants(urn: str) -> set[str]:
        found, stack = set(), [urn]
        while stack:
            for child in children.get(stack.pop(), []):
                if child not in found:
                    found.add(child)
                    stack.append(child)
        return found

    def waits_for(urn: str) -> set[str]:
        """Every resource `urn` is applied after: its dependencies and its ancestors', a component's children
        with it, transitively."""
        seen: set[str] = set()
        pending = [urn]
        while pending:
            current = by_urn.get(pending.pop())
            if current is None:
                continue
            for parent in [current["parent"]]:
                if parent in by_urn and parent not in seen:
                    pending.append(parent)
            for dependency in current["dependencies"]:
                for reached in {dependency} | descendants(dependency):
                    if reached not in seen:
                        seen.add(reached)
                        pending.append(reached)
        return seen

    return waits_for


def test_every_custom_resource_has_its_crd_in_an_earlier_or_the_same_group_or_expected(plan):
    ownership = classify(plan)
    objects = kubernetes_objects(plan).objects
    crd_source = {(o.obj["spec"]["group"], o.obj["spec"]["names"]["kind"]): o.urn
                  for o in objects if o.obj["kind"] == "CustomResourceDefinition"}
    waits_for = _ancestry(plan)
    missing = []
    for o in objects:
        api_version = o.obj["apiVersion"]
        group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
        if "." not in group or group.endswith(".k8s.io") and group != "gateway.networking.k8s.io":
            continue
        source = crd_source.get((group, o.obj["kind"]))
        if source is None:
            if not any(r.kind == "CustomResourceDefinition" and r.ownership == EXPECTED and r.name.endswith("." + group)
                       for r in ownership.rows):
                missing.append(f"{o.key}: no CRD created or expected")
        elif source != o.urn and source not in waits_for(o.urn):
            missing.append(f"{o.key}: applied without waiting for its CRD's group")
    assert missing == []


def test_every_group_waits_for_the_one_before_and_nothing_skips_the_await(plan):
    def annotations(obj: Mapping[str, Any]) -> Mapping[str, Any]:
        found = (obj.get("metadata") or {}).get("annotations")
        return found if isinstance(found, Mapping) else {}

    skipping = [o.key for o in kubernetes_objects(plan).objects if annotations(o.obj).get("pulumi.com/skipAwait") == "true"]
    assert skipping == []
    # A ConfigGroup's skipAwait input turns the await off for all its objects (default false).
    assert [r["name"] for r in plan["resources"]
            if r["type"] == "kubernetes:yaml/v2:ConfigGroup" and (r.get("inputs") or {}).get("skipAwait")] == []
    # Readiness is the provider's own per kind; no object replaces it with a waitFor condition.
    assert [o.key for o in kubernetes_objects(plan).objects if "pulumi.com/waitFor" in annotations(o.obj)] == []
    kubeflow = [r for r in plan["resources"] if r["type"] == "kubernetes:yaml/v2:ConfigGroup"
                and r["name"].startswith("kubeflow-") and not r["name"].endswith("-crds")]
    # Each group but the first depends on an earlier one, so a webhook's Deployment is available (awaited)
    # before the objects it admits arrive.
    first = [g["name"] for g in kubeflow if not any(d.split("::")[-1].startswith("kubeflow-") for d in g["dependencies"])]
    assert len(first) == 1, first


def test_the_database_job_completes_before_its_consumers_are_applied(plan):
    objects = kubernetes_objects(plan).objects
    (job,) = [o for o in objects if o.obj["kind"] == "Job" and o.obj["metadata"]["name"] == "kubeflow-platform-databases"]
    (katib,) = [o for o in objects if o.obj["kind"] == "Deployment" and o.obj["metadata"]["name"] == "katib-db-manager"]
    assert job.urn in _ancestry(plan)(katib.urn)


def test_docs_say_only_a_refresh_puts_back_what_was_removed_out_of_band():
    profiles = (REPO_ROOT / "docs" / "profiles.md").read_text(encoding="utf-8")
    assert "pulumi up --refresh" in profiles
    assert "`pulumi up` puts back what someone removed" not in profiles


def test_without_kept_namespaces_a_profile_namespace_is_created_and_deleted_with_the_profile():
    plan, _ = evaluate("dev", manifests=str(manifests_path()), progress=Progress(io.StringIO()),
                       settings={"kubeflow.keepCrdsAndNamespaces": False})
    ownership = classify(plan)
    assert ownership.problems == ()
    for profile in stack_config("dev")["kubeflow-platform:tenancy"]["profiles"]:
        row = ownership.by_key[("v1", "Namespace", "", profile["name"])]
        assert row.ownership == CREATED and not row.retained and "profile controller" in row.reason


def test_an_opted_in_argo_service_account_is_patched_as_the_enterprise_argos():
    plan, _ = evaluate("dev", manifests=str(manifests_path()), progress=Progress(io.StringIO()),
                       # On IRSA, whose role annotation is the patch (with Pod Identity an association serves it).
                       settings={"identity.argoServiceAccounts": ["argo-server"], "identity.mechanism": "irsa"})
    ownership = classify(plan)
    row = ownership.by_key[("v1", "ServiceAccount", "argo", "argo-server")]
    assert row.ownership == PATCHED and "enterprise's Argo" in row.reason
    assert ownership.problems == ()
