"""Tenancy: users and groups to Profiles, contributors, namespace policy, per-profile IRSA."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

import pulumi
import pulumi_kubernetes as k8s

from components.auth import identity_header_policy
from components.identity import WorkloadIdentity
from config import Settings
from config.access import tenancy_parts
from manifests.argo import PATCH_ANNOTATIONS
from manifests import admission
from manifests.iam import s3_access_policy
from manifests.tenancy import (
    WORKLOAD_SERVICE_ACCOUNTS,
    Contributor,
    DataLake,
    MeshPolicy,
    ProfileSpec,
    Taint,
    closed_when_removed_policy,
    contributor_roles,
    manifest,
    namespace_objects,
    role_bound_objects,
    static_objects,
)

if TYPE_CHECKING:
    from manifests.release import PreparedRelease


#: A profile namespace's patch: the program's field manager, and force (see Tenancy._namespace).
NAMESPACE_PATCH_ANNOTATIONS = {**PATCH_ANNOTATIONS, "pulumi.com/patchForce": "true"}


#: Profiles a preview registers at once (Tenancy._register_in_batches): each holds some 250 KB of pending
#: registrations until the SDK sends them, so a batch is about 25 MB at its peak; the stacks and tests hold fewer.
PROFILES_PER_PREVIEW_BATCH = 100


def profile_batches(profiles: Sequence[ProfileSpec], dry_run: bool) -> list[Sequence[ProfileSpec]]:
    """The profiles in the batches Tenancy registers them in: in a preview of PROFILES_PER_PREVIEW_BATCH each; in an
    update all at once, so `pulumi up` creates every profile's resources with the engine's full parallelism."""
    size = PROFILES_PER_PREVIEW_BATCH if dry_run else max(len(profiles), 1)
    return [profiles[start:start + size] for start in range(0, len(profiles), size)] or [()]


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
    registration: Sequence[Mapping[str, Any]] = ()
    """Who may create profiles at run time: the gateway route that refuses the dashboard's profile creation, the
    admission policies on Profiles kfam creates and on the pods of self-service profiles (manifests/admission.py)."""
    self_service: Mapping[str, Any] = field(default_factory=dict)
    """`emailDomains` and `namePrefix` of self-service profiles (tenancy.selfService), exported for the trace."""
    platform_mesh: Optional[pulumi.Output[MeshPolicy]] = None
    """On a tenancy stack: `mesh` with what only the platform stack knows (the release's header forwarders, read
    from its outputs); each profile's policies are built from it. `mesh` then only shapes the Namespace."""
    part: Optional[Mapping[str, Any]] = None
    """On a tenancy stack: which part of which platform stack it holds, exported as `tenancyPart`."""


def release_kfam_user(release: "PreparedRelease") -> Optional[str]:
    """The user kfam creates Profiles as, read from the release (its pods' ServiceAccount)."""
    return admission.kfam_user(obj for group in release.groups.values() for obj in group)


def registration_objects(settings: Settings, kfam: Optional[str], mesh: Optional[MeshPolicy] = None) -> list[dict[str, Any]]:
    """The gateway route refusing the dashboard's profile creation (all callers, or those outside self-service's
    domains), the policy on Profiles kfam creates, and with self-service the policy on its profiles' pods and
    the template (a declared profile's quota and policies, built for any namespace) its template engine applies."""
    service = settings.tenancy.self_service
    ingress = settings.ingress
    objects = [admission.registration_route(
        gateway=f"{ingress.gateway_namespace}/{ingress.gateway_name}", namespace=ingress.gateway_namespace,
        hosts=settings.dns.hosts,
        export_to=["."] if ingress.namespace == ingress.gateway_namespace else [".", ingress.namespace],
        user_header=settings.auth.user_header, user_id_prefix=settings.auth.user_id_prefix,
        self_service_domains=service.email_domains)]
    if kfam is not None:
        objects += admission.profile_policy(
            kfam, self_service_domains=service.email_domains, name_prefix=service.name_prefix,
            declared_names=[p.name for p in settings.tenancy.profiles], declared_owners=[p.owner for p in settings.tenancy.profiles])
    if service.enabled:
        taints = {pool.name: pool.taints for pool in settings.gpu.pools}
        objects += admission.self_service_pod_policy(
            gpus=service.template.quota.gpus,
            gpu_taint_keys=sorted({t.key for pool in settings.gpu.pools for t in taints[pool.name]}))
        if mesh is not None and service.template_engine == "kyverno":
            objects += admission.kyverno_template(self_service_template(settings, mesh))
    return objects


def self_service_template(settings: Settings, mesh: MeshPolicy) -> list[dict[str, Any]]:
    """What a declared profile's namespace holds besides its contributors, built as for a declared profile of
    tenancy.selfService.template, for the namespace the template engine substitutes: quota (GPUs only with GPU
    pools), the serving NetworkPolicy and AuthorizationPolicies, the identity-header policy."""
    template = settings.tenancy.self_service.template
    taints = {pool.name: pool.taints for pool in settings.gpu.pools}
    profile = ProfileSpec(
        name=admission.NAMESPACE_VARIABLE, owner="-",
        gpu_taints=tuple(Taint(key=t.key, value=t.value, effect=t.effect) for pool in template.gpu_pools for t in taints.get(pool, ())),
        gpus=template.quota.gpus, cpu=template.quota.cpu, memory=template.quota.memory)
    return [obj for obj in namespace_objects(profile, mesh) if obj["kind"] != "Namespace"]


def tenancy_args(settings: Settings, identity: WorkloadIdentity, header_forwarders: Sequence[str],
                 kfam: Optional[str] = None) -> TenancyArgs:
    """Resolves the tenancy settings against the rest of the stack's settings; `header_forwarders` are the
    in-mesh principals besides the gateway that may send kubeflow-userid (components.auth.release_header_forwarders);
    `kfam` the user kfam creates Profiles as (release_kfam_user)."""
    tenancy = settings.tenancy
    groups = {group.name: group.members for group in tenancy.groups}
    taints = {pool.name: pool.taints for pool in settings.gpu.pools}
    buckets = settings.artifacts.names()
    keys = {bucket.purpose: bucket.kms_key_arn for bucket in settings.artifacts.buckets}
    profiles = []
    for profile in settings.profiles_created():
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
    mesh = mesh_policy(settings, header_forwarders)
    service = tenancy.self_service
    return TenancyArgs(profiles=tuple(profiles), mesh=mesh, identity=identity,
                       keep_namespaces=settings.kubeflow.keep_crds_and_namespaces,
                       # Who may create profiles at run time is the platform stack's, never a tenancy stack's.
                       registration=tuple(registration_objects(settings, kfam, mesh)) if settings.tenancy_part is None else (),
                       self_service={"emailDomains": list(service.email_domains), "namePrefix": service.name_prefix})


def mesh_policy(settings: Settings, header_forwarders: Sequence[str]) -> MeshPolicy:
    """Mesh and serving facts every profile's policies refer to; `header_forwarders` as in tenancy_args."""
    tenancy = settings.tenancy
    return MeshPolicy(
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
        kubeflow_namespace=settings.kubeflow.namespace,
    )


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
        # From the account and the name the program chooses, as the role itself gives it: every profile's ARN is
        # known here, also for the profiles a preview registers later (see _register_in_batches).
        role_arns = {profile.name: args.identity.role_arn_of(f"{name}-{profile.name}-data-lake")
                     for profile in args.profiles if profile.data_lake is not None}
        self._register_in_batches(name, args, profile_batches(args.profiles, pulumi.runtime.is_dry_run()))
        if args.registration:
            # Not tied to any profile: who may create profiles at run time, and what such profiles' pods may do.
            k8s.yaml.v2.ConfigGroup(f"{name}-registration", yaml=manifest(args.registration),
                                    opts=pulumi.ResourceOptions(parent=self))
        self.data_lake_role_arns = role_arns
        self.self_service = dict(args.self_service)
        self.part = dict(args.part) if args.part is not None else None
        self.register_outputs({"profiles": self.profile_names, "dataLakeRoleArns": role_arns, "selfService": self.self_service})

    def _register_in_batches(self, name: str, args: TenancyArgs, batches: Sequence[Sequence[ProfileSpec]]) -> None:
        """Registers the first batch of profiles now and each next one once the URNs of the one before have resolved.

        The Python SDK runs the whole program before its event loop sends a single registration: until then every
        resource holds its pending registration (an Output with futures per property, the serialized inputs, a
        task), and with thousands of profiles that is most of the preview's memory (pulumi/pulumi@v3.272.0
        sdk/python/lib/pulumi/runtime/stack.py `run_pulumi_func` runs the program, then `wait_for_rpcs` drains the
        registrations and awaits every output still tracked, which includes the applies registering the later
        batches). A URN is known in a preview (sdk/python/lib/pulumi/runtime/resource.py `register_resource`: "a
        resource urn will always get a value"), so each batch waits only for the registrations before it, in a real
        `pulumi preview` as offline. An exception raised registering a later batch faults the apply's Output, which
        the SDK reports when it awaits the outputs it tracks, failing the run as it would have failed at once."""
        first, *rest = batches
        resources = [resource for profile in first for resource in self._profile(name, profile, args)]
        if rest:
            pulumi.Output.all(*[resource.urn for resource in resources]).apply(
                lambda _: self._register_in_batches(name, args, rest))

    def _profile(self, name: str, profile: ProfileSpec, args: TenancyArgs) -> list[pulumi.Resource]:
        """Registers one profile's resources and returns them: its namespace, its data lake's role, and its objects in
        one group, or with IRSA in two (the service accounts' annotation names the role: those objects in a small
        group of their own, so a real preview, where a new role's ARN is unknown, still shows the rest)."""
        # The same prefix for every group: a child's URN carries its parents' types, not their names, so an object
        # moving between the groups (the Profile, when a data lake is added with IRSA) is updated in place.
        prefix = f"{name}-{profile.name}"
        objects = static_objects(profile, args.mesh)
        namespace = next(obj for obj in objects if obj["kind"] == "Namespace")
        kept = self._namespace(prefix, namespace, args.keep_namespaces)
        registered: list[pulumi.Resource] = [kept]
        if args.keep_namespaces:
            registered.append(self._closed_when_removed(prefix, profile.name, kept))
        role = None
        if profile.data_lake is not None:
            lake = profile.data_lake
            role = args.identity.irsa_role(
                f"{prefix}-data-lake",
                namespace=profile.name,
                service_accounts=WORKLOAD_SERVICE_ACCOUNTS,
                policy=s3_access_policy(bucket=lake.bucket, prefixes=[lake.prefix], kms_key_arn=lake.kms_key_arn,
                                        region=lake.region),
                opts=pulumi.ResourceOptions(parent=self),
            )
            registered += role.ready
        # With EKS Pod Identity nothing names the role (role_bound_objects): everything is one group, after the role,
        # its policy and its associations, so no pod of the profile starts without them.
        together = role is not None and not args.identity.annotates_service_accounts

        def own(found: list[dict[str, Any]]) -> str:
            chosen = [obj for obj in found if obj["kind"] != "Namespace"]
            return manifest([*chosen, *role_bound_objects(profile, None)] if together else chosen)

        static = k8s.yaml.v2.ConfigGroup(
            f"{prefix}-namespace",
            yaml=own(objects) if args.platform_mesh is None
            else args.platform_mesh.apply(lambda mesh: own(static_objects(profile, mesh))),
            resource_prefix=prefix,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[kept, *role.ready] if together else [kept]),
        )
        registered.append(static)
        if role is None or together:
            return registered
        group = k8s.yaml.v2.ConfigGroup(
            f"{prefix}-profile",
            # The role's ARN is the name the program chose in the stack's account: known at preview.
            yaml=role.arn.apply(lambda arn: manifest(role_bound_objects(profile, arn))),
            resource_prefix=prefix,
            # The namespace first, with its owner annotation, so the Profile controller adopts it instead of
            # creating one; on destroy the Profile goes first and its finalizer still finds the namespace.
            # The role and its policy before the service accounts that name it, so no pod starts without them.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[static, *role.ready]),
        )
        return [*registered, group]

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

    def _closed_when_removed(self, prefix: str, namespace: str, kept: pulumi.Resource) -> pulumi.CustomResource:
        """The allow-nothing policy that outlives the profile with its kept namespace
        (manifests.tenancy.closed_when_removed_policy). Retained on delete, and a server-side apply patch, which
        creates it when absent and applies onto the one an earlier removal of the profile left behind, where a
        created object would fail with AlreadyExists."""
        policy = closed_when_removed_policy(namespace)
        return k8s.apiextensions.CustomResourcePatch(
            f"{prefix}-closed-when-removed",
            api_version=policy["apiVersion"],
            kind=policy["kind"],
            metadata=k8s.meta.v1.ObjectMetaPatchArgs(
                name=policy["metadata"]["name"], namespace=namespace,
                # The policy is the stack's, also on a namespace that outlived an earlier stack; under the
                # program's field manager, as every patch (a stable owner across runs, named in a conflict).
                annotations=dict(NAMESPACE_PATCH_ANNOTATIONS),
            ),
            spec=policy["spec"],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[kept], retain_on_delete=True),
        )

    @property
    def stack_outputs(self) -> dict[str, Any]:
        """The profiles (one namespace per data scientist) this stack manages, and who may create their own
        (`profileSelfService`: the email domains and the name prefix; no domains, nobody)."""
        if self.part is not None:
            return {"profiles": self.profile_names, "tenancyPart": self.part}
        return {"profiles": self.profile_names, "profileSelfService": self.self_service}


def tenancy_stack_outputs(settings: Settings, identity: WorkloadIdentity, header_forwarders: Sequence[str]) -> dict[str, Any]:
    """On a platform stack with tenancy.stacks: the parts (`tenancyParts`, part to profile names) and what its
    tenancy stacks read through their StackReference (`tenancyPlatform`); nothing otherwise."""
    if settings.tenancy.stacks is None:
        return {}
    return {
        "tenancyParts": {part: list(names) for part, names in tenancy_parts(settings.tenancy).items()},
        "tenancyPlatform": {"oidcProviderArn": identity.oidc_provider_arn, "headerForwarders": list(header_forwarders)},
    }


def tenancy_stack(settings: Settings) -> Tenancy:
    """A tenancy stack's whole program: its part of the platform stack's profiles, with the same objects the
    platform would create for them, and nothing of the platform. The cluster and the account are looked up as the
    platform does; what only the deployed platform knows is read from its outputs (`pulumi.StackReference`)."""
    from components import providers
    from components.identity import WorkloadIdentityArgs
    from config.tenancy_stacks import platform_stack_name

    reference = str(settings.tenancy.platform)
    platform = pulumi.StackReference("platform", stack_name=reference)
    inputs = platform.require_output("tenancyPlatform")
    aws_provider = providers.aws_provider(settings)
    cluster = providers.lookup_cluster(settings, aws_provider)
    k8s_provider = providers.kubernetes_provider(settings, cluster)
    # The platform's role names (<project>-<platform stack>-tenancy-<profile>-data-lake): a profile's role keeps its
    # name and ARN whichever stack holds it, so splitting a stack does not re-annotate its service accounts.
    identity = WorkloadIdentity("identity", WorkloadIdentityArgs(
        issuer=platform.require_output("clusterOidcIssuer"), account_id=cluster.account_id,
        role_name_prefix=f"{pulumi.get_project()}-{platform_stack_name(reference)}",
        existing_provider_arn=inputs.apply(lambda values: values["oidcProviderArn"]),
        mechanism=settings.identity.mechanism, cluster_name=settings.cluster.name,
    ), opts=pulumi.ResourceOptions(provider=aws_provider))
    args = tenancy_args(settings, identity, ())
    args = dataclasses.replace(
        args, platform_mesh=inputs.apply(lambda values: mesh_policy(settings, values["headerForwarders"])),
        part={"platform": reference, "part": settings.tenancy_part})
    tenancy = Tenancy("tenancy", args, opts=pulumi.ResourceOptions(providers=[aws_provider, k8s_provider]))
    # The guardrails this stack is held to: the platform's, for the profile namespaces it writes.
    pulumi.export("policyPackConfig", identity.issuer.apply(lambda issuer: settings.guardrail_params(issuer).policy_config()))
    return tenancy
