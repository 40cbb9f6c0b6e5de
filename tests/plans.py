"""Plans for the preview and diff tests: evaluated once per session, or built by hand from upstream objects."""

from __future__ import annotations

import copy
import io
import json
from typing import Any

from tests.conftest import MARKER_SECRETS, irsa_settings, pod_identity_usable
from tests.upstream import CURRENT_VERSION, NEEDS_STATIC_KEYS, manifests_path
from tools.plan import CONFIG_GROUP, PLAN_FORMAT
from tools.preview import Progress, evaluate

_PLANS: dict[tuple[str, str, str], tuple[dict[str, Any], list[str]]] = {}


def evaluated_plan(stack: str, version: str = CURRENT_VERSION,
                   settings: dict[str, Any] | None = None) -> tuple[dict[str, Any], list[str]]:
    """The preview plan of `stack` with that upstream release, the marker secrets and any dotted `settings`
    (tools.preview.evaluate's), and its leaks.

    Evaluated once per session; a deep copy is returned so a test cannot change another's plan (a few
    milliseconds: the ConfigGroups' objects are one immutable string each). Not shared with conftest's
    `shared_run`: a preview runs the program in preview mode, where provider-computed outputs stay unknown.
    """
    key = (stack, version, json.dumps(settings or {}, sort_keys=True))
    if key not in _PLANS:
        settings = {**({"kubeflow.objectStore.staticKeys": True} if version in NEEDS_STATIC_KEYS else {}),
                    **((irsa_settings(stack) or {}) if not pod_identity_usable(version) else {}),
                    **(settings or {})}
        _PLANS[key] = evaluate(
            stack,
            manifests=str(manifests_path(version)),
            kubeflow_version=version,
            secrets=MARKER_SECRETS,
            progress=Progress(io.StringIO()),
            settings=settings or None,
        )
    return copy.deepcopy(_PLANS[key])


#: Namespaces no other setting or test uses, for the plans of a stack that chose where Kubeflow runs.
CHOSEN_NAMESPACE = "ml-platform-x7"
CHOSEN_SYSTEM_NAMESPACE = "ml-jobs-q4"
_CHOSEN: dict[tuple[str, str], dict[str, Any]] = {}


def chosen_namespace_plan(stack: str = "dev", version: str = CURRENT_VERSION) -> dict[str, Any]:
    """The preview plan of `stack` with `kubeflow.namespace` (and `kubeflow.systemNamespace`) chosen; once per session,
    a deep copy returned as by `evaluated_plan`."""
    if (stack, version) not in _CHOSEN:
        settings: dict[str, Any] = {"kubeflow.namespace": CHOSEN_NAMESPACE, "kubeflow.systemNamespace": CHOSEN_SYSTEM_NAMESPACE}
        if version in NEEDS_STATIC_KEYS:
            settings["kubeflow.objectStore.staticKeys"] = True
        if not pod_identity_usable(version):
            settings.update(irsa_settings(stack) or {})  # a release whose SDKs cannot use Pod Identity runs on IRSA
        _CHOSEN[(stack, version)], _ = evaluate(
            stack, manifests=str(manifests_path(version)), kubeflow_version=version, secrets=MARKER_SECRETS,
            progress=Progress(io.StringIO()), settings=settings)
    return copy.deepcopy(_CHOSEN[(stack, version)])


def config_group_plan(objects: list[dict], stack: str = "test", name: str = "kubeflow") -> dict[str, Any]:
    """A plan holding one ConfigGroup that applies `objects`: the diff engine without the Kubeflow component.

    The objects are not copied (the upstream releases are large); callers must not change the plan.
    """
    stack_urn = f"urn:pulumi:{stack}::kubeflow-platform::pulumi:pulumi:Stack::kubeflow-platform-{stack}"
    provider = f"urn:pulumi:{stack}::kubeflow-platform::pulumi:pulumi:Stack$pulumi:providers:kubernetes::k8s"
    return {
        "format": PLAN_FORMAT,
        "project": "kubeflow-platform",
        "stack": stack,
        "outputs": {},
        "resources": [
            resource(stack, "pulumi:providers:kubernetes", "k8s", stack_urn, {"kubeconfig": "{}"}),
            resource(stack, CONFIG_GROUP, name, stack_urn, {"objs": objects}, provider=provider,
                     custom=False),
        ],
    }


def resource(stack: str, type_: str, name: str, parent: str, inputs: dict[str, Any], *, provider: str = "",
             custom: bool = True, dependencies: tuple[str, ...] = (), protect: bool = False) -> dict[str, Any]:
    """One plan.json resource entry."""
    return {
        "urn": f"urn:pulumi:{stack}::kubeflow-platform::pulumi:pulumi:Stack${type_}::{name}",
        "type": type_,
        "name": name,
        "parent": parent,
        "provider": provider,
        "custom": custom,
        "dependencies": sorted(dependencies),
        "options": {"protect": protect, "retainOnDelete": False, "deleteBeforeReplace": False,
                    "ignoreChanges": [], "replaceOnChanges": []},
        "inputs": inputs,
    }


def plan_with(plan: dict[str, Any], *objects: dict[str, Any], name_prefix: str = "added") -> dict[str, Any]:
    """A deep copy of `plan` with each Kubernetes object added as a resource of its own (`<name_prefix>-<index>`)."""
    plan = copy.deepcopy(plan)
    for index, obj in enumerate(objects):
        group, _, version = obj["apiVersion"].rpartition("/")
        plan["resources"].append(resource(plan["stack"], f"kubernetes:{group or 'core'}/{version}:{obj['kind']}",
                                          f"{name_prefix}-{index}", "", copy.deepcopy(obj)))
    return plan
