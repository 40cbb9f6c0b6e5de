"""What upstream Kubeflow to apply and how it is fitted into the enterprise's mesh, Argo and registry."""

from __future__ import annotations

import dataclasses

import difflib
import re
import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal, Optional, Union
from urllib.parse import urlsplit

from config import checks
from config.loader import setting
from manifests.exclusions import RULES_BY_NAME
from manifests.sources import UrlSource
from manifests.options import (
    ExternalArgoOptions,
    ExternalStoresOptions,
    GatewayOptions,
    GatewayPodsOptions,
    ImageMirrorOptions,
    ExternalHost,
    ImageMirrorRule,
    MeshOptions,
    PodTemplateOptions,
    ServingOptions,
    TransformOptions,
)

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
#: Semantic releases up to 1.11 (`1.10.2`); calendar releases from 26.03 on (`YY.MM[.PATCH]`).
_VERSION = re.compile(r"^(\d+\.\d+\.\d+|\d{2}\.\d{2}(\.\d+)?)$")


@dataclass(frozen=True, kw_only=True)
class ManifestUrlSettings:
    url: str = setting(check=checks.not_empty)
    """Where to download a rendered upstream release (https://... or file://...)."""
    sha256: str = setting()
    """Expected SHA-256 of the download; a different file is refused."""

    def cross_check(self) -> Iterator[tuple[str, str]]:
        if not _SHA256.match(self.sha256):
            yield "sha256", f"{self.sha256!r} is not a SHA-256 digest (64 lower-case hex characters)"
        if not self.url.startswith(("https://", "file://")):
            yield "url", f"{self.url!r} must be an https:// or file:// URL"


@dataclass(frozen=True, kw_only=True)
class MeshSettings:
    istio_version: str = setting("1.24")
    """Version of the enterprise's Istio control plane (chooses API versions and filter shapes)."""
    revision: Optional[str] = setting(None, check=checks.dns1123_label)
    """Istio revision to join (istio.io/rev label) instead of the default istio-injection label."""
    data_plane: Literal["sidecar-init", "sidecar-cni", "ambient"] = setting("sidecar-init")
    """How pods join the mesh: sidecars whose traffic rules an `istio-init` container sets (NET_ADMIN, NET_RAW: namespaces become Pod Security `privileged`), sidecars with the Istio CNI node agent, or ambient (refused: ztunnel cannot enforce Kubeflow's HTTP policies); see docs/mesh.md."""
    mtls: Literal["strict", "permissive"] = setting("strict")
    """The mesh's PeerAuthentication mode; under `strict`, webhooks the API server calls, and the ports sidecar-less run-time pods call (ML Metadata 8080, the pipelines API 8887, Katib's DB manager 6789), get a port-level PERMISSIVE exception."""
    outbound_traffic_policy: Literal["REGISTRY_ONLY", "ALLOW_ANY"] = setting("REGISTRY_ONLY")
    """The mesh's outboundTrafficPolicy.mode; under `REGISTRY_ONLY` ServiceEntries name the IdP, S3, STS, the EKS Pod Identity agent (with `identity.mechanism: podIdentity`), the database and (for Knative's tag resolution) the image mirror."""
    native_sidecars: bool = setting(False)
    """The injector makes sidecars native (init containers with restartPolicy Always); false: Jobs, and the pods of Trainer's runtimes and Katib's trial templates, are kept out of the mesh so they complete."""
    owns_crds: bool = setting(True)
    """The mesh installation owns the Istio CRDs, so Kubeflow's bundled copies are excluded with istio."""
    keep_upstream_injection_opt_outs: bool = setting(False)
    """Keep upstream's sidecar.istio.io/inject: "false" on some webhooks and controllers (default: all join the mesh)."""
    cluster_local_gateway: Literal["program", "provided"] = setting("program")
    """Who runs the pods behind `istio-system/knative-local-gateway`, through which KServe sends every serverless InferenceService call: `program` deploys an injected gateway (the mesh's own proxy version) labelled app/istio `cluster-local-gateway`; `provided`: the mesh owner runs pods with those labels; the program deploys none and the run-time trace assumes them (docs/mesh.md)."""

    def cross_check(self) -> Iterator[tuple[str, str]]:
        if not re.match(r"^1\.\d+$", self.istio_version):
            yield "istioVersion", f"{self.istio_version!r} is not an Istio minor version like 1.24"
            return
        minor = int(self.istio_version.split(".")[1])
        if self.data_plane == "ambient":
            if minor < AMBIENT_MIN_MINOR:
                yield "dataPlane", (f"ambient needs Istio 1.{AMBIENT_MIN_MINOR} or later (waypoints as the targets of "
                                    f"AuthorizationPolicies), the mesh runs {self.istio_version}; upgrade the mesh or use sidecar-cni")
            if self.native_sidecars:
                yield "nativeSidecars", "ambient pods have no sidecar; leave nativeSidecars out or false"
            if self.revision is not None:
                yield "revision", ("ambient enrollment (istio.io/dataplane-mode) is not tied to a revision here; leave "
                                   "revision out, or use a sidecar data plane to join a revision")


#: Istio ambient is stable from 1.24 (https://istio.io/latest/news/releases/1.24.x/announcing-1.24/).
AMBIENT_MIN_MINOR = 24


@dataclass(frozen=True, kw_only=True)
class ImageRuleSettings:
    source: str = setting(check=checks.not_empty)
    """Registry or image prefix to rewrite (like gcr.io/ml-pipeline or docker.io)."""
    target: str = setting(check=checks.not_empty)
    """What replaces that prefix (like registry.corp.example/gcr/ml-pipeline)."""


@dataclass(frozen=True, kw_only=True)
class ImageSettings:
    mirror: str = setting(check=checks.not_empty)
    """The approved internal registry; every image must end up under it."""
    rules: tuple[ImageRuleSettings, ...] = setting(())
    """Rewrite rules; the longest matching source wins, an image no rule matches goes to `<mirror>/<registry>/<path>`."""

    def cross_check(self) -> Iterator[tuple[str, str]]:
        mirror = self.mirror.rstrip("/")
        for i, rule in enumerate(self.rules):
            if not (rule.target.rstrip("/") == mirror or rule.target.startswith(mirror + "/")):
                yield f"rules[{i}].target", f"{rule.target!r} is outside the mirror {mirror!r}; every image must end up under it"


@dataclass(frozen=True, kw_only=True)
class ArgoSettings:
    external: bool = setting(True)
    """Use the enterprise's own Argo Workflows instead of the one bundled with Kubeflow Pipelines."""
    namespace: str = setting("argo", check=checks.dns1123_label)
    """Namespace of the external Argo workflow controller (the program patches its ConfigMap there)."""
    key_format: str = setting("artifacts/{{workflow.namespace}}/{{workflow.name}}/{{pod.name}}")
    """Artifact key format inside the bucket, per namespace and workflow."""
    configmap_name: str = setting("workflow-controller-configmap", check=checks.dns1123_label)
    """Name of the ConfigMap the external controller reads (its --configmap flag)."""
    service_account: Optional[str] = setting(None, check=checks.dns1123_label)
    """Service account workflows run as when they name none (the IRSA-annotated one); unset: Argo's default."""

    def cross_check(self) -> Iterator[tuple[str, str]]:
        if "{{workflow.namespace}}" not in self.key_format:
            yield "keyFormat", f"{self.key_format!r} must contain {{{{workflow.namespace}}}} so tenants' artifacts never collide"


#: Pod labels and annotations that decide whether, and how far, a pod is in the mesh
#: (https://istio.io/v1.24/docs/reference/config/annotations/ and .../labels/): on every Kubeflow pod they would
#: take the identity-header, metadata and profile policies off Kubeflow's own services.
MESH_MEMBERSHIP_KEYS = types.MappingProxyType({
    "sidecar.istio.io/inject": "no sidecar when false, so no AuthorizationPolicy is enforced",
    "istio.io/dataplane-mode": "out of ambient when none",
    "traffic.sidecar.istio.io/excludeInboundPorts": "inbound traffic on those ports skips the sidecar",
    "traffic.sidecar.istio.io/includeInboundPorts": "inbound traffic on other ports skips the sidecar",
    "sidecar.istio.io/interceptionMode": "changes how the sidecar captures traffic",
})


@dataclass(frozen=True, kw_only=True)
class ObjectStoreSettings:
    endpoint: Optional[str] = setting(None, check=checks.not_empty)
    """S3-compatible endpoint host[:port] for pipelines, Argo and the UI; unset: the regional AWS S3 endpoint."""
    secure: bool = setting(True)
    """Reach the object store over TLS."""
    static_keys: bool = setting(False)
    """Give pipelines static keys (the secrets `objectStoreAccessKeyId` and `objectStoreSecretAccessKey`: an IAM user's, limited to the artifacts bucket) instead of IRSA alone; needed only by Kubeflow 1.11.0, whose KFP 2.15.0 API server does not start without them. Turn it off again on 26.03."""


@dataclass(frozen=True, kw_only=True)
class DatabaseSettings:
    host: str = setting(check=checks.not_empty)
    """Host of the external MySQL-compatible database that pipelines, metadata, cache and Katib use."""
    port: int = setting(3306, check=checks.between(1, 65535))
    """Database port."""
    user: str = setting("kubeflow", check=checks.not_empty)
    """Database user, created by the DBA `IDENTIFIED WITH mysql_native_password` (ML Metadata cannot log in otherwise) with ALL on `mlpipeline`, `cachedb`, `metadb` and `katib`; its password is the secret `databasePassword`."""


@dataclass(frozen=True, kw_only=True)
class KubeflowSettings:
    version: str = setting()
    """Kubeflow release the manifests are (`1.10.2`, or quoted `"26.03"`); identified from the manifests and refused when they are another."""
    manifests: Union[str, ManifestUrlSettings] = setting()
    """Rendered upstream manifests: a YAML file, a directory, a kustomize directory, or {url, sha256}."""
    namespace: str = setting("kubeflow", check=checks.dns1123_label)
    """Namespace Kubeflow's platform components run in, chosen at install time (a change on a live stack is refused: docs/namespace.md); every object and reference of the release follows it, and so do ingress.gatewayNamespace and kubeflow.centralSecretNamespace when they are not set."""
    system_namespace: str = setting("kubeflow-system", check=checks.dns1123_label)
    """Namespace of Trainer and JobSet (releases from 1.11 on), chosen at install time like kubeflow.namespace."""
    exclude: tuple[str, ...] = setting(("istio", "argo"), check=checks.unique("rule"))
    """Bundled components the enterprise already runs (istio, argo, cert-manager, dex, knative, ...)."""
    mesh: MeshSettings = setting(MeshSettings())
    """The enterprise's Istio mesh."""
    pod_labels: Mapping[str, str] = setting(types.MappingProxyType({}), check=checks.labels)
    """Labels added to every workload's pod template."""
    pod_annotations: Mapping[str, str] = setting(types.MappingProxyType({}), check=checks.annotation_keys)
    """Annotations added to every workload's pod template (sidecar.istio.io/inject is always set)."""
    images: Optional[ImageSettings] = setting(None)
    """Image mirroring to the internal registry."""
    argo: ArgoSettings = setting(ArgoSettings())
    """Argo Workflows that runs the pipelines."""
    database: Optional[DatabaseSettings] = setting(None)
    """External MySQL for pipelines, metadata, Katib and the model registry (bundled MySQL excluded); a Job creates the databases no consumer creates and checks the user first."""
    object_store: ObjectStoreSettings = setting(ObjectStoreSettings())
    """The S3 object store pipelines and Argo keep artifacts in (the artifacts pipelines bucket, via IRSA)."""
    central_secret: str = setting("kubeflow-platform-credentials", check=checks.dns1123_label)
    """Name of the one Secret holding database and object store settings for every consumer."""
    central_secret_namespace: str = setting("kubeflow", check=checks.dns1123_label)
    """Namespace of the central Secret; pods read only their own namespace's Secrets, so the consumers' one (unset: kubeflow.namespace)."""
    gateway_api: bool = setting(False)
    """The cluster serves the Gateway API CRDs (gateway.networking.k8s.io); unset: KServe's LLM controller (26.03 on) is left out."""
    keep_crds_and_namespaces: bool = setting(True)
    """CRDs and namespaces that leave the release, and the namespace of a profile removed from `tenancy.profiles`, stay on the cluster with all they hold (retainOnDelete); false lets an upgrade or a profile's removal delete them, users' custom resources and namespaces' contents with them."""

    @property
    def manifests_source(self) -> Union[str, UrlSource]:
        """`kubeflow.manifests` as `manifests.sources.load_source` takes it."""
        if isinstance(self.manifests, ManifestUrlSettings):
            return UrlSource(self.manifests.url, self.manifests.sha256)
        return self.manifests

    def cross_check(self) -> Iterator[tuple[str, str]]:
        if self.namespace == self.system_namespace:
            yield "systemNamespace", f"{self.system_namespace!r} is also kubeflow.namespace; Trainer and JobSet need a namespace of their own"
        if not _VERSION.match(self.version):
            yield "version", f"{self.version!r} is not a release version like 1.10.2 or 26.03"
        if isinstance(self.manifests, str) and not self.manifests.strip():
            yield "manifests", "must name a file, a directory or {url, sha256}"
        for i, name in enumerate(self.exclude):
            if name not in RULES_BY_NAME:
                close = difflib.get_close_matches(name, list(RULES_BY_NAME), n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                yield f"exclude[{i}]", f"unknown exclusion {name!r}; {hint}known: {', '.join(RULES_BY_NAME)}"
        if "argo" in self.exclude and not self.argo.external:
            yield "exclude", "excludes the bundled argo while argo.external is false: pipelines would have no workflow controller"
        for where, values in (("podLabels", self.pod_labels), ("podAnnotations", self.pod_annotations)):
            for key in values:
                if key in MESH_MEMBERSHIP_KEYS:
                    yield f"{where}.{key}", (
                        f"takes Kubeflow's own pods out of the mesh's policies ({MESH_MEMBERSHIP_KEYS[key]}); the platform "
                        "decides mesh membership (kubeflow.mesh), so remove the key"
                    )


def image_mirror_options(images: Optional[ImageSettings]) -> ImageMirrorOptions:
    """How every image of the platform is mirrored: Kubeflow's and the platform's own (e.g. GPU placeholders)."""
    if images is None:
        return ImageMirrorOptions()
    return ImageMirrorOptions(
        rules=tuple(ImageMirrorRule(rule.source, rule.target) for rule in images.rules),
        default_mirror=images.mirror,
    )


def transform_options(
    kubeflow: KubeflowSettings, *, gateway: str, hosts: tuple[str, ...], gateway_pods_namespace: str,
    gateway_principal: str, artifact_bucket: str, region: str, serving_domain: Optional[str],
    gateway_pods: GatewayPodsOptions, issuers: tuple[str, ...] = (), issuers_namespace: Optional[str] = None,
    pod_identity_namespaces: tuple[str, ...] = (),
) -> TransformOptions:
    """What the manifest transformations need, from the Kubeflow settings and the edge and bucket they
    share with the rest of the platform (`gateway` is `<namespace>/<name>`; the gateway's pods run in
    `gateway_pods_namespace` as `gateway_principal`; `serving_domain` is dns.servingDomain; `gateway_pods`
    where the ingress gateway's pods run and their labels, for the NetworkPolicies that admit them; `issuers`
    the OIDC issuer URLs the auth proxy in `issuers_namespace` calls, for the mesh's egress;
    `pod_identity_namespaces` with identity.mechanism podIdentity, where pods have roles, for the agent's entry)."""
    images = kubeflow.images
    return TransformOptions(
        namespace=kubeflow.namespace,
        system_namespace=kubeflow.system_namespace,
        exclusions=kubeflow.exclude,
        mesh=MeshOptions(
            revision=kubeflow.mesh.revision, owns_crds=kubeflow.mesh.owns_crds, data_plane=kubeflow.mesh.data_plane,
            mtls=kubeflow.mesh.mtls, outbound_traffic_policy=kubeflow.mesh.outbound_traffic_policy,
            native_sidecars=kubeflow.mesh.native_sidecars,
            cluster_local_gateway=kubeflow.mesh.cluster_local_gateway,
            external_hosts=external_hosts(kubeflow, region=region, issuers=issuers, issuers_namespace=issuers_namespace,
                                          pod_identity_namespaces=pod_identity_namespaces),
        ),
        pod_templates=PodTemplateOptions(
            labels=tuple(sorted(kubeflow.pod_labels.items())),
            annotations=tuple(sorted(kubeflow.pod_annotations.items())),
            keep_upstream_injection_opt_outs=kubeflow.mesh.keep_upstream_injection_opt_outs,
        ),
        images=image_mirror_options(images),
        gateway=GatewayOptions(gateway=gateway, hosts=tuple(hosts), pods_namespace=gateway_pods_namespace,
                               pods_principal=gateway_principal),
        serving=ServingOptions(domain=serving_domain),
        argo=ExternalArgoOptions(
            namespace=kubeflow.argo.namespace,
            bucket=artifact_bucket,
            region=region,
            key_format=kubeflow.argo.key_format,
            service_account=kubeflow.argo.service_account,
            configmap_name=kubeflow.argo.configmap_name,
            endpoint=kubeflow.object_store.endpoint,
        ) if kubeflow.argo.external else None,
        stores=ExternalStoresOptions(
            mysql_host=kubeflow.database.host,
            mysql_port=kubeflow.database.port,
            secret_name=kubeflow.central_secret,
            secret_namespace=kubeflow.central_secret_namespace,
            bucket=artifact_bucket,
            region=region,
            endpoint=kubeflow.object_store.endpoint,
            secure=kubeflow.object_store.secure,
            static_keys=kubeflow.object_store.static_keys,
        ) if kubeflow.database is not None else None,
        gateway_pods=gateway_pods,
        gateway_api=kubeflow.gateway_api,
    )


#: Where Knative Serving's controller runs (the namespace its manifests use in every release).
KNATIVE_SERVING_NAMESPACE = "knative-serving"


def image_registry_host(kubeflow: KubeflowSettings) -> Optional[str]:
    """`host[:port]` of the image mirror when the bundled Knative resolves tags against it; None without a
    mirror or without Knative. Without a mirror images come from their public registries, which the
    run-time trace names when the mesh has no entry for them."""
    if kubeflow.images is None or "knative" in kubeflow.exclude:
        return None
    host = kubeflow.images.mirror.split("/", 1)[0]
    return host or None


#: Where a pod's SDK reaches the EKS Pod Identity agent: the link-local addresses the agent listens on, port 80
#: (docs.aws.amazon.com/eks/latest/userguide/pod-id-agent-setup.html; AWS_CONTAINER_CREDENTIALS_FULL_URI is
#: http://169.254.170.23/v1/credentials, or http://[fd00:ec2::23]/v1/credentials on IPv6 clusters).
POD_IDENTITY_AGENT = ExternalHost("pod-identity-agent", ("eks-pod-identity-agent.amazonaws.internal",), 80,
                                  protocol="TCP", addresses=("169.254.170.23", "fd00:ec2::23"))


def external_hosts(kubeflow: KubeflowSettings, *, region: str, issuers: tuple[str, ...] = (),
                   issuers_namespace: Optional[str] = None,
                   pod_identity_namespaces: tuple[str, ...] = ()) -> tuple[ExternalHost, ...]:
    """What Kubeflow's pods reach outside the mesh, for ServiceEntries under `REGISTRY_ONLY`.

    - The IdP: the auth proxy fetches each issuer's discovery document and keys (oauth2-proxy's
      `oidc_issuer_url`, `extra_jwt_issuers`), from its own namespace.
    - S3: KFP's API server, UI and launcher, Argo's executor and user pipelines in profile namespaces (so `*`),
      at the regional endpoint or a bucket's virtual-hosted name under it, or `kubeflow.objectStore.endpoint`.
    - STS: every IRSA pod exchanges its token with STS (regional, or the global endpoint older SDKs use).
    - With EKS Pod Identity, the agent on each node: every AWS-calling pod asks it for credentials at a
      link-local address, which REGISTRY_ONLY would send to the BlackHoleCluster like any unknown
      destination. By address over TCP, so the entry holds whatever Host header the SDK sends; exported only
      to the namespaces whose pods have roles (`pod_identity_namespaces`: Kubeflow's, the data-lake profiles',
      the external Argo's when its accounts have one).
    - The image mirror, from Knative's controller: it resolves every serverless Revision's image tag to a
      digest with a HEAD to the registry and fails the Revision (ContainerMissing) when it cannot
      (knative/serving@knative-v1.21.1 pkg/reconciler/revision/resolve.go:107-120, revision.go:102-108);
      only `kind.local`, `ko.local` and `dev.local` are skipped by default (pkg/deployment/config.go:117).
      Skipping the mirror instead (`registries-skipping-tag-resolving`) would leave Revisions on mutable
      tags, which Knative resolves precisely to keep a Revision's code fixed; so the mirror gets an entry.
    - The database, from its consumers' namespace.
    """
    hosts: list[ExternalHost] = []
    issuer_hosts = sorted({urlsplit(url).hostname for url in issuers if urlsplit(url).hostname})
    for host in issuer_hosts:
        port = next((urlsplit(url).port for url in issuers if urlsplit(url).hostname == host and urlsplit(url).port), None)
        hosts.append(ExternalHost("identity-provider", (host,), port or 443,
                                  export_to=(issuers_namespace,) if issuers_namespace else ("*",)))
    endpoint = kubeflow.object_store.endpoint
    if endpoint:
        host, _, port = endpoint.partition(":")
        hosts.append(ExternalHost("s3", (host,), int(port) if port.isdigit() else (443 if kubeflow.object_store.secure else 80),
                                  protocol="TLS" if kubeflow.object_store.secure else "TCP"))
    else:
        hosts.append(ExternalHost("s3", (f"s3.{region}.amazonaws.com", f"*.s3.{region}.amazonaws.com")))
    hosts.append(ExternalHost("sts", (f"sts.{region}.amazonaws.com", "sts.amazonaws.com")))
    if pod_identity_namespaces:
        hosts.append(dataclasses.replace(POD_IDENTITY_AGENT, export_to=tuple(dict.fromkeys(pod_identity_namespaces))))
    registry = image_registry_host(kubeflow)
    if registry is not None:
        host, _, port = registry.partition(":")
        hosts.append(ExternalHost("image-registry", (host,), int(port) if port.isdigit() else 443,
                                  export_to=(KNATIVE_SERVING_NAMESPACE,)))
    if kubeflow.database is not None:
        hosts.append(ExternalHost("database", (kubeflow.database.host,), kubeflow.database.port, protocol="TCP",
                                  export_to=(kubeflow.central_secret_namespace,)))
    return tuple(hosts)
