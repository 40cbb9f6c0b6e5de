"""The trusted Kubeflow identity at the central gateway, as plain Kubernetes objects.

Kubeflow believes one request header, `kubeflow-userid` (and `kubeflow-groups`), about who is calling.
Whoever can set that header is anyone, so the gateway must (1) drop every copy a client sent and
(2) set it from an identity that the mesh itself established: the header the auth proxy returns
through ext-authz (`x-auth-request-email` from oauth2-proxy, `x-forwarded-user` from OpenShift's
oauth-proxy) or a claim of a JWT that Istio verified.

Where the pieces sit in the gateway's HTTP filter chain (Istio orders its own filters as metadata
exchange, CUSTOM authz = ext_authz, authn = jwt_authn, authz = rbac, stats, ..., router; istio/istio
PR 46899 and issue 51173 describe this order):

    strip-client-identity   INSERT_FIRST    drops client-sent kubeflow-* AND the source headers
    envoy.filters.http.ext_authz            the auth proxy may now add x-auth-request-* (trusted)
    envoy.filters.http.jwt_authn            a verified token's claims may now add x-kubeflow-jwt-*
    envoy.filters.http.rbac
    identity-headers        INSERT_BEFORE router   drops kubeflow-* again, sets them from the sources
    envoy.filters.http.router

Why two filters: the copy must run after ext_authz and jwt_authn (they produce the identity), but a
filter that late cannot tell a source header written by ext_authz from one the client sent whenever
ext_authz did not run for that request (upstream's CUSTOM policy skips the auth proxy for requests
that carry `Authorization` and for `/oauth2/*`). So the source headers are removed before ext_authz
can run, and only then are they trustworthy. For the JWT claim headers current Envoy does the same
itself (jwt_authn clears them unless a verified token supplies them: istio/istio issue 53212, seen
with Envoy 1.40 in the tests), but older proxies left a client-sent one in place when no token came
(envoyproxy/envoy issue 35553), so they are stripped here too. The late filter strips the
Kubeflow headers by itself as well, so a client's value never survives even where no auth proxy is
wired at all.

Why Lua and not header_mutation: the same Lua config runs on every Istio we support, and only Lua can
lower-case a value, fail closed when an identity header arrives more than once, and catch the
underscore spelling `kubeflow_userid`, which WSGI servers (the Kubeflow web apps are Flask) merge with
`kubeflow-userid`.

Every builder here is pure: options in, plain dicts out, no Pulumi.
"""

from __future__ import annotations

import hashlib
import re
import string
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping, Sequence
from urllib.parse import urlsplit

#: Where verified JWT claims are written by Istio (`outputClaimToHeaders`) for the identity filter to read.
#: Internal names: clients can never set them, because the first filter strips them.
JWT_USER_CLAIM_HEADER = "x-kubeflow-jwt-userid"
JWT_GROUPS_CLAIM_HEADER = "x-kubeflow-jwt-groups"

#: Names of the two Lua filters in the gateway's chain; they show up in config dumps and stats.
STRIP_CLIENT_IDENTITY_FILTER_NAME = "kubeflow-platform.strip-client-identity"
IDENTITY_HEADERS_FILTER_NAME = "kubeflow-platform.identity-headers"

LUA_FILTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua"

#: Oldest Istio whose gateway we configure. 1.20 has outputClaimToHeaders (1.17+) and Envoy's
#: `default_source_code` for Lua; older meshes are out of support upstream anyway.
MINIMUM_ISTIO_VERSION = (1, 20)
#: security.istio.io/v1 is served from Istio 1.22 on; older meshes only know v1beta1.
SECURITY_V1_SINCE = (1, 22)

#: In-mesh services that legitimately pass `kubeflow-userid` on to another Kubeflow service: the KFP UI
#: proxies API calls to ml-pipeline with it, the central dashboard calls KFAM with it, metadata-envoy
#: (the UI's /ml_metadata proxy, given its own account by manifests/mesh.py) passes it to metadata-grpc.
#: They only ever hold a header that the gateway set, because their own inbound traffic is under the same policy.
UPSTREAM_HEADER_FORWARDERS = (
    "cluster.local/ns/kubeflow/sa/ml-pipeline-ui",
    "cluster.local/ns/kubeflow/sa/centraldashboard",
    "cluster.local/ns/kubeflow/sa/metadata-envoy",
)

# RFC 7230 section 3.2.6 `token`; Envoy rejects any other byte in a header name.
_TOKEN_CHARS = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Headers that Envoy owns or that hop-by-hop semantics make meaningless as an identity carrier.
_RESERVED_HEADERS = frozenset(
    {"host", "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te",
     "content-length", "authorization", "cookie", "set-cookie"}
)
# Kept short and boring: the prefix becomes part of every user id (and so of Profile owner names).
_USER_ID_PREFIX = re.compile(r"[A-Za-z0-9._:@+/-]*")
_KUBERNETES_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_LUA_PLAIN = frozenset(string.ascii_letters + string.digits + "-_.:@+/ ")
_ISTIO_VERSION = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")


@dataclass(frozen=True)
class JwtIssuer:
    """A token issuer whose JWTs the gateway verifies, e.g. the enterprise IdP for CLI clients."""

    issuer: str
    """Exactly the `iss` claim of its tokens (https, no query or fragment; a trailing slash matters)."""
    jwks_uri: str | None = None
    """Where its signing keys are; omitted means Istio reads `jwks_uri` from the issuer's discovery document."""
    audiences: tuple[str, ...] = ()
    """Accepted `aud` values; empty accepts any audience of this issuer."""
    user_claim: str | None = "email"
    """Claim copied into the user id header; None verifies tokens without making them a Kubeflow identity."""
    groups_claim: str | None = "groups"
    """Claim copied into the groups header."""


@dataclass(frozen=True)
class IdentityHeaderOptions:
    """How the gateway derives the Kubeflow identity headers. Keys in messages are the stack config's."""

    user_source_header: str = "x-auth-request-email"
    """Header the auth proxy returns through ext-authz with the logged-in user (`x-forwarded-user` for oauth-proxy)."""
    groups_source_header: str | None = "x-auth-request-groups"
    """Header the auth proxy returns with the user's groups; None leaves `kubeflow-groups` unset."""
    user_header: str = "kubeflow-userid"
    """Header Kubeflow reads the user id from (USERID_HEADER of the web apps)."""
    groups_header: str = "kubeflow-groups"
    """Header Kubeflow reads the groups from."""
    lowercase_user: bool = False
    """Lower-case the user id, for IdPs that return `Jane.Doe@Corp` on one login and `jane.doe@corp` on another."""
    user_id_prefix: str = ""
    """Prepended to the user id (USERID_PREFIX upstream, e.g. `accounts.google.com:`)."""
    extra_issuers: tuple[JwtIssuer, ...] = ()
    """Further JWT issuers verified at the gateway; their claims are the identity when the auth proxy set none."""
    gateway_namespace: str = "istio-system"
    """Namespace of the central ingress gateway workload."""
    gateway_selector: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType({"app": "istio-ingressgateway", "istio": "ingressgateway"})
    )
    """Pod labels that select the central gateway workload."""
    gateway_service_account: str = "istio-ingressgateway-service-account"
    """Service account of the gateway pods; its mesh principal is the only one trusted to send the headers."""
    trust_domain: str = "cluster.local"
    """Istio trust domain, the first part of every SPIFFE principal."""
    istio_version: str = "1.26"
    """The mesh's Istio version (`major.minor[.patch]`); picks the security API version."""


#: The config key each option is reported under.
OPTION_KEYS = MappingProxyType(
    {
        "user_source_header": "auth.userSourceHeader",
        "groups_source_header": "auth.groupsSourceHeader",
        "user_header": "auth.userHeader",
        "groups_header": "auth.groupsHeader",
        "user_id_prefix": "auth.userIdPrefix",
        "extra_issuers": "auth.extraIssuers",
        "gateway_namespace": "auth.gatewayNamespace",
        "gateway_selector": "auth.gatewaySelector",
        "gateway_service_account": "auth.gatewayServiceAccount",
        "trust_domain": "auth.trustDomain",
        "istio_version": "auth.istioVersion",
    }
)


# ---------------------------------------------------------------------------------------------------
# Validation


def header_name_problems(name: str, key: str) -> list[str]:
    """Why Envoy (or a hop on the way) would refuse or mangle `name` as a request header we set."""
    if not name:
        return [f"{key}: must not be empty"]
    if name.startswith(":"):
        return [f"{key}: {name!r} is an HTTP/2 pseudo-header; filters cannot set those as plain headers"]
    problems = []
    if not _TOKEN_CHARS.fullmatch(name):
        problems.append(f"{key}: {name!r} has characters outside the RFC 7230 token set; Envoy rejects it")
    if name != name.lower():
        problems.append(
            f"{key}: {name!r} must be lowercase: HTTP/2 forbids uppercase header names and Envoy lowercases them"
        )
    if "_" in name:
        problems.append(
            f"{key}: {name!r} contains '_': proxies may drop such headers (Envoy headers_with_underscores_action,"
            " nginx) and WSGI servers merge them with the '-' spelling"
        )
    lowered = name.lower()
    if lowered in _RESERVED_HEADERS:
        problems.append(f"{key}: {name!r} is a header with its own meaning to HTTP or the auth flow")
    if lowered.startswith("x-envoy-"):
        problems.append(f"{key}: {name!r} uses the x-envoy- prefix, which Envoy strips from external requests")
    return problems


def issuer_url_problems(url: str, key: str) -> list[str]:
    """Why `url` cannot be a JWT issuer or JWKS location Istio will accept and fetch."""
    if not url:
        return [f"{key}: must not be empty"]
    parts = urlsplit(url)
    problems = []
    if parts.scheme != "https":
        problems.append(f"{key}: {url!r} must be an https:// URL; keys fetched over plain http can be forged")
    if not parts.hostname:
        problems.append(f"{key}: {url!r} has no host")
    if parts.username or parts.password:
        problems.append(f"{key}: {url!r} must not carry credentials")
    if parts.query:
        problems.append(f"{key}: {url!r} must not have a query string")
    if parts.fragment or url.endswith("#"):
        problems.append(f"{key}: {url!r} must not have a fragment")
    if any(ch.isspace() for ch in url):
        problems.append(f"{key}: {url!r} contains whitespace")
    return problems


def parse_istio_version(version: str) -> tuple[int, int] | None:
    match = _ISTIO_VERSION.fullmatch(version.strip().lstrip("v"))
    return (int(match.group(1)), int(match.group(2))) if match else None


def validate_identity_options(options: IdentityHeaderOptions) -> list[str]:
    """Every problem with `options` at once, each naming its config key; empty when usable."""
    problems: list[str] = []
    headers = {
        "user_source_header": options.user_source_header,
        "groups_source_header": options.groups_source_header,
        "user_header": options.user_header,
        "groups_header": options.groups_header,
    }
    for attribute, name in headers.items():
        if name is not None:
            problems += header_name_problems(name, OPTION_KEYS[attribute])

    # One header in two roles would let the copy read its own output, or strip what it just set.
    seen: dict[str, str] = {}
    for attribute, name in headers.items():
        if name is None:
            continue
        key = OPTION_KEYS[attribute]
        lowered = name.lower()
        if lowered in seen:
            problems.append(f"{key}: {name!r} is already used by {seen[lowered]}; each header needs its own name")
        elif lowered in (JWT_USER_CLAIM_HEADER, JWT_GROUPS_CLAIM_HEADER):
            problems.append(f"{key}: {name!r} is reserved for verified JWT claims")
        else:
            seen[lowered] = key

    if not _USER_ID_PREFIX.fullmatch(options.user_id_prefix):
        problems.append(
            f"{OPTION_KEYS['user_id_prefix']}: {options.user_id_prefix!r} may only contain letters, digits"
            " and . _ : @ + / -"
        )
    elif len(options.user_id_prefix) > 64:
        problems.append(f"{OPTION_KEYS['user_id_prefix']}: longer than 64 characters")

    issuers_key = OPTION_KEYS["extra_issuers"]
    issuers_seen: set[str] = set()
    for index, issuer in enumerate(options.extra_issuers):
        key = f"{issuers_key}[{index}]"
        problems += issuer_url_problems(issuer.issuer, f"{key}.issuer")
        if issuer.issuer in issuers_seen:
            problems.append(f"{key}.issuer: {issuer.issuer!r} is listed twice")
        issuers_seen.add(issuer.issuer)
        if issuer.jwks_uri is not None:
            problems += issuer_url_problems(issuer.jwks_uri, f"{key}.jwksUri")
        for position, audience in enumerate(issuer.audiences):
            if not audience.strip():
                problems.append(f"{key}.audiences[{position}]: must not be empty")
        for claim_attribute, claim in (("userClaim", issuer.user_claim), ("groupsClaim", issuer.groups_claim)):
            if claim is not None and not claim.strip():
                problems.append(f"{key}.{claim_attribute}: must not be empty; leave it out to copy no claim")

    for attribute in ("gateway_namespace", "gateway_service_account"):
        value = getattr(options, attribute)
        if not _KUBERNETES_NAME.fullmatch(value):
            problems.append(f"{OPTION_KEYS[attribute]}: {value!r} is not a valid Kubernetes name")
    if not options.gateway_selector:
        problems.append(
            f"{OPTION_KEYS['gateway_selector']}: must select the gateway; an empty selector would patch every"
            " proxy in the namespace"
        )
    if not options.trust_domain or "/" in options.trust_domain:
        problems.append(f"{OPTION_KEYS['trust_domain']}: {options.trust_domain!r} is not a trust domain")

    version = parse_istio_version(options.istio_version)
    if version is None:
        problems.append(f"{OPTION_KEYS['istio_version']}: {options.istio_version!r} is not a version like 1.26")
    elif version < MINIMUM_ISTIO_VERSION:
        minimum = ".".join(map(str, MINIMUM_ISTIO_VERSION))
        problems.append(f"{OPTION_KEYS['istio_version']}: {options.istio_version} is older than {minimum}")
    return problems


def _require_valid(options: IdentityHeaderOptions) -> None:
    problems = validate_identity_options(options)
    if problems:
        raise ValueError("invalid identity header options:\n  " + "\n  ".join(problems))


# ---------------------------------------------------------------------------------------------------
# Envoy HTTP filters


def _lua_string(value: str) -> str:
    """A Lua string literal for `value`. Options are validated, but escaping keeps code and data apart anyway."""
    safe = "".join(ch if ch in _LUA_PLAIN else f"\\{byte:03d}" for ch in value for byte in ch.encode())
    return f'"{safe}"'


def _lua_set(names: Sequence[str]) -> str:
    return "{" + ", ".join(f"[{_lua_string(name)}] = true" for name in names) + "}"


def _identity_sources(options: IdentityHeaderOptions) -> list[tuple[str, str | None]]:
    """(user header, groups header) pairs, in the order they are trusted."""
    # The auth proxy's header wins: when ext-authz ran, it is the identity of this browser session. Machine
    # clients skip the auth proxy (their request carries a token), so only the verified claim is there.
    sources: list[tuple[str, str | None]] = [(options.user_source_header, options.groups_source_header)]
    if any(issuer.user_claim for issuer in options.extra_issuers):
        groups = JWT_GROUPS_CLAIM_HEADER if any(issuer.groups_claim for issuer in options.extra_issuers) else None
        sources.append((JWT_USER_CLAIM_HEADER, groups))
    return sources


def _source_header_names(options: IdentityHeaderOptions) -> list[str]:
    return [name for pair in _identity_sources(options) for name in pair if name is not None]


def _lua_filter(name: str, code: str) -> dict:
    # `default_source_code` replaced the deprecated `inline_code` in Envoy 1.21 (before any Istio we support).
    return {
        "name": name,
        "typed_config": {"@type": LUA_FILTER_TYPE, "default_source_code": {"inline_string": code}},
    }


# Header names are compared in one spelling: Envoy already lowercases them, and `_` is folded into `-`
# because WSGI (CGI) turns both into the same HTTP_KUBEFLOW_USERID variable.
_LUA_CANONICAL = """\
local function canonical(name)
  return (string.gsub(string.lower(name), "_", "-"))
end
"""


def strip_client_identity_filter_config(options: IdentityHeaderOptions) -> dict:
    """The HTTP filter that goes first in the gateway chain: removes every client-sent identity header.

    That is the Kubeflow headers and the source headers the later filter trusts, in any case and with `_`
    for `-`. It must run before ext_authz and jwt_authn, which are the only writers of the sources.
    """
    _require_valid(options)
    doomed = [options.user_header, options.groups_header, *_source_header_names(options)]
    code = (
        "-- kubeflow-platform: identity headers may only come from the mesh, never from the client.\n"
        f"local CLIENT_MUST_NOT_SEND = {_lua_set(doomed)}\n"
        + _LUA_CANONICAL
        + """
function envoy_on_request(request_handle)
  local headers = request_handle:headers()
  local doomed = {}
  -- Collected first: the header map must not change while it is being iterated.
  for name, _ in pairs(headers) do
    if CLIENT_MUST_NOT_SEND[canonical(name)] then
      doomed[#doomed + 1] = name
    end
  end
  for _, name in ipairs(doomed) do
    headers:remove(name)
  end
end
"""
    )
    return _lua_filter(STRIP_CLIENT_IDENTITY_FILTER_NAME, code)


def http_filter_config(options: IdentityHeaderOptions) -> dict:
    """The HTTP filter that goes right before the router: the identity headers, from trusted sources only.

    Removes every `kubeflow-userid`/`kubeflow-groups` (any case, `_` for `-`, any number of copies), then
    sets them from the first identity source present: the auth proxy's header, then a verified JWT claim.
    A source that arrives empty or more than once yields no identity at all (two writers: refuse to guess).
    Returns an Envoy `HttpFilter` (name + typed_config), embedded as is in the EnvoyFilter and in tests.
    """
    _require_valid(options)
    sources = ",\n".join(
        f"  {{user = {_lua_string(user)}, groups = {_lua_string(groups) if groups else 'nil'}}}"
        for user, groups in _identity_sources(options)
    )
    code = (
        "-- kubeflow-platform: Kubeflow's identity headers, set from the authenticated identity only.\n"
        f"local USER_HEADER = {_lua_string(options.user_header)}\n"
        f"local GROUPS_HEADER = {_lua_string(options.groups_header)}\n"
        f"local OUTPUT_HEADERS = {_lua_set([options.user_header, options.groups_header])}\n"
        f"local IDENTITY_SOURCES = {{\n{sources}\n}}\n"
        f"local USER_ID_PREFIX = {_lua_string(options.user_id_prefix)}\n"
        f"local LOWERCASE_USER = {'true' if options.lowercase_user else 'false'}\n"
        + _LUA_CANONICAL
        + """
-- The one value of a header, or nil when it is absent, empty or repeated.
local function single(values, name)
  local list = values[name]
  if list == nil or #list ~= 1 or list[1] == "" then
    return nil
  end
  return list[1]
end

function envoy_on_request(request_handle)
  local headers = request_handle:headers()
  local doomed, values = {}, {}
  for name, value in pairs(headers) do
    if OUTPUT_HEADERS[canonical(name)] then
      doomed[#doomed + 1] = name
    end
    local list = values[name]
    if list == nil then
      list = {}
      values[name] = list
    end
    list[#list + 1] = value
  end
  for _, name in ipairs(doomed) do
    headers:remove(name)
  end

  for _, source in ipairs(IDENTITY_SOURCES) do
    if values[source.user] ~= nil then
      local user = single(values, source.user)
      if user == nil then
        return
      end
      if LOWERCASE_USER then
        user = string.lower(user)
      end
      headers:add(USER_HEADER, USER_ID_PREFIX .. user)
      if source.groups ~= nil then
        local groups = single(values, source.groups)
        if groups ~= nil then
          headers:add(GROUPS_HEADER, groups)
        end
      end
      return
    end
  end
end
"""
    )
    return _lua_filter(IDENTITY_HEADERS_FILTER_NAME, code)


# ---------------------------------------------------------------------------------------------------
# Istio objects


def security_api_version(options: IdentityHeaderOptions) -> str:
    """security.istio.io/v1 where the mesh serves it, else v1beta1."""
    version = parse_istio_version(options.istio_version)
    return "security.istio.io/v1" if version and version >= SECURITY_V1_SINCE else "security.istio.io/v1beta1"




def gateway_principal(options: IdentityHeaderOptions) -> str:
    """The SPIFFE principal (without `spiffe://`) that Istio gives the gateway pods under mTLS."""
    return f"{options.trust_domain}/ns/{options.gateway_namespace}/sa/{options.gateway_service_account}"


def identity_envoy_filter(options: IdentityHeaderOptions, name: str = "kubeflow-identity-headers") -> dict:
    """The EnvoyFilter that puts both Lua filters into the central gateway's HTTP chain."""
    _require_valid(options)
    connection_manager = {"name": "envoy.filters.network.http_connection_manager"}
    return {
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "EnvoyFilter",
        "metadata": {"name": name, "namespace": options.gateway_namespace},
        "spec": {
            "workloadSelector": {"labels": dict(options.gateway_selector)},
            # Patches are applied in ascending priority. Applying ours after everyone else's puts the strip
            # filter at the very front and the identity filter nearest the router, whatever else patches the
            # chain; a set priority also keeps INSERT_BEFORE deterministic (istioctl analyze IST0151).
            "priority": 100,
            # No `proxy.proxyVersion` match on purpose: it would silently stop applying to upgraded gateways,
            # and a gateway without these filters forwards spoofed headers (istioctl analyze IST0155).
            "configPatches": [
                {
                    "applyTo": "HTTP_FILTER",
                    "match": {"context": "GATEWAY", "listener": {"filterChain": {"filter": connection_manager}}},
                    "patch": {"operation": "INSERT_FIRST", "value": strip_client_identity_filter_config(options)},
                },
                {
                    "applyTo": "HTTP_FILTER",
                    "match": {
                        "context": "GATEWAY",
                        "listener": {
                            "filterChain": {
                                "filter": {**connection_manager, "subFilter": {"name": "envoy.filters.http.router"}}
                            }
                        },
                    },
                    "patch": {"operation": "INSERT_BEFORE", "value": http_filter_config(options)},
                },
            ],
        },
    }


def _issuer_object_name(issuer: str) -> str:
    """A stable DNS-1123 name per issuer, so reordering the config does not replace the objects."""
    parts = urlsplit(issuer)
    slug = re.sub(r"[^a-z0-9]+", "-", f"{parts.hostname or ''}{parts.path}".lower()).strip("-")[:40].strip("-")
    digest = hashlib.sha256(issuer.encode()).hexdigest()[:8]
    return f"kubeflow-jwt-{slug}-{digest}" if slug else f"kubeflow-jwt-{digest}"


def _jwt_rule(issuer: str, jwks_uri: str | None, audiences: Sequence[str]) -> dict:
    jwt_rule: dict = {"issuer": issuer}
    if jwks_uri:
        jwt_rule["jwksUri"] = jwks_uri
    if audiences:
        jwt_rule["audiences"] = list(audiences)
    # Kubeflow Pipelines authenticates bearer tokens itself (TokenReview), so the token travels on.
    jwt_rule["forwardOriginalToken"] = True
    return jwt_rule


def _request_authentication(options: IdentityHeaderOptions, name: str, jwt_rule: dict) -> dict:
    return {
        "apiVersion": security_api_version(options),
        "kind": "RequestAuthentication",
        "metadata": {"name": name, "namespace": options.gateway_namespace},
        "spec": {"selector": {"matchLabels": dict(options.gateway_selector)}, "jwtRules": [jwt_rule]},
    }


def extra_issuer_request_authentications(options: IdentityHeaderOptions) -> list[dict]:
    """A RequestAuthentication on the gateway for every extra issuer; known from settings alone."""
    _require_valid(options)
    objects = []
    for issuer in options.extra_issuers:
        jwt_rule = _jwt_rule(issuer.issuer, issuer.jwks_uri, issuer.audiences)
        claims = [(issuer.user_claim, JWT_USER_CLAIM_HEADER), (issuer.groups_claim, JWT_GROUPS_CLAIM_HEADER)]
        outputs = [{"header": header, "claim": claim} for claim, header in claims if claim]
        if outputs:
            # Into internal headers, never straight into kubeflow-userid: the identity filter applies prefix and
            # lower-casing, and the strip filter guarantees the client cannot pre-fill them.
            jwt_rule["outputClaimToHeaders"] = outputs
        objects.append(_request_authentication(options, _issuer_object_name(issuer.issuer), jwt_rule))
    return objects


#: Name of the RequestAuthentication for the cluster's own service-account issuer.
SERVICE_ACCOUNT_REQUEST_AUTHENTICATION = "kubeflow-service-account-jwt"


def service_account_request_authentication(
    options: IdentityHeaderOptions,
    service_account_issuer: str,
    service_account_jwks_uri: str | None = None,
    service_account_audiences: Sequence[str] = (),
) -> dict:
    """The RequestAuthentication for the cluster's own service-account issuer (machine clients' projected tokens).

    Separate from the extra issuers because the issuer is read from the cluster at deploy time. Raises
    ValueError listing every problem.
    """
    problems = validate_identity_options(options)
    problems += issuer_url_problems(service_account_issuer, "serviceAccountIssuer")
    if service_account_jwks_uri is not None:
        problems += issuer_url_problems(service_account_jwks_uri, "serviceAccountJwksUri")
    if any(rule.issuer == service_account_issuer for rule in options.extra_issuers):
        problems.append(f"{OPTION_KEYS['extra_issuers']}: {service_account_issuer!r} is the cluster's own issuer")
    if problems:
        raise ValueError("invalid request authentication settings:\n  " + "\n  ".join(problems))
    # No claim output for service-account tokens: `system:serviceaccount:...` is not a Kubeflow user, and
    # upstream's machine-to-machine setup has Pipelines resolve the forwarded token itself.
    return _request_authentication(
        options,
        SERVICE_ACCOUNT_REQUEST_AUTHENTICATION,
        _jwt_rule(service_account_issuer, service_account_jwks_uri, service_account_audiences),
    )


def request_authentications(
    options: IdentityHeaderOptions,
    service_account_issuer: str,
    service_account_jwks_uri: str | None = None,
    service_account_audiences: Sequence[str] = (),
) -> list[dict]:
    """A RequestAuthentication on the gateway for every extra issuer and for the cluster's own issuer.

    `service_account_issuer` is the cluster's service-account token issuer as the cluster reports it (on EKS
    `https://oidc.eks.<region>.amazonaws.com/id/<id>`), so machine clients can call Kubeflow APIs with
    projected tokens. Raises ValueError listing every problem.
    """
    cluster_rule = service_account_request_authentication(
        options, service_account_issuer, service_account_jwks_uri, service_account_audiences
    )
    return [*extra_issuer_request_authentications(options), cluster_rule]


def identity_header_authorization_policy(
    options: IdentityHeaderOptions,
    namespace: str,
    forwarding_principals: Sequence[str] = UPSTREAM_HEADER_FORWARDERS,
    name: str = "kubeflow-identity-header-from-gateway-only",
) -> dict:
    """A DENY policy for one Kubeflow namespace: the identity headers only from the gateway (or a forwarder).

    DENY rather than ALLOW: ALLOW policies add up, and upstream already ships ALLOW policies for its web
    apps, so one more ALLOW could only widen access; DENY is evaluated first and no ALLOW overrides it.
    It also leaves header-less service-to-service calls alone (KFP's persistence agent, notebooks using
    tokens). `notPrincipals` matches plaintext callers too (they have no principal), so a pod without a
    sidecar cannot send the header either.
    """
    _require_valid(options)
    trusted = [gateway_principal(options), *forwarding_principals]
    rules = []
    for header in (options.user_header, options.groups_header):
        # Both spellings: the gateway folds `_` into `-`, but in-mesh callers never pass the gateway.
        for spelling in sorted({header, header.replace("-", "_")}):
            rules.append(
                {
                    "from": [{"source": {"notPrincipals": trusted}}],
                    "when": [{"key": f"request.headers[{spelling}]", "values": ["*"]}],
                }
            )
    return {
        "apiVersion": security_api_version(options),
        "kind": "AuthorizationPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"action": "DENY", "rules": rules},
    }
