"""Splitting the objects into ordered groups, one `yaml.v2.ConfigGroup` each, chained with depends_on.

Order: every Namespace first, then the admission policies that hold their pods, then cert-manager, then what is left of the mesh, then auth, then Knative, then Kubeflow core, then
the apps, then custom resources that a webhook of this release admits; so every webhook is serving
before anything it admits is applied. Each object lands in exactly one group by the first rule that
matches, and the rule's name is recorded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from manifests.exclusions import RULES_BY_NAME
from manifests.objects import api_group, labels_of, object_key, object_ref

GROUP_ORDER = ("namespaces", "admission", "cert-manager", "mesh", "auth", "knative", "core", "apps", "admitted-resources")


@dataclass(frozen=True)
class PlacementRule:
    name: str
    group: str
    matches: Callable[[dict], bool]


def _matches_exclusion(*names: str) -> Callable[[dict], bool]:
    return lambda obj: any(RULES_BY_NAME[name].matches(obj) for name in names)


_CORE_NAME = re.compile(
    r"^(kubeflow-(admin|edit|view)$|kubeflow-kubernetes-|kubeflow-pipelines|kubeflow-metacontroller|"
    r"ml-pipeline|metadata-|metacontroller|meta-controller|cache-|kfp-|pipeline-|profiles|centraldashboard|"
    r"central-dashboard|dashboard|admission-webhook|poddefaults|workflow-controller|argo|aggregate-to-kubeflow-pipelines|"
    r"mysql|minio|seaweedfs|default-install-config|namespace-labels-data|kubeflow-self-signing-issuer)"
)
_PIPELINES_LABEL = "kubeflow-pipelines"
#: Kubeflow's own platform pieces by their labels, before and after the dashboard repository's renames
#: (26.03: `kustomize.component`; kubeflow/dashboard v2 manifests: `app`, `app.kubernetes.io/component`).
_CORE_COMPONENTS = {"profiles", "centraldashboard", "poddefaults", "metacontroller"}
_CORE_APPS = {"centraldashboard", "kubeflow-dashboard", "poddefaults", "profile-controller"}


def _core(obj: dict) -> bool:
    kind = obj.get("kind")
    if kind in {"CustomResourceDefinition", "PriorityClass"}:
        return True
    labels = labels_of(obj)
    if labels.get("app.kubernetes.io/part-of") == "kubeflow-platform":
        # What the program adds for Kubeflow (the database setup Job, the external Argo's ConfigMap) comes
        # before the apps: Katib's db-manager needs the database the Job creates.
        return True
    if labels.get("application-crd-id") == _PIPELINES_LABEL or labels.get("app.kubernetes.io/name") == _PIPELINES_LABEL:
        return True
    if labels.get("kustomize.component") in _CORE_COMPONENTS or labels.get("app") in _CORE_APPS:
        return True
    return bool(_CORE_NAME.match((obj.get("metadata") or {}).get("name", "")))


PLACEMENT_RULES: tuple[PlacementRule, ...] = (
    # Namespaces come first, on their own: objects registered outside the groups (the central Secret,
    # service account patches) need their namespace before the workloads that read them are applied,
    # and a Namespace needs nothing else.
    PlacementRule("namespaces", "namespaces", lambda obj: obj.get("kind") == "Namespace"),
    # The policies that hold pods to Pod Security baseline (manifests/admission.py), right after the namespaces (whose
    # group alone is retained on delete): no pod of any later group is admitted before them.
    PlacementRule("admission policies", "admission",
                  lambda obj: obj.get("kind") in ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")
                  and labels_of(obj).get("app.kubernetes.io/part-of") == "kubeflow-platform"),
    PlacementRule("cert-manager", "cert-manager", _matches_exclusion("cert-manager")),
    PlacementRule("mesh", "mesh", _matches_exclusion("istio", "istio-crds")),
    PlacementRule("auth", "auth", _matches_exclusion("dex", "oauth2-proxy", "authservice")),
    PlacementRule("knative", "knative", _matches_exclusion("knative")),
    PlacementRule("core: namespaces, CRDs, profiles, dashboard, pipelines", "core", _core),
    PlacementRule("apps: notebooks, katib, kserve, training, tensorboards, volumes, ...", "apps", lambda obj: True),
)


def _admitted_groups(webhook_configurations: list[dict]) -> set[str]:
    groups: set[str] = set()
    for obj in webhook_configurations:
        for webhook in obj.get("webhooks") or []:
            for rule in webhook.get("rules") or []:
                groups.update(group for group in rule.get("apiGroups") or [] if group not in {"", "*"})
    return groups


@dataclass(frozen=True)
class Groups:
    #: group name -> objects in deterministic order
    objects: dict[str, list[dict]]
    #: object ref -> name of the placement rule
    placement: dict[str, str]


#: Groups whose webhooks may not be serving yet when the group itself is applied.
_LATE_GROUPS = ("core", "apps")


def split_into_groups(objects: list[dict]) -> Groups:
    grouped: dict[str, list[dict]] = {name: [] for name in GROUP_ORDER}
    placement: dict[str, str] = {}
    for obj in objects:
        chosen = next(rule for rule in PLACEMENT_RULES if rule.matches(obj))
        grouped[chosen.group].append(obj)
        placement[object_ref(obj)] = chosen.name
    # Custom resources admitted by a webhook that arrives in core or apps wait for a last group, so
    # the webhook's Deployment is up before they are applied (cert-manager's, Istio's and Knative's
    # webhooks come in earlier groups and need no such wait).
    late_webhooks = [
        obj for name in _LATE_GROUPS for obj in grouped[name]
        if obj.get("kind") in {"ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"}
    ]
    admitted = _admitted_groups(late_webhooks)
    crd_groups = {(o.get("spec") or {}).get("group") for o in objects if o.get("kind") == "CustomResourceDefinition"}
    for name in _LATE_GROUPS:
        keep = []
        for obj in grouped[name]:
            group = api_group(obj)
            if group in admitted and group in crd_groups and obj.get("kind") != "CustomResourceDefinition":
                grouped["admitted-resources"].append(obj)
                placement[object_ref(obj)] = f"admitted-resources: {group} is admitted by a webhook of this release"
            else:
                keep.append(obj)
        grouped[name] = keep
    return Groups({name: sorted(items, key=object_key) for name, items in grouped.items()}, placement)
