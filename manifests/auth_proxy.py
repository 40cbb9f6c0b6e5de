"""The SSO path at the central gateway, as plain Kubernetes objects: the auth proxy and its ext-authz wiring.

Browsers log in at the enterprise OIDC issuer directly (no Dex): the gateway asks the auth proxy about
every request through Istio's CUSTOM authorization (Envoy ext_authz), the proxy answers with a redirect
to the issuer or with the logged-in user in `x-auth-request-email` / `x-auth-request-groups` (the
source headers of manifests/identity.py), and the identity filter turns those into `kubeflow-userid`.

Two proxies:
- oauth2-proxy, what Kubeflow 1.9 and later ship (upstream common/oauth2-proxy), configured for the
  enterprise issuer instead of Dex;
- oidc-authservice, what Kubeflow 1.7 and older ship, for stacks that still run those releases.

Istio learns about the proxy from an `extensionProviders` entry in the mesh config. The mesh config is
the enterprise's (its IstioOperator or Helm values own the `istio` ConfigMap, and the whole config is one
YAML string, so a server-side-apply patch could only replace all of it), so this module produces the
entry for the mesh owner to add, and the CUSTOM policy that names it.

Every builder here is pure: options in, plain dicts or text out, no Pulumi.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Literal, Sequence

from manifests.admission import POD_ADMISSION_LABEL, POD_ADMISSION_LEVEL
from manifests.identity import IdentityHeaderOptions, gateway_principal, security_api_version, token_admission_rules
from manifests.images import mirror_image, parse_image
from manifests.mesh import INJECT, gateway_route_export_to
from manifests.options import ImageMirrorRule

ProxyKind = Literal["oauth2-proxy", "authservice"]

#: The images upstream pins for each proxy: oauth2-proxy as in Kubeflow 1.10's common/oauth2-proxy,
#: oidc-authservice as in Kubeflow 1.7's common/oidc-client/oidc-authservice.
#: Used when the release ships no oauth2-proxy to take the version from (see manifests.release).
DEFAULT_IMAGES = {
    "oauth2-proxy": "quay.io/oauth2-proxy/oauth2-proxy:v7.7.1",
    "authservice": "gcr.io/arrikto/kubeflow/oidc-authservice:e236439",
}

#: Key names inside the Secret the component fills from Pulumi secrets.
CLIENT_SECRET_KEY = "client-secret"
COOKIE_SECRET_KEY = "cookie-secret"
#: Name of that Secret, in the proxy's namespace.
CLIENT_SECRET_NAME = "auth-proxy-oidc-client"

# Where each proxy listens and what the gateway must leave alone so that login itself can happen.
_CHECK_PORT = {"oauth2-proxy": 4180, "authservice": 8080}
_SERVICE_PORT = {"oauth2-proxy": 80, "authservice": 8080}
_CALLBACK_PATH = {"oauth2-proxy": "/oauth2/callback", "authservice": "/authservice/oidc/callback"}
# oauth2-proxy serves its own /oauth2/ endpoints (start, callback, sign_out) as a normal upstream, so the
# gateway must not ask it about them; authservice answers its callback from inside the check itself, and
# only its static pages are served apart.
_UNCHECKED_PATHS = {"oauth2-proxy": ("/oauth2/*",), "authservice": ("/authservice/site/*",)}


@dataclass(frozen=True)
class AuthProxyOptions:
    """How the auth proxy is configured and wired into the gateway."""

    proxy: ProxyKind
    issuer_url: str
    client_id: str
    #: Host names users open; the first receives the OIDC callback.
    hosts: tuple[str, ...]
    #: `namespace/name` of the central Istio Gateway the proxy's own routes bind to.
    gateway: str
    identity: IdentityHeaderOptions
    #: Name of the meshConfig extensionProvider the CUSTOM policy calls.
    extension_provider: str = "kubeflow-auth"
    scopes: tuple[str, ...] = ("openid", "email", "profile", "groups")
    email_domains: tuple[str, ...] = ("*",)
    #: None uses the image upstream pins for the proxy.
    image: str | None = None
    #: Pull through the internal registry: the organisation's rules, then `<mirror>/<registry>/<path>`.
    image_rules: tuple[ImageMirrorRule, ...] = ()
    image_mirror: str | None = None
    #: Istio revision the proxy's namespace joins; None uses `istio-injection: enabled`.
    mesh_revision: str | None = None
    #: Pod Security level the mesh's data plane needs where the proxy's sidecar runs (`privileged` with
    #: istio-init, manifests.mesh.set_pod_security); None leaves the cluster's default.
    pod_security: str | None = None
    replicas: int = 2

    @property
    def namespace(self) -> str:
        return self.proxy

    @property
    def service_host(self) -> str:
        return f"{self.proxy}.{self.namespace}.svc.cluster.local"

    @property
    def cookie_domain(self) -> str | None:
        """The cookie domain every host shares when there is more than one host (shared_cookie_domain)."""
        return shared_cookie_domain(self.hosts)

    @property
    def redirect_url(self) -> str:
        """The callback to register at the enterprise issuer for this client."""
        return f"https://{self.hosts[0]}{_CALLBACK_PATH[self.proxy]}"


def shared_cookie_domain(hosts: tuple[str, ...]) -> str | None:
    """The longest parent domain of every host, as a cookie domain (`.ml.example.com`), when there is more than one
    host; None: host-only cookies.

    oauth2-proxy's session and CSRF cookies are host-only unless `cookie_domains` names a domain the request's
    host ends with (oauth2-proxy/oauth2-proxy@v7.14.3 pkg/cookies/cookies.go:17-33, 51-59; v7.7.1 :17-31,
    49-57). The callback is on the first host only, so a login started on another host needs its CSRF cookie
    to reach the first host, and the session made there to come back. Every host lies inside dns.zoneName, so
    they share at least the zone."""
    if len(hosts) < 2:
        return None
    labels = [host.rstrip(".").lower().split(".")[::-1] for host in hosts]
    common = []
    for parts in zip(*labels):
        if len(set(parts)) != 1:
            break
        common.append(parts[0])
    return "." + ".".join(reversed(common)) if len(common) >= 2 else None


def source_headers(options: AuthProxyOptions) -> list[str]:
    """The headers the proxy answers with after login, which the gateway must copy onto the request."""
    names = [options.identity.user_source_header, options.identity.groups_source_header]
    return [name for name in names if name]


def proxy_image(options: AuthProxyOptions) -> str:
    """The proxy's image as the cluster pulls it: through the internal registry when one is configured."""
    image = options.image or DEFAULT_IMAGES[options.proxy]
    mirrored = mirror_image(image, options.image_rules)
    if mirrored is not None:
        return mirrored
    parsed = parse_image(image)
    if options.image_mirror and parsed is not None:
        return mirror_image(image, (ImageMirrorRule(parsed.domain, f"{options.image_mirror.rstrip('/')}/{parsed.domain}"),)) or image
    return image


# ---------------------------------------------------------------------------------------------------
# Gateway wiring


def extension_provider(options: AuthProxyOptions) -> dict:
    """The meshConfig `extensionProviders` entry the mesh owner adds (istiod reads it; see module doc)."""
    return {
        "name": options.extension_provider,
        "envoyExtAuthzHttp": {
            "service": options.service_host,
            "port": _SERVICE_PORT[options.proxy],
            # The session cookie is how the proxy recognises a logged-in browser; Authorization carries a
            # session token for authservice's programmatic clients.
            "includeRequestHeadersInCheck": ["authorization", "cookie"],
            # Only what the proxy answers here reaches the request; the identity filter reads these and
            # the strip filter has already removed any client-sent copy.
            "headersToUpstreamOnAllow": source_headers(options),
            # The login redirect sets state cookies; without set-cookie on deny the callback fails (CSRF).
            "headersToDownstreamOnDeny": ["content-type", "set-cookie"],
        },
    }


def ext_authz_policy(options: AuthProxyOptions, name: str = "kubeflow-auth-proxy") -> dict:
    """The CUSTOM AuthorizationPolicy that sends the gateway's requests to the auth proxy.

    Requests with an `Authorization` header skip the proxy, as upstream's does: they are machine clients
    whose token a RequestAuthentication verifies (and `require_verified_token_policy` insists on that).
    If the mesh config lacks the provider, istiod cannot build the ext_authz filter and the gateway
    denies the requests this policy matches: it fails closed, never open.
    """
    rule = {
        "to": [{"operation": {"notPaths": list(_UNCHECKED_PATHS[options.proxy])}}],
        "when": [{"key": "request.headers[authorization]", "notValues": ["*"]}],
    }
    return _gateway_policy(options.identity, name, "CUSTOM", rule, provider={"name": options.extension_provider})


def require_verified_token_policy(options: AuthProxyOptions, name: str = "kubeflow-require-verified-token") -> dict:
    """DENY at the gateway for requests that skipped the auth proxy with a token that names nobody let in.

    Istio's RequestAuthentication rejects a token it cannot verify but lets through one whose issuer it
    does not know, as if there were none. Without this policy, `Authorization: Bearer anything` would
    step around login (upstream closes the same gap with `istio-ingressgateway-require-jwt`, which the
    `istio` exclusion removes together with the rest of upstream's istio-system). A verified token is not
    enough either: any GitHub workflow gets one; the rules (`identity.token_admission_rules`) also hold
    each issuer's tokens to its required claims, email domains and verified email.
    """
    rules = token_admission_rules(options.identity)
    return _gateway_policy(options.identity, name, "DENY", rules[0], extra_rules=rules[1:])


def _gateway_policy(
    identity: IdentityHeaderOptions, name: str, action: str, rule: dict, extra_rules: Sequence[dict] = (), **spec: object
) -> dict:
    """An AuthorizationPolicy with its rules on the ingress gateway's pods, in the gateway's namespace."""
    return {
        "apiVersion": security_api_version(identity),
        "kind": "AuthorizationPolicy",
        "metadata": {"name": name, "namespace": identity.gateway_namespace},
        "spec": {
            "selector": {"matchLabels": dict(identity.gateway_selector)},
            "action": action,
            **spec,
            "rules": [rule, *extra_rules],
        },
    }


def mesh_config_snippet(options: AuthProxyOptions) -> dict:
    """What the mesh owner merges into the mesh config (IstioOperator `spec.meshConfig`, Helm `meshConfig`)."""
    return {"extensionProviders": [extension_provider(options)]}


# ---------------------------------------------------------------------------------------------------
# The proxy itself


def _toml_string(value: str) -> str:
    # JSON string escapes are valid TOML basic-string escapes.
    return json.dumps(value)


def _toml_list(values: tuple[str, ...] | list[str]) -> str:
    return "[" + ", ".join(_toml_string(value) for value in values) + "]"


def oauth2_proxy_config(options: AuthProxyOptions) -> str:
    """oauth2-proxy's config file for direct OIDC against the enterprise issuer (no client secret in it)."""
    lines = [
        "# kubeflow-platform: oauth2-proxy as the gateway's ext-authz service, logging in at the enterprise issuer.",
        'provider = "oidc"',
        f"oidc_issuer_url = {_toml_string(options.issuer_url)}",
        f"client_id = {_toml_string(options.client_id)}",
        f"scope = {_toml_string(' '.join(options.scopes))}",
        f"email_domains = {_toml_list(options.email_domains)}",
        # An absolute callback: it is what the issuer has registered (upstream's relative one exists for Dex).
        f"redirect_url = {_toml_string(options.redirect_url)}",
        # After login, only our own hosts may be redirected to (no open redirect through `rd=`).
        f"whitelist_domains = {_toml_list(list(options.hosts))}",
        # Several hosts: cookies for their common parent, so a login started on any host completes at the callback
        # on the first and its session is sent to every host (see AuthProxyOptions.cookie_domain).
        *([f"cookie_domains = {_toml_list([options.cookie_domain])}"] if options.cookie_domain else []),
        # As an ext-authz check it answers 200 or a redirect; it never proxies to an upstream.
        'upstreams = [ "static://200" ]',
        # Background XHRs get 401 instead of a login redirect (upstream's list: every web app's API).
        'api_routes = [ "/api/", "/apis/", "^/ml_metadata" ]',
        # x-auth-request-email/-groups: the identity the gateway copies into kubeflow-userid/-groups.
        "set_xauthrequest = true",
        # No ID token onto the request: the gateway verifies no token of this client, so an Authorization
        # header would be denied by kubeflow-require-verified-token; the identity travels in the headers above.
        "set_authorization_header = false",
        "pass_access_token = false",
        # Requests carrying a token skip the proxy at the gateway; verified there, never here.
        "skip_jwt_bearer_tokens = false",
        # TLS ends at the load balancer, but browsers only ever see https.
        "cookie_secure = true",
        'cookie_samesite = "lax"',
        'cookie_name = "oauth2_proxy_kubeflow"',
        'cookie_expire = "24h"',
        'cookie_refresh = "0s"',
        'code_challenge_method = "S256"',
        # Behind the gateway: trust its X-Forwarded-* for the original URL of the request being checked.
        "reverse_proxy = true",
        # A sign-in page before the redirect stops background requests from each starting a login (CSRF cookies pile up).
        "skip_provider_button = false",
    ]
    return "\n".join(lines) + "\n"


def _namespace(options: AuthProxyOptions) -> dict:
    labels = {"app.kubernetes.io/part-of": "kubeflow-platform"}
    # Istio ignores istio.io/rev while istio-injection is present, so exactly one of them.
    labels.update({"istio.io/rev": options.mesh_revision} if options.mesh_revision else {"istio-injection": "enabled"})
    if options.pod_security:
        labels["pod-security.kubernetes.io/enforce"] = options.pod_security
        if options.pod_security == "privileged":
            # Baseline is enforced by the program's ValidatingAdmissionPolicy instead (manifests/admission.py).
            labels[POD_ADMISSION_LABEL] = POD_ADMISSION_LEVEL
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": options.namespace, "labels": labels}}


def _labels(options: AuthProxyOptions) -> dict:
    return {"app.kubernetes.io/name": options.proxy, "app.kubernetes.io/part-of": "kubeflow-platform"}


_CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _secret_env(name: str, key: str) -> dict:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": CLIENT_SECRET_NAME, "key": key}}}


def _oauth2_proxy_workload(options: AuthProxyOptions, config_name: str, config_text: str) -> list[dict]:
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": config_name, "namespace": options.namespace, "labels": _labels(options)},
        "data": {"oauth2_proxy.cfg": config_text},
    }
    pod_annotations = {
        INJECT: "true",
        # A changed config file rolls the pods; oauth2-proxy reads it only at start.
        "kubeflow-platform/config-sha256": hashlib.sha256(config_text.encode()).hexdigest()[:16],
    }
    container = {
        "name": "oauth2-proxy",
        "image": proxy_image(options),
        "args": [f"--http-address=0.0.0.0:{_CHECK_PORT['oauth2-proxy']}", "--config=/etc/oauth2-proxy/oauth2_proxy.cfg"],
        # Secrets only through the environment, from the Secret; never in the config file or the args.
        "env": [
            _secret_env("OAUTH2_PROXY_CLIENT_SECRET", CLIENT_SECRET_KEY),
            _secret_env("OAUTH2_PROXY_COOKIE_SECRET", COOKIE_SECRET_KEY),
        ],
        "ports": [{"name": "http", "containerPort": _CHECK_PORT["oauth2-proxy"], "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}},
        "livenessProbe": {"httpGet": {"path": "/ping", "port": "http"}},
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
        # oauth2-proxy keeps sessions in cookies and writes nothing; 65532 is its image's nonroot user.
        "securityContext": {**_CONTAINER_SECURITY, "readOnlyRootFilesystem": True, "runAsUser": 65532, "runAsGroup": 65532},
        "volumeMounts": [{"name": "config", "mountPath": "/etc/oauth2-proxy", "readOnly": True}],
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "oauth2-proxy", "namespace": options.namespace, "labels": _labels(options)},
        "spec": {
            "replicas": options.replicas,
            "selector": {"matchLabels": {"app.kubernetes.io/name": "oauth2-proxy"}},
            "template": {
                "metadata": {"labels": _labels(options), "annotations": pod_annotations},
                "spec": {
                    "serviceAccountName": "oauth2-proxy",
                    # It never calls the Kubernetes API (the sidecar brings its own projected istio-token).
                    "automountServiceAccountToken": False,
                    "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [container],
                    "volumes": [{"name": "config", "configMap": {"name": config_name}}],
                },
            },
        },
    }
    return [config_map, deployment]


def _authservice_workload(options: AuthProxyOptions) -> list[dict]:
    identity = options.identity
    env = {
        "OIDC_PROVIDER": options.issuer_url,
        "CLIENT_ID": options.client_id,
        "OIDC_SCOPES": ",".join(options.scopes),
        "REDIRECT_URL": options.redirect_url,
        "AUTHSERVICE_URL_PREFIX": f"https://{options.hosts[0]}/authservice/",
        "SERVER_PORT": str(_CHECK_PORT["authservice"]),
        # The proxy writes the source headers; the gateway's identity filter owns kubeflow-userid, its
        # prefix and lower-casing, so authservice adds no prefix of its own.
        "USERID_HEADER": identity.user_source_header,
        "USERID_PREFIX": "",
        "USERID_CLAIM": "email",
        "SESSION_STORE_PATH": "/var/lib/authservice/data.db",
        "OIDC_STATE_STORE_PATH": "/var/lib/authservice/oidc_state.db",
    }
    if identity.groups_source_header:
        env["GROUPS_HEADER"] = identity.groups_source_header
        env["GROUPS_CLAIM"] = "groups"
    container = {
        "name": "authservice",
        "image": proxy_image(options),
        "env": [{"name": key, "value": value} for key, value in env.items()]
        + [_secret_env("CLIENT_SECRET", CLIENT_SECRET_KEY)],
        "ports": [
            {"name": "http-check", "containerPort": _CHECK_PORT["authservice"], "protocol": "TCP"},
            {"name": "http-web", "containerPort": 8082, "protocol": "TCP"},
        ],
        "readinessProbe": {"httpGet": {"path": "/", "port": 8081}},
        "securityContext": _CONTAINER_SECURITY,
        "volumeMounts": [{"name": "data", "mountPath": "/var/lib/authservice"}],
    }
    # One replica with a volume, as upstream: sessions live in a local BoltDB file.
    statefulset = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "authservice", "namespace": options.namespace, "labels": _labels(options)},
        "spec": {
            "replicas": 1,
            "serviceName": "authservice",
            "selector": {"matchLabels": {"app.kubernetes.io/name": "authservice"}},
            "template": {
                "metadata": {"labels": _labels(options), "annotations": {INJECT: "true"}},
                "spec": {
                    "serviceAccountName": "authservice",
                    "securityContext": {"fsGroup": 111},
                    "containers": [container],
                },
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Mi"}}},
                }
            ],
        },
    }
    return [statefulset]


def auth_proxy_objects(options: AuthProxyOptions) -> list[dict]:
    """Namespace, ServiceAccount, config, workload, Service and the routes of the auth proxy.

    The Secret with the client and cookie secrets is not among them: its values are Pulumi secrets and the
    component registers it on its own (`CLIENT_SECRET_NAME`, keys `CLIENT_SECRET_KEY`/`COOKIE_SECRET_KEY`).
    """
    proxy, namespace = options.proxy, options.namespace
    objects = [
        _namespace(options),
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": proxy, "namespace": namespace, "labels": _labels(options)}},
    ]
    if proxy == "oauth2-proxy":
        objects += _oauth2_proxy_workload(options, "oauth2-proxy", oauth2_proxy_config(options))
        ports = [{"name": "http", "port": _SERVICE_PORT[proxy], "targetPort": "http"}]
        route_prefix, route_port, rewrite = "/oauth2/", _SERVICE_PORT[proxy], None
    else:
        objects += _authservice_workload(options)
        ports = [
            {"name": "http-check", "port": _SERVICE_PORT[proxy], "targetPort": "http-check"},
            {"name": "http-web", "port": 8082, "targetPort": "http-web"},
        ]
        route_prefix, route_port, rewrite = "/authservice/site/", 8082, "/site/"
    objects.append(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": proxy, "namespace": namespace, "labels": _labels(options)},
            "spec": {"selector": {"app.kubernetes.io/name": proxy}, "ports": ports, "type": "ClusterIP"},
        }
    )
    route: dict = {
        "match": [{"uri": {"prefix": route_prefix}}],
        "route": [{"destination": {"host": options.service_host, "port": {"number": route_port}}}],
    }
    if rewrite:
        route["rewrite"] = {"uri": rewrite}
    service = {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "VirtualService",
        "metadata": {"name": proxy, "namespace": namespace, "labels": _labels(options)},
        "spec": {"gateways": [options.gateway], "hosts": list(options.hosts), "http": [route]},
    }
    # Visible to the gateway's pods whatever the mesh's defaultVirtualServiceExportTo says (a mesh that
    # defaults to "." would hide a route without exportTo from them), and to no one else's sidecars.
    service["spec"]["exportTo"] = gateway_route_export_to(service, options.identity.gateway_namespace)
    objects.append(service)
    objects += extra_host_redirects(options)
    # Both the login routes and the ext_authz checks come from the gateway; no other workload has business here.
    objects.append(
        {
            "apiVersion": security_api_version(options.identity),
            "kind": "AuthorizationPolicy",
            "metadata": {"name": f"{proxy}-from-gateway", "namespace": namespace, "labels": _labels(options)},
            "spec": {
                "selector": {"matchLabels": {"app.kubernetes.io/name": proxy}},
                "action": "ALLOW",
                "rules": [{"from": [{"source": {"principals": [gateway_principal(options.identity)]}}]}],
            },
        }
    )
    return objects


#: Path prefixes whose VirtualServices Kubeflow's controllers write at run time for one host only: the notebook and
#: TensorBoard controllers route `ISTIO_HOST`, a single host (kubeflow/kubeflow@v1.10.0
#: components/notebook-controller/controllers/notebook_controller.go:500-507,
#: components/tensorboard-controller/controllers/tensorboard_controller.go:321-335).
SINGLE_HOST_PREFIXES = ("/notebook/", "/tensorboard/")
#: The VirtualService that redirects them on every other host.
EXTRA_HOST_REDIRECTS = "kubeflow-extra-host-redirects"


def extra_host_redirects(options: AuthProxyOptions) -> list[dict]:
    """On every host but the first, a 302 to the first host for the paths only it routes (SINGLE_HOST_PREFIXES).

    Without it `/notebook/...` on another host falls to the dashboard's catch-all route. The browser follows the
    redirect with the session its cookie domain gives it on the first host (AuthProxyOptions.cookie_domain). The
    scheme is set: TLS ends at the load balancer, so the gateway sees http."""
    if len(options.hosts) < 2:
        return []
    service = {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "VirtualService",
        "metadata": {"name": EXTRA_HOST_REDIRECTS, "namespace": options.namespace, "labels": _labels(options)},
        "spec": {
            "gateways": [options.gateway],
            "hosts": list(options.hosts[1:]),
            "http": [{"match": [{"uri": {"prefix": prefix}} for prefix in SINGLE_HOST_PREFIXES],
                      "redirect": {"authority": options.hosts[0], "scheme": "https", "redirectCode": 302}}],
        },
    }
    service["spec"]["exportTo"] = gateway_route_export_to(service, options.identity.gateway_namespace)
    return [service]


def mesh_trace_settings(options: AuthProxyOptions, identity_filter: str = "kubeflow-identity-headers") -> dict:
    """What the offline mesh trace (analysis/trace.py) needs beyond the applied objects: where the gateway pods run
    and as whom, the trust domain, the Kubeflow hosts and how the gateway derives the identity header. Exported as
    the stack output `meshTrace`, so a saved plan can be traced without the stack's settings."""
    identity = options.identity
    return {
        "gateway": {"namespace": identity.gateway_namespace, "labels": dict(identity.gateway_selector),
                    "serviceAccount": identity.gateway_service_account},
        "trustDomain": identity.trust_domain,
        # The trace follows the mesh's Istio where its policy rules changed between versions.
        "istioVersion": identity.istio_version,
        "hosts": list(options.hosts),
        # Which hosts a browser session works on: the callback's host, and those the session cookie's domain covers.
        "login": {"callbackHost": options.hosts[0],
                  "cookieDomains": [options.cookie_domain] if options.proxy == "oauth2-proxy" and options.cookie_domain else []},
        "identity": {
            "userHeader": identity.user_header,
            "userSourceHeader": identity.user_source_header,
            "lowercase": identity.lowercase_user,
            "userIdPrefix": identity.user_id_prefix,
            "emailDomains": list(options.email_domains),
            "envoyFilter": f"{identity.gateway_namespace}/{identity_filter}",
            "issuers": [
                {key: value for key, value in (("issuer", issuer.issuer), ("userClaim", issuer.user_claim),
                                               ("machineUser", issuer.machine_user)) if value}
                for issuer in identity.extra_issuers
            ],
        },
    }
