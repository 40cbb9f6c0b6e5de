"""Upstream NetworkPolicies that admit the ingress gateway name the gateway's real namespace.

Kubeflow's web apps, KFP, the model registry and (from 26.03) Knative's activator and oauth2-proxy are
closed by NetworkPolicies that admit, besides their own namespace, only the `istio-system` namespace,
where upstream's bundled gateway runs (`namespaceSelector` on `kubernetes.io/metadata.name: istio-system`).
The organisation's gateway pods run in `ingress.namespace`; where that is another namespace, every
request through the gateway would be dropped by the CNI before the sidecar sees it.

Policies are found by what they select, not by name (26.03 adds some, renames others): every peer whose
namespace selector names `istio-system` is pointed at the gateway pods' namespace (`ingress.namespace`).
A peer that also selects upstream's ingress gateway pods (`app: istio-ingressgateway`) selects the real
gateway pods by their configured labels (`ingress.selector`); other apps it named (Knative's
`cluster-local-gateway`) keep a peer of their own in istio-system. Peers selecting only other istio-system
pods (istiod, in Dex's policy) are the mesh control plane, not the gateway: they are left, and reported.
Kubernetes labels every Namespace `kubernetes.io/metadata.name: <name>`
(https://kubernetes.io/docs/concepts/services-networking/network-policies/#targeting-a-namespace-by-its-name).
"""

from __future__ import annotations

from manifests.objects import Change, TransformResult, clone, object_ref
from manifests.options import GatewayPodsOptions

#: Where upstream's bundled gateway runs, and the label key Kubernetes sets on every Namespace.
UPSTREAM_GATEWAY_NAMESPACE = "istio-system"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
#: `app` of upstream's ingress gateway pods.
UPSTREAM_INGRESS_GATEWAY_APP = "istio-ingressgateway"


def _names_upstream_gateway_namespace(selector: dict | None) -> bool:
    if not isinstance(selector, dict):
        return False
    if (selector.get("matchLabels") or {}).get(NAMESPACE_NAME_LABEL) == UPSTREAM_GATEWAY_NAMESPACE:
        return True
    return any(
        expression.get("key") == NAMESPACE_NAME_LABEL and expression.get("operator") == "In"
        and UPSTREAM_GATEWAY_NAMESPACE in (expression.get("values") or [])
        for expression in selector.get("matchExpressions") or []
    )


def _selected_apps(selector: dict | None) -> set[str] | None:
    """The `app` values a pod selector requires, or None when it does not select by `app`."""
    if not isinstance(selector, dict):
        return None
    if "app" in (selector.get("matchLabels") or {}):
        return {selector["matchLabels"]["app"]}
    for expression in selector.get("matchExpressions") or []:
        if expression.get("key") == "app" and expression.get("operator") == "In":
            return set(expression.get("values") or [])
    return None


def admits_upstream_gateway(policy: dict) -> bool:
    """True when a NetworkPolicy admits traffic from upstream's gateway namespace."""
    return any(
        _names_upstream_gateway_namespace(peer.get("namespaceSelector"))
        for rule in (policy.get("spec") or {}).get("ingress") or []
        for peer in rule.get("from") or []
    )


def _rewrite_peer(peer: dict, gateway: GatewayPodsOptions) -> tuple[list[dict], str | None]:
    """The peers that replace one `from` peer naming istio-system, and what was done (None: nothing)."""
    apps = _selected_apps(peer.get("podSelector"))
    if apps is not None and UPSTREAM_INGRESS_GATEWAY_APP not in apps:
        # istiod (Dex's policy) or Knative's local gateway alone: not the ingress gateway.
        return [peer], f"left peer selecting app {sorted(apps)} in {UPSTREAM_GATEWAY_NAMESPACE} (not the ingress gateway)"
    replacement, done = dict(peer), []
    if gateway.namespace != UPSTREAM_GATEWAY_NAMESPACE:
        replacement["namespaceSelector"] = {"matchLabels": {NAMESPACE_NAME_LABEL: gateway.namespace}}
        done.append(f"peer namespace {UPSTREAM_GATEWAY_NAMESPACE} -> {gateway.namespace}")
    peers = [replacement]
    if apps is not None:
        replacement["podSelector"] = {"matchLabels": dict(gateway.selector)}
        done.append(f"gateway pods app={UPSTREAM_INGRESS_GATEWAY_APP} -> {dict(gateway.selector)}")
        others = sorted(apps - {UPSTREAM_INGRESS_GATEWAY_APP})
        if others:
            # Knative's local gateway stays where upstream runs it; only the ingress gateway moved.
            local = {"matchExpressions": [{"key": "app", "operator": "In", "values": others}]}
            peers.append({**peer, "podSelector": local})
            done.append(f"kept app {others} in {UPSTREAM_GATEWAY_NAMESPACE}")
    if peers == [peer]:
        return peers, None
    return peers, ", ".join(done)


def admit_gateway_namespace(objects: list[dict], gateway: GatewayPodsOptions) -> TransformResult:
    """Every NetworkPolicy peer that admits upstream's gateway namespace admits the real gateway pods."""
    result, changes = [], []
    for obj in objects:
        if obj.get("kind") != "NetworkPolicy" or not admits_upstream_gateway(obj):
            result.append(obj)
            continue
        copy = clone(obj)
        ref = object_ref(obj)
        for rule in copy["spec"]["ingress"]:
            peers = []
            for peer in rule.get("from") or []:
                if not _names_upstream_gateway_namespace(peer.get("namespaceSelector")):
                    peers.append(peer)
                    continue
                replacement, what = _rewrite_peer(peer, gateway)
                peers.extend(replacement)
                if what:
                    changes.append(Change(ref, what))
            if "from" in rule:
                rule["from"] = peers
        result.append(copy if copy != obj else obj)
    return TransformResult(result, tuple(changes))
