"""An offline trace of one request through the mesh, hop by hop, the way Istio 1.28 would handle it.

Input: the Kubernetes objects a plan applies (analysis.plan_objects) and the few stack settings the plan records
in its `meshTrace` output (where the gateway pods run and with which labels and account, the trust domain, the
Kubeflow hosts, how the gateway derives `kubeflow-userid`) and, when present, `transformReport.mesh` (data plane,
mTLS). Output: every hop with the object that decided it and why, and whether the request reaches its backend.

The hops, in the order the proxies run them:

in-mesh caller    a pod has a sidecar only where istiod's injection webhook gives it one (`injector_webhook`,
                  `has_sidecar`: the revision's namespaceSelector/objectSelector, then injectRequired); without one it
                  sends plaintext, with no principal, no DestinationRule and no Sidecar resource; in ambient an
                  enrolled pod sends HBONE mTLS.
gateway pods      Gateways whose `selector` is a subset of the gateway pods' labels, any namespace
                  (istio/istio@1.28.0 pilot/pkg/model/push_context.go:2407-2452; PILOT_SCOPE_GATEWAY_TO_NAMESPACE off).
server host       the request's host against each server's hosts; `ns/host` limits a host to routes of namespace
                  `ns` (pkg/config/host/names.go:110-133), wildcards as host.Name.Matches (pkg/config/host/name.go:37-60).
                  Every server of every selected Gateway on the port shares one route configuration, one virtual host
                  per hostname; Envoy picks the most specific (gateway.go:411-550).
EnvoyFilter       an EnvoyFilter patches the gateway when it sits in the root namespace or the pods' namespace and its
                  workloadSelector is a subset of their labels (push_context.go:2284-2357, policyattachment.go:109-136);
                  the identity filter (manifests/identity.py) strips client-sent identity headers first.
ext_authz         CUSTOM policies, first (listener_builder.go:405-410; authz builder/builder.go:110-145): the auth
                  proxy is asked when a CUSTOM rule matches; a browser with a session on the host (its cookies cover
                  the host and the callback's) is let through with `x-auth-request-email`, anyone else is sent to the
                  login.
jwt_authn         RequestAuthentication (policy_applier.go:143-170, 250-290, as Envoy enforces it): no token passes;
                  an unknown issuer, an expired or not yet valid token is 401, a wrong audience 403; a verified
                  token's outputClaimToHeaders and outputPayloadToHeader are written onto the request, forged ones
                  cleared, and without forwardOriginalToken the token goes no further.
rbac              DENY then ALLOW (analysis.policies); dry-run policies are not enforced.
identity filter   `kubeflow-userid` from the auth proxy's header, else from a verified token's claim (or the issuer's
                  machine user), as the EnvoyFilter's Lua does.
route             VirtualServices the gateway pods are given (analysis.routes, push_context.go:1065-1089) whose hosts
                  intersect the server's (gateway.go:424-434), their HTTP routes in order, all of one host merged
                  (gateway.go:473-507) with catch-all routes moved last (route/route.go:1619-1649); first match wins.
destination       the Service by host, its port's targetPort, the Deployment/StatefulSet whose pod labels its selector
                  picks; no Service or no workload: 503. The Service must be visible to the caller's namespace
                  (its networking.istio.io/exportTo, else meshConfig.defaultServiceExportTo; push_context.go:1080-1097):
                  at the gateway a hidden one has no cluster (503); an in-mesh caller whose sidecar does not hold it
                  (hidden, or not imported by its Sidecar's egress listener for the port) follows the outbound traffic
                  policy (sidecar.go:332-340): REGISTRY_ONLY 502, ALLOW_ANY plaintext passthrough.
NetworkPolicy     ingress rules of the policies selecting the pod (kubernetes.io/docs/concepts/services-networking/
                  network-policies): from namespace/pod selectors and ports; none selecting it: open.
DestinationRule   the rule the caller's proxy applies to the Service (push_context.go:1238-1324), its policy for the
                  Service port (portLevelSettings replace it whole) and a route's subset (its labels narrow the pods,
                  its tls overrides; networking/util/util.go:802-872): no tls is auto mTLS, ISTIO_MUTUAL always mTLS
                  (a sidecar-less destination fails), DISABLE plaintext (networking/core/cluster_tls.go:407-461); a
                  caller without a proxy sends plaintext.
PeerAuthentication workload > namespace > root namespace, the oldest of each, port-level overrides, UNSET inherits,
                  default PERMISSIVE (pilot/pkg/security/authn/policy_applier.go:390-466); STRICT refuses a plaintext
                  caller; DISABLE carries no peer identity.
sidecar authz     RequestAuthentication and CUSTOM, DENY, ALLOW of the destination workload (model/authorization.go:84-113).
ambient           ztunnel enforces the selector policies at L4 only: HTTP attributes fail safe (an ALLOW rule using
                  them matches nothing, a DENY rule ignores them: authz model/model.go:344-354); L7 policy is enforced
                  by a waypoint the Service or namespace uses (`istio.io/use-waypoint`), on policies that name it
                  through targetRefs (policyattachment.go:151-198; https://istio.io/v1.28/docs/ambient/usage/l4-policy/).

A shape the trace does not evaluate raises policies.NotModelled naming it (exit 2 of `make trace`, a problem of the
preview): see docs/mesh-trace.md "What it refuses".

Controllers create some objects at run time that the plan cannot hold; the trace adds the ones Kubeflow's paths
depend on, each with its source (`runtime_objects`): the profile controller's `ns-owner-access-istio` policy and
a notebook server per profile.

Pure Python over plain dicts; no Pulumi.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from analysis import policies as authz
from analysis.routes import MESH_GATEWAY, gateway_names, virtual_services_for_gateway

#: The mesh's root namespace unless meshConfig says otherwise (istio/istio@1.28.0 pkg/config/mesh/mesh.go:91).
DEFAULT_ROOT_NAMESPACE = "istio-system"
#: The Kubernetes label every namespace carries with its name (GA in Kubernetes 1.22,
#: https://kubernetes.io/docs/reference/labels-annotations-taints/#kubernetes-io-metadata-name).
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
#: What Kubeflow's profile controller calls its per-profile ALLOW policy
#: (kubeflow/kubeflow@v1.10.0 components/profile-controller/controllers/profile_controller.go:51).
OWNER_POLICY = "ns-owner-access-istio"
#: The notebook server the trace assumes in every profile, to follow `/notebook/<profile>/<name>/`.
TRACE_NOTEBOOK = "trace-notebook"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job")


class TraceError(ValueError):
    """The question cannot be asked (bad URL, a plan without the trace's settings): a user error, exit 2."""


# --------------------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Issuer:
    issuer: str
    user_claim: str | None = None
    machine_user: str | None = None


@dataclass(frozen=True)
class MeshSettings:
    """What the trace needs beyond the objects: from the plan's `meshTrace` output and `transformReport.mesh`."""

    gateway_namespace: str = "istio-system"
    gateway_labels: Mapping[str, str] = field(default_factory=lambda: {"istio": "ingressgateway"})
    gateway_service_account: str = "istio-ingressgateway-service-account"
    trust_domain: str = "cluster.local"
    root_namespace: str = DEFAULT_ROOT_NAMESPACE
    hosts: tuple[str, ...] = ()
    user_header: str = "kubeflow-userid"
    user_source_header: str = "x-auth-request-email"
    lowercase_user: bool = False
    user_id_prefix: str = ""
    email_domains: tuple[str, ...] = ("*",)
    issuers: tuple[Issuer, ...] = ()
    #: EnvoyFilter `namespace/name` that sets the identity headers.
    identity_filter: str = ""
    #: sidecar | ambient (transformReport.mesh.dataPlane; default sidecar).
    data_plane: str = "sidecar"
    #: permissive | strict: the mesh-wide mTLS mode when no PeerAuthentication says otherwise.
    mtls: str = "permissive"
    #: The Istio revision whose injector the stack joins (transformReport.mesh.revision); None: the default revision.
    revision: str | None = None
    #: The host the auth proxy's OIDC callback is on; None: the first host.
    login_callback_host: str | None = None
    #: The auth proxy's cookie domains (`.example.com`); empty: host-only cookies.
    cookie_domains: tuple[str, ...] = ()
    #: Whether the plan says how the login's cookies are scoped (plans of older versions do not).
    login_known: bool = False
    #: istiod's PILOT_JWT_ENABLE_REMOTE_JWKS (istio/istio@1.28.0 pilot/pkg/features/pilot.go:43-53); only its default,
    #: istiod fetching every jwksUri (`false` or `istiod`), is modelled.
    jwks_fetch_mode: str = "istiod"
    #: The mesh's Istio minor version (kubeflow.mesh.istioVersion, the plan's `meshTrace.istioVersion`): where Istio's
    #: policy rules changed (1.25: source serviceAccounts, waypoint default policies; 1.28: spaceDelimitedClaims), the
    #: trace follows this version or refuses. Plans without it are judged as Istio 1.28.
    istio_version: str = "1.28"
    #: meshConfig.outboundTrafficPolicy.mode (transformReport.mesh.outboundTrafficPolicy): where a sidecar sends a host
    #: its scope does not import. Istio's own default is ALLOW_ANY (istio/istio@1.28.0 pkg/config/mesh/mesh.go:83).
    outbound_traffic_policy: str = "ALLOW_ANY"
    #: meshConfig.defaultServiceExportTo and defaultDestinationRuleExportTo: the visibility of a Service or a
    #: DestinationRule that names none. Istio's default is `*` (push_context.go:1873-1900); of the values, istiod
    #: honours `.` and `*` alone. A plan traces under Istio's default; the estate check compares it with the
    #: mesh config the estate recorded (analysis/estate_checks.py).
    default_service_export_to: tuple[str, ...] = ("*",)
    default_destination_rule_export_to: tuple[str, ...] = ("*",)

    def session_works_on(self, host: str) -> bool:
        """Whether a browser can log in and keep a session on `host`: its CSRF cookie must reach the callback host and
        the session cookie set there must be sent to `host`. Host-only cookies work only on the callback's host
        (RFC 6265 5.3 step 6; a cookie domain covers the host itself and its subdomains, 5.1.3)."""
        if not self.login_known:
            return True
        callback = (self.login_callback_host or (self.hosts[0] if self.hosts else host)).lower()
        if host == callback:
            return True
        covers = lambda domain, name: name == domain.lstrip(".") or name.endswith("." + domain.lstrip("."))  # noqa: E731
        return any(covers(d.lower(), host) and covers(d.lower(), callback) for d in self.cookie_domains)
    #: Email domains whose users may create their own profile in the dashboard (the plan's `profileSelfService`).
    self_service_domains: tuple[str, ...] = ()

    @property
    def gateway_principal(self) -> str:
        return f"{self.trust_domain}/ns/{self.gateway_namespace}/sa/{self.gateway_service_account}"

    @classmethod
    def from_plan(cls, plan: Mapping[str, Any]) -> "MeshSettings":
        outputs = plan.get("outputs") or {}
        data = outputs.get("meshTrace")
        if not isinstance(data, Mapping):
            raise TraceError("the plan has no meshTrace output: preview the stack again with this version of the program")
        mesh = (outputs.get("transformReport") or {}).get("mesh") or {}
        gateway = data.get("gateway") or {}
        identity = data.get("identity") or {}
        return cls(
            gateway_namespace=str(gateway.get("namespace", "istio-system")),
            gateway_labels=dict(gateway.get("labels") or {}),
            gateway_service_account=str(gateway.get("serviceAccount", "istio-ingressgateway-service-account")),
            trust_domain=str(data.get("trustDomain", "cluster.local")),
            root_namespace=str(data.get("rootNamespace", DEFAULT_ROOT_NAMESPACE)),
            hosts=tuple(data.get("hosts") or ()),
            user_header=str(identity.get("userHeader", "kubeflow-userid")),
            user_source_header=str(identity.get("userSourceHeader", "x-auth-request-email")),
            lowercase_user=bool(identity.get("lowercase", False)),
            user_id_prefix=str(identity.get("userIdPrefix", "")),
            email_domains=tuple(identity.get("emailDomains") or ("*",)),
            issuers=tuple(Issuer(i["issuer"], i.get("userClaim"), i.get("machineUser")) for i in identity.get("issuers") or ()),
            identity_filter=str(identity.get("envoyFilter", "")),
            data_plane=str(mesh.get("dataPlane") or "sidecar"),
            mtls=str(mesh.get("mtls") or "permissive").lower(),
            revision=mesh.get("revision") or None,
            login_callback_host=(data.get("login") or {}).get("callbackHost"),
            cookie_domains=tuple((data.get("login") or {}).get("cookieDomains") or ()),
            login_known="login" in data,
            self_service_domains=tuple((outputs.get("profileSelfService") or {}).get("emailDomains") or ()),
            istio_version=str(data.get("istioVersion") or "1.28"),
            outbound_traffic_policy=str(mesh.get("outboundTrafficPolicy") or "ALLOW_ANY").upper(),
        )


# ---------------------------------------------------------------------------------------------- callers


@dataclass(frozen=True)
class Caller:
    """Who sends the request and how."""

    #: browser (a session at the auth proxy), anonymous, token (a bearer JWT), workload (in-mesh, direct).
    kind: str
    label: str
    email: str | None = None
    #: Headers the client sends itself (a forged `kubeflow-userid`, say).
    headers: Mapping[str, str] = field(default_factory=dict)
    #: The bearer token's payload (`iss`, `sub`, `aud`, claims); signatures are assumed valid.
    token: Mapping[str, Any] | None = None
    #: In-mesh caller: its pod's namespace, labels, annotations and service account.
    namespace: str | None = None
    pod_labels: Mapping[str, str] = field(default_factory=dict)
    service_account: str | None = None
    pod_annotations: Mapping[str, str] = field(default_factory=dict)


def browser(email: str, label: str | None = None, headers: Mapping[str, str] | None = None) -> Caller:
    return Caller("browser", label or email, email=email, headers=dict(headers or {}))


def anonymous(headers: Mapping[str, str] | None = None) -> Caller:
    return Caller("anonymous", "anonymous", headers=dict(headers or {}))


def token_caller(label: str, payload: Mapping[str, Any]) -> Caller:
    return Caller("token", label, token=dict(payload))


def workload(namespace: str, service_account: str, labels: Mapping[str, str] | None = None,
             headers: Mapping[str, str] | None = None, label: str | None = None,
             annotations: Mapping[str, str] | None = None) -> Caller:
    """A pod calling in the mesh; whether it has a sidecar (so mTLS and a principal) is the injector's decision
    over its namespace, labels and annotations (`has_sidecar`), as for any pod of the plan."""
    return Caller("workload", label or f"{namespace}/{service_account}", namespace=namespace, service_account=service_account,
                  pod_labels=dict(labels or {}), headers=dict(headers or {}), pod_annotations=dict(annotations or {}))


# ------------------------------------------------------------------------------------------------ trace


@dataclass(frozen=True)
class Hop:
    step: str
    #: Which proxy or component decides: `gateway istio-system`, `sidecar kubeflow/centraldashboard`.
    where: str
    #: kind/namespace/name of the object that decided, or "-".
    decided_by: str
    #: pass | refused | info
    outcome: str
    why: str


@dataclass
class Trace:
    url: str
    caller: Caller
    hops: list[Hop] = field(default_factory=list)
    reached: bool = False
    #: `Deployment kubeflow/centraldashboard`, when reached.
    backend: str | None = None
    #: The identity header the backend receives.
    user: str | None = None
    #: HTTP status a refusal answers with (404, 403, 401, 302, 503); connection refusals have None.
    status: int | None = None
    #: Where a route's redirect sends the client (followed by trace_request).
    redirect: str | None = None

    @property
    def refused_at(self) -> Hop | None:
        return next((hop for hop in self.hops if hop.outcome == "refused"), None)

    def verdict(self) -> "Trace":
        """This trace with only the hop that refused it, if one did: all that its outcome, the tables and a problem's
        wording read."""
        refused = self.refused_at
        return replace(self, hops=[refused] if refused else [])

    def add(self, step: str, where: str, decided_by: str, outcome: str, why: str) -> Hop:
        hop = Hop(step, where, decided_by, outcome, why)
        self.hops.append(hop)
        return hop

    def refuse(self, step: str, where: str, decided_by: str, why: str, status: int | None) -> "Trace":
        self.add(step, where, decided_by, "refused", why)
        self.status = status
        return self


def ref(obj: Mapping[str, Any]) -> str:
    metadata = obj.get("metadata") or {}
    where = f"{metadata['namespace']}/" if metadata.get("namespace") else ""
    runtime = " (run time)" if (metadata.get("annotations") or {}).get("kubeflow-platform/trace-runtime") else ""
    return f"{obj.get('kind')} {where}{metadata.get('name')}{runtime}"


def _ns(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("namespace") or "default")


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def labels_subset(selector: Mapping[str, str] | None, labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in (selector or {}).items())


def label_selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A Kubernetes LabelSelector (matchLabels and matchExpressions); an empty one selects everything."""
    selector = selector or {}
    if not labels_subset(selector.get("matchLabels"), labels):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression.get("key"), expression.get("operator"), expression.get("values") or []
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


# ---------------------------------------------------------------------------------------- host matching


def host_matches(pattern: str, host: str) -> bool:
    """host.Name.Matches (istio/istio@1.28.0 pkg/config/host/name.go:37-60): case-sensitive, as Istio compares; the
    gateway lower-cases its virtual hosts (gateway.go:474) and callers lower-case the request's host."""
    n, o = pattern, host
    n_wild, o_wild = n.startswith("*"), o.startswith("*")
    if n_wild and o_wild:
        return o[1:].endswith(n[1:]) if len(n) < len(o) else n[1:].endswith(o[1:])
    if n_wild:
        return o.endswith(n[1:])
    if o_wild:
        return n.endswith(o[1:])
    return n == o


def host_subset_of(n: str, o: str) -> bool:
    """host.Name.SubsetOf (pkg/config/host/name.go:64-87)."""
    n_wild, o_wild = n.startswith("*"), o.startswith("*")
    if n_wild:
        return o_wild and len(n) >= len(o) and n[1:].endswith(o[1:])
    if o_wild:
        return n.endswith(o[1:])
    return n == o


def hosts_intersection(hosts: Sequence[str], other: Sequence[str]) -> list[str]:
    """host.Names.Intersection (pkg/config/host/names.go:83-99)."""
    result: list[str] = []
    for h in hosts:
        for o in other:
            for candidate in ((h,) if host_subset_of(h, o) else (o,) if host_subset_of(o, h) else ()):
                if candidate not in result:
                    result.append(candidate)
    return result


def hosts_for_namespace(hosts: Sequence[str], namespace: str) -> list[str]:
    """host.NamesForNamespace (pkg/config/host/names.go:110-133): `ns/host` only for namespace ns, `*/host` for all."""
    result = []
    for entry in hosts:
        if "/" in entry:
            ns, _, name = entry.partition("/")
            if ns not in (namespace, "*"):
                continue
            entry = name
        result.append(entry)
    return result


# ------------------------------------------------------------------------------------------ route match


@dataclass(frozen=True)
class HttpRoute:
    """One Envoy route: a VirtualService's HTTP route with one of its matches (each match becomes a route)."""

    service: Mapping[str, Any]
    http: Mapping[str, Any]
    match: Mapping[str, Any] | None
    index: int

    @property
    def catch_all(self) -> bool:
        """route.IsCatchAllRoute (route/route.go:1634-1649): prefix `/` or regex `.*` (no match at all is prefix `/`)
        and no header, method or query match."""
        match = self.match or {}
        uri = match.get("uri") or {"prefix": "/"}
        if uri.get("prefix") != "/" and uri.get("regex") != ".*":
            return False
        return not any(match.get(key) for key in ("headers", "queryParams", "withoutHeaders", "method"))

    def describe(self) -> str:
        uri = (self.match or {}).get("uri") or {}
        how = ", ".join(f"{k} {v!r}" for k, v in uri.items()) or "any path"
        return f"http[{self.index}] {how}"


def _string_match(spec: Mapping[str, Any], value: str | None, ignore_case: bool = False) -> bool:
    """Istio's StringMatch (networking API): exact, prefix, regex (RE2, full match)."""
    if value is None:
        return False
    if ignore_case:
        value = value.lower()
    if "exact" in spec:
        return value == (spec["exact"].lower() if ignore_case else spec["exact"])
    if "prefix" in spec:
        return value.startswith(spec["prefix"].lower() if ignore_case else spec["prefix"])
    if "regex" in spec:
        return re.fullmatch(spec["regex"], value, flags=re.IGNORECASE if ignore_case else 0) is not None
    return True


def route_matches(route: HttpRoute, path: str, headers: Mapping[str, str], method: str) -> bool:
    match = route.match
    if not match:
        return True
    unknown = set(match) - {"uri", "headers", "method", "ignoreUriCase", "name", "withoutHeaders"}
    if unknown:
        raise authz.NotModelled(f"{ref(route.service)} {route.describe()}: match fields not modelled: {sorted(unknown)}")
    if "uri" in match and not _string_match(match["uri"], path.split("?", 1)[0], bool(match.get("ignoreUriCase"))):
        return False
    lowered = {k.lower(): v for k, v in headers.items()}
    for name, spec in (match.get("headers") or {}).items():
        if not _string_match(spec or {}, lowered.get(name.lower())):
            return False
    for name, spec in (match.get("withoutHeaders") or {}).items():
        if name.lower() in lowered and _string_match(spec or {}, lowered[name.lower()]):
            return False
    if "method" in match and not _string_match(match["method"], method):
        return False
    return True


def rewritten_path(route: HttpRoute, path: str) -> str:
    """`rewrite.uri`: replaces the matched prefix, or the whole path for other matches (prefix_rewrite in Envoy)."""
    rewrite = (route.http.get("rewrite") or {}).get("uri")
    if rewrite is None:
        return path
    uri = (route.match or {}).get("uri") or {}
    if "prefix" in uri:
        return rewrite + path[len(uri["prefix"]):]
    return rewrite


def gateway_routes(services: Sequence[Mapping[str, Any]], server_hosts: Sequence[str], request_host: str) -> list[HttpRoute]:
    """The routes of the virtual host serving `request_host`, in Envoy's order (gateway.go:424-507, route.go:1619-1632)."""
    routes: list[HttpRoute] = []
    seen: set[int] = set()
    for service in services:
        if id(service) in seen:
            continue  # listed twice by exportTo: Istio builds its routes once per gateway (gateway.go:448-472)
        seen.add(id(service))
        spec = service.get("spec") or {}
        intersecting = hosts_intersection(hosts_for_namespace(server_hosts, _ns(service)), list(spec.get("hosts") or []))
        if not any(host_matches(h.lower(), request_host) for h in intersecting):
            continue
        for index, http in enumerate(spec.get("http") or []):
            for match in http.get("match") or [None]:
                routes.append(HttpRoute(service, http, match, index))
    return [r for r in routes if not r.catch_all] + [r for r in routes if r.catch_all]


def envoy_domain_rank(domain: str, host: str) -> tuple[int, int] | None:
    """How Envoy ranks a virtual host's domain for a request host (route config's virtual host selection: exact,
    then the longest `*.suffix`, then the longest `prefix*`, then `*`); None: no match."""
    if domain == host:
        return (3, len(domain))
    if domain == "*":
        return (0, 0)
    if domain.startswith("*") and host.endswith(domain[1:]) and len(host) > len(domain) - 1:
        return (2, len(domain))
    if domain.endswith("*") and host.startswith(domain[:-1]) and len(host) > len(domain) - 1:
        return (1, len(domain))
    return None


def gateway_virtual_host_routes(model: "MeshModel", on_port: Sequence[tuple[Mapping, Mapping]], proxy_namespace: str,
                                host: str) -> list[HttpRoute]:
    """The routes of the virtual host Envoy picks for `host` (gateway.go:405-548): for every server on the port and
    every VirtualService its Gateway's pods are given, each intersecting hostname becomes (or extends) one virtual
    host; routes are sorted with catch-alls last (route.go SortVHostRoutes); Envoy picks the most specific domain."""
    # The virtual hosts depend on the servers and the proxy's namespace, not on the host asked for: built once per
    # model for each (asked for again for every path and caller through the gateway).
    built = model.__dict__.setdefault("_virtual_hosts", {})
    key = (tuple((id(gateway_obj), id(server)) for gateway_obj, server in on_port), proxy_namespace)
    if key not in built:
        built[key] = (list(on_port), _virtual_hosts(model, on_port, proxy_namespace), {})
    vhosts, sorted_routes = built[key][1], built[key][2]
    ranked = [(envoy_domain_rank(domain, host), domain) for domain in vhosts]
    ranked = [(rank, domain) for rank, domain in ranked if rank is not None]
    if not ranked:
        return []
    chosen = max(ranked)[1]
    if chosen not in sorted_routes:
        sorted_routes[chosen] = _sorted_routes(vhosts[chosen])
    return list(sorted_routes[chosen])


def _sorted_routes(routes: list[HttpRoute]) -> list[HttpRoute]:
    """A virtual host's routes, duplicates collapsed and catch-alls last."""
    unique: list[HttpRoute] = []
    # Matches kept so far by VirtualService and route index: the check stays local when profiles add thousands.
    kept: dict[tuple[int, int], list] = {}
    for route in routes:
        # The same VirtualService reached through two servers is one set of routes (collapseDuplicateRoutes).
        matches = kept.setdefault((id(route.service), route.index), [])
        if not any(match == route.match for match in matches):
            matches.append(route.match)
            unique.append(route)
    return [r for r in unique if not r.catch_all] + [r for r in unique if r.catch_all]


def _virtual_hosts(model: "MeshModel", on_port: Sequence[tuple[Mapping, Mapping]],
                   proxy_namespace: str) -> dict[str, list[HttpRoute]]:
    """Every virtual host (lower-cased domain -> its routes, in Istio's order) that the servers on the port build from
    the VirtualServices the gateway's pods in `proxy_namespace` are given."""
    vhosts: dict[str, list[HttpRoute]] = {}
    for gateway_obj, server in on_port:
        name = f"{_ns(gateway_obj)}/{_name(gateway_obj)}"
        for service in virtual_services_for_gateway(model.kind("VirtualService"), proxy_namespace, name):
            spec = service.get("spec") or {}
            intersecting = hosts_intersection(hosts_for_namespace(server.get("hosts") or [], _ns(service)),
                                              list(spec.get("hosts") or []))
            if not intersecting:
                continue
            routes = [HttpRoute(service, http, match, index)
                      for index, http in enumerate(spec.get("http") or []) for match in http.get("match") or [None]]
            for hostname in intersecting:
                vhosts.setdefault(hostname.lower(), []).extend(routes)
    return vhosts


# ----------------------------------------------------------------------------------------- the model


@dataclass
class MeshModel:
    """The plan's objects indexed for tracing, with the run-time objects added."""

    objects: list[Mapping[str, Any]]
    settings: MeshSettings

    def __post_init__(self) -> None:
        self.by_kind: dict[str, list[Mapping[str, Any]]] = {}
        for obj in self.objects:
            self.by_kind.setdefault(str(obj.get("kind")), []).append(obj)
        self.namespaces = {_name(o): o for o in self.by_kind.get("Namespace", [])}

    def kind(self, kind: str) -> list[Mapping[str, Any]]:
        return self.by_kind.get(kind, [])

    def in_namespaces(self, kind: str, *namespaces: str) -> list[Mapping[str, Any]]:
        """The objects of `kind` in these namespaces (none given: `default`), in the plan's order; indexed once, so a
        trace reads its namespace's objects, not every profile's."""
        index = self.__dict__.setdefault("_by_namespace", {})
        if kind not in index:
            found: dict[str, list[tuple[int, Mapping[str, Any]]]] = {}
            for position, obj in enumerate(self.kind(kind)):
                found.setdefault((obj.get("metadata") or {}).get("namespace") or "default", []).append((position, obj))
            index[kind] = found
        picked = sorted((item for namespace in set(namespaces) for item in index[kind].get(namespace, [])),
                        key=lambda item: item[0])
        return [obj for _, obj in picked]

    def namespace_labels(self, namespace: str) -> dict[str, str]:
        labels = dict(((self.namespaces.get(namespace) or {}).get("metadata") or {}).get("labels") or {})
        labels[NAMESPACE_NAME_LABEL] = namespace
        return labels

    def profiles(self) -> dict[str, str]:
        """Profile namespaces and their owners: the owner annotation the program writes (manifests/tenancy.py)."""
        found = {}
        for name, obj in self.namespaces.items():
            owner = ((obj.get("metadata") or {}).get("annotations") or {}).get("owner")
            if owner:
                found[name] = owner
        return dict(sorted(found.items()))

    def contributors(self, namespace: str) -> dict[str, str]:
        """user -> role, from the kfam-style policies of the profile (annotations user/role)."""
        if not hasattr(self, "_contributors"):
            # Indexed once: asked for every profile, a walk over every policy each time grows with the square.
            index: dict[str, dict[str, str]] = {}
            for policy in self.kind("AuthorizationPolicy"):
                annotations = (policy.get("metadata") or {}).get("annotations") or {}
                if annotations.get("role") in ("edit", "view") and annotations.get("user"):
                    index.setdefault(_ns(policy), {})[annotations["user"]] = annotations["role"]
            self._contributors = index
        return dict(self._contributors.get(namespace, {}))

    def config_value(self, key: str) -> str | None:
        for config_map in self.kind("ConfigMap"):
            value = (config_map.get("data") or {}).get(key)
            if isinstance(value, str):
                return value
        return None


def runtime_objects(objects: Sequence[Mapping[str, Any]], settings: MeshSettings) -> list[dict[str, Any]]:
    """What Kubeflow's controllers create at run time that Kubeflow's paths depend on.

    - the profile controller's `ns-owner-access-istio` in every profile namespace, with the principals its
      config map gives it (kubeflow/kubeflow@v1.10.0 components/profile-controller/controllers/
      profile_controller.go:419-503); without it no owner reaches their own notebooks;
    - a notebook server `trace-notebook` per profile, as the notebook controller makes one: Service port 80 to the
      container's 8888, pod labels `statefulset`/`notebook-name`, and a VirtualService on ISTIO_GATEWAY/ISTIO_HOST
      for `/notebook/<ns>/<name>/` without exportTo (notebook_controller.go:50-51, 380-384, 438-465, 471-560).
    """
    model = MeshModel(list(objects), settings)
    marker = {"kubeflow-platform/trace-runtime": "true"}

    def principal(key: str, default: str) -> str:
        return model.config_value(key) or default

    gateway = principal("ISTIO_INGRESS_GATEWAY_PRINCIPAL", "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account")
    # The controllers' code defaults name Kubeflow's namespace; the plan says where it is (kubeflow.namespace).
    home = next((_ns(s) for s in model.kind("Service") if _name(s) == "ml-pipeline-ui"), "kubeflow")
    kfp_ui = principal("KFP_UI_PRINCIPAL", f"cluster.local/ns/{home}/sa/ml-pipeline-ui")
    notebooks = principal("NOTEBOOK_CONTROLLER_PRINCIPAL", f"cluster.local/ns/{home}/sa/notebook-controller-service-account")
    header = model.config_value("USERID_HEADER") or settings.user_header
    prefix = model.config_value("USERID_PREFIX") or ""
    istio_gateway = model.config_value("ISTIO_GATEWAY") or f"{home}/kubeflow-gateway"
    istio_host = model.config_value("ISTIO_HOST") or "*"
    added: list[dict[str, Any]] = []
    for namespace, owner in model.profiles().items():
        added.append({
            "apiVersion": "security.istio.io/v1beta1", "kind": "AuthorizationPolicy",
            "metadata": {"name": OWNER_POLICY, "namespace": namespace, "annotations": dict(marker)},
            "spec": {"action": "ALLOW", "rules": [
                {"when": [{"key": f"request.headers[{header}]", "values": [prefix + owner]}],
                 "from": [{"source": {"principals": [gateway, kfp_ui]}}]},
                {"when": [{"key": "source.namespace", "values": [namespace]}]},
                {"to": [{"operation": {"paths": ["/healthz", "/metrics", "/wait-for-drain"]}}]},
                {"from": [{"source": {"principals": [notebooks]}}],
                 "to": [{"operation": {"methods": ["GET"], "paths": ["*/api/kernels"]}}]},
            ]},
        })
        name = TRACE_NOTEBOOK
        labels = {"statefulset": name, "notebook-name": name}
        added.append({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": name, "namespace": namespace, "annotations": dict(marker)},
            "spec": {"selector": {"matchLabels": {"statefulset": name}}, "template": {
                "metadata": {"labels": labels},
                "spec": {"serviceAccountName": "default-editor", "containers": [
                    {"name": name, "ports": [{"containerPort": 8888, "name": "notebook-port", "protocol": "TCP"}]}]}}},
        })
        added.append({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace, "annotations": dict(marker)},
            "spec": {"selector": {"statefulset": name},
                     "ports": [{"name": f"http-{name}", "port": 80, "targetPort": 8888, "protocol": "TCP"}]},
        })
        path = f"/notebook/{namespace}/{name}/"
        added.append({
            "apiVersion": "networking.istio.io/v1alpha3", "kind": "VirtualService",
            "metadata": {"name": f"notebook-{namespace}-{name}", "namespace": namespace, "annotations": dict(marker)},
            "spec": {"hosts": [istio_host], "gateways": [istio_gateway], "http": [{
                "match": [{"uri": {"prefix": path}}], "rewrite": {"uri": path},
                "route": [{"destination": {"host": f"{name}.{namespace}.svc.cluster.local", "port": {"number": 80}}}]}]},
        })
    return added


def model_from_plan(plan: Mapping[str, Any], *, with_runtime: bool = True) -> MeshModel:
    from analysis.plan_objects import kubernetes_objects

    from manifests.identity import SERVICE_ACCOUNT_REQUEST_AUTHENTICATION

    settings = MeshSettings.from_plan(plan)
    objects = [o.obj for o in kubernetes_objects(plan).objects]
    # The cluster's service-account issuer is the stack's too (the program writes its RequestAuthentication from the
    # cluster's identity): its keys are taken as served, like the issuers of the settings.
    own = [rule.get("issuer") for o in objects if o.get("kind") == "RequestAuthentication"
           and _name(o) == SERVICE_ACCOUNT_REQUEST_AUTHENTICATION and _ns(o) == settings.gateway_namespace
           for rule in (o.get("spec") or {}).get("jwtRules") or [] if rule.get("issuer")]
    known = {issuer.issuer for issuer in settings.issuers}
    settings = replace(settings, issuers=(*settings.issuers, *(Issuer(str(i)) for i in own if i not in known)))
    if with_runtime:
        objects += runtime_objects(objects, settings)
    return MeshModel(objects, settings)


# ---------------------------------------------------------------------------------------- workloads


@dataclass(frozen=True)
class Workload:
    obj: Mapping[str, Any]
    namespace: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    service_account: str
    containers: list

    @property
    def ref(self) -> str:
        return ref(self.obj)


def workloads(model: MeshModel, namespace: str) -> list[Workload]:
    found = []
    for kind in WORKLOAD_KINDS:
        for obj in model.in_namespaces(kind, namespace):
            template = (obj.get("spec") or {}).get("template") or {}
            if kind == "Job":
                continue
            metadata = template.get("metadata") or {}
            spec = template.get("spec") or {}
            found.append(Workload(obj, namespace, dict(metadata.get("labels") or {}), dict(metadata.get("annotations") or {}),
                                  str(spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"),
                                  list(spec.get("containers") or [])))
    return found


INJECT = "sidecar.istio.io/inject"
REVISION_LABEL = "istio.io/rev"
INJECTION_LABEL = "istio-injection"
#: Ambient enrollment of a namespace or pod; a pod's `none` opts out (https://istio.io/v1.28/docs/ambient/usage/add-workloads/).
DATAPLANE_MODE = "istio.io/dataplane-mode"


def injector_webhook(model: MeshModel, namespace: str, labels: Mapping[str, str]) -> tuple[str | None, str]:
    """Which of the mesh's injection webhooks the API server calls for a pod (None: none), and why.

    The webhooks istiod's chart renders for one revision (istio/istio@1.28.0 and 1.24.6
    manifests/charts/istio-control/istio-discovery/templates/mutatingwebhook.yaml): `rev.namespace`, the namespace
    labelled `istio.io/rev: <revision>` (`default` for the default revision) without `istio-injection`;
    `rev.object`, a namespace with neither label and a pod labelled `istio.io/rev: <revision>`; for the default
    revision also `namespace`, the namespace labelled `istio-injection: enabled`, and `object`, a namespace with neither
    label and a pod labelled `sidecar.istio.io/inject: "true"` without `istio.io/rev`. Each object selector also
    requires the pod label `sidecar.istio.io/inject` not to be `"false"`. Object selectors read labels only, never
    annotations. The stack's revision is `kubeflow.mesh.revision` (transformReport.mesh.revision)."""
    revision = model.settings.revision or "default"
    default = model.settings.revision is None
    ns_labels = model.namespace_labels(namespace)
    opted_out = labels.get(INJECT) == "false"
    if INJECTION_LABEL in ns_labels:
        value = ns_labels[INJECTION_LABEL]
        if value == "enabled" and default and not opted_out:
            return "namespace", f"namespace {namespace} has istio-injection: enabled"
        if value == "enabled" and default:
            return None, "the pod opts out (label sidecar.istio.io/inject: false)"
        if value == "enabled":
            return None, (f"namespace {namespace} has istio-injection: enabled, which only the default revision's injector "
                          f"selects, and the stack joins revision {revision}")
        return None, f"namespace {namespace} has istio-injection: {value}"
    if REVISION_LABEL in ns_labels:
        if ns_labels[REVISION_LABEL] != revision:
            return None, f"namespace {namespace} has istio.io/rev: {ns_labels[REVISION_LABEL]}, not the stack's revision {revision}"
        if opted_out:
            return None, "the pod opts out (label sidecar.istio.io/inject: false)"
        return "rev.namespace", f"namespace {namespace} has istio.io/rev: {revision}"
    if opted_out:
        return None, "the pod opts out (label sidecar.istio.io/inject: false)"
    if labels.get(REVISION_LABEL) == revision:
        return "rev.object", f"namespace {namespace} has no injection label and the pod is labelled istio.io/rev: {revision}"
    if default and labels.get(INJECT) == "true" and REVISION_LABEL not in labels:
        return "object", f"namespace {namespace} has no injection label and the pod is labelled sidecar.istio.io/inject: true"
    return None, f"namespace {namespace} has no injection label"


def has_sidecar(model: MeshModel, workload: Workload) -> tuple[bool, str]:
    """Whether istiod injects a sidecar into the workload's pods, as its webhook decides: `injector_webhook` picks
    the webhook, then injectRequired (istio/istio@1.28.0 pkg/kube/inject/inject.go:199-300, 1.24.6 :196-297): no
    sidecar for a hostNetwork pod; the pod's `sidecar.istio.io/inject` label, else its annotation (the label wins
    when both are set), `"false"` opts out; otherwise the injector's policy `enabled` (the chart's default) injects."""
    spec = ((workload.obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    if spec.get("hostNetwork"):
        return False, "the pod uses the host network (istiod never injects it)"
    webhook, why = injector_webhook(model, workload.namespace, workload.labels)
    if webhook is None:
        return False, why
    if INJECT not in workload.labels and workload.annotations.get(INJECT) == "false":
        return False, "the pod opts out (annotation sidecar.istio.io/inject: false)"
    return True, why


def caller_has_sidecar(model: MeshModel, caller: Caller) -> tuple[bool, str]:
    """Whether an in-mesh caller's pod has a sidecar, as `has_sidecar` decides for the plan's pods. A caller in a
    namespace the plan does not hold (the cluster's own, whose labels the plan cannot know) is taken as injected,
    and the hop says so."""
    namespace = caller.namespace or "default"
    if namespace not in model.namespaces:
        opted_out = "false" == (caller.pod_labels.get(INJECT) if INJECT in caller.pod_labels else caller.pod_annotations.get(INJECT))
        if opted_out:
            return False, "the pod opts out (sidecar.istio.io/inject: false)"
        return True, f"namespace {namespace} is not in the plan: taken as injected"
    return has_sidecar(model, Workload({}, namespace, dict(caller.pod_labels), dict(caller.pod_annotations),
                                       caller.service_account or "default", []))


def ambient_enrolled(model: MeshModel, namespace: str, labels: Mapping[str, str]) -> tuple[bool, str]:
    """Ambient enrollment: the pod's `istio.io/dataplane-mode` (`none` opts out), else its namespace's."""
    mode = labels.get(DATAPLANE_MODE) or model.namespace_labels(namespace).get(DATAPLANE_MODE)
    return mode == "ambient", f"istio.io/dataplane-mode: {mode}"


# ------------------------------------------------------------------------------------------- Sidecar resource


def sidecar_scope(model: MeshModel, namespace: str, labels: Mapping[str, str]) -> Mapping[str, Any] | None:
    """The Sidecar resource that governs a sidecar proxy in `namespace` with `labels`, None for Istio's default scope
    (istio/istio@1.28.0 pilot/pkg/model/push_context.go:1165-1225 doGetSidecarScope): of the namespace's Sidecars,
    those with a `workloadSelector` first, each by creation time, the first whose labels the workload has; else the
    namespace's Sidecar without a selector; else the root namespace's Sidecar without a selector (the mesh default).
    Gateways never take a Sidecar resource (:1170-1186)."""
    own = sorted((s for s in model.kind("Sidecar") if _ns(s) == namespace), key=creation_order)
    for sidecar in [s for s in own if (s.get("spec") or {}).get("workloadSelector")] + \
            [s for s in own if not (s.get("spec") or {}).get("workloadSelector")]:
        selector = ((sidecar.get("spec") or {}).get("workloadSelector") or {}).get("labels")
        if selector is None or labels_subset(selector, labels):
            return sidecar
    root = [s for s in model.kind("Sidecar") if _ns(s) == model.settings.root_namespace
            and not (s.get("spec") or {}).get("workloadSelector")]
    return min(root, key=creation_order) if root else None


#: Fields of a Sidecar's egress listener the trace evaluates; `bind`, `captureMode` and `defaultEndpoint` change what
#: the proxy listens on and are refused.
_SIDECAR_EGRESS_FIELDS = {"hosts", "port"}
#: The one egress port protocol that makes the listener a generic HTTP proxy rather than a port of the services it
#: imports (istio/istio@1.28.0 pilot/pkg/model/sidecar.go:873-878 needsPortMatch).
_HTTP_PROXY = "HTTP_PROXY"


def sidecar_egress_listeners(sidecar: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    spec = sidecar.get("spec") or {}
    egress = spec.get("egress") or []
    # outboundTrafficPolicy only says what happens to a host the egress hosts do not import (outbound_traffic_policy).
    unmodelled = sorted(set(spec) - {"egress", "workloadSelector", "outboundTrafficPolicy"})
    for listener in egress:
        unmodelled += sorted(set(listener) - _SIDECAR_EGRESS_FIELDS)
        if str(((listener.get("port") or {}).get("protocol")) or "").upper() == _HTTP_PROXY:
            unmodelled.append(f"an egress port of protocol {_HTTP_PROXY} (a generic HTTP proxy listener)")
    if unmodelled:
        raise authz.NotModelled(f"{ref(sidecar)}: Sidecar {', '.join(unmodelled)} is not modelled")
    # No egress listener: one importing `*/*` (istio/istio@1.28.0 pilot/pkg/model/sidecar.go:312-316).
    return list(egress) or [{"hosts": ["*/*"]}]


def _listener_imports(listener: Mapping[str, Any], proxy_namespace: str, service_host: str, service_namespace: str) -> bool:
    for entry in listener.get("hosts") or []:
        entry = str(entry)
        if entry.count("/") != 1:
            continue
        namespace, name = entry.split("/")
        if namespace == ".":
            namespace = proxy_namespace
        if namespace not in ("*", service_namespace):
            continue
        # hostClassification.Matches (sidecar.go:71-91): the service's host must be a subset of the imported one.
        if host_subset_of(service_host.lower(), name.lower()):
            return True
    return False


def _listener_port(listener: Mapping[str, Any]) -> int:
    return int((listener.get("port") or {}).get("number") or 0)


def sidecar_imported_ports(sidecar: Mapping[str, Any], proxy_namespace: str, service_host: str, service_namespace: str,
                           service_ports: Sequence[int]) -> list[int]:
    """The ports on which a Sidecar's egress listeners import a service, in the service's port order (SidecarScope
    services, istio/istio@1.28.0 pilot/pkg/model/sidecar.go:342-360 and 678-797): a listener with a `port` imports
    the service on that port only, and only if the service has it (serviceMatchingListenerPort); one without imports
    every port. Hosts: `namespace/dnsName`, `.` the proxy's own namespace, `*` any namespace, `~` none; the service's
    host must be `dnsName` or a subset of its wildcard; an entry without exactly one `/` is ignored (:439-442).
    Shapes beyond `hosts` and `port` (bind, captureMode, defaultEndpoint, an HTTP_PROXY port) are refused."""
    ports: set[int] = set()
    for listener in sidecar_egress_listeners(sidecar):
        if not _listener_imports(listener, proxy_namespace, service_host, service_namespace):
            continue
        number = _listener_port(listener)
        ports |= ({number} & set(service_ports)) if number else set(service_ports)
    return [port for port in service_ports if port in ports]


def sidecar_imports(sidecar: Mapping[str, Any], proxy_namespace: str, service_host: str, service_namespace: str,
                    service_ports: Sequence[int] = (), port: int | None = None) -> bool:
    """Whether a Sidecar imports a service (see sidecar_imported_ports). `port` None: on any port, or at all for a
    service whose ports are not given. `port` given: whether a request to that service port is routed, which the
    egress listener bound to that port decides, or, when none is, the listener without a port (the port's route
    configuration)."""
    listeners = sidecar_egress_listeners(sidecar)
    if port is None:
        if not service_ports:
            return any(not _listener_port(listener) and _listener_imports(listener, proxy_namespace, service_host,
                                                                          service_namespace) for listener in listeners)
        return bool(sidecar_imported_ports(sidecar, proxy_namespace, service_host, service_namespace, service_ports))
    # GetEgressListenerForRDS (sidecar.go:475-505): the first listener that has no port or the request's.
    serving = next((listener for listener in listeners if _listener_port(listener) in (0, port)), None)
    return serving is not None and port in service_ports and \
        _listener_imports(serving, proxy_namespace, service_host, service_namespace)


def outbound_traffic_policy(model: "MeshModel", sidecar: Mapping[str, Any] | None) -> tuple[str, str]:
    """Where a sidecar sends a request for a host its scope does not hold (istio/istio@1.28.0 pilot/pkg/model/
    sidecar.go:332-340): the governing Sidecar's `outboundTrafficPolicy.mode`, else the mesh's. Returns (mode, what
    decided it). ALLOW_ANY: the PassthroughCluster, the request leaves as the application sent it (plaintext, no
    DestinationRule); REGISTRY_ONLY: the BlackHoleCluster, a 502 for HTTP (networking/core/listener.go,
    https://istio.io/v1.28/docs/tasks/traffic-management/egress/egress-control/)."""
    spec = (sidecar or {}).get("spec") or {}
    policy = spec.get("outboundTrafficPolicy")
    if policy is not None:
        # A Sidecar's policy, once present, is taken whole: `{}` is REGISTRY_ONLY, the mode's zero value
        # (istio/api networking/v1alpha3/sidecar.proto OutboundTrafficPolicy.Mode).
        mode = str(policy.get("mode") or "REGISTRY_ONLY").upper()
        decided = ref(sidecar)
    else:
        policy = {}
        mode, decided = model.settings.outbound_traffic_policy.upper(), "meshConfig.outboundTrafficPolicy"
    if mode not in ("ALLOW_ANY", "REGISTRY_ONLY") or policy.get("egressProxy"):
        raise authz.NotModelled(f"{decided}: outboundTrafficPolicy {policy or mode} is not modelled")
    return mode, decided


#: Istio's annotation that limits where a Service is visible (Service exportTo).
SERVICE_EXPORT_TO = "networking.istio.io/exportTo"


def service_export_to(service: Mapping[str, Any]) -> set[str]:
    """A Service's exportTo: its annotation, comma-separated, each entry trimmed (istio/istio@1.28.0
    pilot/pkg/serviceregistry/kube/conversion.go:86-93); empty when it has none (or an empty one). Annotations the
    plan knows only after deploy leave it unknown: refused by name."""
    annotations = (service.get("metadata") or {}).get("annotations") or {}
    if not isinstance(annotations, Mapping):
        raise authz.NotModelled(f"{ref(service)}: annotations known only after deploy, so its {SERVICE_EXPORT_TO} is not known")
    value = str(annotations.get(SERVICE_EXPORT_TO) or "")
    return {entry.strip() for entry in value.split(",")} if value else set()


def service_visible(settings: MeshSettings, service: Mapping[str, Any], namespace: str) -> bool:
    """PushContext.IsServiceVisible (istio/istio@1.28.0 pilot/pkg/model/push_context.go:1080-1097), which
    initServiceRegistry's index agrees with (:1565-1589): with no exportTo, the mesh's defaultServiceExportTo (`.`: its
    own namespace only, `*`: everyone); else `*`, `.` from its own namespace, or the namespace by name. `~` alone
    hides it from everyone."""
    own = _ns(service)
    exported = service_export_to(service)
    if not exported:
        if "." in settings.default_service_export_to:
            return own == namespace
        if "*" in settings.default_service_export_to:
            return True
    return "*" in exported or ("." in exported and own == namespace) or namespace in exported


def _target_port(service_port: Mapping[str, Any], workload: Workload) -> int | None:
    target = service_port.get("targetPort", service_port.get("port"))
    if isinstance(target, int) or (isinstance(target, str) and target.isdigit()):
        return int(target)
    for container in workload.containers:
        for port in container.get("ports") or []:
            if port.get("name") == target:
                return int(port["containerPort"])
    return None


# -------------------------------------------------------------------------------------- NetworkPolicy


def network_policy_admits(model: MeshModel, destination: Workload, port: int, source_namespace: str,
                          source_labels: Mapping[str, str]) -> tuple[bool, str, str]:
    """(admitted, deciding object, why): Kubernetes NetworkPolicy ingress, additive over every policy selecting the pod."""
    selecting = []
    for policy in model.in_namespaces("NetworkPolicy", destination.namespace):
        spec = policy.get("spec") or {}
        types = spec.get("policyTypes") or (["Ingress"] if "ingress" in spec or not spec.get("egress") else [])
        if "Ingress" in types and label_selector_matches(spec.get("podSelector"), destination.labels):
            selecting.append(policy)
    if not selecting:
        return True, "-", "no NetworkPolicy selects the pod"
    source_ns_labels = model.namespace_labels(source_namespace)
    for policy in selecting:
        for rule in (policy.get("spec") or {}).get("ingress") or []:
            if rule.get("ports") and not any(_np_port(p, port, destination) for p in rule["ports"]):
                continue
            peers = rule.get("from")
            if not peers:
                return True, ref(policy), "an ingress rule admits every source"
            for peer in peers:
                if "ipBlock" in peer:
                    continue  # pod IPs are not known offline
                ns_selector, pod_selector = peer.get("namespaceSelector"), peer.get("podSelector")
                if ns_selector is None:
                    ns_ok = source_namespace == destination.namespace
                else:
                    ns_ok = label_selector_matches(ns_selector, source_ns_labels)
                if ns_ok and (pod_selector is None or label_selector_matches(pod_selector, source_labels)):
                    return True, ref(policy), f"admits pods of namespace {source_namespace}"
    names = ", ".join(ref(p) for p in selecting)
    return False, names, f"no ingress rule of the policies selecting the pod admits namespace {source_namespace} on port {port}"


def _np_port(spec: Mapping[str, Any], port: int, workload: Workload) -> bool:
    value = spec.get("port")
    if value is None:
        return True
    if isinstance(value, int) or str(value).isdigit():
        end = spec.get("endPort")
        return int(value) <= port <= int(end) if end else int(value) == port
    return _target_port({"targetPort": value}, workload) == port


# -------------------------------------------------------------------------------- PeerAuthentication


def creation_order(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    """sortConfigByCreationTime (istio/istio@1.28.0 pilot/pkg/model/config.go:305-320): creation time, then name,
    then namespace. RFC 3339 UTC timestamps sort as strings; objects not created yet sort first (Go's zero time)."""
    metadata = obj.get("metadata") or {}
    return str(metadata.get("creationTimestamp") or ""), _name(obj), _ns(obj)


def peer_authentication_mode(model: MeshModel, workload: Workload, port: int) -> tuple[str, str]:
    """ComposePeerAuthentication (pilot/pkg/security/authn/policy_applier.go:398-466) for one workload and port.

    Of several mesh-, namespace- or workload-level policies the oldest is kept (policy_applier.go:409-428, the
    list sorted by creation time first: model/authentication.go:113-145); a selector policy in the root
    namespace is ignored (:422)."""
    root = model.settings.root_namespace
    mesh = namespace = chosen = None
    for policy in sorted(model.kind("PeerAuthentication"), key=creation_order):
        spec = policy.get("spec") or {}
        policy_ns = _ns(policy)
        if policy_ns not in (root, workload.namespace):
            continue
        selector = (spec.get("selector") or {}).get("matchLabels")
        if not selector:
            if policy_ns == root:
                mesh = mesh or policy
            else:
                namespace = namespace or policy
        elif policy_ns != root and labels_subset(selector, workload.labels):
            chosen = chosen or policy
    mode, decided = model.settings.mtls.upper(), f"mesh default ({model.settings.mtls})"
    for policy in (mesh, namespace, chosen):
        if policy is None:
            continue
        value = ((policy.get("spec") or {}).get("mtls") or {}).get("mode")
        if value and value != "UNSET":
            mode, decided = value, ref(policy)
    if chosen is not None:
        per_port = ((chosen.get("spec") or {}).get("portLevelMtls") or {}).get(str(port))
        if per_port is not None:
            # An UNSET port inherits the workload's mode (policy_applier.go:452-461).
            if per_port.get("mode") and per_port["mode"] != "UNSET":
                mode, decided = per_port["mode"], f"{ref(chosen)} port {port}"
    return mode, decided


# ------------------------------------------------------------------------------- RequestAuthentication

#: Where jwt_authn looks for a token besides `Authorization: Bearer`: not modelled, refused.
_TOKEN_LOCATIONS = ("fromHeaders", "fromParams", "fromCookies")


def jwt_rules_for(model: MeshModel, namespace: str, labels: Mapping[str, str], *, is_waypoint: bool = False,
                  services: Sequence[tuple] = (), selector_based_gateway_policy: bool = True) -> list[tuple[Mapping, Mapping]]:
    """The jwtRules of the RequestAuthentications a proxy enforces (getConfigsForWorkload, authentication.go:229-260:
    own, root and Services' namespaces; authz.should_attach: a sidecar or a classic gateway by selector, never a
    policy with targetRefs)."""
    rules = []
    version = authz.istio_minor(model.settings.istio_version)
    searched = authz.lookup_namespaces("RequestAuthentication", namespace, model.settings.root_namespace,
                                       [entry[1] for entry in services], version)
    found = [policy for policy in model.kind("RequestAuthentication") if _ns(policy) in searched and authz.should_attach(
        policy, namespace, labels, model.settings.root_namespace, is_waypoint=is_waypoint, services=services,
        istio_version=version, selector_based_gateway_policy=selector_based_gateway_policy)]
    for policy in sorted(found, key=creation_order):
        for rule in (policy.get("spec") or {}).get("jwtRules") or []:
            moved = [key for key in _TOKEN_LOCATIONS if rule.get(key)]
            if moved:
                raise authz.NotModelled(f"{ref(policy)}: jwtRules {', '.join(moved)} (a token read elsewhere than "
                                        "`Authorization: Bearer`) is not modelled")
            if rule.get("spaceDelimitedClaims") and version < (1, 28):
                # istiod before 1.28 always lists only scope and permission (policy_applier.go:169 at 1.24.6), and
                # whether the API server keeps the field depends on the installed CRDs.
                raise authz.NotModelled(f"{ref(policy)}: jwtRules spaceDelimitedClaims on Istio "
                                        f"{model.settings.istio_version} (Istio 1.28 and later) is not modelled")
            rules.append((policy, {**rule, _KEYS: _jwks_source(model, rule)}))
    return rules


#: Where the trace notes, on a jwtRule it returns, how the rule's signing keys reach Envoy (see _jwks_source).
_KEYS = "__keys"
#: Special-use names that never resolve in the public DNS (RFC 6761 6.2 `test`, 6.4 `invalid`, 6.5 `example`).
_NEVER_RESOLVES = frozenset({"invalid", "test", "example"})


def _jwks_source(model: MeshModel, rule: Mapping[str, Any]) -> str:
    """How the keys of a jwtRule reach Envoy (istio/istio@1.28.0 pilot/pkg/security/authn/policy_applier.go:195-246).

    - `jwks` inline: as written (`inline`);
    - PILOT_JWT_ENABLE_REMOTE_JWKS `hybrid`/`envoy` with a jwksUri in the mesh: Envoy fetches it (`fetched`); `envoy`
      with one outside the mesh: Envoy is pointed at a cluster that does not exist and verifies no token (`fake`);
      `hybrid` outside the mesh: as the default;
    - the default (`false`, pilot/pkg/features/pilot.go:43-53): istiod fetches `jwksUri`, or the `jwks_uri` of the
      issuer's OpenID discovery document, and when the fetch fails inlines a fake JWKS that matches no token
      (pilot/pkg/model/jwks_resolver.go:292-309, FakeJwks). The plan cannot fetch, so: `fake` for a location istiod
      cannot fetch whatever the network (not http/https, no host: an issuer that is no URL; a special-use name that
      never resolves); `fetched` for a host in the mesh (a Service's or ServiceEntry's name, `*.svc`, `*.svc.<domain>`)
      or an issuer the stack declares (its settings' issuers and the cluster's service-account issuer: the trace
      takes the stack's own key servers as answering); `unknown` for any other location, refused when a token of
      that issuer must be judged (whether a server outside the mesh answers istiod is not known offline).
    """
    if rule.get("jwks"):
        return "inline"
    uri = str(rule.get("jwksUri") or "")
    target = uri or str(rule.get("issuer") or "")
    parts = urlsplit(target)
    host = (parts.hostname or "").lower().rstrip(".")
    in_mesh = model.__dict__.get("_mesh_hosts")
    if in_mesh is None:
        # The mesh's host names, gathered once per model (asked for every jwtRule of every path traced).
        in_mesh = {h.lower() for entry in model.kind("ServiceEntry") for h in (entry.get("spec") or {}).get("hosts") or []}
        in_mesh |= {f"{_name(s)}.{_ns(s)}" for s in model.kind("Service")}
        model.__dict__["_mesh_hosts"] = in_mesh
    mesh_host = bool(host) and (host in in_mesh or host.endswith(".svc") or ".svc." in host)
    mode = model.settings.jwks_fetch_mode.lower()
    if uri and mode not in ("istiod", "false"):
        if mesh_host:
            return "fetched"
        if mode in ("envoy",):
            return "fake"
        if mode not in ("hybrid", "true"):
            return "mode"
    if parts.scheme not in ("http", "https") or not host or host.rsplit(".", 1)[-1] in _NEVER_RESOLVES:
        return "fake"
    if mesh_host or rule.get("issuer") in {issuer.issuer for issuer in model.settings.issuers}:
        return "fetched"
    return "unknown"


@dataclass(frozen=True)
class TokenVerdict:
    """What jwt_authn makes of a request's token."""

    #: verified | none (no token, or no jwt_authn filter) | invalid
    outcome: str
    decided_by: str
    why: str
    #: The HTTP status of a refusal: 401, or 403 for an audience no provider accepts.
    status: int | None = None
    #: outputClaimToHeaders of the verifying provider: header -> value.
    headers: Mapping[str, str] = field(default_factory=dict)
    #: A verified token's payload as jwt_authn writes it for authorization (`payload_in_metadata`): the claims its
    #: provider's normalize_payload_in_metadata names, when strings, split at spaces into lists.
    claims: Mapping[str, Any] | None = None
    #: Headers jwt_authn removes from the request before it verifies (lower case): the outputClaimToHeaders and
    #: outputPayloadToHeader names of every provider that looks at the request (see verify_token).
    sanitized: tuple[str, ...] = ()
    #: Whether `Authorization` travels on: false when the verifying provider has no forwardOriginalToken.
    token_forwarded: bool = True

    def forward(self, headers: Mapping[str, str]) -> dict[str, str]:
        """The request headers jwt_authn passes on: the sanitized names removed, a verified token's outputs added and,
        without forwardOriginalToken, its `Authorization` header removed (Envoy jwt_authn handleGoodJwt)."""
        dropped = set(self.sanitized) | (set() if self.token_forwarded else {"authorization"})
        kept = {name: value for name, value in headers.items() if name.lower() not in dropped}
        return {**kept, **self.headers}

    def __iter__(self):  # (outcome, decided_by, why), as callers unpack it
        return iter((self.outcome, self.decided_by, self.why))

    def __getitem__(self, index: int):
        return (self.outcome, self.decided_by, self.why)[index]


def _claim_header_value(value: Any) -> str | None:
    """How Envoy's `claim_to_headers` writes a claim (jwt_authn authenticator.cc, addJWTClaimToHeader): a string as
    is, a boolean as true/false, a number as its decimal; other shapes (lists, objects) are not modelled here."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    return None


#: Claims every provider lists as space-delimited (istio/istio@1.28.0 pilot/pkg/security/authn/policy_applier.go:340-364).
_SPACE_DELIMITED_CLAIMS = ("permission", "scope")


def _normalized_payload(rule: Mapping[str, Any], token: Mapping[str, Any]) -> dict[str, Any]:
    """NormalizePayloadInMetadata as istiod sets it (policy_applier.go buildSpaceDelimitedClaims: `permission`, `scope`
    and the rule's `spaceDelimitedClaims`): a string claim of those names becomes the list of its space-separated
    values (Envoy jwt_authn `normalize_payload_in_metadata.space_delimited_claims`)."""
    names = {*_SPACE_DELIMITED_CLAIMS, *(str(c) for c in rule.get("spaceDelimitedClaims") or [])}
    return {key: (value.split() if key in names and isinstance(value, str) else value) for key, value in token.items()}


#: The value the trace gives a verified token's outputPayloadToHeader: present, bytes unknown.
PAYLOAD_HEADER_VALUE = authz.OpaqueValue("<the token's base64url payload>")


def _output_headers(rule: Mapping[str, Any]) -> list[str]:
    names = [str(output.get("header", "")).lower() for output in rule.get("outputClaimToHeaders") or []]
    if rule.get("outputPayloadToHeader"):
        names.append(str(rule["outputPayloadToHeader"]).lower())
    return [name for name in names if name]


def _sanitized(providers: Sequence[tuple[Mapping, Mapping]]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(name for _, rule in providers for name in _output_headers(rule)))


def verify_token(rules: Sequence[tuple[Mapping, Mapping]], token: Mapping[str, Any] | None,
                 now: float | None = None, headers: Mapping[str, str] | None = None) -> TokenVerdict:
    """jwt_authn as istiod configures it: `requires_any` of every provider and `allow_missing`
    (pilot/pkg/security/authn/policy_applier.go:143-170, 250-290).

    - no jwt_authn filter (no rule) or no token: passes as no token;
    - a token of an issuer no rule names: 401 (`allow_missing` passes only a missing token since
      envoyproxy/envoy#15194; `Jwt issuer is not configured`);
    - expired (`exp` past) or not yet valid (`nbf` ahead): 401 (`Jwt is expired`, `Jwt not yet valid`);
    - an audience no provider of its issuer accepts: 403 (`Audiences in Jwt are not allowed`, Envoy answers
      JwtAudienceNotAllowed with Forbidden).
    Signatures are taken as valid. A verified token's provider copies its outputClaimToHeaders onto the request and
    writes its payload to outputPayloadToHeader (policy_applier.go:162-177; the value's bytes are the client's own
    encoding, so only its presence is modelled); without forwardOriginalToken it removes `Authorization`.

    Before verifying, each provider's verifier removes the headers its outputs name, so a client cannot forge them
    (envoyproxy/envoy source/extensions/filters/http/jwt_authn/verifier.cc, sanitizePayloadHeaders; claim headers
    too in the Envoy of Istio 1.23 and later, istio/istio#53212). The providers are tried in issuer order
    (policy_applier.go:84-89) and the first that verifies ends the search: without a token every provider has looked;
    with one, those up to the verifying provider. A client-sent header that only a later provider names is kept by
    the Envoy of Istio 1.28 but removed by later Envoy (envoyproxy/envoy#46586, filter-wide): refused (`headers`, the
    request's headers, lets the trace see it).
    """
    import time

    providers = sorted(rules, key=lambda found: str(found[1].get("issuer") or ""))
    if token is None or not rules:
        return TokenVerdict("none", "-", "no token" if token is None else "no RequestAuthentication applies: the token is not read",
                            sanitized=_sanitized(providers))
    matching = [(p, r) for p, r in providers if r.get("issuer") == token.get("iss")]
    if not matching:
        return TokenVerdict("invalid", ", ".join(dict.fromkeys(ref(p) for p, _ in rules)),
                            f"issuer {token.get('iss')!r} is configured in no jwtRule: 401 (Jwt issuer is not configured)", 401)
    now = time.time() if now is None else now
    exp, nbf = token.get("exp"), token.get("nbf")
    if isinstance(exp, (int, float)) and not isinstance(exp, bool) and exp < now:
        return TokenVerdict("invalid", ref(matching[0][0]), "the token has expired (exp is past): 401", 401)
    if isinstance(nbf, (int, float)) and not isinstance(nbf, bool) and nbf > now:
        return TokenVerdict("invalid", ref(matching[0][0]), "the token is not valid yet (nbf is ahead): 401", 401)
    audiences = token.get("aud")
    audiences = [audiences] if isinstance(audiences, str) else list(audiences or [])
    keys = [rule.get(_KEYS) for _, rule in matching]
    if "mode" in keys:
        policy, rule = matching[keys.index("mode")]
        raise authz.NotModelled(f"{ref(policy)}: a PILOT_JWT_ENABLE_REMOTE_JWKS value other than istiod, false, hybrid, true or envoy is not modelled")
    if "unknown" in keys:
        policy, rule = matching[keys.index("unknown")]
        raise authz.NotModelled(f"{ref(policy)}: whether istiod can fetch the keys of issuer {rule.get('issuer')!r} from "
                                f"{rule.get('jwksUri') or 'its OpenID discovery document'} is not known offline (a key "
                                "server outside the mesh that the stack does not declare)")
    for policy, rule in matching:
        wanted = rule.get("audiences")
        if not wanted or set(wanted) & set(audiences):
            # Envoy checks issuer, time and audience before the signature (jwt_authn authenticator.cc).
            if rule.get(_KEYS) == "fake":
                return TokenVerdict("invalid", ref(policy),
                                    f"no key of issuer {token.get('iss')!r} reaches Envoy "
                                    f"({rule.get('jwksUri') or 'OpenID discovery'}: a fake JWKS stands in): "
                                    "401 (Jwks doesn't have key to match kid or alg from Jwt)", 401)
            looked = providers[:next(i for i, found in enumerate(providers) if found[1] is rule) + 1]
            sanitized = _sanitized(looked)
            sent = {name.lower() for name in headers or {}}
            kept = sorted(sent & (set(_sanitized(providers)) - set(sanitized)))
            if kept:
                raise authz.NotModelled(f"{ref(policy)}: the client sends {', '.join(kept)}, which only a provider after "
                                        f"the one verifying issuer {token.get('iss')!r} names as an output (kept by the "
                                        "Envoy of Istio 1.28, removed by later Envoy) is not modelled")
            headers = {}
            for output in rule.get("outputClaimToHeaders") or []:
                claim = token
                for part in str(output.get("claim", "")).split("."):
                    claim = claim.get(part) if isinstance(claim, Mapping) else None
                if claim is None:
                    continue
                value = _claim_header_value(claim)
                if value is None:
                    raise authz.NotModelled(f"{ref(policy)}: outputClaimToHeaders of the non-scalar claim "
                                            f"{output.get('claim')!r} is not modelled")
                headers[str(output.get("header", "")).lower()] = value
            copied = f"; {', '.join(f'{k}: {v}' for k, v in headers.items())} (outputClaimToHeaders)" if headers else ""
            if rule.get("outputPayloadToHeader"):
                headers[str(rule["outputPayloadToHeader"]).lower()] = PAYLOAD_HEADER_VALUE
                copied += f"; the payload in {str(rule['outputPayloadToHeader']).lower()} (outputPayloadToHeader)"
            forwarded = bool(rule.get("forwardOriginalToken"))
            if not forwarded:
                copied += "; Authorization removed (no forwardOriginalToken)"
            return TokenVerdict("verified", ref(policy), f"issuer {token.get('iss')} and audience {audiences} accepted{copied}",
                                None, headers, _normalized_payload(rule, token), sanitized, forwarded)
    return TokenVerdict("invalid", ref(matching[0][0]),
                        f"audience {audiences} is none of {matching[0][1].get('audiences')}: 403 (Audiences in Jwt are not allowed)", 403)


# ---------------------------------------------------------------------------------------- authorization


def authorize(model: MeshModel, trace: Trace, where: str, namespace: str, labels: Mapping[str, str],
              request: authz.Request, *, for_tcp: bool = False, waypoint: tuple[str, list[tuple[str, str]]] | None = None,
              ext_authz=None, stages: Sequence[str] = ("CUSTOM", "DENY", "ALLOW")) -> bool:
    """CUSTOM, then DENY, then ALLOW (builder.go:110-145), those of `stages` only. Adds hops; False when refused."""
    version = authz.istio_minor(model.settings.istio_version)
    request = replace(request, istio_version=version)
    # Only the two namespaces' policies can apply (policies_for_workload skips every other one first).
    found = authz.policies_for_workload(
        model.in_namespaces("AuthorizationPolicy", namespace, model.settings.root_namespace), namespace, labels,
        model.settings.root_namespace,
        waypoint_services=waypoint[1] if waypoint else None, waypoint_gateway=waypoint[0] if waypoint else None,
        istio_version=version)
    found = {action: (found.get(action, []) if action in stages else []) for action in ("CUSTOM", "DENY", "ALLOW")}
    allow_stage = "ALLOW" in stages
    layer = "L4 (ztunnel)" if for_tcp else "L7"
    if found["CUSTOM"]:
        shapes = []
        if for_tcp:
            shapes.append("CUSTOM enforced on TCP (ztunnel)")
        if any(authz.is_dry_run(p) for p in found["CUSTOM"]):
            shapes.append("a CUSTOM policy in dry-run (istio.io/dry-run)")
        providers = {((p.get("spec") or {}).get("provider") or {}).get("name") for p in found["CUSTOM"]}
        if len(providers) > 1:
            # builder.go getExtAuthz: only one provider per workload.
            shapes.append(f"CUSTOM policies with {len(providers)} providers on one workload")
        if shapes:
            raise authz.NotModelled(f"{where}: {'; '.join(shapes)} is not modelled "
                                    f"({', '.join(ref(p) for p in found['CUSTOM'])})")
    for policy in found["CUSTOM"]:
        rule = authz.policy_matches(policy, request, for_tcp=for_tcp)
        if rule is None:
            trace.add("CUSTOM", where, ref(policy), "pass", "no rule matches: the external authorizer is not asked")
            continue
        if ext_authz is None:
            return not trace.refuse("CUSTOM", where, ref(policy), "a rule matches and no external authorizer answers", 403)
        allowed, why, status = ext_authz(policy)
        if not allowed:
            return not trace.refuse("CUSTOM", where, ref(policy), f"rules[{rule}] matches: {why}", status)
        trace.add("CUSTOM", where, ref(policy), "pass", f"rules[{rule}] matches: {why}")
    # Envoy's RBAC filter of one action matches when any of its policies does (builder.go builds one filter per
    # action): a policy the model cannot evaluate leaves the answer open only if no other policy decides it.
    unknown: authz.NotModelled | None = None
    for policy in found["DENY"]:
        try:
            rule = authz.policy_matches(policy, request, for_tcp=for_tcp)
        except authz.NotModelled as error:
            unknown = unknown or authz.NotModelled(f"{ref(policy)}: {error}")
            continue
        if rule is not None:
            return not trace.refuse("DENY", where, ref(policy), f"{layer} rules[{rule}] matches: {_rule_summary(policy, rule)}", 403)
    if unknown is not None:
        raise unknown
    if found["DENY"]:
        trace.add("DENY", where, ", ".join(ref(p) for p in found["DENY"]), "pass", f"{layer}: no rule matches")
    if not allow_stage:
        return True
    if not found["ALLOW"]:
        trace.add("ALLOW", where, "-", "pass", "no ALLOW policy applies to the workload: allowed")
        return True
    for policy in found["ALLOW"]:
        try:
            rule = authz.policy_matches(policy, request, for_tcp=for_tcp)
        except authz.NotModelled as error:
            unknown = unknown or authz.NotModelled(f"{ref(policy)}: {error}")
            continue
        if rule is not None:
            trace.add("ALLOW", where, ref(policy), "pass", f"{layer} rules[{rule}] matches")
            return True
    if unknown is not None:
        raise unknown
    names = ", ".join(ref(p) for p in found["ALLOW"])
    http_rules = for_tcp and any(authz.uses_http_attributes(r) for p in found["ALLOW"] for r in (p.get("spec") or {}).get("rules") or [])
    why = "no rule of the ALLOW policies matches" + (
        " (their HTTP attributes cannot be enforced by ztunnel: those rules match nothing)" if http_rules else "")
    return not trace.refuse("ALLOW", where, names, why, 403)


# -------------------------------------------------------------------------------------------- the trace


_LUA_MUST_NOT_SEND = re.compile(r"CLIENT_MUST_NOT_SEND\s*=\s*\{([^}]*)\}")


def _client_must_not_send(identity_filter: Mapping[str, Any]) -> set[str]:
    """The headers the identity EnvoyFilter's first Lua filter removes (manifests/identity.py's strip filter), read from
    its Lua source; empty when the filter holds no such table."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, str):
            for table in _LUA_MUST_NOT_SEND.findall(value):
                found.update(name.lower() for name in re.findall(r'\["([^"]+)"\]', table))
        elif isinstance(value, Mapping):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(identity_filter.get("spec") or {})
    return found


def _principal(settings: MeshSettings, namespace: str, service_account: str) -> str:
    return f"{settings.trust_domain}/ns/{namespace}/sa/{service_account}"


def _user_from_token(settings: MeshSettings, token: Mapping[str, Any]) -> str | None:
    for issuer in settings.issuers:
        if issuer.issuer == token.get("iss"):
            if issuer.machine_user:
                return issuer.machine_user
            value = token.get(issuer.user_claim or "")
            return value if isinstance(value, str) else None
    return None


def _canonical_user(settings: MeshSettings, user: str) -> str:
    return settings.user_id_prefix + (user.lower() if settings.lowercase_user else user)


def _email_allowed(settings: MeshSettings, email: str) -> bool:
    domains = settings.email_domains
    if "*" in domains:
        return True
    domain = email.rpartition("@")[2].lower()
    return any(domain == d.lower().lstrip("*.").lstrip(".") if not d.startswith(("*.", ".")) else domain.endswith(d.lower().lstrip("*"))
               for d in domains)


#: HTTPRoute fields that change what a request does and that the trace does not evaluate.
_UNMODELLED_ROUTE_FIELDS = ("delegate", "fault")


def _unmodelled_route_fields(route: HttpRoute) -> str | None:
    for key in _UNMODELLED_ROUTE_FIELDS:
        if route.http.get(key):
            return key
    rewrite = route.http.get("rewrite") or {}
    if rewrite.get("uriRegexRewrite"):
        return "rewrite.uriRegexRewrite"
    if len(route.http.get("route") or []) > 1:
        return "a route with several weighted destinations"
    redirect = route.http.get("redirect") or {}
    if set(redirect) - {"uri", "authority", "scheme", "redirectCode"}:
        return f"redirect {sorted(set(redirect) - {'uri', 'authority', 'scheme', 'redirectCode'})}"
    return None


def _redirect_location(redirect: Mapping[str, Any], host: str, path: str) -> str:
    # HTTPRedirect (networking/v1 virtual_service.proto): `uri` replaces the whole path, `authority` the host,
    # `scheme` the scheme; what is not set is kept (the gateway sees http behind a TLS-terminating load balancer).
    scheme = redirect.get("scheme") or "http"
    return f"{scheme}://{redirect.get('authority') or host}{redirect.get('uri') or path}"


#: How many redirects a browser-like caller follows in one trace.
MAX_REDIRECTS = 3


def trace_request(model: MeshModel, url: str, caller: Caller, method: str = "GET") -> Trace:
    """Follows `url` from `caller` hop by hop; see the module docstring for the rules. A redirect the gateway's
    routes answer is followed (as a browser or a CLI does), its hops appended."""
    trace = _trace_once(model, url, caller, method)
    for _ in range(MAX_REDIRECTS):
        if not trace.redirect:
            break
        following = _trace_once(model, trace.redirect, caller, method)
        trace.add("redirect", "client", "-", "info", f"follows {trace.status} to {trace.redirect}")
        trace.hops += following.hops
        trace.reached, trace.backend, trace.user = following.reached, following.backend, following.user
        trace.status, trace.redirect = following.status, following.redirect
    return trace


def _trace_once(model: MeshModel, url: str, caller: Caller, method: str = "GET") -> Trace:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TraceError(f"{url!r} is not an http(s) URL with a host")
    host = parts.hostname.lower()
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    trace = Trace(url, caller)
    if caller.kind == "workload":
        return _trace_in_mesh(model, trace, host, parts.port or 80, path, method)
    if parts.port is not None and parts.port != {"https": 443, "http": 80}[parts.scheme]:
        # The trace follows the load balancer's listener for the scheme (443 for https) to the gateway's one server
        # port; which servers another port would reach depends on listeners outside the plan.
        raise authz.NotModelled(f"{url}: port {parts.port} at the gateway is not modelled (only the scheme's own port)")
    return _trace_through_gateway(model, trace, host, path, method)


#: Plaintext HTTP protocols of a Gateway server (protocol.Instance.IsHTTP, pkg/config/protocol/instance.go).
_HTTP_PROTOCOLS = frozenset({"HTTP", "HTTP2", "HTTP_PROXY", "GRPC", "GRPC-WEB"})


def _trace_through_gateway(model: MeshModel, trace: Trace, host: str, path: str, method: str) -> Trace:
    settings, caller = model.settings, trace.caller
    where = f"gateway {settings.gateway_namespace}/{_format_labels(settings.gateway_labels)}"
    # 1. Gateways selecting the pods, servers for the host.
    selected = [g for g in model.kind("Gateway")
                if (g.get("spec") or {}).get("selector") is None or labels_subset((g.get("spec") or {}).get("selector"), settings.gateway_labels)]
    if not selected:
        return trace.refuse("gateway pods", where, "-", f"no Gateway selects pods labelled {_format_labels(settings.gateway_labels)}: "
                            "the gateway has no listener for Kubeflow", None)
    servers = []
    for gateway in selected:
        for server in (gateway.get("spec") or {}).get("servers") or []:
            names = [(h.partition("/")[2] if "/" in h else h).lower() for h in server.get("hosts") or []]
            if any(host_matches(n, host) for n in names):
                servers.append((gateway, server))
    trace.add("gateway pods", where, ", ".join(ref(g) for g in selected), "pass",
              f"selector {{{', '.join(_format_labels((g.get('spec') or {}).get('selector') or {}) for g in selected)}}} "
              f"is a subset of the pods' labels")
    if not servers:
        return trace.refuse("server host", where, ", ".join(ref(g) for g in selected),
                            f"no server of the selected Gateways lists host {host}: 404 (no virtual host)", 404)
    gateway, server = servers[0]
    port = (server.get("port") or {}).get("number")
    # Every server of every selected Gateway on that port shares one route configuration (gateway.go:405-530).
    on_port = [(g, s) for g in selected for s in (g.get("spec") or {}).get("servers") or []
               if (s.get("port") or {}).get("number") == port]
    protocols = {str((s.get("port") or {}).get("protocol") or "").upper() for _, s in on_port}
    for gateway_obj, server_obj in on_port:
        tls = server_obj.get("tls") or {}
        protocol = str((server_obj.get("port") or {}).get("protocol") or "").upper()
        if tls.get("httpsRedirect"):
            raise authz.NotModelled(f"{ref(gateway_obj)}: server port {port} tls.httpsRedirect (a 301 to https for every "
                                    "host of the server) is not modelled")
        if protocol not in _HTTP_PROTOCOLS | {"HTTPS"} or (protocol == "HTTPS" and protocols & _HTTP_PROTOCOLS):
            # MergeGateways (istio/istio@1.28.0 pilot/pkg/model/gateway.go:255-275, canMergeProtocols :464-466):
            # of plaintext servers on one port only those of the first one's HTTP family merge; which one comes first,
            # and what a TCP or TLS listener does with the request, is not modelled.
            raise authz.NotModelled(f"{ref(gateway_obj)}: a {protocol or 'protocol-less'} server on port {port} with "
                                    f"servers of {', '.join(sorted(protocols - {protocol})) or 'the same port'} is not modelled")
        if server_obj.get("bind"):
            raise authz.NotModelled(f"{ref(gateway_obj)}: server port {port} bind {server_obj['bind']} (a listener of its "
                                    "own address) is not modelled")
        credential = str(tls.get("credentialName") or "")
        if protocol == "HTTPS" and credential.startswith("kubernetes-gateway://"):
            # Whether the gateway may read a Gateway API secret reference is istiod's verified certificate references
            # (istio/istio@1.28.0 pilot/pkg/model/gateway.go:199-230, @1.24.6 :197-213), which differ: 1.28.0 also
            # checks the Gateway's service account and ListenerSets, 1.24.6 does not. A plaintext server never serves
            # its credential, so only a TLS server is refused.
            raise authz.NotModelled(f"{ref(gateway_obj)}: server port {port} credentialName {credential} (a Gateway API "
                                    "secret reference, which istiod verifies per version) is not modelled")
        # An HTTP server's `tls` is ignored but for httpsRedirect (gateway.go:528-545: an HTTP server is plaintext).
        if protocol == "HTTPS" and len({_ns(g) + "/" + _name(g) for g, _ in on_port}) > 1:
            raise authz.NotModelled(f"{ref(gateway_obj)}: a TLS server on port {port} shared with another Gateway "
                                    "(one filter chain per server) is not modelled")
    sharing = sorted({ref(g) for g, _ in servers})
    trace.add("server host", where, ", ".join(sharing), "pass",
              f"server port {port} hosts {server.get('hosts')} match {host}"
              + (f"; {len(sharing)} Gateways share the port's routes" if len(sharing) > 1 else ""))

    # 2. EnvoyFilters patching the gateway (push_context.go:2284-2357).
    filters = [f for f in model.kind("EnvoyFilter")
               if _ns(f) in (settings.root_namespace, settings.gateway_namespace)
               and labels_subset(((f.get("spec") or {}).get("workloadSelector") or {}).get("labels"), settings.gateway_labels)
               and any(((p.get("match") or {}).get("context") or "ANY") in ("GATEWAY", "ANY") for p in (f.get("spec") or {}).get("configPatches") or [])]
    identity_filter = next((f for f in filters if f"{_ns(f)}/{_name(f)}" == settings.identity_filter), None)
    headers = {k.lower(): v for k, v in caller.headers.items()}
    if identity_filter is not None:
        doomed = _client_must_not_send(identity_filter) or {settings.user_header, settings.user_source_header,
                                                            "kubeflow-groups", "x-auth-request-groups"}
        stripped = [h for h in headers if h.replace("_", "-") in doomed]
        for name in stripped:
            headers.pop(name)
        trace.add("EnvoyFilter", where, ref(identity_filter), "pass",
                  "applies (workloadSelector is a subset of the pods' labels): client-sent identity headers dropped"
                  + (f" ({', '.join(stripped)})" if stripped else ""))
    else:
        trace.add("EnvoyFilter", where, settings.identity_filter or "-", "info",
                  "the identity EnvoyFilter does not apply to these pods: client-sent kubeflow-userid passes unchanged")

    # 3. ext_authz (CUSTOM) first, then jwt_authn, then DENY and ALLOW: the order istiod puts the filters in
    # (pilot/pkg/networking/core/listener_builder.go:405-410), so a CUSTOM rule sees no verified token yet.
    token = caller.token
    if token is not None:
        headers["authorization"] = "Bearer <token>"
    session_headers: dict[str, str] = {}

    def ext_authz(policy: Mapping[str, Any]):
        if caller.kind == "browser" and caller.email:
            if not settings.session_works_on(host):
                return False, (f"no session on {host}: the auth proxy's cookies do not cover it and its callback is on "
                               f"{settings.login_callback_host or settings.hosts[0]} (the login's CSRF cookie never "
                               "reaches the callback, the session cookie never comes back): redirect to a login that "
                               "fails"), 302
            if not _email_allowed(settings, caller.email):
                return False, f"the auth proxy refuses {caller.email}: domain not in emailDomains", 403
            session_headers[settings.user_source_header] = caller.email
            return True, f"the auth proxy knows the session of {caller.email} and returns {settings.user_source_header}", 200
        return False, "the auth proxy has no session: redirect to the login", 302

    request = authz.Request(None, 8080, dict(headers), settings.trust_domain, method, path, host)
    if not authorize(model, trace, where, settings.gateway_namespace, settings.gateway_labels, request, ext_authz=ext_authz,
                     stages=("CUSTOM",)):
        return trace
    headers.update(session_headers)

    # 4. jwt_authn (RequestAuthentication): a token is read from `Authorization: Bearer`.
    rules = jwt_rules_for(model, settings.gateway_namespace, settings.gateway_labels)
    jwt = verify_token(rules, token, headers=headers)
    verdict, decided, why = jwt
    request_principal = claims = None
    if verdict == "invalid":
        return trace.refuse("RequestAuthentication", where, decided, why, jwt.status)
    if verdict == "verified":
        request_principal, claims = f"{token.get('iss')}/{token.get('sub')}", dict(jwt.claims or token)
    forged = sorted(name for name in jwt.sanitized if name in {k.lower() for k in headers})
    headers = jwt.forward(headers)
    # Without forwardOriginalToken the destination never sees the token (its own RequestAuthentication reads none).
    onward_token = token if jwt.token_forwarded else None
    if token is not None:
        trace.add("RequestAuthentication", where, decided, "pass", why)
    if forged:
        trace.add("RequestAuthentication", where, decided, "info",
                  f"client-sent {', '.join(forged)} removed (jwt_authn clears the headers its providers output)")

    request = authz.Request(None, 8080, headers, settings.trust_domain, method, path, host, request_principal, claims)
    if not authorize(model, trace, where, settings.gateway_namespace, settings.gateway_labels, request,
                     stages=("DENY", "ALLOW")):
        return trace

    # 5. The identity filter (without it, whatever the client sent stays).
    user = None
    if identity_filter is not None:
        if session_headers.get(settings.user_source_header):
            user = _canonical_user(settings, session_headers[settings.user_source_header])
            source = f"from {settings.user_source_header}"
        elif verdict == "verified":
            found = _user_from_token(settings, token)
            user = _canonical_user(settings, found) if found else None
            source = f"from the token of {token.get('iss')}"
        else:
            source = "no login and no verified token"
        if user:
            headers[settings.user_header] = user
        trace.add("identity", where, ref(identity_filter), "pass" if user else "info",
                  f"{settings.user_header}: {user} ({source})" if user else f"{settings.user_header} not set ({source})")

    # 6. Routing.
    services = []
    bound_names = {f"{_ns(g)}/{_name(g)}" for g, _ in on_port}
    for name in sorted(bound_names):
        services += virtual_services_for_gateway(model.kind("VirtualService"), settings.gateway_namespace, name)
    given = {id(v) for v in services}
    hidden = [s for s in model.kind("VirtualService") if bound_names & set(gateway_names(s)) and id(s) not in given]
    routes = gateway_virtual_host_routes(model, on_port, settings.gateway_namespace, host)
    chosen = next((r for r in routes if route_matches(r, path, headers, method)), None)
    if chosen is None:
        note = f"; bound but hidden from pods in {settings.gateway_namespace} by exportTo: {', '.join(ref(s) for s in hidden)}" if hidden else ""
        return trace.refuse("route", where, "-", f"none of the {len(routes)} routes for {host} matches {path}: 404{note}", 404)
    if chosen.catch_all:
        slashed = next((r for r in routes if not r.catch_all and ((r.match or {}).get("uri") or {}).get("prefix") == path.split("?")[0] + "/"), None)
        if slashed is not None:
            trace.add("route", where, ref(slashed.service), "info",
                      f"{path} does not match {ref(slashed.service)}'s prefix {((slashed.match or {}).get('uri') or {}).get('prefix')!r}: "
                      "only the catch-all route takes it (add the trailing slash)")
    direct = chosen.http.get("directResponse")
    if direct is not None:
        # The gateway answers itself; nothing is forwarded (istio/istio@1.24.6 pilot/pkg/networking/core/route/route.go:500-501, 805).
        status = int(direct.get("status") or 0)
        if 200 <= status < 300:
            trace.add("route", where, ref(chosen.service), "info", f"{chosen.describe()}: answered by the gateway with {status}")
            trace.user = headers.get(settings.user_header)
            return trace
        return trace.refuse("route", where, ref(chosen.service),
                            f"{chosen.describe()}: answered by the gateway with {status}"
                            + (f" ({(direct.get('body') or {}).get('string')})" if (direct.get("body") or {}).get("string") else ""), status)
    unmodelled = _unmodelled_route_fields(chosen)
    if unmodelled:
        raise authz.NotModelled(f"{ref(chosen.service)} {chosen.describe()}: {unmodelled} is not modelled")
    redirect = chosen.http.get("redirect")
    if redirect is not None:
        location = _redirect_location(redirect, host, path)
        code = int(redirect.get("redirectCode") or 301)
        trace.add("route", where, ref(chosen.service), "pass", f"{chosen.describe()}: redirect {code} to {location}")
        trace.status, trace.redirect = code, location
        return trace
    new_path = rewritten_path(chosen, path)
    destination = ((chosen.http.get("route") or [{}])[0].get("destination") or {})
    for name, value in (((chosen.http.get("headers") or {}).get("request") or {}).get("add") or {}).items():
        headers.setdefault(name.lower(), value)
    for name, value in (((chosen.http.get("headers") or {}).get("request") or {}).get("set") or {}).items():
        headers[name.lower()] = value
    trace.add("route", where, ref(chosen.service), "pass",
              f"{chosen.describe()} -> {destination.get('host')}:{(destination.get('port') or {}).get('number')}"
              + (f", path rewritten to {new_path}" if new_path != path else ""))
    trace.user = headers.get(settings.user_header)
    source = ("gateway", settings.gateway_namespace, dict(settings.gateway_labels),
              _principal(settings, settings.gateway_namespace, settings.gateway_service_account))
    return _to_destination(model, trace, source, _ns(chosen.service), destination, new_path, headers, host, method,
                           request_principal, claims, onward_token)


def _trace_in_mesh(model: MeshModel, trace: Trace, host: str, port: int, path: str, method: str) -> Trace:
    caller, settings = trace.caller, model.settings
    namespace = caller.namespace or "default"
    headers = {k.lower(): v for k, v in caller.headers.items()}
    trace.user = headers.get(settings.user_header)
    sidecar, why = caller_has_sidecar(model, caller)
    if not sidecar and settings.data_plane == "ambient":
        # An enrolled pod's traffic is captured by its node's ztunnel, which sends HBONE mTLS as the pod's account.
        sidecar, why = ambient_enrolled(model, namespace, caller.pod_labels)
        why = f"{'enrolled in ambient' if sidecar else 'not enrolled in ambient'} ({why})"
    if not sidecar:
        # No proxy of its own: no principal, no DestinationRule, no Sidecar resource, no mesh routes; the destination
        # judges a plaintext connection (PeerAuthentication STRICT resets it, PERMISSIVE takes it without identity).
        trace.add("caller", f"pod {namespace}", "-", "info", f"{caller.label} has no sidecar ({why}): it sends plaintext")
        source = ("workload", namespace, dict(caller.pod_labels), None)
        return _to_destination(model, trace, source, namespace, {"host": host, "port": {"number": port}},
                               path, headers, host, method, None, None, None)
    principal = _principal(settings, namespace, caller.service_account or "default")
    trace.add("caller", f"sidecar {namespace}", "-", "info",
              f"in-mesh workload {principal} calls {host}:{port} directly (mTLS from its sidecar; {why})")
    _refuse_mesh_routes(model, namespace, host)
    if not _sidecar_egress(model, trace, namespace, caller.pod_labels, host, port, caller.pod_annotations):
        if trace.refused_at is not None:
            return trace
        principal = None  # the PassthroughCluster: the request leaves as the application sent it, in plaintext
    source = ("workload", namespace, dict(caller.pod_labels), principal)
    return _to_destination(model, trace, source, namespace, {"host": host, "port": {"number": port}},
                           path, headers, host, method, None, None, None)


def _sidecar_egress(model: MeshModel, trace: Trace, namespace: str, labels: Mapping[str, str], host: str,
                    port: int | None = None, annotations: Mapping[str, str] | None = None) -> bool:
    """Whether the caller's sidecar holds the service it calls: the Service must be exported to the caller's namespace
    (service_visible) and, when a Sidecar resource governs the caller, imported by its egress listener for the port
    (sidecar_imports). Otherwise the outbound traffic policy decides (outbound_traffic_policy): REGISTRY_ONLY refuses
    the request with the BlackHoleCluster's 502 (False, the trace refused); ALLOW_ANY lets it pass through without
    the sidecar's mTLS or DestinationRule (False, the trace goes on). True: the sidecar routes it as a mesh service."""
    injected, _ = caller_has_sidecar(model, workload(namespace, "default", labels, annotations=annotations))
    if not injected:
        return True  # no sidecar to hold or miss anything; the destination hop answers
    service = _resolve_service(model, host, namespace)
    if service is None:
        return True  # the destination hop answers: no Service in the plan
    sidecar = sidecar_scope(model, namespace, labels)
    fqdn = f"{_name(service)}.{_ns(service)}.svc.cluster.local"
    service_ports = [int(p["port"]) for p in (service.get("spec") or {}).get("ports") or [] if isinstance(p.get("port"), int)]
    if port is not None and port not in service_ports:
        return True  # the destination hop answers: the Service has no such port
    where = f"sidecar {namespace}"
    missing = None
    if not service_visible(model.settings, service, namespace):
        missing = (ref(service), f"{ref(service)} is not exported to {namespace} (exportTo "
                   f"{sorted(service_export_to(service)) or list(model.settings.default_service_export_to)})")
    elif sidecar is not None and not sidecar_imports(sidecar, namespace, fqdn, _ns(service), service_ports, port):
        missing = (ref(sidecar), f"{ref(sidecar)}'s egress hosts do not import {fqdn}" + (f" on port {port}" if port else ""))
    if missing is None:
        if sidecar is not None:
            trace.add("Sidecar", where, ref(sidecar), "pass", f"egress hosts import {fqdn}")
        return True
    mode, decided = outbound_traffic_policy(model, sidecar)
    if mode == "REGISTRY_ONLY":
        trace.refuse("Sidecar", where, f"{missing[0]}, {decided}",
                     f"{missing[1]}, so the caller's sidecar has no route for it; outboundTrafficPolicy REGISTRY_ONLY "
                     "sends it to the BlackHoleCluster: 502", 502)
        return False
    trace.add("Sidecar", where, f"{missing[0]}, {decided}", "info",
              f"{missing[1]}; outboundTrafficPolicy ALLOW_ANY: the PassthroughCluster, plaintext without the sidecar's mTLS")
    return False


def _service_fqdn(host: str, namespace: str) -> str:
    """A Kubernetes service host as Istio resolves a VirtualService's short host (config.go ResolveShortnameToFQDN):
    `name` in the route's namespace, `name.ns`, or already a full name."""
    if host.startswith("*") or host.endswith(".svc.cluster.local") or host.count(".") >= 2:
        return host
    return f"{host}.{namespace}.svc.cluster.local" if "." not in host else f"{host}.svc.cluster.local"


def _refuse_mesh_routes(model: MeshModel, caller_namespace: str, host: str) -> None:
    """A VirtualService bound to `mesh` for the host an in-mesh caller asks for changes where its sidecar sends the
    request (push_context.go VirtualServicesForGateway with the mesh gateway): not modelled, refused."""
    wanted = _service_fqdn(host, caller_namespace)
    for service in virtual_services_for_gateway(model.kind("VirtualService"), caller_namespace, MESH_GATEWAY):
        for name in (service.get("spec") or {}).get("hosts") or []:
            if host_matches(_service_fqdn(str(name), _ns(service)).lower(), wanted):
                raise authz.NotModelled(f"{ref(service)} is bound to the mesh for {host}: a sidecar's own routing "
                                        "(VirtualServices on the `mesh` gateway) is not modelled")


def _resolve_service(model: MeshModel, host: str, default_namespace: str) -> Mapping[str, Any] | None:
    parts = host.split(".")
    name = parts[0]
    namespace = parts[1] if len(parts) > 1 and parts[1] != "svc" else default_namespace
    # The Service's own visibility (its exportTo annotation) is judged where a proxy uses it: service_visible.
    return next((s for s in model.kind("Service") if _name(s) == name and _ns(s) == namespace), None)


def _dr_host(rule: Mapping[str, Any]) -> str:
    """A DestinationRule's host as istiod resolves it (istio/istio@1.28.0 pilot/pkg/model/config.go:197-230,
    ResolveShortnameToFQDN): a name without a dot gets the rule's namespace and `.svc.cluster.local`, anything else
    is kept as written."""
    name = str((rule.get("spec") or {}).get("host") or "")
    return name if "." in name or name == "*" else f"{name}.{_ns(rule)}.svc.cluster.local"


def _most_specific(fqdn: str, rules: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """MostSpecificHostMatch (pilot/pkg/model/config.go:265-310): the rules of the exact host, else those of the
    longest wildcard whose suffix the host ends with."""
    exact = [r for r in rules if _dr_host(r) == fqdn]
    if exact:
        return exact
    wild = [r for r in rules if _dr_host(r).startswith("*") and fqdn.endswith(_dr_host(r)[1:])]
    longest = max((len(_dr_host(r)) for r in wild), default=None)
    return [r for r in wild if len(_dr_host(r)) == longest]


def destination_rule_for(model: MeshModel, proxy_namespace: str, service_namespace: str,
                         fqdn: str) -> Mapping[str, Any] | None:
    """The DestinationRule a proxy in `proxy_namespace` applies to the service `fqdn` of `service_namespace`:
    PushContext.destinationRule
    (istio/istio@1.28.0 pilot/pkg/model/push_context.go:1238-1300) over the indexes setDestinationRules builds
    (:2060-2124). 1. the proxy's namespace (every rule there exported to it: none, `*`, `.` or its own name), or, for
    a proxy in the root namespace, the root namespace's private rules; 2. the service's namespace, 3. the root
    namespace, their rules exported beyond their own namespace, kept only when exported to the proxy's namespace
    (:1306-1324, after the most specific host is chosen). A rule without exportTo is private to its namespace when
    the mesh's defaultDestinationRuleExportTo holds `.` (:2099-2106), else exported to all. A rule with a
    workloadSelector and several rules merged for one host (mergeDestinationRule) are refused by name."""
    root = model.settings.root_namespace
    rules = sorted(model.kind("DestinationRule"), key=creation_order)

    def export_to(rule: Mapping[str, Any]) -> set[str]:
        spec = rule.get("spec") or {}
        return {"."} if spec.get("workloadSelector") else {str(e) for e in spec.get("exportTo") or []}

    def local(namespace: str) -> list[Mapping[str, Any]]:
        return [r for r in rules if _ns(r) == namespace
                and (not export_to(r) or export_to(r) & {"*", ".", namespace})]

    def private(rule: Mapping[str, Any]) -> bool:
        exported = export_to(rule)
        if not exported:
            return "." in model.settings.default_destination_rule_export_to
        return len(exported) == 1 and bool(exported & {".", _ns(rule)})

    def exported_from(namespace: str) -> list[Mapping[str, Any]]:
        chosen = _most_specific(fqdn, [r for r in rules if _ns(r) == namespace and not private(r)])
        return [r for r in chosen if not export_to(r) or export_to(r) & {"*", proxy_namespace}]

    found: list[Mapping[str, Any]] = []
    if proxy_namespace != root:
        found = _most_specific(fqdn, local(proxy_namespace))
    else:
        found = _most_specific(fqdn, [r for r in rules if _ns(r) == root and private(r)])
    found = found or exported_from(service_namespace) or exported_from(root)
    if not found:
        return None
    if any((r.get("spec") or {}).get("workloadSelector") for r in found):
        raise authz.NotModelled(f"{ref(next(r for r in found if (r.get('spec') or {}).get('workloadSelector')))}: "
                                "a DestinationRule with a workloadSelector is not modelled")
    if len(found) > 1:
        raise authz.NotModelled(f"{', '.join(ref(r) for r in found)}: several DestinationRules for {fqdn} "
                                "(merged by istiod) are not modelled")
    return found[0]


def _port_policy(policy: Mapping[str, Any] | None, port: int | None) -> tuple[Mapping[str, Any] | None, bool]:
    """GetPortLevelTrafficPolicy (istio/istio@1.28.0 pilot/pkg/networking/util/util.go:802-827): the entry of
    portLevelSettings for the Service port replaces the whole policy, inheriting nothing from the top level; True
    when one did."""
    if policy is None or port is None:
        return policy, False
    for setting in policy.get("portLevelSettings") or []:
        if int(((setting or {}).get("port") or {}).get("number") or 0) == port:
            return setting, True
    return policy, False


def _client_tls(rule: Mapping[str, Any] | None, subset: Mapping[str, Any] | None = None, port: int | None = None) -> str:
    """The caller proxy's transport toward the destination (istio/istio@1.28.0 pilot/pkg/networking/core/
    cluster_tls.go:407-461 buildUpstreamTLSSettings): no `tls` in the rule: auto mTLS (mTLS to a pod with a sidecar,
    plaintext otherwise, :90-110); ISTIO_MUTUAL: always mTLS (user supplied, no plaintext fallback); DISABLE
    (the proto's zero value, so `tls: {}` too): plaintext. SIMPLE and MUTUAL are refused by name.
    The policy is the one for the Service `port`: a portLevelSettings entry for it replaces the top level; a subset's
    traffic policy (its own port-level entry likewise) then replaces the rule's `tls` when it sets one, or whenever
    it has an entry for the port (util.go:829-872 MergeSubsetTrafficPolicy)."""
    policy, _ = _port_policy(((rule or {}).get("spec") or {}).get("trafficPolicy"), port)
    tls = (policy or {}).get("tls")
    if subset is not None and subset.get("trafficPolicy") is not None:
        own, port_level = _port_policy(subset["trafficPolicy"], port)
        if policy is None or own.get("tls") is not None or port_level:
            tls = own.get("tls")
    if tls is None:
        return "AUTO"
    mode = str(tls.get("mode") or "DISABLE")
    if mode not in ("ISTIO_MUTUAL", "DISABLE"):
        raise authz.NotModelled(f"{ref(rule)}: trafficPolicy.tls.mode {mode} is not modelled")
    return mode


def _to_destination(model: MeshModel, trace: Trace, source: tuple, route_namespace: str, destination: Mapping[str, Any],
                    path: str, headers: dict[str, str], host: str, method: str, request_principal, claims, token) -> Trace:
    settings = model.settings
    source_kind, source_namespace, source_labels, source_principal = source
    service = _resolve_service(model, str(destination.get("host") or ""), route_namespace)
    where = "destination"
    if service is None:
        return trace.refuse("Service", where, "-", f"no Service {destination.get('host')} in the plan: 503 (no healthy upstream)", 503)
    port_number = (destination.get("port") or {}).get("number")
    ports = (service.get("spec") or {}).get("ports") or []
    service_port = next((p for p in ports if port_number is None or p.get("port") == port_number), None)
    if service_port is None:
        return trace.refuse("Service", where, ref(service), f"has no port {port_number}: 503", 503)
    if source_kind == "gateway" and not service_visible(settings, service, source_namespace):
        # The gateway's clusters are the services exported to its namespace (istio/istio@1.28.0 pilot/pkg/model/
        # sidecar.go:250-262 DefaultSidecarScopeForGateway; a route's service must be visible to it, networking/core/
        # gateway.go:324-350); a route to another names a cluster Envoy does not have: cluster_not_found_response_code,
        # 503 by default (envoyproxy/envoy config/route/v3/route_components.proto RouteAction).
        exported = sorted(service_export_to(service)) or list(settings.default_service_export_to)
        return trace.refuse("Service", where, ref(service), f"not exported to {source_namespace} (exportTo {exported}): the "
                            "gateway has no cluster for it, 503 (cluster not found)", 503)
    # The DestinationRule the caller's proxy applies: its transport and, for a route to a subset, the subset's endpoints
    # and traffic policy. A caller without a proxy (no principal) sends plaintext whatever the rules say.
    fqdn = f"{_name(service)}.{_ns(service)}.svc.cluster.local"
    rule = destination_rule_for(model, source_namespace, _ns(service), fqdn) if source_principal is not None else None
    subset = None
    if destination.get("subset"):
        subset = next((s for s in ((rule or {}).get("spec") or {}).get("subsets") or [] if s.get("name") == destination["subset"]), None)
        if subset is None:
            # istiod builds a subset's cluster only from the DestinationRule the proxy applies to the host
            # (networking/core/cluster_builder.go:274-330 buildSubsetCluster); a route to another names no cluster: 503.
            return trace.refuse("DestinationRule", where, ref(rule) if rule is not None else "-",
                                f"subset {destination['subset']!r} of {fqdn} is in no DestinationRule the caller's proxy "
                                "applies: no such cluster, 503 (cluster not found)", 503)
    selector = (service.get("spec") or {}).get("selector") or {}
    selected = [w for w in workloads(model, _ns(service)) if selector and labels_subset(selector, w.labels)]
    if not selected:
        return trace.refuse("Service", where, ref(service), f"selector {_format_labels(selector)} picks no workload of the plan: 503", 503)
    if subset is not None:
        # A subset's labels narrow the Service's endpoints (the subset cluster's EDS, ServiceInstances filtered by
        # subset labels, pilot/pkg/xds/endpoints/endpoint_builder.go:148-164, 368); none left: no healthy upstream.
        selected = [w for w in selected if labels_subset(subset.get("labels") or {}, w.labels)]
        if not selected:
            return trace.refuse("DestinationRule", where, ref(rule), f"subset {subset.get('name')!r} labels "
                                f"{_format_labels(subset.get('labels') or {})} pick no pod of {ref(service)}: 503 (no healthy upstream)", 503)
    workload = selected[0]
    target = _target_port(service_port, workload)
    if target is None:
        return trace.refuse("Service", where, ref(service), f"targetPort {service_port.get('targetPort')!r} is no port of {workload.ref}: 503", 503)
    trace.add("Service", where, ref(service), "pass", f"port {service_port.get('port')} -> {workload.ref} port {target}")
    where = f"{workload.ref}"

    # NetworkPolicy: enforced by the CNI on the connection, before any proxy of the destination.
    admitted, decided, why = network_policy_admits(model, workload, target, source_namespace, source_labels)
    if not admitted:
        return trace.refuse("NetworkPolicy", where, decided, why, None)
    trace.add("NetworkPolicy", where, decided, "pass", why)

    ambient = settings.data_plane == "ambient"
    request = authz.Request(source_principal, target, headers, settings.trust_domain, method, path, host, None, None)
    # The caller's proxy (a sidecar, or the gateway's Envoy) picks its transport from the DestinationRule it applies
    # to the Service, a subset's traffic policy over the rule's.
    client_tls = _client_tls(rule, subset, service_port.get("port")) if source_principal is not None else "AUTO"
    if ambient:
        if rule is not None and (client_tls not in ("AUTO", "ISTIO_MUTUAL") or subset is not None):
            # ztunnel applies no DestinationRule; whether the caller's proxy or a waypoint sends HBONE, plaintext or
            # its own TLS to an ambient pod under such a rule is not evaluated here.
            shape = f"subset {subset.get('name')!r}" if subset is not None else f"tls.mode {client_tls}"
            raise authz.NotModelled(f"{ref(rule)}: a DestinationRule {shape} under the ambient data plane is not modelled")
        return _ambient_destination(model, trace, workload, service, target, request, source_principal)

    sidecar, why = has_sidecar(model, workload)
    if rule is not None:
        trace.add("DestinationRule", f"{source_kind} {source_namespace}", ref(rule), "info",
                  (f"subset {subset.get('name')!r} ({_format_labels(subset.get('labels') or {})}); " if subset is not None else "")
                  + {"AUTO": "no tls: auto mTLS", "ISTIO_MUTUAL": "tls.mode ISTIO_MUTUAL: the caller's proxy always sends mTLS",
                     "DISABLE": "tls.mode DISABLE: the caller's proxy sends plaintext"}[client_tls])
    if client_tls == "ISTIO_MUTUAL" and not sidecar:
        # A user-supplied ISTIO_MUTUAL has no plaintext fallback (cluster_tls.go:89-110 applies transport socket
        # matches only when auto-detected): the TLS handshake meets a plaintext server and the caller's proxy answers 503.
        return trace.refuse("DestinationRule", where, ref(rule), f"ISTIO_MUTUAL toward {workload.ref}, which has no sidecar "
                            f"({why}): TLS handshake fails, 503 (upstream connect error)", 503)
    if client_tls == "DISABLE":
        source_principal = None
        request = authz.Request(None, target, headers, settings.trust_domain, method, path, host, None, None)
    if not sidecar:
        trace.add("sidecar", where, workload.ref, "info", f"no sidecar ({why}): no PeerAuthentication or AuthorizationPolicy is enforced")
        return _reached(trace, workload, target, headers)
    governing = sidecar_scope(model, workload.namespace, workload.labels)
    if governing is not None and (governing.get("spec") or {}).get("ingress"):
        raise authz.NotModelled(f"{ref(governing)}: Sidecar ingress listeners (what {workload.ref}'s proxy listens on) "
                                "are not modelled")
    mode, decided = peer_authentication_mode(model, workload, target)
    if mode == "STRICT" and source_principal is None:
        sender = "the caller's DestinationRule makes its proxy send plaintext" if client_tls == "DISABLE" else "the caller sends plaintext"
        return trace.refuse("PeerAuthentication", where, decided, f"STRICT and {sender}: connection reset", None)
    if mode == "DISABLE" and client_tls == "ISTIO_MUTUAL":
        # The inbound listener of a DISABLE port takes plaintext only (listener_inbound.go, authn MTLSDisable).
        return trace.refuse("PeerAuthentication", where, decided, f"DISABLE, and {ref(rule)} makes the caller's proxy send "
                            "ISTIO_MUTUAL: TLS handshake fails, 503 (upstream connect error)", 503)
    if mode == "DISABLE":
        # The inbound listener takes plaintext only and the caller's sidecar, seeing no mTLS there (auto mTLS),
        # sends plaintext: no peer identity, so no `principals`/`namespaces` rule can match
        # (pilot/pkg/networking/core/listener_inbound.go, authn MTLSDisable).
        source_principal = None
        request = authz.Request(None, target, headers, settings.trust_domain, method, path, host, None, None)
        trace.add("PeerAuthentication", where, decided, "pass", "DISABLE: plaintext, the destination sees no peer identity")
    else:
        trace.add("PeerAuthentication", where, decided, "pass", f"{mode}; the caller's sidecar sends mTLS as {source_principal}"
                  if source_principal else f"{mode}; the caller sends plaintext")

    if not authorize(model, trace, where, workload.namespace, workload.labels, request, stages=("CUSTOM",)):
        return trace
    rules = jwt_rules_for(model, workload.namespace, workload.labels)
    if rules:
        jwt = verify_token(rules, token, headers=headers)
        verdict, decided, why = jwt
        if verdict == "invalid":
            return trace.refuse("RequestAuthentication", where, decided, why, jwt.status)
        headers = jwt.forward(headers)
        verified = (f"{token.get('iss')}/{token.get('sub')}", dict(jwt.claims or token)) if verdict == "verified" else (
            request.request_principal, request.claims)
        request = authz.Request(request.principal, target, headers, settings.trust_domain, method, path, host, *verified)
        trace.add("RequestAuthentication", where, decided, "pass", why)
    if not authorize(model, trace, where, workload.namespace, workload.labels, request, stages=("DENY", "ALLOW")):
        return trace
    return _reached(trace, workload, target, headers)


def _ambient_destination(model: MeshModel, trace: Trace, workload: Workload, service: Mapping[str, Any], target: int,
                         request: authz.Request, source_principal: str | None) -> Trace:
    settings = model.settings
    where = f"{workload.ref}"
    # Enrolment: the namespace's or pod's `istio.io/dataplane-mode: ambient`, a pod's `none` opts out
    # (https://istio.io/v1.28/docs/ambient/usage/add-workloads/).
    mode = workload.labels.get("istio.io/dataplane-mode") or model.namespace_labels(workload.namespace).get("istio.io/dataplane-mode")
    if mode != "ambient":
        trace.add("ztunnel", where, workload.ref, "info",
                  f"not enrolled in ambient (istio.io/dataplane-mode: {mode}): no ztunnel, no policy is enforced")
        return _reached(trace, workload, target, dict(request.headers))
    waypoint = (((service.get("metadata") or {}).get("labels") or {}).get("istio.io/use-waypoint")
                or model.namespace_labels(workload.namespace).get("istio.io/use-waypoint"))
    if waypoint and waypoint != "none":
        waypoint_where = f"waypoint {workload.namespace}/{waypoint}"
        trace.add("waypoint", waypoint_where, ref(service), "pass", f"istio.io/use-waypoint: {waypoint}: L7 policy is enforced here")
        if not authorize(model, trace, waypoint_where, workload.namespace, {"gateway.networking.k8s.io/gateway-name": waypoint}, request,
                         waypoint=(waypoint, [(_name(service), _ns(service))])):
            return trace
        # The destination ztunnel sees the waypoint's identity (https://istio.io/v1.28/docs/ambient/usage/l4-policy/).
        request = authz.Request(_principal(settings, workload.namespace, waypoint), request.port, request.headers,
                                settings.trust_domain, request.method, request.path, request.host)
    if source_principal is None:
        return trace.refuse("ztunnel", where, "-", "ambient: plaintext from outside the mesh is refused by ztunnel (HBONE mTLS)", None)
    trace.add("ztunnel", where, "-", "pass", f"HBONE mTLS from {request.principal}")
    if not authorize(model, trace, f"ztunnel {where}", workload.namespace, workload.labels, request, for_tcp=True):
        return trace
    return _reached(trace, workload, target, dict(request.headers))


def _reached(trace: Trace, workload: Workload, port: int, headers: Mapping[str, str]) -> Trace:
    trace.reached = True
    trace.backend = f"{workload.ref} port {port}"
    trace.status = 200
    trace.add("backend", workload.ref, workload.ref, "pass", f"reached on port {port}")
    return trace


def _rule_summary(policy: Mapping[str, Any], index: int, width: int = 200) -> str:
    rule = ((policy.get("spec") or {}).get("rules") or [])[index]
    # Hosts are the same on every gateway rule; the rest says why it matched.
    shown = {key: value for key, value in rule.items() if key != "to"} if all(
        set((e.get("operation") or {})) <= {"hosts"} for e in rule.get("to") or []) else dict(rule)
    text = json.dumps(shown, sort_keys=True)
    return text if len(text) <= width else text[: width - 3] + "..."


def _format_labels(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def render(trace: Trace) -> str:
    """The trace as `make trace` prints it."""
    lines = [f"{trace.caller.label} -> {trace.url}"]
    width = max((len(h.step) for h in trace.hops), default=4)
    for number, hop in enumerate(trace.hops, start=1):
        mark = {"pass": "ok", "refused": "REFUSED", "info": "note"}[hop.outcome]
        lines.append(f"{number:2d}. {hop.step:<{width}}  {mark:<7}  {hop.decided_by}")
        lines.append(f"    {'':<{width}}           {hop.where}: {hop.why}")
    if trace.reached:
        lines.append(f"Reached {trace.backend}" + (f" as {trace.user}" if trace.user else " without an identity header"))
    else:
        hop = trace.refused_at
        status = f" ({trace.status})" if trace.status else ""
        lines.append(f"Not reached{status}: {hop.step} at {hop.where}, {hop.decided_by}" if hop else "Not reached")
    return "\n".join(lines) + "\n"
