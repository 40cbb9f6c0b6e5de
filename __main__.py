"""kubeflow-platform: wires validated settings into components and exports what a platform team needs."""

import gc

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
from components.kubeflow import Kubeflow
from components.tenancy import Tenancy, tenancy_args

# Evaluating thousands of profiles allocates millions of short-lived objects; with CPython's default
# thresholds the collector re-walks the growing heap so often that evaluation time grows faster than the
# number of profiles (and doubles at 1,000). Collecting young objects less often keeps it linear.
gc.set_threshold(50_000, 20, 20)

try:
    settings = config.load()
except config.SettingsError as error:
    # A configuration mistake is the user's to fix: report it without a Python traceback.
    raise pulumi.RunError(str(error)) from None

aws_provider = providers.aws_provider(settings)
cluster = providers.lookup_cluster(settings, aws_provider)
k8s_provider = providers.kubernetes_provider(settings, cluster)
on_aws = pulumi.ResourceOptions(provider=aws_provider)
on_cluster = pulumi.ResourceOptions(provider=k8s_provider)

certificate = Certificate("certificate", opts=on_aws)
ingress = IngressGateway("ingress", opts=on_cluster)
dns = Dns("dns", opts=on_aws)
identity = WorkloadIdentity("identity", cluster.oidc_issuer, opts=on_aws)
artifacts = ArtifactStore("artifacts", opts=on_aws)
gpu = GpuNodePools("gpu", opts=on_aws)
kubeflow = Kubeflow("kubeflow", settings.kubeflow.version, opts=on_cluster)
auth = Auth("auth", opts=on_cluster)
# Tenancy spans both providers (IRSA roles, profile objects) and needs Kubeflow's CRDs and ClusterRoles.
tenancy = Tenancy(
    "tenancy",
    tenancy_args(settings, identity),
    opts=pulumi.ResourceOptions(providers=[aws_provider, k8s_provider], depends_on=[kubeflow]),
)

pulumi.export("url", f"https://{settings.dns.host}/")
pulumi.export("kubeflowVersion", kubeflow.version)
pulumi.export("clusterOidcIssuer", cluster.oidc_issuer)
pulumi.export("profiles", tenancy.profile_names)
