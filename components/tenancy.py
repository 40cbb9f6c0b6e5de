"""Tenancy: users and groups to Profiles, contributors, namespace policy, per-profile IRSA."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional

import pulumi
import pulumi_kubernetes as k8s

from components.auth import identity_header_policy
from components.identity import WorkloadIdentity
from config import Settings
from manifests.argo import PATCH_ANNOTATIONS
from manifests.iam import s3_access_policy
from manifests.tenancy import (
    WORKLOAD_SERVICE_ACCOUNTS,
    Contributor,
    DataLake,
    MeshPolicy,
    ProfileSpec,
    Taint,
    contributor_roles,
    manifest,
    role_bound_objects,
    static_objects,
)


#: A profile namespace's patch: the program's field manager, and force (see Tenancy._namespace).
NAMESPACE_PATCH_ANNOTATIONS = {**PATCH_ANNOTATIONS, "pulumi.com/patchForce": "true"}


@dataclass(frozen=True, kw_only=True)
class TenancyArgs:
    profiles: Sequence[ProfileSpec]
    """Every profile, names resolved (groups expanded, buckets named, pools' taints attached)."""
    mesh: MeshPolicy
    """Mesh and serving facts all profiles' policies refer to."""
    identity: WorkloadIdentity
    """Issues the profiles' IRSA roles."""
    keep_namespaces: bool = True
    """Leave a removed profile's namespace, with its users' notebooks, volumes and runs, in the cluster
    (kubeflow.keepCrdsAndNamespaces)."""


def tenancy_args(settings: Settings, identity: WorkloadIdentity, header_forwarders: Sequence[str]) -> TenancyArgs:
    """Resolves the tenancy settings against the rest of the stack's settings; `header_forwarders` are the
    in-mesh principals besides the gateway that may send kubeflow-userid (components.auth.release_header_forwarders)."""
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
        # istio-init needs NET_ADMIN and NET_RAW (manifests.mesh.set_pod_security); other data planes keep the
        # profile controller's own level.
        pod_security="privileged" if settings.kubeflow.mesh.data_plane == "sidecar-init" else None,
        user_id_prefix=settings.auth.user_id_prefix,
        trusted_principals=settings.trusted_principals(),
        serving_namespaces=(*tenancy.serving.system_namespaces, settings.ingress.namespace),
        serving_principals=tenancy.serving.principals,
        # The same DENY policy Auth applies in `kubeflow`, for every profile namespace.
        identity_header_policy=identity_header_policy(settings.identity_options(), "profile", header_forwarders),
        serving_metrics_principals=tenancy.serving.metrics_principals,
        viewers_read_only=tenancy.viewers_read_only,
    )
    return TenancyArgs(profiles=tuple(profiles), mesh=mesh, identity=identity,
                       keep_namespaces=settings.kubeflow.keep_crds_and_namespaces)


class Tenancy(pulumi.ComponentResource):
    """Per profile: its namespace's objects, its Profile, and with a data lake an IRSA role.

    A profile without a data lake costs two registrations, whatever its number of contributors: its Namespace
    (see `_namespace`) and a ConfigGroup of all its other objects. With a data lake, two more: the IAM role
    (policy inline) and a small ConfigGroup of what carries the role's ARN. Registering each Kubernetes
    object on its own would cost the Python SDK
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
            # The same prefix for both groups: a child's URN carries its parents' types, not their names, so an
            # object moving between the groups (the Profile, when a data lake is added) is updated in place.
            prefix = f"{name}-{profile.name}"
            objects = static_objects(profile, args.mesh)
            namespace = next(obj for obj in objects if obj["kind"] == "Namespace")
            kept = self._namespace(prefix, namespace, args.keep_namespaces)
            static = k8s.yaml.v2.ConfigGroup(
                f"{prefix}-namespace",
                yaml=manifest([obj for obj in objects if obj["kind"] != "Namespace"]),
                resource_prefix=prefix,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[kept]),
            )
            if profile.data_lake is None:
                continue
            lake = profile.data_lake
            role = args.identity.irsa_role(
                f"{prefix}-data-lake",
                namespace=profile.name,
                service_accounts=WORKLOAD_SERVICE_ACCOUNTS,
                policy=s3_access_policy(bucket=lake.bucket, prefixes=[lake.prefix], kms_key_arn=lake.kms_key_arn,
                                        region=lake.region),
                opts=pulumi.ResourceOptions(parent=self),
            )
            role_arns[profile.name] = role.arn
            k8s.yaml.v2.ConfigGroup(
                f"{prefix}-profile",
                # The role's ARN is the name the program chose in the stack's account: known at preview.
                yaml=role.arn.apply(lambda arn, p=profile: manifest(role_bound_objects(p, arn))),
                resource_prefix=prefix,
                # The namespace first, with its owner annotation, so the Profile controller adopts it instead of
                # creating one; on destroy the Profile goes first and its finalizer still finds the namespace.
                # The role and its policy before the service accounts that name it, so no pod starts without them.
                opts=pulumi.ResourceOptions(parent=self, depends_on=[static, *role.ready]),
            )
        self.data_lake_role_arns = role_arns
        self.register_outputs({"profiles": self.profile_names, "dataLakeRoleArns": role_arns})

    def _namespace(self, prefix: str, namespace: dict, keep: bool) -> pulumi.CustomResource:
        """The profile's Namespace. Kept (`kubeflow.keepCrdsAndNamespaces`, the default): a server-side apply
        patch of the stack's labels and annotations, retained on delete. A profile removed from the stack
        leaves its namespace, with its users' notebooks, volumes and runs, on the cluster; added again, a
        created Namespace would fail with AlreadyExists (pulumi-kubernetes creates client-side:
        pulumi/pulumi-kubernetes@v4.32.0 provider/pkg/await/await.go:245-253, 276-289), where the patch
        applies, and creates the namespace when it is absent (server-side apply creates what does not exist).
        Force: the labels and annotations the stack sets are the stack's, also on a namespace that outlived an
        earlier stack; the profile controller's own labels are other fields and stay its own.
        Not kept: a plain Namespace, deleted with the profile."""
        metadata = namespace["metadata"]
        if not keep:
            return k8s.yaml.v2.ConfigGroup(f"{prefix}-retained", yaml=manifest([namespace]), resource_prefix=prefix,
                                           opts=pulumi.ResourceOptions(parent=self))
        return k8s.core.v1.NamespacePatch(
            f"{prefix}-namespace-patch",
            metadata=k8s.meta.v1.ObjectMetaPatchArgs(
                name=metadata["name"], labels=dict(metadata.get("labels") or {}),
                annotations={**(metadata.get("annotations") or {}), **NAMESPACE_PATCH_ANNOTATIONS},
            ),
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True),
        )

    @property
    def stack_outputs(self) -> dict[str, Any]:
        """The profiles (one namespace per data scientist) this stack manages."""
        return {"profiles": self.profile_names}
