"""Auth: the trusted kubeflow-userid header, RequestAuthentication, gateway authorization and the SSO proxy.

Every object is built by the pure modules manifests/identity.py and manifests/auth_proxy.py; this file
only registers them. What it registers, all on the explicit Kubernetes provider:

- the EnvoyFilter that strips client-sent identity headers and sets them from the login (gateway namespace);
- a RequestAuthentication per extra issuer, and one for the cluster's own service-account issuer;
- the CUSTOM AuthorizationPolicy that sends the Kubeflow hosts' requests to the auth proxy, and a DENY
  policy for requests that skip it with a token no issuer verified;
- the DENY policy that lets only the gateway, and the in-mesh forwarders the release runs (the KFP UI,
  metadata-envoy, the dashboard's ServiceAccount: `release_header_forwarders`), send kubeflow-userid into the
  `kubeflow` namespace (tenancy applies the same policy, `identity_header_policy`, in every profile namespace);
- the ALLOW policy for ML Metadata's gateway backend (metadata-envoy), which upstream leaves open;
- the auth proxy (oauth2-proxy, or authservice for old releases) in its own namespace, with the OIDC
  client secret and cookie secret in a Secret filled from Pulumi secrets.

The mesh config's `extensionProviders` entry is exported (`authExtensionProvider`), not applied: the mesh
config belongs to the enterprise's Istio installation (see manifests/auth_proxy.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

import pulumi
import pulumi_kubernetes as k8s

from config import Settings
from config.access import AuthSettings
from manifests import admission, auth_proxy, identity
from manifests.auth_proxy import AuthProxyOptions
from manifests.identity import IdentityHeaderOptions
from manifests.namespace import principal_in
from manifests.options import ImageMirrorRule

if TYPE_CHECKING:
    from manifests.release import PreparedRelease

#: Where upstream's own Kubeflow services live; its web apps read kubeflow-userid there.
KUBEFLOW_NAMESPACE = "kubeflow"


def registration_filter(settings: Settings) -> Optional[dict]:
    """The gateway filter that rewrites the dashboard's profile creation to the caller's own, with self-service on."""
    service = settings.tenancy.self_service
    if not service.enabled:
        return None
    return admission.registration_body_filter(
        user_header=settings.auth.user_header, user_id_prefix=settings.auth.user_id_prefix,
        name_prefix=service.name_prefix, email_domains=service.email_domains)


@dataclass(frozen=True)
class AuthArgs:
    """What the Auth component needs; `from_settings` builds it from the stack's settings."""

    identity: IdentityHeaderOptions
    """How the gateway sets the identity headers (gateway workload, source headers, issuers)."""
    proxy: AuthProxyOptions
    """The auth proxy and its ext-authz wiring."""
    client_secret: pulumi.Input[str]
    """OIDC client secret (a Pulumi secret); only ever written into the proxy's Secret."""
    cookie_secret: Optional[pulumi.Input[str]]
    """oauth2-proxy's cookie signing key (a Pulumi secret); None for authservice, which keeps server-side sessions."""
    service_account_issuer: pulumi.Input[str]
    """The cluster's service-account token issuer, as EKS reports it (`Cluster.oidc_issuer`)."""
    header_forwarders: tuple[str, ...]
    """Mesh principals besides the gateway that may send kubeflow-userid (`release_header_forwarders`)."""
    service_account_audiences: tuple[str, ...] = ("pipelines.kubeflow.org",)
    """Audiences a service-account token must carry at the gateway."""
    login_hosts: tuple[str, ...] = ()
    """Hosts besides Kubeflow's behind the login and the token policy: `*.<servingDomain>` unless
    auth.openModelEndpoints (upstream 26.03's policies name no hosts, so its model endpoints are behind them)."""
    registration_filter: Optional[dict] = None
    """With self-service on (tenancy.selfService), the gateway filter after the identity filter that makes the
    dashboard's profile creation create the caller's own profile (manifests.admission.registration_body_filter)."""
    kubeflow_namespace: str = KUBEFLOW_NAMESPACE
    """Namespace of upstream's Kubeflow services, guarded by the identity-header policy."""

    @classmethod
    def from_settings(cls, settings: Settings, service_account_issuer: pulumi.Input[str],
                      header_forwarders: Sequence[str], released_proxy_image: Optional[str] = None) -> "AuthArgs":
        """`released_proxy_image`: the oauth2-proxy image the Kubeflow release pins, the default for
        auth.proxyImage (the program's own oauth2-proxy follows the release's)."""
        auth: AuthSettings = settings.auth
        options = settings.identity_options()
        images = settings.kubeflow.images
        proxy = AuthProxyOptions(
            proxy=auth.proxy,
            issuer_url=auth.issuer_url,
            client_id=auth.client_id,
            hosts=settings.dns.hosts,
            gateway=f"{settings.ingress.gateway_namespace}/{settings.ingress.gateway_name}",
            identity=options,
            extension_provider=auth.extension_provider,
            scopes=auth.scopes,
            email_domains=auth.email_domains,
            image=auth.proxy_image or (released_proxy_image if auth.proxy == "oauth2-proxy" else None),
            image_rules=tuple(ImageMirrorRule(rule.source, rule.target) for rule in images.rules) if images else (),
            image_mirror=images.mirror if images else None,
            mesh_revision=settings.kubeflow.mesh.revision,
            # istio-init's NET_ADMIN and NET_RAW (manifests.mesh.set_pod_security).
            pod_security="privileged" if settings.kubeflow.mesh.data_plane == "sidecar-init" else None,
        )
        secrets = settings.secrets
        return cls(
            identity=options,
            proxy=proxy,
            client_secret=secrets.auth_client_secret,
            cookie_secret=secrets.auth_cookie_secret if auth.proxy == "oauth2-proxy" else None,
            service_account_issuer=service_account_issuer,
            header_forwarders=tuple(header_forwarders),
            service_account_audiences=auth.service_account_audiences,
            login_hosts=tuple(f"*.{domain}" for domain in settings.login_domains()),
            registration_filter=registration_filter(settings),
            kubeflow_namespace=settings.kubeflow.namespace,
        )

    @property
    def policy_hosts(self) -> tuple[str, ...]:
        """Every host the gateway's login (CUSTOM) and token (DENY) policies hold."""
        return (*self.proxy.hosts, *self.login_hosts)


def release_header_forwarders(settings: Settings, release: "PreparedRelease") -> tuple[str, ...]:
    """Upstream's in-mesh forwarders of kubeflow-userid in the objects the release applies, as principals of
    this mesh's trust domain: the dashboard's ServiceAccount is read from its workload, not assumed by name."""
    objects = [obj for group in release.groups.values() for obj in group]
    return identity.header_forwarders(objects, settings.identity_options().trust_domain, settings.kubeflow.namespace)


def identity_header_policy(options: IdentityHeaderOptions, namespace: str, forwarders: Sequence[str]) -> dict:
    """The DENY policy that lets only the gateway (and `forwarders`) send the identity headers into `namespace`."""
    return identity.identity_header_authorization_policy(options, namespace, tuple(forwarders))


def _gateway_hosts(hosts: tuple[str, ...]) -> list[str]:
    # `:authority` may carry a port; a policy that matched only the bare name would let `host:443` step
    # around login, so every host is listed both ways. A wildcard host (`*.<domain>`) is a suffix match in
    # Istio (pilot/pkg/security/authz/matcher/header.go HostMatcher at 1.24.6) that cannot also take a port: the
    # gateway's first filter refuses a port on those hosts instead (IdentityHeaderOptions.login_domains).
    return [spelling for host in hosts for spelling in ((host,) if host.startswith("*") else (host, f"{host}:*"))]


def _on_kubeflow_hosts(policy: dict, hosts: tuple[str, ...]) -> dict:
    """The policy limited to Kubeflow's hosts: the enterprise's gateway may serve other applications."""
    for rule in policy["spec"]["rules"]:
        operations = rule.setdefault("to", [{"operation": {}}])
        for entry in operations:
            entry["operation"]["hosts"] = _gateway_hosts(hosts)
    return policy


class Auth(pulumi.ComponentResource):
    """Trusted identity at the central gateway and the SSO path in front of Kubeflow."""

    extension_provider: pulumi.Output[dict]
    """The meshConfig `extensionProviders` entry the mesh owner must add (exported as authExtensionProvider)."""
    redirect_url: pulumi.Output[str]
    """OIDC callback to register for the client at the enterprise issuer."""
    proxy_namespace: pulumi.Output[str]
    """Namespace of the auth proxy."""
    object_names: pulumi.Output[dict]
    """`Kind/namespace/name` of every gateway-side object, for troubleshooting."""
    mesh_trace: pulumi.Output[dict]
    """What `make trace` needs besides the applied objects: gateway pods, trust domain, hosts, identity sources."""

    def __init__(self, name: str, args: AuthArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("kubeflow-platform:auth:Auth", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        names: dict[str, list[str]] = {}

        def custom(role: str, obj: dict, spec: Any = None, depends_on: Optional[list] = None) -> k8s.apiextensions.CustomResource:
            metadata = obj["metadata"]
            names.setdefault(obj["kind"], []).append(f"{metadata.get('namespace', '')}/{metadata['name']}")
            return k8s.apiextensions.CustomResource(
                f"{name}-{role}",
                api_version=obj["apiVersion"],
                kind=obj["kind"],
                metadata=metadata,
                spec=obj["spec"] if spec is None else spec,
                opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=depends_on or [])),
            )

        options = args.identity
        custom("identity-headers", identity.identity_envoy_filter(
            options, before_router=[args.registration_filter] if args.registration_filter else ()))
        for request_authentication in identity.extra_issuer_request_authentications(options):
            custom(request_authentication["metadata"]["name"].removeprefix("kubeflow-"), request_authentication)

        # The cluster's issuer is an Output: the object is built inside apply on a resource of its own, so an
        # unknown issuer in a preview blanks out this one spec and nothing else.
        def service_account_spec(issuer: str) -> dict:
            # The issuer is read from the cluster, so settings that clash with it can only be found here; they
            # are a configuration mistake (RunError: reported as a message), not a crash of the program.
            try:
                return identity.service_account_request_authentication(
                    options, issuer, service_account_audiences=args.service_account_audiences
                )["spec"]
            except ValueError as error:
                hint = ("\n  (the cluster's own service-account tokens are already verified at the gateway, for the"
                        " audiences in auth.serviceAccountAudiences: remove that entry from auth.extraIssuers)"
                        if "the cluster's own issuer" in str(error) else "")
                raise pulumi.RunError(f"{error}{hint}") from None

        known_shape = {
            "apiVersion": identity.security_api_version(options),
            "kind": "RequestAuthentication",
            "metadata": {"name": identity.SERVICE_ACCOUNT_REQUEST_AUTHENTICATION, "namespace": options.gateway_namespace},
            "spec": {},
        }
        custom("service-account-jwt", known_shape, spec=pulumi.Output.from_input(args.service_account_issuer).apply(service_account_spec))

        hosts = args.policy_hosts
        custom("ext-authz", _on_kubeflow_hosts(auth_proxy.ext_authz_policy(args.proxy), hosts))
        custom("require-verified-token", _on_kubeflow_hosts(auth_proxy.require_verified_token_policy(args.proxy), hosts))
        custom("identity-header-policy", identity_header_policy(options, args.kubeflow_namespace, args.header_forwarders))
        callers = tuple(principal_in(p.replace("cluster.local/", f"{options.trust_domain}/", 1), args.kubeflow_namespace)
                        for p in identity.METADATA_ENVOY_CALLERS)
        custom("metadata-envoy-policy", identity.metadata_envoy_authorization_policy(options, args.kubeflow_namespace, callers))

        self._register_proxy(name, args, child)

        self.extension_provider = pulumi.Output.from_input(auth_proxy.extension_provider(args.proxy))
        self.redirect_url = pulumi.Output.from_input(args.proxy.redirect_url)
        self.proxy_namespace = pulumi.Output.from_input(args.proxy.namespace)
        self.object_names = pulumi.Output.from_input(names)
        self.mesh_trace = pulumi.Output.from_input(auth_proxy.mesh_trace_settings(args.proxy))
        self.register_outputs(
            {
                "extensionProvider": self.extension_provider,
                "redirectUrl": self.redirect_url,
                "proxyNamespace": self.proxy_namespace,
                "objectNames": self.object_names,
                "meshTrace": self.mesh_trace,
            }
        )

    @property
    def stack_outputs(self) -> dict[str, Any]:
        """What the mesh owner merges into meshConfig.extensionProviders, the redirect URL the IdP admin
        registers, and the objects this component applies."""
        return {"authExtensionProvider": self.extension_provider, "authRedirectUrl": self.redirect_url,
                "authObjects": self.object_names, "meshTrace": self.mesh_trace}

    def _register_proxy(self, name: str, args: AuthArgs, child: pulumi.ResourceOptions) -> None:
        proxy = args.proxy
        objects = auth_proxy.auth_proxy_objects(proxy)
        namespace_object, rest = objects[0], objects[1:]
        namespace = k8s.core.v1.Namespace(f"{name}-proxy-namespace", metadata=namespace_object["metadata"], opts=child)
        in_namespace = pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[namespace]))

        string_data: dict[str, pulumi.Input[str]] = {auth_proxy.CLIENT_SECRET_KEY: pulumi.Output.secret(args.client_secret)}
        if args.cookie_secret is not None:
            string_data[auth_proxy.COOKIE_SECRET_KEY] = pulumi.Output.secret(args.cookie_secret)
        secret = k8s.core.v1.Secret(
            f"{name}-oidc-client",
            metadata={"name": auth_proxy.CLIENT_SECRET_NAME, "namespace": proxy.namespace,
                      "labels": {"app.kubernetes.io/part-of": "kubeflow-platform"}},
            type="Opaque",
            string_data=string_data,
            # The provider returns `data` base64-encoded; it must stay a secret in the state as well.
            opts=pulumi.ResourceOptions.merge(in_namespace, pulumi.ResourceOptions(additional_secret_outputs=["data", "stringData"])),
        )
        with_secret = pulumi.ResourceOptions.merge(in_namespace, pulumi.ResourceOptions(depends_on=[namespace, secret]))

        for obj in rest:
            kind, metadata = obj["kind"], obj["metadata"]
            # One object of each kind, named by its kind; the extra hosts' redirects are a second VirtualService.
            role = "extra-host-redirects" if metadata["name"] == auth_proxy.EXTRA_HOST_REDIRECTS else f"proxy-{kind.lower()}"
            if kind == "ServiceAccount":
                k8s.core.v1.ServiceAccount(f"{name}-{role}", metadata=metadata, opts=in_namespace)
            elif kind == "ConfigMap":
                k8s.core.v1.ConfigMap(f"{name}-{role}", metadata=metadata, data=obj["data"], opts=in_namespace)
            elif kind == "Deployment":
                k8s.apps.v1.Deployment(f"{name}-{role}", metadata=metadata, spec=obj["spec"], opts=with_secret)
            elif kind == "StatefulSet":
                k8s.apps.v1.StatefulSet(f"{name}-{role}", metadata=metadata, spec=obj["spec"], opts=with_secret)
            elif kind == "Service":
                k8s.core.v1.Service(f"{name}-{role}", metadata=metadata, spec=obj["spec"], opts=in_namespace)
            else:
                k8s.apiextensions.CustomResource(
                    f"{name}-{role}", api_version=obj["apiVersion"], kind=kind, metadata=metadata, spec=obj["spec"],
                    opts=in_namespace,
                )


__all__ = ["Auth", "AuthArgs", "KUBEFLOW_NAMESPACE", "identity_header_policy", "release_header_forwarders"]
