"""Tenancy: users and groups to Profiles, contributors, namespace policy, per-profile IRSA."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_kubernetes as k8s

from components.identity import WorkloadIdentity
from config import Settings
from manifests.iam import s3_access_policy
from manifests.tenancy import (
    WORKLOAD_SERVICE_ACCOUNTS,
    Contributor,
    DataLake,
    MeshPolicy,
    ProfileSpec,
    Taint,
    contributor_roles,
    namespace_objects,
    profile_objects,
)


@dataclass(frozen=True, kw_only=True)
class TenancyArgs:
    profiles: Sequence[ProfileSpec]
    """Every profile, names resolved (groups expanded, buckets named, pools' taints attached)."""
    mesh: MeshPolicy
    """Mesh and serving facts all profiles' policies refer to."""
    identity: WorkloadIdentity
    """Issues the profiles' IRSA roles."""


def tenancy_args(settings: Settings, identity: WorkloadIdentity) -> TenancyArgs:
    """Resolves the tenancy settings against the rest of the stack's settings."""
    tenancy = settings.tenancy
    groups = {group.name: group.members for group in tenancy.groups}
    taints = {pool.name: pool.taints for pool in settings.gpu.pools}
    buckets = settings.artifacts.names()
    keys = {bucket.purpose: bucket.kms_key_arn for bucket in settings.artifacts.buckets}
    profiles = []
    for profile in tenancy.profiles:
        lake = None
        if profile.data_lake is not None:
            lake = DataLake(
                # A purpose names one of this stack's buckets; anything else is an existing bucket's name.
                bucket=buckets.get(profile.data_lake.bucket, profile.data_lake.bucket),
                prefix=profile.data_lake.prefix.strip("/"),
                region=settings.aws.region,
                argo_key_format=settings.kubeflow.argo.key_format,
                kms_key_arn=keys.get(profile.data_lake.bucket),
            )
        contributors = [Contributor(role=c.role, user=c.user, group=c.group) for c in profile.contributors]
        profiles.append(
            ProfileSpec(
                name=profile.name,
                owner=profile.owner,
                contributors=contributor_roles(profile.owner, contributors, groups),
                gpu_taints=tuple(
                    Taint(key=t.key, value=t.value, effect=t.effect) for pool in profile.gpu_pools for t in taints[pool]
                ),
                gpus=profile.quota.gpus,
                cpu=profile.quota.cpu,
                memory=profile.quota.memory,
                labels=dict(profile.labels),
                annotations=dict(profile.annotations),
                data_lake=lake,
            )
        )
    mesh = MeshPolicy(
        revision=settings.kubeflow.mesh.revision,
        user_id_prefix=settings.auth.user_id_prefix,
        trusted_principals=tenancy.trusted_principals,
        serving_namespaces=(*tenancy.serving.system_namespaces, settings.ingress.namespace),
        serving_principals=tenancy.serving.principals,
    )
    return TenancyArgs(profiles=tuple(profiles), mesh=mesh, identity=identity)


class Tenancy(pulumi.ComponentResource):
    """Per profile: its namespace's objects, its Profile, and with a data lake an IRSA role.

    A profile costs at most three registrations, whatever its number of contributors: one ConfigGroup of
    everything known before deployment, one small ConfigGroup of the Profile (and what carries the role ARN),
    one IAM role with its policy inline. Registering each Kubernetes object on its own costs the Python SDK
    about as much per object as a ConfigGroup costs per profile.
    """

    profile_names: list[str]
    """Names of the profiles (and their namespaces)."""
    data_lake_role_arns: Mapping[str, pulumi.Output[str]]
    """Profile name to the ARN of its IRSA role, for profiles with a data lake."""

    def __init__(self, name: str, args: TenancyArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("kubeflow-platform:tenancy:Tenancy", name, None, opts)
        self.profile_names = [profile.name for profile in args.profiles]
        role_arns: dict[str, pulumi.Output[str]] = {}
        for profile in args.profiles:
            namespace = k8s.yaml.v2.ConfigGroup(
                f"{name}-{profile.name}-namespace",
                objs=namespace_objects(profile, args.mesh),
                opts=pulumi.ResourceOptions(parent=self),
            )
            objs: pulumi.Input[Sequence[dict]]
            if profile.data_lake is None:
                objs = profile_objects(profile)
            else:
                lake = profile.data_lake
                role = args.identity.irsa_role(
                    f"{name}-{profile.name}-data-lake",
                    namespace=profile.name,
                    service_accounts=WORKLOAD_SERVICE_ACCOUNTS,
                    policy=s3_access_policy(bucket=lake.bucket, prefixes=[lake.prefix], kms_key_arn=lake.kms_key_arn),
                    opts=pulumi.ResourceOptions(parent=self),
                )
                role_arns[profile.name] = role.arn
                # The only value unknown before deployment; it stays in this small group.
                objs = role.arn.apply(lambda arn, p=profile: profile_objects(p, arn))
            k8s.yaml.v2.ConfigGroup(
                f"{name}-{profile.name}-profile",
                objs=objs,
                # The namespace first, with its owner annotation, so the Profile controller adopts it
                # instead of creating one; on destroy the Profile goes first and its finalizer finds it.
                opts=pulumi.ResourceOptions(parent=self, depends_on=[namespace]),
            )
        self.data_lake_role_arns = role_arns
        self.register_outputs({"profiles": self.profile_names, "dataLakeRoleArns": role_arns})
