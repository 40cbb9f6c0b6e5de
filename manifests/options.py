"""What the transformations need, as frozen data. The config layer builds these from stack settings."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ExternalHost:
    """A destination outside the mesh that Kubeflow's pods reach: a ServiceEntry under REGISTRY_ONLY."""

    #: What it is, for the ServiceEntry's name and the report (`identity-provider`, `s3`, `sts`, `database`).
    purpose: str
    #: DNS names; a wildcard (`*.s3.us-west-2.amazonaws.com`) is matched by SNI, without DNS resolution.
    hosts: tuple[str, ...]
    port: int = 443
    #: `TLS` (matched by SNI) or `TCP` (the database's MySQL protocol).
    protocol: str = "TLS"
    #: Namespaces whose sidecars see the entry (`exportTo`); `*` for every namespace (profile pipelines).
    export_to: tuple[str, ...] = ("*",)
    #: IP addresses the destination is reached at (the entry's `addresses`): the sidecar then matches the
    #: destination IP rather than a name, and forwards to it unresolved (EKS Pod Identity's agent).
    addresses: tuple[str, ...] = ()


@dataclass(frozen=True)
class MeshOptions:
    """How Kubeflow joins the organisation's Istio mesh (the `kubeflow.mesh` settings, see docs/mesh.md).

    The defaults are the safest reading of a mesh nothing is known about: one that works on any mesh,
    at the cost of Pod Security `privileged` where pods are injected (reported per namespace)."""

    #: Revision-based meshes label namespaces `istio.io/rev: <revision>`; None means `istio-injection: enabled`.
    revision: str | None = None
    #: True when the mesh installation owns the Istio CRDs, so Kubeflow's bundled copies are excluded too.
    owns_crds: bool = True
    #: `sidecar-init` (istio-init with NET_ADMIN/NET_RAW), `sidecar-cni` (Istio CNI node agent) or `ambient`.
    data_plane: str = "sidecar-init"
    #: `strict` or `permissive`: the mesh-wide PeerAuthentication mode.
    mtls: str = "strict"
    #: `REGISTRY_ONLY` or `ALLOW_ANY`, as Istio spells meshConfig.outboundTrafficPolicy.mode.
    outbound_traffic_policy: str = "REGISTRY_ONLY"
    #: The injector makes the sidecar a native sidecar (Kubernetes init container with restartPolicy Always).
    native_sidecars: bool = False
    #: Who runs the pods behind `istio-system/knative-local-gateway`: `program` (an injected gateway the
    #: program deploys) or `provided` (the mesh owner's, which the run-time trace assumes).
    cluster_local_gateway: str = "program"
    #: Destinations outside the mesh that need a ServiceEntry under REGISTRY_ONLY.
    external_hosts: tuple[ExternalHost, ...] = ()

    @property
    def sidecars(self) -> bool:
        return self.data_plane != "ambient"


@dataclass(frozen=True)
class PodTemplateOptions:
    """Labels and annotations every workload's pod template carries."""

    labels: tuple[tuple[str, str], ...] = ()
    #: `sidecar.istio.io/inject: "true"` is always added; these are the organisation's own on top.
    annotations: tuple[tuple[str, str], ...] = ()
    #: Upstream opts some webhooks and controllers out of injection; False forces them into the mesh.
    keep_upstream_injection_opt_outs: bool = False


@dataclass(frozen=True)
class ImageMirrorRule:
    """Images whose normalised name starts with `source` (a registry like `quay.io`, or a prefix like
    `docker.io/library`) are pulled from `mirror` + the rest of the name."""

    source: str
    mirror: str


@dataclass(frozen=True)
class ImageMirrorOptions:
    rules: tuple[ImageMirrorRule, ...] = ()
    #: Where an image no rule covers goes: `<default_mirror>/<registry>/<path>`, so the registry team can
    #: mirror whole registries by name. None: such images are reported as unmirrored instead.
    default_mirror: str | None = None


@dataclass(frozen=True)
class GatewayOptions:
    """The organisation's central ingress gateway that Kubeflow's routes attach to."""

    #: `namespace/name` of the Istio Gateway.
    gateway: str
    #: Host names Kubeflow is served on, e.g. ("kubeflow.example.com",).
    hosts: tuple[str, ...]
    #: Namespace the gateway's pods run in (`ingress.namespace`): Istio looks their routes up there.
    pods_namespace: str
    #: The gateway pods' mesh principal (`<trust domain>/ns/<namespace>/sa/<service account>`), which
    #: Kubeflow's own policies and its profile controller must name to trust the identity header.
    pods_principal: str


@dataclass(frozen=True)
class ServingOptions:
    """Where Knative and KServe put InferenceServices' external routes (manifests.serving)."""

    #: Every external route is `<name>-<namespace>.<domain>`; None keeps every route cluster-local.
    domain: str | None = None


@dataclass(frozen=True)
class GatewayPodsOptions:
    """Where the organisation's ingress gateway pods run, for NetworkPolicies that admit them."""

    #: Namespace of the gateway pods (the `ingress.namespace` setting).
    namespace: str
    #: Labels of the gateway pods (the `ingress.selector` setting), as sorted pairs.
    selector: tuple[tuple[str, str], ...] = (("istio", "ingressgateway"),)


@dataclass(frozen=True)
class ExternalArgoOptions:
    """An Argo Workflows controller the organisation already runs; artifacts go to S3 through IRSA."""

    namespace: str
    bucket: str
    region: str
    #: Argo key format; per namespace and workflow so tenants' artifacts never collide.
    key_format: str = (
        "artifacts/{{workflow.namespace}}/{{workflow.name}}/"
        "{{workflow.creationTimestamp.Y}}/{{workflow.creationTimestamp.m}}/{{workflow.creationTimestamp.d}}/{{pod.name}}"
    )
    #: The IRSA-annotated service account workflows run as when they name none themselves.
    service_account: str | None = None
    #: Name of the ConfigMap the external controller reads (its `--configmap` flag).
    configmap_name: str = "workflow-controller-configmap"
    #: S3 endpoint; None means the regional AWS endpoint.
    endpoint: str | None = None

    @property
    def s3_endpoint(self) -> str:
        return self.endpoint or f"s3.{self.region}.amazonaws.com"


@dataclass(frozen=True)
class CentralSecretKeys:
    """Key names inside the central Secret; Pulumi fills their values from stack secrets."""

    db_username: str = "db-username"
    db_password: str = "db-password"
    object_store_access_key: str = "object-store-access-key"
    object_store_secret_key: str = "object-store-secret-key"


@dataclass(frozen=True)
class ExternalStoresOptions:
    """External MySQL and S3-compatible object store replacing the bundled MySQL/MinIO/SeaweedFS."""

    mysql_host: str
    secret_name: str
    bucket: str
    region: str
    mysql_port: int = 3306
    #: Pods can only read Secrets of their own namespace, so this is where the consumers run.
    secret_namespace: str = "kubeflow"
    #: Object store host[:port]; None means the regional AWS S3 endpoint.
    endpoint: str | None = None
    secure: bool = True
    keys: CentralSecretKeys = field(default_factory=CentralSecretKeys)
    #: The central Secret's object-store keys hold an IAM user's static keys (kubeflow.objectStore.staticKeys);
    #: otherwise they are empty and the consumers use IRSA.
    static_keys: bool = False

    @property
    def object_store_host(self) -> str:
        return (self.endpoint or f"s3.{self.region}.amazonaws.com").split(":", 1)[0]

    @property
    def object_store_port(self) -> str:
        host_port = self.endpoint or ""
        if ":" in host_port:
            return host_port.split(":", 1)[1]
        return "443" if self.secure else "80"


@dataclass(frozen=True)
class TransformOptions:
    """Everything `manifests.pipeline.transform` needs. Optional parts left None are not applied."""

    #: Where Kubeflow's platform components run (`kubeflow.namespace`), and Trainer and JobSet (`kubeflow.systemNamespace`).
    namespace: str = "kubeflow"
    system_namespace: str = "kubeflow-system"
    #: Names of exclusion rules (see `manifests.exclusions.RULES`).
    exclusions: tuple[str, ...] = ()
    mesh: MeshOptions = field(default_factory=MeshOptions)
    pod_templates: PodTemplateOptions = field(default_factory=PodTemplateOptions)
    images: ImageMirrorOptions = field(default_factory=ImageMirrorOptions)
    gateway: GatewayOptions | None = None
    serving: ServingOptions = field(default_factory=ServingOptions)
    argo: ExternalArgoOptions | None = None
    stores: ExternalStoresOptions | None = None
    #: The real gateway pods; None leaves upstream's NetworkPolicies admitting istio-system as they are.
    gateway_pods: GatewayPodsOptions | None = None
    #: The cluster serves the Gateway API CRDs (gateway.networking.k8s.io) KServe's LLM controller routes
    #: through; False leaves that controller out (rule `kserve-llm`) where the release ships it.
    gateway_api: bool = False
    #: A GPU pool is Karpenter's: training runtimes' pods get karpenter.sh/do-not-disrupt (manifests.karpenter).
    do_not_disrupt_training: bool = False
    #: The stack is a recovery standby: Kubeflow's store writers are held at 0 replicas (manifests.recovery).
    standby: bool = False
