"""Exclusion of bundled components the organisation already runs (issue 4, point 1).

Each rule selects by kind, API group, namespace, labels and name patterns that hold in every supported
rendering (labels alone do not: Argo's and Katib's objects carry almost none). Rules are checked in
`RULES` order and the first match names the object, so an object is excluded by exactly one rule.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Callable

from manifests.objects import api_group, labels_of, object_ref
from manifests.sources import ManifestError, Problem


@dataclass(frozen=True)
class ExclusionRule:
    name: str
    description: str
    matches: Callable[[dict], bool]


def _meta(obj: dict) -> tuple[str, str, str]:
    metadata = obj.get("metadata") or {}
    return obj.get("kind", ""), metadata.get("namespace") or "", metadata.get("name", "")


def _crd_group(obj: dict) -> str | None:
    if obj.get("kind") != "CustomResourceDefinition":
        return None
    return (obj.get("spec") or {}).get("group", "")


def _is_namespace(obj: dict, names: set[str]) -> bool:
    kind, _, name = _meta(obj)
    return kind == "Namespace" and name in names


def _in_group(group: str | None, *suffixes: str) -> bool:
    return group is not None and any(group == s or group.endswith("." + s) for s in suffixes)


def _istio(obj: dict) -> bool:
    kind, namespace, name = _meta(obj)
    if _crd_group(obj) is not None:
        return False  # CRDs are `istio-crds`: only excluded when the mesh owns them
    labels = labels_of(obj)
    if labels.get("app.kubernetes.io/part-of") == "istio" or labels.get("release") == "istio":
        return True
    if _is_namespace(obj, {"istio-system"}):
        return True
    if namespace == "istio-system":
        # Knative's local gateway Service lives in istio-system but belongs to Knative; everything else
        # there is the bundled control plane, gateways, and gateway policies (global-deny-all in the root
        # namespace would be mesh-wide in the organisation's mesh).
        return labels.get("app.kubernetes.io/name") != "knative-serving"
    return kind == "Gateway" and api_group(obj) == "networking.istio.io" and name in {"kubeflow-gateway", "cluster-local-gateway"}


def _istio_crds(obj: dict) -> bool:
    return _in_group(_crd_group(obj), "istio.io")


_ARGO_NAME = re.compile(r"^(argo|argo-.*|workflow-controller.*)$")


def _argo(obj: dict) -> bool:
    kind, namespace, name = _meta(obj)
    if _crd_group(obj) is not None:
        return _in_group(_crd_group(obj), "argoproj.io")
    # KFP bundles Argo under its own labels (application-crd-id: kubeflow-pipelines), so names decide.
    return bool(_ARGO_NAME.match(name)) and namespace in {"", "kubeflow"} and kind != "Namespace"


_CERT_MANAGER_NAMES = ("cert-manager", "cainjector", "webhook")


def _cert_manager(obj: dict) -> bool:
    kind, namespace, name = _meta(obj)
    if _crd_group(obj) is not None:
        return _in_group(_crd_group(obj), "cert-manager.io")
    if _is_namespace(obj, {"cert-manager"}) or namespace == "cert-manager":
        return True
    labels = labels_of(obj)
    # cluster-scoped RBAC/webhooks and the kube-system leader-election Roles; not Kubeflow's own Issuers.
    return name.startswith("cert-manager") and (
        labels.get("app.kubernetes.io/instance") == "cert-manager" or labels.get("app.kubernetes.io/name") in _CERT_MANAGER_NAMES
    )


def _dex(obj: dict) -> bool:
    kind, namespace, name = _meta(obj)
    if _crd_group(obj) is not None:
        return _in_group(_crd_group(obj), "dex.coreos.com")
    if _is_namespace(obj, {"auth"}) or namespace == "auth":
        return True
    if namespace == "" and kind in {"ClusterRole", "ClusterRoleBinding"} and name == "dex":
        return True
    # The gateway's trust in Dex-issued tokens.
    return kind == "RequestAuthentication" and name.startswith("dex")


def _oauth2_proxy(obj: dict) -> bool:
    kind, namespace, name = _meta(obj)
    return _is_namespace(obj, {"oauth2-proxy"}) or namespace == "oauth2-proxy" or "oauth2-proxy" in name


def _authservice(obj: dict) -> bool:
    # Kubeflow <= 1.7: the oidc-authservice StatefulSet and its EnvoyFilter in istio-system.
    kind, _, name = _meta(obj)
    labels = labels_of(obj)
    return (
        labels.get("app") == "authservice"
        or name.startswith(("authservice", "oidc-authservice"))
        or (kind == "EnvoyFilter" and name == "authn-filter")
    )


def _knative(obj: dict) -> bool:
    kind, namespace, name = _meta(obj)
    if _crd_group(obj) is not None:
        return _in_group(_crd_group(obj), "knative.dev")
    if _is_namespace(obj, {"knative-serving", "knative-eventing"}) or namespace in {"knative-serving", "knative-eventing"}:
        return True
    labels = labels_of(obj)
    return labels.get("app.kubernetes.io/name") in {"knative-serving", "knative-eventing"} or name.endswith(".knative.dev")


#: The label every object of KFP's per-namespace sync carries (Deployment, Service, DecoratorController,
#: the ConfigMaps holding its code and env) in every release since 1.8.
PIPELINES_PROFILE_CONTROLLER_LABEL = ("app", "kubeflow-pipelines-profile-controller")


def _pipelines_profile_controller(obj: dict) -> bool:
    kind, namespace, _ = _meta(obj)
    key, value = PIPELINES_PROFILE_CONTROLLER_LABEL
    return bool(namespace) and kind != "Namespace" and labels_of(obj).get(key) == value


#: CRD groups only KServe's LLM controller serves or uses: its own kinds, and the Gateway API Inference
#: Extension (InferencePool, InferenceModel) that 26.03 ships for it.
_LLM_CRD_KINDS = ("LLMInferenceService", "LLMInferenceServiceConfig")


def _kserve_llm(obj: dict) -> bool:
    kind, _, name = _meta(obj)
    group = _crd_group(obj)
    if group is not None:
        kinds = ((obj.get("spec") or {}).get("names") or {}).get("kind")
        return (group == "serving.kserve.io" and kinds in _LLM_CRD_KINDS) or group == "inference.networking.x-k8s.io"
    if kind in {"ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"}:
        # By what it calls: every webhook of the configuration goes to the LLM controller's Service.
        services = [((w.get("clientConfig") or {}).get("service") or {}).get("name", "") for w in obj.get("webhooks") or []]
        return bool(services) and all(service.startswith("llmisvc") for service in services)
    return name.startswith("llmisvc")


def _named(pattern: str) -> Callable[[dict], bool]:
    compiled = re.compile(pattern)

    def matches(obj: dict) -> bool:
        kind, namespace, name = _meta(obj)
        # Only namespaced objects: cluster-wide RBAC such as `kubeflow-pipelines-edit` must stay.
        return bool(namespace) and kind != "Namespace" and bool(compiled.search(name))

    return matches


RULES: tuple[ExclusionRule, ...] = (
    ExclusionRule("dex", "Dex identity provider (namespace auth, its CRDs, RBAC, JWT trust)", _dex),
    ExclusionRule("oauth2-proxy", "oauth2-proxy (namespace oauth2-proxy, its gateway policy)", _oauth2_proxy),
    ExclusionRule("authservice", "oidc-authservice of older releases and its EnvoyFilter", _authservice),
    ExclusionRule("cert-manager", "cert-manager controller, webhook, cainjector, CRDs, RBAC", _cert_manager),
    ExclusionRule("knative", "Knative Serving and net-istio", _knative),
    ExclusionRule("istio", "Istio control plane, gateways, CNI, istio-system policies, the Kubeflow gateway", _istio),
    ExclusionRule("istio-crds", "Istio CRDs (when the mesh installation owns them)", _istio_crds),
    ExclusionRule("argo", "Argo Workflows controller, its ConfigMap, CRDs, RBAC, PriorityClass", _argo),
    ExclusionRule("mysql", "bundled MySQL for pipelines and Katib, its Secrets and PVCs", _named(r"(^|-)mysql(-|$)")),
    ExclusionRule("minio", "bundled MinIO object store and its credentials Secret", _named(r"(^|-)minio(-|$)")),
    ExclusionRule("seaweedfs", "bundled SeaweedFS object store (newer releases)", _named(r"seaweedfs")),
    ExclusionRule(
        "pipelines-profile-controller",
        "KFP's per-namespace sync (metacontroller hook): access keys for the bundled object store and per-namespace artifact config",
        _pipelines_profile_controller,
    ),
    ExclusionRule(
        "kserve-llm",
        "KServe's LLM controller (llmisvc), its webhook, RBAC, LLMInferenceService and Inference Extension CRDs",
        _kserve_llm,
    ),
)

RULES_BY_NAME = {rule.name: rule for rule in RULES}


def check_rule_names(names: tuple[str, ...] | list[str], config_key: str = "kubeflow.exclude") -> None:
    problems = []
    for index, name in enumerate(names):
        if name in RULES_BY_NAME:
            continue
        close = difflib.get_close_matches(name, RULES_BY_NAME, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        problems.append(Problem(f"{config_key}[{index}]", f"unknown exclusion {name!r}", f"{hint}known: {', '.join(RULES_BY_NAME)}"))
    if problems:
        raise ManifestError(problems)


@dataclass(frozen=True)
class ExclusionResult:
    kept: list[dict]
    #: object ref -> name of the rule that excluded it
    excluded: dict[str, str]


def exclude_components(objects: list[dict], rule_names: tuple[str, ...] | list[str]) -> ExclusionResult:
    """Split objects into kept and excluded-by-rule. Objects are not copied: nothing is changed."""
    check_rule_names(rule_names)
    enabled = [rule for rule in RULES if rule.name in set(rule_names)]
    kept: list[dict] = []
    excluded: dict[str, str] = {}
    for obj in objects:
        rule = next((rule for rule in enabled if rule.matches(obj)), None)
        if rule is None:
            kept.append(obj)
        else:
            excluded[object_ref(obj)] = rule.name
    return ExclusionResult(kept, excluded)
