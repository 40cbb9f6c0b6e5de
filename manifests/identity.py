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
    envoy.filters.http.jwt_authn            a verified token's payload goes into dynamic metadata
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
from typing import Iterable, Mapping, Sequence
from urllib.parse import urlsplit

from manifests.images import parse_image
from manifests.objects import containers_of, pod_template
from manifests.release_identity import release_table
from manifests.namespace import principal_in

#: Internal header names of verified JWT claims. The user and groups headers are no longer written (the
#: identity filter reads the verified payload itself, see `JWT_PAYLOAD_KEY`) but are still stripped,
#: so a client's copy can never reach a service that once trusted them. Clients can never set any of them,
#: because the first filter strips them.
JWT_USER_CLAIM_HEADER = "x-kubeflow-jwt-userid"
JWT_GROUPS_CLAIM_HEADER = "x-kubeflow-jwt-groups"
#: Where Istio (`outputClaimToHeaders`) writes a user token's `email_verified` claim for the token policy.
#: A header and not `request.auth.claims[email_verified]`: Istio 1.24.6 matches claims with string matchers
#: only (pilot/pkg/security/authz/model/util.go:103, matcher/string.go:29), so a JSON boolean never
#: matches; outputClaimToHeaders copies string, boolean and integer claims, a boolean as "true"/"false"
#: (https://istio.io/v1.24/docs/tasks/security/authentication/claim-to-header/).
JWT_EMAIL_VERIFIED_HEADER = "x-kubeflow-jwt-email-verified"
#: Dynamic metadata where Istio 1.24.6 has jwt_authn keep a verified token's payload: filter
#: `envoy.filters.http.jwt_authn`, key `payload` (pilot/pkg/security/authn/policy_applier.go:167; 1.22.1 the
#: same for proxies from 1.21 on, older ones under the issuer: policy_applier.go:239-242, model/context.go:1006). The
#: identity filter reads user and groups there: a list claim such as `groups` stays a list, where
#: outputClaimToHeaders does not support list claims (the Istio page above; Envoy 1.40 writes base64 of
#: their JSON), so no header carries them as Kubeflow expects.
JWT_AUTHN_FILTER = "envoy.filters.http.jwt_authn"
JWT_PAYLOAD_KEY = "payload"
#: GitHub Actions' OIDC issuer: any workflow of any repository can get a token for any audience it names.
GITHUB_ACTIONS_ISSUER = "https://token.actions.githubusercontent.com"
#: GitHub claims that name who runs the workflow; a GitHub issuer must require at least one of them.
GITHUB_IDENTITY_CLAIMS = ("repository", "repository_id", "repository_owner", "repository_owner_id", "sub")
#: Where the gateway lets the cluster's service-account tokens through: Kubeflow Pipelines, the only backend
#: that authenticates a bearer token itself (TokenReview); every other backend would see an anonymous call.
SERVICE_ACCOUNT_TOKEN_PATHS = ("/pipeline/*",)

#: Names of the two Lua filters in the gateway's chain; they show up in config dumps and stats.
STRIP_CLIENT_IDENTITY_FILTER_NAME = "kubeflow-platform.strip-client-identity"
IDENTITY_HEADERS_FILTER_NAME = "kubeflow-platform.identity-headers"

LUA_FILTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua"

#: Oldest Istio whose gateway we configure. 1.20 has outputClaimToHeaders (1.17+) and Envoy's
#: `default_source_code` for Lua; older meshes are out of support upstream anyway.
MINIMUM_ISTIO_VERSION = (1, 20)
#: security.istio.io/v1 is served from Istio 1.22 on; older meshes only know v1beta1.
SECURITY_V1_SINCE = (1, 22)

#: In-mesh services of Kubeflow Pipelines that legitimately pass `kubeflow-userid` on to another Kubeflow
#: service: the KFP UI proxies API calls to ml-pipeline with it, metadata-envoy (the UI's /ml_metadata proxy,
#: given its own account by manifests/mesh.py) passes it to metadata-grpc. The third forwarder, the central
#: dashboard (it calls KFAM with the header: kubeflow/kubeflow@v1.10.0 components/centraldashboard/app/
#: api_workgroup.ts:221), is found in the release by `header_forwarders`. They only ever hold a header that
#: the gateway set, because their own inbound traffic is under the same policy.
PIPELINES_HEADER_FORWARDERS = (
    "cluster.local/ns/kubeflow/sa/ml-pipeline-ui",
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
# Istio reads `request.auth.claims[name]`; brackets or quotes in a name would break the key.
_CLAIM_NAME = re.compile(r"[A-Za-z0-9_.:-]+")
_MACHINE_USER = re.compile(r"[a-z0-9._+-]+(@[a-z0-9.-]+)?")
# GitHub's `sub` (repo:<owner>/<repository>:<context>): a prefix match is safe only once owner and repository are
# whole, since GitHub owner and repository names cannot hold a ":".
_GITHUB_SUB_PREFIX = re.compile(r"repo:[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+:[^*\s]*\*")


@dataclass(frozen=True)
class JwtIssuer:
    """A token issuer whose JWTs the gateway verifies, e.g. the enterprise IdP for CLI clients."""

    issuer: str
    """Exactly the `iss` claim of its tokens (https, no query or fragment; a trailing slash matters)."""
    jwks_uri: str | None = None
    """Where its signing keys are; omitted means Istio reads `jwks_uri` from the issuer's discovery document."""
    audiences: tuple[str, ...] = ()
    """Accepted `aud` values; required (validation refuses none: Istio would accept any audience)."""
    user_claim: str | None = "email"
    """Claim copied into the user id header; None needs `machine_user` (else the issuer names no one)."""
    groups_claim: str | None = "groups"
    """Claim copied into the groups header (a string, or a list joined with commas)."""
    required_claims: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))
    """Claim -> accepted values (Istio's exact, `prefix*` or `*suffix`); a token missing one is refused."""
    machine_user: str | None = None
    """The Kubeflow user id every token of this issuer stands for (a CI system), instead of a user claim."""
    email_domains: tuple[str, ...] = ("*",)
    """Domains the user claim must end in (`*`: any), as the auth proxy's email_domains on the browser path."""
    require_verified_email: bool = True
    """Refuse a token whose `email_verified` claim is present and not true (the auth proxy does the same)."""


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
    login_domains: tuple[str, ...] = ()
    """Domains whose hosts (`<label>.<domain>`) are behind the login; a port on such a host is refused."""


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
            elif claim is not None and not _CLAIM_NAME.fullmatch(claim):
                problems.append(f"{key}.{claim_attribute}: {claim!r} is not a claim name Istio can match (letters, digits, _ - . :)")
        problems += _issuer_admission_problems(issuer, key)

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


def _issuer_admission_problems(issuer: JwtIssuer, key: str) -> list[str]:
    """Why `issuer`'s tokens would let in callers nobody chose: no audience, no claim constraint, no identity."""
    problems = []
    if not issuer.audiences:
        problems.append(
            f"{key}.audiences: required: without one Istio accepts a token this issuer minted for any other"
            " relying party (list the audience your clients request, like kubeflow-cli)"
        )
    if issuer.user_claim and issuer.machine_user:
        problems.append(f"{key}.machineIdentity: a token names either a user (userClaim) or a machine; remove one")
    elif not issuer.user_claim and not issuer.machine_user:
        problems.append(
            f"{key}.userClaim: the issuer's tokens would name no Kubeflow user and be refused: set userClaim"
            " (people) or machineIdentity (a CI system with access of its own), or remove the issuer"
        )
    if issuer.machine_user is not None and not _MACHINE_USER.fullmatch(issuer.machine_user):
        problems.append(
            f"{key}.machineIdentity.user: {issuer.machine_user!r} is not a lower-case user id like ci-pipelines@machines.example.com"
        )
    github = issuer.issuer.rstrip("/") == GITHUB_ACTIONS_ISSUER
    for claim, values in issuer.required_claims.items():
        where = f"{key}.requiredClaims.{claim}"
        if not _CLAIM_NAME.fullmatch(claim):
            problems.append(f"{where}: {claim!r} is not a claim name Istio can match (letters, digits, _ - . :)")
        if not values:
            problems.append(f"{where}: list the accepted values")
        for position, value in enumerate(values):
            if not value.strip() or value.strip("*") == "":
                problems.append(f"{where}[{position}]: {value!r} accepts anyone; name the accepted value")
            elif github and claim in GITHUB_IDENTITY_CLAIMS and claim != "sub" and ("*" in value or value != value.strip()):
                # Istio reads a leading or trailing `*` as a suffix or prefix match, and anyone can create a
                # GitHub account or repository whose name completes `*/ml-pipelines` or `example-*`.
                problems.append(
                    f"{where}[{position}]: {value!r} is not an exact value: GitHub lets anyone create an owner or"
                    " repository that matches a wildcard; name it exactly (like example-org/ml-pipelines)"
                )
            elif github and claim == "sub" and "*" in value and not _GITHUB_SUB_PREFIX.fullmatch(value):
                problems.append(
                    f"{where}[{position}]: {value!r} may end in `*` only after a whole `repo:<owner>/<repository>:`"
                    " (a wildcard in the owner or repository matches repositories anyone can create)"
                )
    constrained = bool(issuer.required_claims) or (
        issuer.user_claim is not None and "*" not in issuer.email_domains
    )
    if not constrained and not github:
        problems.append(
            f"{key}.requiredClaims: says nobody in particular may come in: every token the issuer mints for"
            " the audience would pass; require the claims that name your callers (like repository_owner),"
            " or, for a user claim, restrict auth.emailDomains"
        )
    if github and not set(issuer.required_claims) & set(GITHUB_IDENTITY_CLAIMS):
        problems.append(
            f"{key}.requiredClaims: any GitHub Actions workflow of any repository can mint this issuer's tokens"
            f" for any audience; require one of {', '.join(GITHUB_IDENTITY_CLAIMS)}"
            " (like repository_owner: [example-org])"
        )
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


def _source_header_names(options: IdentityHeaderOptions) -> list[str]:
    """Every header the identity filter or the token policy trusts, so every one a client must not send."""
    proxy = [name for name in (options.user_source_header, options.groups_source_header) if name is not None]
    return [*proxy, JWT_USER_CLAIM_HEADER, JWT_GROUPS_CLAIM_HEADER, JWT_EMAIL_VERIFIED_HEADER]


def _lua_jwt_issuers(options: IdentityHeaderOptions) -> str:
    """The Lua table issuer -> how its verified payload names the caller (user and groups claim, or a machine)."""
    rows = []
    for issuer in options.extra_issuers:
        fields = []
        if issuer.required_claims:
            fields.append("single = " + "{" + ", ".join(_lua_string(claim) for claim in sorted(issuer.required_claims)) + "}")
        if issuer.machine_user:
            fields.append(f"machine = {_lua_string(issuer.machine_user)}")
        else:
            if issuer.user_claim:
                fields.append(f"user = {_lua_string(issuer.user_claim)}")
                if "*" not in issuer.email_domains:
                    fields.append("email = true")
                if issuer.require_verified_email:
                    fields.append("verified = true")
            if issuer.groups_claim:
                fields.append(f"groups = {_lua_string(issuer.groups_claim)}")
        rows.append(f"  [{_lua_string(issuer.issuer)}] = {{{', '.join(fields)}}}")
    return "{\n" + ",\n".join(rows) + ("\n" if rows else "") + "}"


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
    login_domains = "{" + ", ".join(_lua_string("." + domain) for domain in options.login_domains) + "}"
    code = (
        "-- kubeflow-platform: identity headers may only come from the mesh, never from the client.\n"
        f"local CLIENT_MUST_NOT_SEND = {_lua_set(doomed)}\n"
        f"local LOGIN_DOMAINS = {login_domains}\n"
        + _LUA_CANONICAL
        + """
function envoy_on_request(request_handle)
  local headers = request_handle:headers()
  local doomed = {}
  local tokens = 0
  -- Collected first: the header map must not change while it is being iterated.
  for name, _ in pairs(headers) do
    if CLIENT_MUST_NOT_SEND[canonical(name)] then
      doomed[#doomed + 1] = name
    end
    if name == "authorization" then
      tokens = tokens + 1
    end
  end
  -- One token per request: jwt_authn verifies every token it finds (the Authorization header and the
  -- access_token query parameter, Istio's default locations) and each adds its claims, so two tokens would
  -- let one token's claims stand in for the other's.
  local path = headers:get(":path") or ""
  if string.find(path, "[?&]access_token=") ~= nil then
    tokens = tokens + 1
  end
  if tokens > 1 then
    request_handle:respond({[":status"] = "400"}, "kubeflow-platform: send one token per request")
    return
  end
  -- The login's policies name these domains' hosts as `*.<domain>`, a suffix match that a port (`:443`) would
  -- step around while the gateway still routes the request: such a host must come without one.
  local authority = string.lower(headers:get(":authority") or "")
  local host, port = string.match(authority, "^(.*):(%d*)$")
  if host ~= nil then
    for _, domain in ipairs(LOGIN_DOMAINS) do
      if string.sub(host, -#domain) == domain then
        request_handle:respond({[":status"] = "400"}, "kubeflow-platform: send this host without a port")
        return
      end
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
    sets them from the first identity source present: the auth proxy's header, then the payload of a token
    jwt_authn verified (dynamic metadata, which no client can write): the issuer's user claim, or the
    machine user configured for the issuer. A list `groups` claim becomes a comma-separated list, as the
    auth proxy sends it. A source that arrives empty or more than once yields no identity at all (two
    writers: refuse to guess). Whether a token may come in at all is the token policy's decision
    (`token_admission_rules`), taken before this filter runs.
    Returns an Envoy `HttpFilter` (name + typed_config), embedded as is in the EnvoyFilter and in tests.
    """
    _require_valid(options)
    groups_source = options.groups_source_header
    code = (
        "-- kubeflow-platform: Kubeflow's identity headers, set from the authenticated identity only.\n"
        f"local USER_HEADER = {_lua_string(options.user_header)}\n"
        f"local GROUPS_HEADER = {_lua_string(options.groups_header)}\n"
        f"local OUTPUT_HEADERS = {_lua_set([options.user_header, options.groups_header])}\n"
        f"local PROXY_USER = {_lua_string(options.user_source_header)}\n"
        f"local PROXY_GROUPS = {_lua_string(groups_source) if groups_source else 'nil'}\n"
        f"local JWT_AUTHN_FILTER = {_lua_string(JWT_AUTHN_FILTER)}\n"
        f"local JWT_PAYLOAD_KEY = {_lua_string(JWT_PAYLOAD_KEY)}\n"
        f"local JWT_ISSUERS = {_lua_jwt_issuers(options)}\n"
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

-- A groups claim as Kubeflow reads it: a string as is, a list of strings joined with commas (names that
-- hold a comma themselves are left out: they would read as two groups).
local function groups_of(claim)
  if type(claim) == "string" then
    if claim == "" then
      return nil
    end
    return claim
  end
  if type(claim) ~= "table" then
    return nil
  end
  local names = {}
  for _, name in ipairs(claim) do
    if type(name) == "string" and name ~= "" and string.find(name, ",", 1, true) == nil then
      names[#names + 1] = name
    end
  end
  if #names == 0 then
    return nil
  end
  return table.concat(names, ",")
end

-- A user id exactly as a token must carry it: one string without whitespace, control characters or commas
-- (an HTTP hop trims leading whitespace, so " alice@example.com" would become alice; a comma reads as a list),
-- and for an email claim exactly one "@".
local function plain_user(user, email)
  if type(user) ~= "string" or user == "" or string.find(user, "[%s%c,]") ~= nil then
    return false
  end
  if email then
    local _, ats = string.gsub(user, "@", "")
    return ats == 1
  end
  return true
end

-- User and groups from the payload of the token jwt_authn verified for this request, if any; a third value
-- when the token names someone in a shape or state the gateway refuses.
local function token_identity(request_handle)
  local verified = request_handle:streamInfo():dynamicMetadata():get(JWT_AUTHN_FILTER)
  if type(verified) ~= "table" then
    return nil, nil
  end
  local payload = verified[JWT_PAYLOAD_KEY]
  if type(payload) ~= "table" then
    -- Gateways older than Istio 1.21 get the payload keyed by its issuer instead.
    for issuer, _ in pairs(JWT_ISSUERS) do
      if type(verified[issuer]) == "table" then
        payload = verified[issuer]
      end
    end
  end
  if type(payload) ~= "table" then
    return nil, nil
  end
  local issuer = JWT_ISSUERS[payload["iss"]]
  if issuer == nil then
    return nil, nil
  end
  -- A required claim holds one value: Istio matches a list claim by any of its items, so a list would let
  -- one matching item stand for the rest.
  for _, claim in ipairs(issuer.single or {}) do
    local value = payload[claim]
    if type(value) ~= "string" and type(value) ~= "number" then
      return nil, nil, claim .. " is not a single value"
    end
  end
  if issuer.machine ~= nil then
    return issuer.machine, nil
  end
  -- Whether the user may come in is decided from this same payload, the one that names them: with two tokens
  -- on one request jwt_authn verifies both and adds a claim header for each, and Envoy 1.38 and later match
  -- each copy of a repeated header on its own, so a header check can be satisfied by the other token.
  if issuer.verified then
    local verified_claim = payload["email_verified"]
    if verified_claim ~= nil and verified_claim ~= true and verified_claim ~= "true" then
      return nil, nil, "email_verified is not true"
    end
  end
  local user = payload[issuer.user]
  if not plain_user(user, issuer.email) then
    return nil, nil, "the user claim is not one plain user id"
  end
  if issuer.groups == nil then
    return user, nil
  end
  return user, groups_of(payload[issuer.groups])
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

  local user, groups
  if values[PROXY_USER] ~= nil then
    -- The auth proxy's header wins: when ext-authz ran, it is the identity of this browser session.
    user = single(values, PROXY_USER)
    if user == nil then
      return
    end
    if PROXY_GROUPS ~= nil then
      groups = single(values, PROXY_GROUPS)
    end
  else
    local refused
    user, groups, refused = token_identity(request_handle)
    if refused ~= nil then
      request_handle:respond({[":status"] = "403"}, "kubeflow-platform: token refused: " .. refused)
      return
    end
    if user == nil then
      return
    end
  end
  if LOWERCASE_USER then
    user = string.lower(user)
  end
  headers:add(USER_HEADER, USER_ID_PREFIX .. user)
  if groups ~= nil then
    headers:add(GROUPS_HEADER, groups)
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


def dashboard_service_accounts(objects: Iterable[dict]) -> tuple[tuple[str, str], ...]:
    """`(namespace, name)` of the ServiceAccount of every workload that runs the central dashboard.

    Found by what it runs, the dashboard's image (the last part of its repository, as the release table
    names it: manifests/facts/releases.yaml), never by name: the dashboard repository's manifests (kubeflow/
    community-distribution after 26.03, for 26.03.1) rename the Deployment and its ServiceAccount
    `centraldashboard` to `dashboard` and move the image to ghcr.io/kubeflow/dashboard/dashboard. An image
    mirror keeps the last part, so the transformed objects are found as well as upstream's.
    """
    dashboard_images = set(release_table().images["dashboard"])
    found: list[tuple[str, str]] = []
    for obj in objects:
        template = pod_template(obj)
        if template is None:
            continue
        spec = template.get("spec") or {}
        images = [parse_image(c["image"]) for c in containers_of(spec) if isinstance(c.get("image"), str)]
        if not any(image is not None and image.path.rsplit("/", 1)[-1] in dashboard_images for image in images):
            continue
        # Kubernetes runs a pod without serviceAccountName as `default` of its namespace.
        account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
        namespace = (obj.get("metadata") or {}).get("namespace") or "default"
        if (namespace, account) not in found:
            found.append((namespace, account))
    return tuple(found)


def header_forwarders(objects: Iterable[dict], trust_domain: str = "cluster.local", namespace: str = "kubeflow") -> tuple[str, ...]:
    """The mesh principals (in `trust_domain`) that may pass `kubeflow-userid` on: Kubeflow Pipelines' UI and
    metadata-envoy in `namespace` (kubeflow.namespace), and the central dashboard's ServiceAccount as the
    release's `objects` name it."""
    ui, envoy = (principal_in(p.replace("cluster.local/", f"{trust_domain}/", 1), namespace) for p in PIPELINES_HEADER_FORWARDERS)
    dashboard = [f"{trust_domain}/ns/{namespace}/sa/{name}" for namespace, name in dashboard_service_accounts(objects)]
    # The order the program has always written them in, so the policies already applied are not rewritten.
    return (ui, *(p for p in dashboard if p not in (ui, envoy)), envoy)


def identity_envoy_filter(options: IdentityHeaderOptions, name: str = "kubeflow-identity-headers",
                          before_router: Sequence[dict] = ()) -> dict:
    """The EnvoyFilter that puts both Lua filters into the central gateway's HTTP chain.

    `before_router`: further HTTP filters that need the identity headers as this program sets them, placed
    after the identity filter, in this order (each INSERT_BEFORE the router lands right before it, so after
    the patches before it)."""
    _require_valid(options)
    connection_manager = {"name": "envoy.filters.network.http_connection_manager"}
    router = {**connection_manager, "subFilter": {"name": "envoy.filters.http.router"}}
    after_identity = [
        {"applyTo": "HTTP_FILTER", "match": {"context": "GATEWAY", "listener": {"filterChain": {"filter": router}}},
         "patch": {"operation": "INSERT_BEFORE", "value": value}}
        for value in before_router
    ]
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
                *after_identity,
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
        if issuer.user_claim and issuer.require_verified_email:
            # Only for the token policy (a boolean claim cannot be matched as a claim); user and groups are read
            # from the verified payload by the identity filter. The strip filter removes any client copy first.
            jwt_rule["outputClaimToHeaders"] = [{"header": JWT_EMAIL_VERIFIED_HEADER, "claim": "email_verified"}]
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
    forwarding_principals: Sequence[str] = PIPELINES_HEADER_FORWARDERS,
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


def _token_principal(issuer: str) -> str:
    # Istio splits a request principal at its last "/" into iss and sub (pilot/pkg/security/authz/model/
    # generator.go:208 at 1.24.6), so "<issuer>/*" is "iss is exactly <issuer>, any sub". GitHub's sub holds
    # "/" itself (repo:org/repo:ref:...), which is why repositories are matched as claims, never here.
    return f"{issuer}/*"


def _email_domain_patterns(domains: Sequence[str]) -> list[str]:
    """auth.emailDomains as Istio suffix matches: `example.com` is `*@example.com`; `.example.com` and
    `*.example.com` (subdomains, as oauth2-proxy@v7.7.1 validator.go:115-124 reads them) are `*.example.com`.

    Istio matches the suffix case-sensitively (matcher/string.go StringMatcherWithPrefix at 1.24.6, ignore_case
    false) where oauth2-proxy lower-cases first, so a token whose domain is written in capitals is refused.
    """
    if "*" in domains:
        return ["*"]
    patterns = []
    for domain in domains:
        lowered = domain.lower()
        if lowered.startswith("*."):
            patterns.append(f"*{lowered[1:]}")
        elif lowered.startswith("."):
            patterns.append(f"*{lowered}")
        else:
            patterns.append(f"*@{lowered}")
    return patterns


def token_admission_rules(options: IdentityHeaderOptions) -> list[dict]:
    """DENY rules at the gateway for bearer tokens that name nobody Kubeflow should let in.

    A request that carries `Authorization` skips the login (the CUSTOM policy runs only without one), so
    these rules are all that stands between a token and the backends. Refused, each by its own rule:
    - a token no RequestAuthentication verified (Istio lets a token of an unknown issuer through as none);
    - a token of an extra issuer without one of its `required_claims` at an accepted value (Istio matches
      `request.auth.claims[...]` against the verified payload, a list claim by any of its items:
      pilot/pkg/security/authz/model/generator.go:317 and matcher/metadata.go:57 at 1.24.6; a missing claim
      matches no value, so `notValues` refuses it);
    - a user token whose user claim is missing or outside the email domains, or whose `email_verified` is
      present and not true (the browser path's oauth2-proxy checks the same);
    - a token of any other verified issuer (the cluster's service accounts) outside the Pipelines API, the
      one backend that authenticates the token itself.
    Returned without hosts; the gateway's envelope adds them.
    """
    _require_valid(options)
    with_token = {"key": "request.headers[authorization]", "values": ["*"]}
    rules: list[dict] = [{"from": [{"source": {"notRequestPrincipals": ["*"]}}], "when": [with_token]}]
    for issuer in options.extra_issuers:
        source = [{"source": {"requestPrincipals": [_token_principal(issuer.issuer)]}}]
        for claim, values in sorted(issuer.required_claims.items()):
            rules.append({"from": source, "when": [{"key": f"request.auth.claims[{claim}]", "notValues": list(values)}]})
        if issuer.user_claim:
            patterns = _email_domain_patterns(issuer.email_domains)
            rules.append({"from": source, "when": [{"key": f"request.auth.claims[{issuer.user_claim}]", "notValues": patterns}]})
            if issuer.require_verified_email:
                verified = f"request.headers[{JWT_EMAIL_VERIFIED_HEADER}]"
                rules.append(
                    {"from": source, "when": [{"key": verified, "values": ["*"]}, {"key": verified, "notValues": ["true"]}]}
                )
    extra = [_token_principal(issuer.issuer) for issuer in options.extra_issuers]
    rules.append(
        {
            "from": [{"source": {"notRequestPrincipals": extra} if extra else {"requestPrincipals": ["*"]}}],
            "to": [{"operation": {"notPaths": list(SERVICE_ACCOUNT_TOKEN_PATHS)}}],
            "when": [with_token],
        }
    )
    return rules


#: Pod labels of Kubeflow Pipelines' metadata-envoy, the gateway's `/ml_metadata` backend
#: (kubeflow/pipelines@2.5.0 and @2.3.0 manifests/kustomize/base/metadata/base/metadata-envoy-deployment.yaml:15).
METADATA_ENVOY_SELECTOR = MappingProxyType({"component": "metadata-envoy"})
#: Who calls metadata-envoy besides the gateway: the KFP UI server proxies `/ml_metadata.*` to it
#: (kubeflow/pipelines@2.5.0 frontend/server/app.ts:247-257).
METADATA_ENVOY_CALLERS = ("cluster.local/ns/kubeflow/sa/ml-pipeline-ui",)


def metadata_envoy_authorization_policy(
    options: IdentityHeaderOptions,
    namespace: str,
    callers: Sequence[str] = METADATA_ENVOY_CALLERS,
    name: str = "kubeflow-metadata-envoy",
) -> dict:
    """ALLOW for ML Metadata's gateway backend: only from the gateway (or the KFP UI), only for a Kubeflow user.

    Upstream ships no policy for metadata-envoy (it opts the pod out of the mesh), and ML Metadata has no
    per-user isolation of its own, so without this any mesh workload, and any token the gateway let through,
    read and wrote every profile's artifacts. Once a policy selects the pod, Istio refuses whatever no ALLOW
    rule matches. Needs the pod's sidecar, which the mesh transformation injects.
    """
    _require_valid(options)
    return {
        "apiVersion": security_api_version(options),
        "kind": "AuthorizationPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "selector": {"matchLabels": dict(METADATA_ENVOY_SELECTOR)},
            "action": "ALLOW",
            "rules": [
                {
                    "from": [{"source": {"principals": [gateway_principal(options), *callers]}}],
                    "when": [{"key": f"request.headers[{options.user_header}]", "values": ["*"]}],
                }
            ],
        },
    }
