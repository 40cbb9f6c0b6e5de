"""kubeflow-platform: wires validated settings into components and exports what a platform team needs."""

import pulumi

import config
from components import providers
from components.artifacts import ArtifactStore
from components.auth import Auth
from components.certificate import Certificate
from components.dns import Dns
from components.gpu import GpuNodePools
from components.identity import WorkloadIdentity
from components.ingress import IngressGateway
from components.kubeflow import CentralSecretArgs, Kubeflow, KubeflowArgs
from components.tenancy import Tenancy
from config.kubeflow import transform_options
from manifests.release import error_message, prepare_release
from manifests.sources import ManifestError

try:
    settings = config.load()
except config.SettingsError as error:
    # A configuration mistake is the user's to fix: report it without a Python traceback.
    raise pulumi.RunError(str(error)) from None

# Upstream Kubeflow is loaded, transformed and validated before the first resource is registered, so a
# bad source or an object that would not apply stops the program with nothing half-registered.
kubeflow_options = transform_options(
    settings.kubeflow,
    gateway=f"{settings.ingress.gateway_namespace}/{settings.ingress.gateway_name}",
    hosts=settings.dns.hosts,
    artifact_bucket=settings.artifacts.names()["pipelines"],
    region=settings.aws.region,
)
try:
    kubeflow_release = prepare_release(settings.kubeflow.manifests_source, kubeflow_options, settings.kubeflow.version)
except ManifestError as error:
    raise pulumi.RunError(f"stack {pulumi.get_stack()!r}: {error_message(error)}") from None

aws_provider = providers.aws_provider(settings)
cluster = providers.lookup_cluster(settings, aws_provider)
k8s_provider = providers.kubernetes_provider(settings, cluster)
on_aws = pulumi.ResourceOptions(provider=aws_provider)
on_cluster = pulumi.ResourceOptions(provider=k8s_provider)

certificate = Certificate("certificate", opts=on_aws)
ingress = IngressGateway("ingress", opts=on_cluster)
dns = Dns("dns", opts=on_aws)
identity = WorkloadIdentity("identity", opts=on_aws)
artifacts = ArtifactStore("artifacts", opts=on_aws)
gpu = GpuNodePools("gpu", opts=on_aws)
database = settings.kubeflow.database
kubeflow = Kubeflow(
    "kubeflow",
    KubeflowArgs(
        release=kubeflow_release,
        central_secret=CentralSecretArgs(
            name=settings.kubeflow.central_secret,
            namespace=settings.kubeflow.central_secret_namespace,
            db_host=database.host,
            db_port=database.port,
            db_user=database.user,
            db_password=settings.secrets.database_password,
        ) if database is not None else None,
        # IRSA roles of the pipelines' and Argo's service accounts come from `identity` once it has them.
        service_account_roles={},
    ),
    opts=on_cluster,
)
auth = Auth("auth", opts=on_cluster)
tenancy = Tenancy("tenancy", opts=on_cluster)

pulumi.export("url", f"https://{settings.dns.host}/")
pulumi.export("kubeflowVersion", kubeflow.version)
pulumi.export("imageMirror", kubeflow.image_mirror)
pulumi.export("transformReport", kubeflow.transform_report)
pulumi.export("clusterOidcIssuer", cluster.oidc_issuer)
