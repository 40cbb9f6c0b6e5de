"""The explicit providers every resource uses: one AWS provider for the region, one Kubernetes
provider for the existing cluster. Nothing in this program falls back to a default provider."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Optional

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from config import Settings


@dataclass(frozen=True)
class Cluster:
    """What the program needs to know about the existing EKS cluster."""

    name: str
    endpoint: pulumi.Output[str]
    certificate_authority: pulumi.Output[str]
    #: The cluster's OIDC issuer URL, read from EKS (never typed in by hand).
    oidc_issuer: pulumi.Output[str]
    account_id: pulumi.Output[str]
    region: str


def aws_provider(settings: Settings) -> aws.Provider:
    return aws.Provider(
        f"aws-{settings.aws.region}",
        region=settings.aws.region,
        allowed_account_ids=list(settings.aws.allowed_account_ids) or None,
        default_tags=aws.ProviderDefaultTagsArgs(
            tags={"managed-by": "kubeflow-platform", "stack": pulumi.get_stack(), **settings.aws.default_tags}
        ),
    )


def lookup_cluster(settings: Settings, provider: aws.Provider) -> Cluster:
    invoke = pulumi.InvokeOutputOptions(provider=provider)
    found = aws.eks.get_cluster_output(name=settings.cluster.name, opts=invoke)
    identity = aws.get_caller_identity_output(opts=invoke)
    return Cluster(
        name=settings.cluster.name,
        endpoint=found.endpoint,
        certificate_authority=found.certificate_authorities.apply(lambda cas: cas[0].data),
        oidc_issuer=found.identities.apply(lambda ids: ids[0].oidcs[0].issuer),
        account_id=identity.account_id,
        region=settings.aws.region,
    )


def exec_kubeconfig(
    cluster_name: str, endpoint: str, certificate_authority: str, region: str, aws_profile: Optional[str]
) -> str:
    """A kubeconfig that gets short-lived tokens from `aws eks get-token`, as `aws eks update-kubeconfig` writes."""
    exec_config: dict[str, Any] = {
        "apiVersion": "client.authentication.k8s.io/v1beta1",
        "command": "aws",
        "args": ["eks", "get-token", "--cluster-name", cluster_name, "--region", region, "--output", "json"],
        "interactiveMode": "Never",
    }
    if aws_profile:
        exec_config["env"] = [{"name": "AWS_PROFILE", "value": aws_profile}]
    user = {"exec": exec_config}
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": cluster_name, "cluster": {"server": endpoint, "certificate-authority-data": certificate_authority}}],
            "users": [{"name": cluster_name, "user": user}],
            "contexts": [{"name": cluster_name, "context": {"cluster": cluster_name, "user": cluster_name}}],
            "current-context": cluster_name,
        },
        sort_keys=True,
    )


def kubernetes_provider(settings: Settings, cluster: Cluster) -> k8s.Provider:
    if settings.cluster.kubeconfig_context:
        # The operator's own kubeconfig and context (e.g. a bastion or SSO-issued one).
        return k8s.Provider(f"k8s-{cluster.name}", context=settings.cluster.kubeconfig_context)
    kubeconfig = pulumi.Output.all(cluster.endpoint, cluster.certificate_authority).apply(
        lambda values: exec_kubeconfig(cluster.name, values[0], values[1], cluster.region, settings.cluster.aws_profile)
    )
    return k8s.Provider(f"k8s-{cluster.name}", kubeconfig=kubeconfig)
