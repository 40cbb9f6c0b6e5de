"""Whether an Istio AuthorizationPolicy applies to a workload and whether its rules match a request, as Istio 1.28
builds Envoy RBAC from it.

Every rule below follows istio/istio@1.28.0 (and 1.24.6 where a Request's or the caller's `istio_version` says so);
the line is cited where the code depends on it.

Which policies a proxy enforces (pilot/pkg/model/authorization.go:84-113, policyattachment.go:109-200; see
should_attach and lookup_namespaces, which follow the mesh's Istio version where 1.24 differs):
- those of the mesh's root namespace, of the workload's own namespace and of the Services a waypoint serves;
- a policy with `targetRef(s)` never applies to a sidecar or a classic ingress gateway (policyattachment.go:131-136);
  it applies to a Gateway API gateway naming its Gateway, to a waypoint (ambient) naming its Gateway, a Service or
  ServiceEntry it serves, or the GatewayClass istio-waypoint from the root namespace (policyattachment.go:151-198);
- otherwise its `selector` must be a subset of the workload's labels; no selector selects every workload
  (policyattachment.go:109-112).

How the policies of one workload combine (pilot/pkg/security/authz/builder/builder.go:110-145, 170-247): CUSTOM first
(ext_authz, asked only when one of its rules matches), then DENY (any matching rule refuses), then ALLOW (when any
ALLOW policy applies, a request matching none of their rules is refused; none applies: allowed). A policy without
rules matches nothing (builder.go:228-233): an ALLOW policy without rules refuses everything, `rules: [{}]` allows
everything.

How one rule matches (model/model.go:78-152): one `from` entry, one `to` entry and every `when` condition must match;
no `from`/`to` matches everything. In an entry each field must hold: a value from its list, and none from its `not`
list (model.go:232-342).

String patterns (matcher/string.go:99-115, matcher/header.go:25-90): `*` is any non-empty value (a header: present),
`*abc` a suffix, `abc*` a prefix, else exact; case-sensitive except `hosts` (HostMatcher ignores case). Principals are
compared as `spiffe://<principal>` (model/generator.go:221-224), so a plaintext caller (no principal) matches no
`principals` entry and every `notPrincipals` entry; `namespaces` is the regex `.*/ns/<ns>/.*` over the principal
(generator.go:178-182). `requestPrincipals` splits the pattern at its last `/` into issuer and subject
(generator.go:234-292). `request.auth.claims[a][b]` matches a string claim or any item of a list claim
(model/util.go:103-105, matcher/metadata.go:57-100). Paths: `{*}` is one segment and `{**}` any number of segments
(matcher/template.go:25-41, builder testdata http/allow-path-in.yaml).

A value the generator cannot build (an HTTP-only field on a TCP, i.e. ztunnel, filter; a malformed port) is an
error: in an ALLOW policy the whole rule is dropped (it allows less), in a DENY policy only that value is dropped
(it refuses more) (model.go:344-354, builder.go:209-222). That is how Istio's ambient mode "fails safe" for L7
rules enforced by ztunnel.

Pure Python over plain dicts; no Pulumi.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

_HEADER_KEY = re.compile(r"^request\.headers\[(.+)\]$")
_CLAIM_KEY = re.compile(r"^request\.auth\.claims((?:\[[^\[\]]+\])+)$")
#: Fields Istio builds only for HTTP (generator.go: `%q is HTTP only`): not enforceable by ztunnel.
HTTP_ONLY_SOURCE_FIELDS = frozenset({"requestPrincipals", "notRequestPrincipals"})
HTTP_ONLY_OPERATION_FIELDS = frozenset({"paths", "notPaths", "methods", "notMethods", "hosts", "notHosts"})
#: source.serviceAccounts (and the `source.serviceAccount` condition) came with Istio 1.25 (model.go:127 at 1.25.0).
SERVICE_ACCOUNT_FIELDS = frozenset({"serviceAccounts", "notServiceAccounts"})
_SOURCE_FIELDS = {"principals", "notPrincipals", "namespaces", "notNamespaces", *SERVICE_ACCOUNT_FIELDS,
                  *HTTP_ONLY_SOURCE_FIELDS}
_OPERATION_FIELDS = {"ports", "notPorts", *HTTP_ONLY_OPERATION_FIELDS}


@dataclass(frozen=True)
class Request:
    """One hop as the destination proxy sees it."""

    #: The caller's mesh principal (`<trust domain>/ns/<ns>/sa/<sa>`), None for plaintext.
    principal: str | None
    #: The destination (container) port.
    port: int = 8080
    headers: Mapping[str, str] = field(default_factory=dict)
    trust_domain: str = "cluster.local"
    method: str = "GET"
    #: The path as the proxy sees it (after the gateway's rewrite, for the hop behind the gateway).
    path: str = "/"
    #: `:authority`.
    host: str = ""
    #: `iss/sub` of a JWT a RequestAuthentication of this proxy verified; None without one.
    request_principal: str | None = None
    #: The verified token's payload (jwt_authn's `payload` metadata); None without one.
    claims: Mapping[str, Any] | None = None
    #: meshConfig `trustDomainAliases`: identities of these trust domains count as the mesh's own.
    trust_domain_aliases: tuple[str, ...] = ()
    #: The Istio (major, minor) whose rules apply (see istio_minor).
    istio_version: tuple[int, int] = (1, 28)


class NotModelled(ValueError):
    """A field or condition this model does not evaluate: refused rather than guessed."""


class OpaqueValue(str):
    """A header value whose presence is known but whose bytes are not: what jwt_authn writes to a jwtRule's
    `outputPayloadToHeader` (the token's own base64url payload segment, as the client encoded it). A rule may test it
    for presence (`*`); comparing it with anything else is refused."""


class _BuildError(Exception):
    """Istio's generator would fail on this value (an HTTP-only field on TCP, an invalid port)."""


def string_matches(pattern: str, value: str | None, ignore_case: bool = False) -> bool:
    """Istio's `*`/prefix/suffix/exact pattern (matcher/string.go:99-115); None (absent) never matches."""
    if value is None:
        return False
    if ignore_case:
        pattern, value = pattern.lower(), value.lower()
    if pattern == "*":
        return value != ""
    if pattern.startswith("*"):
        return value.endswith(pattern[1:])
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    return value == pattern


def header_matches(pattern: str, value: str | None) -> bool:
    """matcher/header.go:25-56: `*` is present_match (an empty value is present), else as string_matches."""
    if value is None:
        return False
    if pattern == "*":
        return True
    if isinstance(value, OpaqueValue):
        raise NotModelled(f"a header match {pattern!r} against {value} (only its presence is known)")
    return string_matches(pattern, value)


def _principal_spellings(pattern: str, trust_domain: str, aliases: tuple[str, ...] = ()) -> list[str]:
    # pilot/pkg/security/trustdomain/bundle.go:53-120 (ReplaceTrustDomainAliases, via model.go:155-168): a principal
    # of `cluster.local`, of the mesh's trust domain or of one of its aliases stands for every one of them; any other
    # stays as written.
    domain, sep, rest = pattern.partition("/")
    domains = (trust_domain, *aliases)
    if sep and (domain == "cluster.local" or domain in domains):
        return list(dict.fromkeys([pattern, *(f"{d}/{rest}" for d in domains)]))
    return [pattern]


def _principal_matches(pattern: str, request: Request) -> bool:
    if request.principal is None:
        return False
    spellings = _principal_spellings(pattern, request.trust_domain, request.trust_domain_aliases)
    return any(string_matches(spelling, request.principal) for spelling in spellings)


def _namespace_matches(pattern: str, request: Request) -> bool:
    # generator.go:178-182: regex `.*/ns/<ns>/.*` (full match) over the SPIFFE principal, `*` turned into `.*`.
    if request.principal is None:
        return False
    regex = ".*/ns/" + ".*".join(re.escape(part) for part in pattern.split("*")) + "/.*"
    return re.fullmatch(regex, "spiffe://" + request.principal) is not None


def _service_account_matches(pattern: str, request: Request, policy_namespace: str) -> bool:
    """srcServiceAccountGenerator (istio/istio@1.28.0 pilot/pkg/security/authz/model/generator.go:184-213): `<ns>/<sa>`,
    or `<sa>` in the policy's namespace, as the regex spiffe://.+/ns/<ns>/(.+/|)sa/<sa>(/.+)? over the peer identity."""
    if request.principal is None:
        return False
    ns, slash, sa = pattern.partition("/")
    if not slash:
        ns, sa = policy_namespace, pattern
    regex = f"spiffe://.+/ns/{ns}/(.+/|)sa/{sa}(/.+)?"
    return re.fullmatch(regex, f"spiffe://{request.principal}") is not None


def _request_principal_matches(pattern: str, request: Request) -> bool:
    """generator.go:234-292: the pattern is split at its last `/`; issuer and subject are matched apart."""
    if request.request_principal is None:
        return False
    # Envoy compares the payload's `iss` and `sub` claims apart (generator.go:282-284), so a subject holding `/`
    # (GitHub's `repo:org/repo:ref:...`) is not split; only the pattern is.
    claims = request.claims or {}
    if isinstance(claims.get("iss"), str) and isinstance(claims.get("sub"), str):
        iss, sub = claims["iss"], claims["sub"]
    else:
        iss, _, sub = request.request_principal.rpartition("/")
    index = pattern.rfind("/")
    found = index >= 0
    p_iss, p_sub = (pattern[:index], pattern[index + 1:]) if found else (pattern, "")
    any_value = lambda value: value != ""  # noqa: E731  (the regex `.+`)
    if pattern == "*":
        return any_value(iss) and any_value(sub)
    if pattern.startswith("*"):
        if found:
            iss_ok = any_value(iss) if p_iss == "*" else iss.endswith(p_iss[1:])
            return iss_ok and sub == p_sub
        return any_value(iss) and sub.endswith(pattern[1:])
    if pattern.endswith("*"):
        if found:
            sub_ok = any_value(sub) if p_sub == "*" else sub.startswith(p_sub[:-1])
            return iss == p_iss and sub_ok
        return iss.startswith(pattern[:-1]) and any_value(sub)
    return iss == p_iss and sub == p_sub


def _template_regex(template: str) -> str:
    # matcher/template.go:25-41: {*} -> one path segment, {**} -> any number of segments (Envoy uri_template).
    parts = re.split(r"(\{\*\*\}|\{\*\}|\*\*|\*)", template)
    out = []
    for part in parts:
        if part in ("{**}", "**"):
            out.append(r"[^?#]*")
        elif part in ("{*}", "*"):
            out.append(r"[^/?#]+")
        else:
            out.append(re.escape(part))
    return "".join(out)


def path_matches(pattern: str, path: str) -> bool:
    """generator.go:372-386: a template (`{*}`, `{**}`) or Istio's string pattern over the path without query."""
    path = path.split("?", 1)[0]
    if "{*}" in pattern or "{**}" in pattern:
        return re.fullmatch(_template_regex(pattern), path) is not None
    return string_matches(pattern, path)


def _port_matches(pattern: object, port: int) -> bool:
    text = str(pattern)
    if not text.isdigit() or int(text) > 65535:
        raise _BuildError(f"invalid port {text}")  # util.go:28-35
    return int(text) == port


def _host_matches(pattern: str, request: Request) -> bool:
    # matcher/header.go:58-90: HostMatcher, case-insensitive; `*` is present.
    if pattern == "*":
        return request.host != ""
    return string_matches(pattern, request.host, ignore_case=True)


def _claim_value(request: Request, path: list[str]) -> Any:
    value: Any = request.claims
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


def _claim_matches(pattern: str, value: Any) -> bool:
    # util.go:103-105 (useExtendedJwt): a string claim, or any string item of a list claim.
    if isinstance(value, str):
        return string_matches(pattern, value)
    if isinstance(value, list):
        return any(isinstance(item, str) and string_matches(pattern, item) for item in value)
    return False


def _headers_get(request: Request, name: str) -> str | None:
    # Envoy matches header names case-insensitively.
    name = name.lower()
    return next((v for k, v in request.headers.items() if k.lower() == name), None)


def _condition(key: str, request: Request, for_tcp: bool, policy_namespace: str = "default"):
    """The per-value test for one `when` key, or raise (_BuildError: Istio cannot build it; NotModelled: we do not)."""
    header = _HEADER_KEY.match(key)
    if header is not None:
        if for_tcp:
            raise _BuildError(f"{key!r} is HTTP only")
        value = _headers_get(request, header.group(1))
        return lambda pattern: header_matches(str(pattern), value)
    claims = _CLAIM_KEY.match(key)
    if claims is not None:
        if for_tcp:
            raise _BuildError(f"{key!r} is HTTP only")
        value = _claim_value(request, re.findall(r"\[([^\[\]]+)\]", claims.group(1)))
        return lambda pattern: _claim_matches(str(pattern), value)
    if key == "source.namespace":
        return lambda pattern: _namespace_matches(str(pattern), request)
    if key == "source.principal":
        return lambda pattern: _principal_matches(str(pattern), request)
    if key == "source.serviceAccount":
        return lambda pattern: _service_account_matches(str(pattern), request, policy_namespace)
    if key == "request.auth.principal":
        if for_tcp:
            raise _BuildError(f"{key!r} is HTTP only")
        return lambda pattern: _request_principal_matches(str(pattern), request)
    if key == "destination.port":
        return lambda pattern: _port_matches(pattern, request.port)
    raise NotModelled(f"condition not modelled: {key!r}")


_SOURCE_TESTS = {
    "principals": _principal_matches,
    "namespaces": _namespace_matches,
    "requestPrincipals": _request_principal_matches,
}
_OPERATION_TESTS = {
    "ports": lambda pattern, request: _port_matches(pattern, request.port),
    "paths": lambda pattern, request: path_matches(str(pattern), request.path),
    "methods": lambda pattern, request: header_matches(str(pattern), request.method),
    "hosts": _host_matches,
}


def _field_holds(values: list | None, not_values: list | None, test, deny: bool) -> bool:
    """values: one must match; notValues: none may. A value Istio cannot build drops the rule (ALLOW, raised) or is
    skipped (DENY) (model.go:344-354)."""

    def any_match(patterns: list) -> bool | None:
        built = False
        for pattern in patterns:
            try:
                matched = test(pattern)
            except _BuildError:
                if not deny:
                    raise
                continue
            built = True
            if matched:
                return True
        return False if built else None

    if values:
        matched = any_match(values)
        if matched is False:
            return False
    if not_values:
        matched = any_match(not_values)
        if matched is True:
            return False
    return True


def _entry_matches(entry: Mapping, tests: Mapping, known: set, http_only: frozenset, request: Request,
                   for_tcp: bool, deny: bool) -> bool:
    unknown = set(entry) - known
    if unknown:
        raise NotModelled(f"fields not modelled: {sorted(unknown)}")
    for name, test in tests.items():
        values, not_values = entry.get(name), entry.get("not" + name[0].upper() + name[1:])
        if not values and not not_values:
            continue
        if for_tcp and name in {f for f in http_only if not f.startswith("not")}:
            # generator.go: "%q is HTTP only" for every value: ALLOW drops the rule, DENY drops the field.
            if not deny:
                raise _BuildError(f"{name} is HTTP only")
            continue
        if not _field_holds(values, not_values, lambda pattern, test=test: test(pattern, request), deny):
            return False
    return True


def rule_matches(rule: Mapping, request: Request, *, action: str = "ALLOW", for_tcp: bool = False,
                 policy_namespace: str = "default") -> bool:
    """Whether one AuthorizationPolicy rule matches the request (model.go:78-152).

    `for_tcp`: evaluated by a TCP filter (ztunnel), where HTTP attributes cannot be built: an ALLOW rule using them
    matches nothing, a DENY rule ignores them.
    """
    deny = action != "ALLOW"
    if request.istio_version < (1, 25) and (
            any(set(entry.get("source") or {}) & SERVICE_ACCOUNT_FIELDS for entry in rule.get("from") or [])
            or any(c.get("key") == "source.serviceAccount" for c in rule.get("when") or [])):
        # Istio 1.24's API has neither: whether the API server prunes the field (leaving a source that matches more)
        # or refuses the policy depends on the installed CRDs, so the answer is not known.
        raise NotModelled("source serviceAccounts / source.serviceAccount (Istio 1.25 and later; this mesh runs "
                          f"{request.istio_version[0]}.{request.istio_version[1]})")
    source_tests = {**_SOURCE_TESTS, "serviceAccounts": lambda pattern, request: _service_account_matches(
        str(pattern), request, policy_namespace)}
    try:
        sources = rule.get("from")
        if sources and not any(
            _entry_matches(entry.get("source") or {}, source_tests, _SOURCE_FIELDS, HTTP_ONLY_SOURCE_FIELDS, request, for_tcp, deny)
            for entry in sources
        ):
            return False
        operations = rule.get("to")
        if operations and not any(
            _entry_matches(entry.get("operation") or {}, _OPERATION_TESTS, _OPERATION_FIELDS, HTTP_ONLY_OPERATION_FIELDS,
                           request, for_tcp, deny)
            for entry in operations
        ):
            return False
        for condition in rule.get("when") or []:
            try:
                test = _condition(str(condition.get("key", "")), request, for_tcp, policy_namespace)
            except _BuildError:
                if not deny:
                    raise
                continue
            if not _field_holds(condition.get("values"), condition.get("notValues"), test, deny):
                return False
        return True
    except _BuildError:
        return False


def uses_http_attributes(rule: Mapping) -> bool:
    """Whether a rule needs L7 (HTTP) attributes, which ztunnel cannot enforce."""
    for entry in rule.get("from") or []:
        if set(entry.get("source") or {}) & HTTP_ONLY_SOURCE_FIELDS:
            return True
    for entry in rule.get("to") or []:
        if set(entry.get("operation") or {}) & HTTP_ONLY_OPERATION_FIELDS:
            return True
    return any(str(c.get("key", "")).startswith(("request.", "experimental.")) for c in rule.get("when") or [])


def policy_matches(policy: Mapping, request: Request, *, for_tcp: bool = False) -> int | None:
    """Index of the first rule of the policy that matches, None if none does (no rules: none, builder.go:228-233)."""
    spec = policy.get("spec") or {}
    action = spec.get("action") or "ALLOW"
    unknown: NotModelled | None = None
    for index, rule in enumerate(spec.get("rules") or []):
        if rule is None:
            continue  # builder.go:205-208: a nil rule is skipped
        try:
            if rule_matches(rule, request, action=action, for_tcp=for_tcp,
                            policy_namespace=(policy.get("metadata") or {}).get("namespace") or "default"):
                return index
        except NotModelled as error:
            # Envoy's RBAC matches a policy when any of its rules (permissions x principals) matches: a later rule
            # the model evaluates can still decide; only when none does is the unevaluated one refused.
            unknown = unknown or error
    if unknown is not None:
        raise unknown
    return None


def denies(policy: Mapping, request: Request) -> bool:
    """Whether a DENY AuthorizationPolicy refuses the request (its selector is the caller's business)."""
    spec = policy.get("spec") or {}
    if spec.get("action") != "DENY":
        raise ValueError(f"{(policy.get('metadata') or {}).get('name')}: not a DENY policy")
    return policy_matches(policy, request) is not None


DRY_RUN_ANNOTATION = "istio.io/dry-run"


def is_dry_run(policy: Mapping) -> bool:
    """builder.go:147-157: `istio.io/dry-run` parsed as Go's ParseBool; a value it cannot parse counts as false."""
    value = ((policy.get("metadata") or {}).get("annotations") or {}).get(DRY_RUN_ANNOTATION)
    return str(value) in ("1", "t", "T", "TRUE", "true", "True")


def selector_selects(selector: Mapping | None, labels: Mapping[str, str]) -> bool:
    """policyattachment.go:109-112: no selector selects all; else matchLabels must be a subset of the labels."""
    match = (selector or {}).get("matchLabels") or {}
    return all(labels.get(key) == value for key, value in match.items())


def target_refs(policy: Mapping) -> list[Mapping]:
    """policyattachment.go:114-121: `targetRefs`, else the legacy single `targetRef`."""
    spec = policy.get("spec") or {}
    refs = list(spec.get("targetRefs") or [])
    if not refs and spec.get("targetRef"):
        refs = [spec["targetRef"]]
    return refs


#: The label a Gateway API gateway's (and a waypoint's) pods carry: the Gateway's name (policyattachment.go:101-104).
GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"
#: constants.WaypointGatewayClassName.
WAYPOINT_GATEWAY_CLASS = "istio-waypoint"
#: The Istio this module follows when no version is given.
DEFAULT_ISTIO_VERSION = (1, 28)


def istio_minor(version: str | tuple[int, int] | None) -> tuple[int, int]:
    """`1.24` (the stack's kubeflow.mesh.istioVersion), `1.24.6` or (1, 24) as (major, minor); None: the default."""
    if version is None:
        return DEFAULT_ISTIO_VERSION
    if isinstance(version, tuple):
        return version
    major, minor = str(version).split(".")[:2]
    return int(major), int(minor)


def _is_kind(ref: Mapping, group: str, kind: str) -> bool:
    # config.CanonicalGroup: an empty group is `core`, so a Gateway reference must name its group.
    canonical = lambda g: g or "core"  # noqa: E731
    return canonical(str(ref.get("group") or "")) == canonical(group) and ref.get("kind") == kind


def should_attach(policy: Mapping, namespace: str, labels: Mapping[str, str], root_namespace: str, *,
                  is_waypoint: bool = False, services: Iterable[tuple] = (),
                  istio_version: tuple[int, int] = DEFAULT_ISTIO_VERSION, selector_based_gateway_policy: bool = True) -> bool:
    """ShouldAttachPolicy (istio/istio@1.28.0 pilot/pkg/model/policyattachment.go:123-200; @1.24.6 :98-150).

    A workload without the gateway-name label (a sidecar, a classic ingress gateway) takes a policy by selector and
    never one with targetRefs. A Gateway API gateway takes targetRef policies naming its Gateway in its own namespace
    (and selector policies without targetRefs unless `selector_based_gateway_policy`, istiod's
    PILOT_ENABLE_SELECTOR_BASED_K8S_GATEWAY_POLICY, default true, is off); a waypoint
    only targetRef policies: its Gateway, a Service it serves (`services`: (name, namespace) or (name, namespace,
    registry); a ServiceEntry is registry `External`), and since 1.25 the GatewayClass istio-waypoint from the root
    namespace. Since 1.25 a Gateway reference must be in the workload's own namespace."""
    metadata = policy.get("metadata") or {}
    policy_namespace = metadata.get("namespace") or "default"
    selector = (policy.get("spec") or {}).get("selector")
    gateway = labels.get(GATEWAY_NAME_LABEL)
    refs = target_refs(policy)
    if gateway is None:
        return not refs and selector_selects(selector, labels)
    if not refs:
        return not is_waypoint and selector_based_gateway_policy and selector_selects(selector, labels)
    served = [(entry[0], entry[1], entry[2] if len(entry) > 2 else "Kubernetes") for entry in services]
    for ref in refs:
        name = ref.get("name")
        if is_waypoint and _is_kind(ref, "", "Service") and any(
                name == svc and policy_namespace == ns and registry == "Kubernetes" for svc, ns, registry in served):
            return True
        if is_waypoint and _is_kind(ref, "networking.istio.io", "ServiceEntry") and any(
                name == svc and policy_namespace == ns and registry == "External" for svc, ns, registry in served):
            return True
        if istio_version >= (1, 25) and policy_namespace == root_namespace and is_waypoint and \
                _is_kind(ref, "gateway.networking.k8s.io", "GatewayClass") and name == WAYPOINT_GATEWAY_CLASS:
            return True
        if istio_version >= (1, 25) and policy_namespace != namespace:
            continue
        if ref.get("namespace") not in (None, "", namespace):
            continue
        if _is_kind(ref, "gateway.networking.k8s.io", "Gateway") and name == gateway:
            return True
    return False


def lookup_namespaces(kind: str, namespace: str, root_namespace: str, service_namespaces: Iterable[str] = (),
                      istio_version: tuple[int, int] = DEFAULT_ISTIO_VERSION) -> list[str]:
    """The namespaces whose policies istiod considers for a workload. AuthorizationPolicy: the root's, the workload's
    and its Services' (authorization.go:84-113 at 1.28.0); at 1.24 a waypoint's Service namespace alone replaces
    both (authorization.go:88-104 at 1.24.6). RequestAuthentication and PeerAuthentication: the workload's, the
    root's and the Services' (authentication.go:229-237; the same at 1.24.6 with one Service)."""
    services = list(service_namespaces)
    if kind == "AuthorizationPolicy" and istio_version < (1, 25) and services:
        return list(dict.fromkeys(services))
    first = [root_namespace, namespace] if kind == "AuthorizationPolicy" else [namespace, root_namespace]
    return list(dict.fromkeys([*first, *services]))


def policies_for_workload(
    policies: Iterable[Mapping], namespace: str, labels: Mapping[str, str], root_namespace: str,
    *, waypoint_services: Iterable[tuple] | None = None, waypoint_gateway: str | None = None,
    istio_version: tuple[int, int] = DEFAULT_ISTIO_VERSION,
) -> dict[str, list[Mapping]]:
    """The policies a proxy enforces, by action (ListAuthorizationPolicies, authorization.go:84-113; should_attach).

    A sidecar or ingress gateway (`waypoint_services` None) is matched by its labels; a waypoint by the Services it
    serves for this request and its Gateway (`waypoint_gateway`, else its gateway-name label)."""
    if waypoint_services is not None and istio_version < (1, 24):
        # Waypoint attachment took its present shape in 1.24 (policyattachment.go:98-156 at 1.24.6; 1.22.1 attaches
        # Services by a different rule).
        raise NotModelled(f"policy attachment to a waypoint on Istio {istio_version[0]}.{istio_version[1]}")
    services = list(waypoint_services or [])
    labels = dict(labels)
    if waypoint_services is not None and waypoint_gateway:
        labels[GATEWAY_NAME_LABEL] = waypoint_gateway
    searched = lookup_namespaces("AuthorizationPolicy", namespace, root_namespace, [entry[1] for entry in services],
                                 istio_version)
    result: dict[str, list[Mapping]] = {"CUSTOM": [], "DENY": [], "ALLOW": [], "AUDIT": []}
    for policy_namespace in searched:
        for policy in policies:
            if policy.get("kind") != "AuthorizationPolicy":
                continue
            if ((policy.get("metadata") or {}).get("namespace") or "default") != policy_namespace:
                continue
            if is_dry_run(policy) and ((policy.get("spec") or {}).get("action") or "ALLOW") != "CUSTOM":
                # builder.go:189-199: a dry-run policy only feeds shadow rules (logged, never enforced).
                continue
            if not should_attach(policy, namespace, labels, root_namespace, is_waypoint=waypoint_services is not None,
                                 services=services, istio_version=istio_version):
                continue
            action = (policy.get("spec") or {}).get("action") or "ALLOW"
            result.setdefault(action, []).append(policy)
    return result
