"""Schema validation errors name the object and field; groups place every object by a named rule."""

from __future__ import annotations

from manifests.groups import GROUP_ORDER, split_into_groups
from manifests.validate import validate_objects


def test_unknown_field_in_a_builtin_kind_names_object_and_path():
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "namespace": "kubeflow"},
        "spec": {"selector": {}, "template": {"spec": {"containers": [{"name": "c", "image": "i", "imagePullPolicyy": "Always"}]}}},
    }
    (problem,) = validate_objects([deployment])
    assert problem.ref == "Deployment kubeflow/d"
    assert problem.path == "spec.template.spec.containers[0]" and "imagePullPolicyy" in problem.message


def test_custom_resource_is_checked_strictly_against_its_crd():
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.corp.example"},
        "spec": {
            "group": "corp.example",
            "names": {"kind": "Widget", "plural": "widgets"},
            "scope": "Namespaced",
            "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object", "properties": {"size": {"type": "integer"}}}}}}}],
        },
    }
    widget = {"apiVersion": "corp.example/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "n"}, "spec": {"size": "big", "colour": "red"}}
    messages = sorted(str(problem) for problem in validate_objects([crd, widget]))
    assert any("Widget n/w: spec.size" in m for m in messages)
    assert any("Widget n/w: spec" in m and "colour" in m for m in messages)


def test_custom_resource_without_any_schema_is_reported_not_skipped():
    (problem,) = validate_objects([{"apiVersion": "corp.example/v1", "kind": "Gadget", "metadata": {"name": "g"}}])
    assert "no schema" in problem.message


def test_every_object_lands_in_exactly_one_group_by_a_named_rule():
    objects = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "cert-manager"}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kubeflow"}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "dex", "namespace": "auth"}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "katib-ui", "namespace": "kubeflow"}},
    ]
    groups = split_into_groups(objects)
    assert list(groups.objects) == list(GROUP_ORDER)
    assert [o["metadata"]["name"] for o in groups.objects["namespaces"]] == ["cert-manager", "kubeflow"]
    assert groups.objects["cert-manager"] == groups.objects["core"] == []
    assert [o["metadata"]["name"] for o in groups.objects["auth"]] == ["dex"]
    assert groups.placement["Deployment kubeflow/katib-ui"].startswith("apps")
