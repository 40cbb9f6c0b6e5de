"""kubeflow-platform: wires validated settings into components and exports what a platform team needs."""

import gc

import pulumi

import config
from components import providers
from components.artifacts import ArtifactStore, ArtifactStoreArgs
from components.auth import Auth, AuthArgs, release_header_forwarders
from components.certificate import Certificate, CertificateArgs
from components.dns import Dns, DnsArgs
from components.fleet import GlobalFleet, GlobalFleetArgs, fleet_region_exports, regional_settings
from components.gpu import GpuNodePools, GpuNodePoolsArgs
from components.identity import WorkloadIdentity, WorkloadIdentityArgs
from components.ingress import IngressGateway, IngressGatewayArgs
from components.kubeflow import Kubeflow, KubeflowArgs, prepare
from components.ownership import ownership_declarations
from components.recovery import Recovery, RecoveryArgs
from components.tenancy import Tenancy, release_kfam_user, tenancy_args, tenancy_stack, tenancy_stack_outputs

# The program's objects live until exit and hold almost no cyclic garbage, yet the cyclic collector re-walks
# them all: 25-30 % of the run (1.8 s of 7.5 s CPU at 1,000 profiles) to free about 20 MB. Off for this process.
gc.disable()

settings = config.load()  # a SettingsError lists every problem, before anything is registered
if isinstance(settings, config.GlobalSettings):
    # A fleet's global stack: the global host's Route 53 records and what the regions share; no cluster objects.
    fleet_aws = providers.aws_provider(settings)
    fleet = GlobalFleet("fleet", GlobalFleetArgs.from_settings(settings, settings.cookie_secret),
                        opts=pulumi.ResourceOptions(provider=fleet_aws))
    for output_name, value in fleet.stack_outputs.items():
        pulumi.export(output_name, value)
elif settings.tenancy_part is not None:
    # A tenancy stack: one part of its platform stack's profiles and nothing else (components/tenancy.py).
    tenancy = tenancy_stack(settings)
    for output_name, value in tenancy.stack_outputs.items():
        pulumi.export(output_name, value)
else:
    settings = regional_settings(settings)  # a fleet's region: the login's cookie secret is the global stack's
    kubeflow_release = prepare(settings)  # upstream loaded, transformed and validated, also before registering

    aws_provider = providers.aws_provider(settings)
    cluster = providers.lookup_cluster(settings, aws_provider)
    k8s_provider = providers.kubernetes_provider(settings, cluster)
    on_aws = pulumi.ResourceOptions(provider=aws_provider)
    on_cluster = pulumi.ResourceOptions(provider=k8s_provider)
    on_both = pulumi.ResourceOptions(providers=[aws_provider, k8s_provider])

    # Order: zone -> certificate (validation records) -> gateway Service (certificate ARN) -> alias records (NLB).
    dns = Dns("dns", DnsArgs.from_settings(settings), opts=on_aws)
    certificate = Certificate("certificate", CertificateArgs.from_settings(settings, zone_id=dns.zone_id), opts=on_aws)
    artifacts = ArtifactStore("artifacts", ArtifactStoreArgs.from_settings(settings), opts=on_aws)
    # Only a stack with recovery.mode has a recovery side (replication rules, its Aurora cluster): one region registers nothing.
    recovery = (Recovery("recovery", RecoveryArgs.from_settings(settings), versioning=artifacts.versioning, opts=on_aws)
                if settings.recovery.mode is not None else None)
    identity = WorkloadIdentity("identity", WorkloadIdentityArgs.from_settings(
        settings, issuer=cluster.oidc_issuer, account_id=cluster.account_id, pipelines_bucket=artifacts.bucket_names["pipelines"],
        pipelines_kms_key_arn=artifacts.kms_key_arns["pipelines"],
        api_server_checks_bucket=kubeflow_release.api_server_needs_head_bucket), opts=on_aws)
    # A pod gets its IAM role only if its ServiceAccount names it when the pod is created: the roles come first.
    kubeflow = Kubeflow("kubeflow", KubeflowArgs.from_settings(
        settings, kubeflow_release, service_account_roles=identity.service_account_roles,
        service_account_roles_ready=identity.service_account_roles_ready,
        annotate_roles=identity.annotates_service_accounts), opts=on_cluster)
    ingress = IngressGateway("ingress", IngressGatewayArgs.from_settings(
        settings, certificate_arn=certificate.certificate_arn, gateway_depends_on=[kubeflow]), opts=on_cluster)
    dns.alias_to_load_balancer(ingress.load_balancer_hostname)
    gpu = GpuNodePools("gpu", GpuNodePoolsArgs.from_settings(settings), opts=on_both)
    # Who besides the gateway may pass kubeflow-userid on, as this release names them (26.03.1 renames the dashboard's account).
    header_forwarders = release_header_forwarders(settings, kubeflow_release)
    auth = Auth("auth", AuthArgs.from_settings(settings, cluster.oidc_issuer, header_forwarders,
                                               released_proxy_image=kubeflow_release.auth_proxy_image), opts=on_cluster)
    # Tenancy spans both providers (IRSA roles, profile objects) and needs Kubeflow's CRDs and ClusterRoles.
    tenancy = Tenancy("tenancy", tenancy_args(settings, identity, header_forwarders, release_kfam_user(kubeflow_release)), opts=on_both.merge(
        pulumi.ResourceOptions(depends_on=[kubeflow])))

    # Each component names the outputs the teams around the platform read (see the README per component).
    pulumi.export("url", f"https://{settings.dns.host}/")
    pulumi.export("clusterOidcIssuer", cluster.oidc_issuer)
    for component in (kubeflow, dns, certificate, ingress, identity, artifacts, gpu, auth, tenancy, *filter(None, [recovery])):
        for output_name, value in component.stack_outputs.items():
            pulumi.export(output_name, value)
    # With tenancy.stacks: the parts, and what the tenancy stacks read from this one.
    for output_name, value in tenancy_stack_outputs(settings, identity, header_forwarders).items():
        pulumi.export(output_name, value)
    # Whose the objects the stack patches are, and what must exist without being written (analysis.ownership).
    pulumi.export("ownership", ownership_declarations(settings))
    # A fleet's region: what the global stack and the fleet check read (none on a stand-alone stack).
    for output_name, value in fleet_region_exports(settings, certificate_names=certificate.domain_names,
                                                   redirect_url=auth.redirect_url, cluster_oidc_issuer=cluster.oidc_issuer).items():
        pulumi.export(output_name, value)
    # The rules this stack is held to, as the CrossGuard pack's --policy-pack-config; the offline preview checks them.
    pulumi.export("policyPackConfig", cluster.oidc_issuer.apply(
        lambda issuer: settings.guardrail_params(
            issuer, gpu.namespaces_outside_mesh + tuple(kubeflow_release.report.mesh["namespacesOutsideMesh"])).policy_config()))
gc.freeze()  # the interpreter's exit would walk the whole heap again (0.35 s for dev)
