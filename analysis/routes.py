"""Which VirtualServices Istio gives a gateway proxy: the visibility rules of istio/istio@1.24.6 and 1.28.0, in Python.

A route that the gateway's pods are not given is a 404 at the gateway, however right its hosts and paths
are; whether they are given it depends only on `exportTo`, the namespaces involved and the mesh's
default. This module models that one decision so a test can hold the emitted objects to it.

What Istio does (pilot/pkg/model, tag 1.24.6, the mesh the stacks pin; tag 1.28.0, which Kubeflow 1.11.0 and
26.03 ship, does the same, its lines in brackets):

- `initVirtualServices` (push_context.go:1706-1800 [1751-1839]) indexes every VirtualService by the
  gateways it binds to, each name resolved to `<namespace>/<name>` first (virtualservice.go:116-131
  [116-137], config.go:246-274 [233-261]); no `gateways` means the `mesh` gateway
  (push_context.go:1823-1832 [1862-1871]). By `exportTo`:
  - none: the mesh's `defaultVirtualServiceExportTo`, `*` unless set (push_context.go:1739-1753,
    1854-1861 [1778-1792, 1893-1900]);
  - `*` anywhere: public, every namespace sees it (push_context.go:1762-1765 [1801-1804]);
  - `~` (and no `*`): no one (push_context.go:1766 [1805]);
  - else each entry: `.` or the route's own namespace indexes it under that namespace, any other
    namespace under that one (push_context.go:1767-1783 [1806-1822]). A route listing both `.` and its
    own namespace is indexed twice.
- Delegate VirtualServices (no `hosts`) are not indexed themselves; their routes reach a gateway only
  merged into a root (virtualservice.go:199-237 [206-244]). Root merging is not modelled: it changes
  what a visible route contains, not whether it is visible.
- The index is built in `sortConfigByCreationTime` order: creation time, then name, then namespace
  (virtualservice.go:288 [295], config.go:318-333 [305-320]).
- `VirtualServicesForGateway(proxyNamespace, gateway)` (push_context.go:1065-1089 [1107-1131]) returns
  the routes indexed under the proxy's namespace, then those exported to it, then the public ones. A
  gateway proxy asks with its own `ConfigNamespace`, the namespace its pods run in, not the Gateway
  object's (pilot/pkg/networking/core/gateway.go:420 [420]).

Not modelled: Gateway API generated routes (only their order among public routes differs,
push_context.go:1078-1087 [1120-1129]) and the host match between a route and the gateway's servers
(gateway.go:424-432 [424-432]).

Pure Python over plain dicts (the objects a plan applies); no Pulumi, no upstream loading.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

#: The pseudo-gateway of every sidecar (constants.IstioMeshGateway).
MESH_GATEWAY = "mesh"
#: exportTo values with a meaning of their own (pkg/config/visibility).
PUBLIC = "*"
PRIVATE = "."
NONE = "~"
#: Istio's `defaultVirtualServiceExportTo` when the mesh config sets none (push_context.go:1859-1860 [1898-1899]).
ISTIO_DEFAULT_EXPORT_TO = (PUBLIC,)


def resolve_gateway_name(name: str, namespace: str) -> str:
    """A VirtualService's gateway reference as Istio resolves it (config.go:246-274 [233-261]).

    `name` resolves to the route's namespace, `./name` likewise, `name.ns[.svc.cluster.local]` (the legacy
    form) to `ns/name`; `ns/name` stays.
    """
    if name == MESH_GATEWAY:
        return name
    if "/" not in name:
        if "." not in name:
            return f"{namespace}/{name}"
        short, rest = name.split(".", 1)
        return f"{rest.split('.', 1)[0]}/{short}"
    prefix, rest = name.split("/", 1)
    return f"{namespace}/{rest}" if prefix == "." else name


def _namespace(service: dict) -> str:
    return str((service.get("metadata") or {}).get("namespace") or "default")


def _name(service: dict) -> str:
    return str((service.get("metadata") or {}).get("name") or "")


def gateway_names(service: dict) -> list[str]:
    """The resolved gateways a VirtualService binds to; none named means the mesh (push_context.go:1825-1832 [1864-1871])."""
    gateways = (service.get("spec") or {}).get("gateways") or []
    if not gateways:
        return [MESH_GATEWAY]
    return [resolve_gateway_name(str(gateway), _namespace(service)) for gateway in gateways]


def is_delegate(service: dict) -> bool:
    """A delegate has no hosts; only roots that delegate to it carry its routes (virtualservice.go:201-228 [208-235])."""
    return not (service.get("spec") or {}).get("hosts")


@dataclass
class RouteIndex:
    """Istio's `virtualServiceIndex`: routes by (namespace, gateway) and by gateway."""

    private_by_namespace_and_gateway: dict[tuple[str, str], list[dict]] = field(default_factory=dict)
    exported_to_namespace_by_gateway: dict[tuple[str, str], list[dict]] = field(default_factory=dict)
    public_by_gateway: dict[str, list[dict]] = field(default_factory=dict)


def _creation_order(service: dict) -> tuple[str, str, str]:
    # RFC 3339 timestamps in UTC sort as strings; objects not created yet sort first, as Istio's zero time.
    created = str((service.get("metadata") or {}).get("creationTimestamp") or "")
    return created, _name(service), _namespace(service)


#: The last index built (see index_virtual_services): (the services list, its length, default exportTo, the index).
_LAST_INDEX: list[tuple[list, int, tuple, "RouteIndex"]] = []


def index_virtual_services(services: Iterable[dict], default_export_to: Sequence[str] = ISTIO_DEFAULT_EXPORT_TO) -> RouteIndex:
    """Istio's `initVirtualServices` over these VirtualServices (push_context.go:1706-1800 [1751-1839]).

    A trace asks for the same list (a model's VirtualServices) hundreds of times, once per gateway and caller: the
    index of the last list given is kept while the same list object, of the same length, is asked for again."""
    export = tuple(default_export_to)
    if isinstance(services, list) and _LAST_INDEX:
        last, length, last_export, index = _LAST_INDEX[0]
        if last is services and length == len(services) and last_export == export:
            return index
    index = _built_index(services, default_export_to)
    if isinstance(services, list):
        _LAST_INDEX[:] = [(services, len(services), export, index)]
    return index


def _built_index(services: Iterable[dict], default_export_to: Sequence[str]) -> RouteIndex:
    index = RouteIndex()
    candidates = [s for s in services if s.get("kind") == "VirtualService" and not is_delegate(s)]
    for service in sorted(candidates, key=_creation_order):
        namespace = _namespace(service)
        gateways = gateway_names(service)
        export_to = [str(entry) for entry in (service.get("spec") or {}).get("exportTo") or []]
        if not export_to:
            # "We only honor ., *" for the mesh-wide default (push_context.go:1739-1753 [1778-1792]).
            if PRIVATE in default_export_to:
                for gateway in gateways:
                    index.private_by_namespace_and_gateway.setdefault((namespace, gateway), []).append(service)
            elif PUBLIC in default_export_to:
                for gateway in gateways:
                    index.public_by_gateway.setdefault(gateway, []).append(service)
            continue
        if PUBLIC in export_to:
            for gateway in gateways:
                index.public_by_gateway.setdefault(gateway, []).append(service)
            continue
        if NONE in export_to:
            continue
        for target in dict.fromkeys(export_to):  # a set in Istio: each entry once
            for gateway in gateways:
                if target in (PRIVATE, namespace):
                    index.private_by_namespace_and_gateway.setdefault((namespace, gateway), []).append(service)
                else:
                    index.exported_to_namespace_by_gateway.setdefault((target, gateway), []).append(service)
    return index


def virtual_services_for_gateway(
    services: Iterable[dict], proxy_namespace: str, gateway: str,
    default_export_to: Sequence[str] = ISTIO_DEFAULT_EXPORT_TO,
) -> list[dict]:
    """The VirtualServices a proxy in `proxy_namespace` is given for `gateway` (`ns/name`, or `mesh`).

    For an ingress gateway, `proxy_namespace` is the namespace its pods run in (gateway.go:420 [420]). Order
    and repetitions are Istio's (push_context.go:1065-1089 [1107-1131]).
    """
    index = index_virtual_services(services, default_export_to)
    key = (proxy_namespace, gateway)
    return [
        *index.private_by_namespace_and_gateway.get(key, []),
        *index.exported_to_namespace_by_gateway.get(key, []),
        *index.public_by_gateway.get(gateway, []),
    ]


def routes_hidden_from_gateway(
    services: Iterable[dict], proxy_namespace: str, gateway: str,
    default_export_to: Sequence[str] = ISTIO_DEFAULT_EXPORT_TO,
) -> list[str]:
    """`namespace/name` of every VirtualService bound to `gateway` that its pods in `proxy_namespace` are not given."""
    services = list(services)
    bound = [s for s in services if s.get("kind") == "VirtualService" and not is_delegate(s) and gateway in gateway_names(s)]
    given = {id(s) for s in virtual_services_for_gateway(services, proxy_namespace, gateway, default_export_to)}
    return [f"{_namespace(s)}/{_name(s)}" for s in bound if id(s) not in given]
