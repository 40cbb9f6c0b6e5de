"""Kubeflow: upstream Kubeflow applied through ordered yaml.v2.ConfigGroups."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import pulumi
import pulumi_kubernetes as k8s

from manifests.argo import PATCH_ANNOTATIONS, is_patch
from manifests.identity import gateway_principal
from manifests.iam import IRSA_ROLE_ANNOTATION, annotate_service_accounts
from manifests.objects import config_group_yaml, object_ref
from manifests.options import CentralSecretKeys, GatewayPodsOptions
from config import Settings
from config.kubeflow import transform_options
from manifests.release import PreparedRelease, error_message, image_mirror_export, prepare_release, transform_report_export
from manifests.sources import ManifestError

CRD = "CustomResourceDefinition"
__all__ = ["IRSA_ROLE_ANNOTATION", "CentralSecretArgs", "Kubeflow", "KubeflowArgs", "prepare"]


@dataclass(frozen=True)
class CentralSecretArgs:
    """The one Secret every database and object store consumer reads (see manifests.stores)."""

    name: str
    namespace: str
    db_host: str
    db_port: int
    db_user: str
    #: A Pulumi secret; it stays one all the way into the Secret's stringData.
    db_password: pulumi.Input[str]
    keys: CentralSecretKeys = field(default_factory=CentralSecretKeys)
    #: Pulumi secrets, with kubeflow.objectStore.staticKeys only; None leaves the keys empty (IRSA).
    object_store_access_key_id: Optional[pulumi.Input[str]] = None
    object_store_secret_access_key: Optional[pulumi.Input[str]] = None


@dataclass(frozen=True)
class KubeflowArgs:
    #: The transformed, validated upstream release (manifests.release.prepare_release).
    release: PreparedRelease
    #: None when the bundled MySQL and object store are kept.
    central_secret: Optional[CentralSecretArgs] = None
    #: `"<namespace>/<serviceaccount>"` -> IAM role ARN for IRSA (names the program chose: known at preview).
    service_account_roles: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    #: CRDs and Namespaces are retained on delete (`kubeflow.keepCrdsAndNamespaces`).
    keep_crds_and_namespaces: bool = True
    #: The roles and their policies: a group holding one of those service accounts waits for them, so no pod
    #: starts before its role can be assumed with its permissions.
    service_account_roles_ready: Sequence[pulumi.Resource] = ()
    #: Annotate the service accounts with eks.amazonaws.com/role-arn (IRSA); false with EKS Pod Identity, where
    #: associations name the service accounts and the groups holding them only wait for those.
    annotate_roles: bool = True

    @classmethod
    def from_settings(
        cls, settings: "Settings", release: PreparedRelease, service_account_roles: Mapping[str, pulumi.Input[str]],
        service_account_roles_ready: Sequence[pulumi.Resource] = (), annotate_roles: bool = True,
    ) -> "KubeflowArgs":
        database = settings.kubeflow.database
        central_secret = None
        if database is not None:
            central_secret = CentralSecretArgs(
                name=settings.kubeflow.central_secret,
                namespace=settings.kubeflow.central_secret_namespace,
                db_host=database.host,
                db_port=database.port,
                db_user=database.user,
                db_password=settings.secrets.database_password,
                object_store_access_key_id=settings.secrets.object_store_access_key_id
                if settings.kubeflow.object_store.static_keys else None,
                object_store_secret_access_key=settings.secrets.object_store_secret_access_key
                if settings.kubeflow.object_store.static_keys else None,
            )
        return cls(release=release, central_secret=central_secret, service_account_roles=service_account_roles,
                   keep_crds_and_namespaces=settings.kubeflow.keep_crds_and_namespaces,
                   service_account_roles_ready=tuple(service_account_roles_ready), annotate_roles=annotate_roles)


def prepare(settings: "Settings") -> PreparedRelease:
    """Loads, transforms and validates upstream Kubeflow before anything is registered.

    A bad source or an object that would not apply stops the program with nothing half-registered,
    reported as a RunError (the user's mistake: no traceback).
    """
    options = transform_options(
        settings.kubeflow,
        gateway=f"{settings.ingress.gateway_namespace}/{settings.ingress.gateway_name}",
        hosts=settings.dns.hosts,
        serving_domain=settings.dns.serving_domain,
        gateway_pods_namespace=settings.ingress.namespace,
        gateway_principal=gateway_principal(settings.identity_options()),
        artifact_bucket=settings.artifacts.names()["pipelines"],
        region=settings.aws.region,
        gateway_pods=GatewayPodsOptions(settings.ingress.namespace, tuple(sorted(settings.ingress.selector.items()))),
        # The auth proxy runs in a namespace named after it (manifests.auth_proxy.AuthProxyOptions.namespace).
        issuers=(settings.auth.issuer_url, *(issuer.issuer for issuer in settings.auth.extra_issuers)),
        issuers_namespace=settings.auth.proxy,
        # Where pods have roles under Pod Identity, for the agent's ServiceEntry: Kubeflow's namespace, each data-lake
        # profile's (components.tenancy), the external Argo's when its accounts have one (components.identity).
        pod_identity_namespaces=(
            settings.kubeflow.namespace,
            *(profile.name for profile in settings.tenancy.profiles if profile.data_lake is not None),
            *((settings.kubeflow.argo.namespace,) if settings.identity.argo_service_accounts else ()),
        ) if settings.identity.mechanism == "podIdentity" else (),
    )
    # Training pods on Karpenter's GPU nodes are marked so Karpenter leaves their node alone while they run.
    if any(settings.gpu.pool_provisioner(pool) == "karpenter" for pool in settings.gpu.pools):
        options = dataclasses.replace(options, do_not_disrupt_training=True)
    if settings.recovery.standby:
        options = dataclasses.replace(options, standby=True)
    try:
        return prepare_release(settings.kubeflow.manifests_source, options, settings.kubeflow.version)
    except ManifestError as error:
        raise pulumi.RunError(f"stack {pulumi.get_stack()!r}: {error_message(error)}") from None


def _secret_or_empty(value: Optional[pulumi.Input[str]]) -> pulumi.Input[str]:
    return pulumi.Output.secret(value) if value is not None else ""


class Kubeflow(pulumi.ComponentResource):
    """Upstream Kubeflow, transformed, applied through ordered yaml.v2.ConfigGroups.

    One ConfigGroup per non-empty group of `manifests.groups` (namespaces, cert-manager, mesh, auth,
    Knative, core, apps, admitted resources), each depending on the one before, so every webhook is
    serving before anything it admits arrives. Values known only at deploy time are small typed
    resources of their own, so a preview of the big groups is never blanked out by an unknown.
    """

    version: pulumi.Output[str]
    """The pinned Kubeflow release (`kubeflow.version`)."""
    component_version: pulumi.Output[Optional[str]]
    """The components' version found in the manifests (may lag the release's patch number)."""
    image_mirror: pulumi.Output[list]
    """`[{source, target}]` for every upstream image, sorted by source."""
    transform_report: pulumi.Output[dict]
    """What was excluded, added and changed, and the groups in apply order."""
    config_groups: list[k8s.yaml.v2.ConfigGroup]
    """The ConfigGroups in apply order."""

    def __init__(self, name: str, args: KubeflowArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        # The k8s provider comes in `opts`; a component keeps it in its providers map, so every child
        # with parent=self is applied by it without naming it again.
        super().__init__("kubeflow-platform:kubeflow:Kubeflow", name, None, opts)
        release = args.release
        group_objects = release.groups

        self.config_groups = []
        self.central_secret: Optional[k8s.core.v1.Secret] = None
        resource_names: dict[str, str] = {}
        crd_resource_names: dict[str, str] = {}
        registered: dict[str, k8s.yaml.v2.ConfigGroup] = {}

        # The central Secret must exist before its consumers start, or their pods wait on it until the
        # group's readiness await gives up; it needs only its namespace.
        secret_before = None
        if args.central_secret is not None:
            secret_before = _group_of_consumers(group_objects, args.central_secret.namespace) or next(
                (group for group in group_objects if group != "namespaces"), None
            )

        # The EKS pod identity webhook reads a service account's role when a pod is created, never later
        # (manifests.iam.IRSA_ROLE_ANNOTATION): the annotation rides on the ServiceAccount in the group that
        # creates it with its Deployment, and that group waits for the role and its policy.
        roles_in: dict[str, dict[str, pulumi.Input[str]]] = {}
        outside: list[tuple[str, pulumi.Input[str]]] = []
        for key, role_arn in sorted(args.service_account_roles.items()):
            group = _group_holding_service_account(group_objects, key)
            if group is None:
                outside.append((key, role_arn))
            else:
                roles_in.setdefault(group, {})[key] = role_arn
        # Service accounts outside the manifests (the external Argo's, when the stack opts in) are not the
        # program's: they are patched, once their role exists; their running pods see it at their next start.
        self.service_account_patches = [
            self._patch_service_account(name, key, arn, list(args.service_account_roles_ready)) for key, arn in outside
        ] if args.annotate_roles else []

        previous: Optional[pulumi.Resource] = None
        #: Someone else's objects (the external Argo's ConfigMap): server-side apply patches, never created.
        self.patches: list[pulumi.CustomResource] = []
        for group, objects in group_objects.items():
            depends_on: list[pulumi.Resource] = [previous] if previous is not None else []
            patches = [obj for obj in objects if is_patch(obj)]
            if patches:
                self.patches += [self._patch(name, obj, depends_on) for obj in patches]
                objects = [obj for obj in objects if not is_patch(obj)]
            if args.central_secret is not None and group == secret_before:
                namespaces = [registered["namespaces"]] if "namespaces" in registered else depends_on
                self.central_secret = self._central_secret(name, args.central_secret, namespaces)
                depends_on = depends_on + [self.central_secret]
            roles = roles_in.get(group)
            if roles:
                depends_on = depends_on + list(args.service_account_roles_ready)
            resource_name = f"{name}-{group}"
            keep = args.keep_crds_and_namespaces
            crds = [obj for obj in objects if obj.get("kind") == CRD]
            if keep and crds and len(crds) < len(objects):
                # Deleting a CRD deletes every custom resource of its kind: CRDs get a group of their own
                # that is retained on delete, so a CRD leaving the release stays on the cluster. The same
                # resource prefix keeps each CRD's URN (`<prefix>:<name>`, pulumi/pulumi-kubernetes@v4.32.0
                # provider/pkg/provider/yaml/v2/yaml.go:349-351), so stacks deployed before move without a
                # delete; the engine hands retainOnDelete to a component's children
                # (pulumi/pulumi@v3.259.0 pkg/resource/deploy/source_eval.go:1942-1952).
                crd_resource_names[group] = f"{resource_name}-crds"
                crd_group = k8s.yaml.v2.ConfigGroup(
                    crd_resource_names[group],
                    yaml=config_group_yaml(crds),
                    resource_prefix=resource_name,
                    opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on, retain_on_delete=True),
                )
                self.config_groups.append(crd_group)
                depends_on = [crd_group, *(d for d in depends_on if d is not previous)]
                objects = [obj for obj in objects if obj.get("kind") != CRD]
            # A Namespace deleted takes every object in it, users' too.
            retained = keep and all(obj.get("kind") in (CRD, "Namespace") for obj in objects)
            config_group = k8s.yaml.v2.ConfigGroup(
                resource_name,
                # One string of JSON documents rather than `objs=`: see manifests.objects.config_group_yaml.
                yaml=_group_yaml(objects, roles if args.annotate_roles else None),
                opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on, retain_on_delete=retained or None),
            )
            self.config_groups.append(config_group)
            registered[group] = config_group
            resource_names[group] = resource_name
            previous = config_group

        for warning in release.warnings:
            pulumi.log.warn(warning, resource=self)
        self.version = pulumi.Output.from_input(release.release)
        self.component_version = pulumi.Output.from_input(release.component_version)
        self.image_mirror = pulumi.Output.from_input(image_mirror_export(release.report))
        self.transform_report = pulumi.Output.from_input(transform_report_export(release, resource_names, crd_resource_names))
        self.register_outputs({
            "version": self.version,
            "componentVersion": self.component_version,
            "imageMirror": self.image_mirror,
            "transformReport": self.transform_report,
        })

    @property
    def stack_outputs(self) -> dict[str, Any]:
        """The release applied, what the registry team mirrors and what the transformations did."""
        return {"kubeflowVersion": self.version, "imageMirror": self.image_mirror, "transformReport": self.transform_report}

    def _central_secret(self, name: str, args: CentralSecretArgs, depends_on: list[pulumi.Resource]) -> k8s.core.v1.Secret:
        keys = args.keys
        return k8s.core.v1.Secret(
            f"{name}-central-secret",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=args.name,
                namespace=args.namespace,
                labels={"app.kubernetes.io/part-of": "kubeflow-platform", "app.kubernetes.io/component": "external-stores"},
            ),
            type="Opaque",
            string_data={
                keys.db_username: args.db_user,
                keys.db_password: pulumi.Output.secret(args.db_password),
                "db-host": args.db_host,
                "db-port": str(args.db_port),
                # S3 is reached through IRSA: the keys exist because consumers reference them, and empty
                # keys make the KFP API server and the UI fall back to the AWS SDK's default chain. With
                # kubeflow.objectStore.staticKeys they hold the IAM user's keys (KFP 2.15.0's API server
                # reads only those: kubeflow/pipelines@2.15.0
                # backend/src/apiserver/client_manager/client_manager.go:991-1037).
                keys.object_store_access_key: _secret_or_empty(args.object_store_access_key_id),
                keys.object_store_secret_key: _secret_or_empty(args.object_store_secret_access_key),
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on),
        )

    def _patch(self, name: str, obj: dict, depends_on: list[pulumi.Resource]) -> pulumi.CustomResource:
        """A server-side apply patch of an object someone else owns: only the fields in `obj`, under the
        program's field manager. Its delete relinquishes those fields and leaves the object
        (pulumi/pulumi-kubernetes@v4.32.0 provider/pkg/await/await.go:958-961)."""
        metadata = obj["metadata"]
        if obj.get("kind") != "ConfigMap":
            raise ValueError(f"{object_ref(obj)}: only ConfigMaps are patched from the manifests")
        return k8s.core.v1.ConfigMapPatch(
            f"{name}-patch-{metadata['namespace']}-{metadata['name']}",
            metadata=k8s.meta.v1.ObjectMetaPatchArgs(
                name=metadata["name"], namespace=metadata["namespace"], annotations=dict(metadata.get("annotations") or {})
            ),
            data=dict(obj.get("data") or {}),
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on),
        )

    def _patch_service_account(
        self, name: str, key: str, role_arn: pulumi.Input[str], depends_on: list[pulumi.Resource]
    ) -> k8s.core.v1.ServiceAccountPatch:
        namespace, account = key.split("/", 1)
        return k8s.core.v1.ServiceAccountPatch(
            f"{name}-irsa-{namespace}-{account}",
            metadata=k8s.meta.v1.ObjectMetaPatchArgs(
                name=account, namespace=namespace, annotations={IRSA_ROLE_ANNOTATION: role_arn, **PATCH_ANNOTATIONS}
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on),
        )


def _group_yaml(objects: list[dict], roles: Optional[Mapping[str, pulumi.Input[str]]]) -> pulumi.Input[str]:
    """The group's documents, its service accounts annotated with their roles. The ARNs come from the
    account id (known at preview) and names the program chose, so the text is known at preview too."""
    if not roles:
        return config_group_yaml(objects)
    keys = sorted(roles)
    if all(isinstance(roles[key], str) for key in keys):
        return config_group_yaml(annotate_service_accounts(objects, dict(roles)))
    return pulumi.Output.all(*(roles[key] for key in keys)).apply(
        lambda arns: config_group_yaml(annotate_service_accounts(objects, dict(zip(keys, arns))))
    )


def _group_of_consumers(groups: Mapping[str, list[dict]], namespace: str) -> Optional[str]:
    """The first group with a workload in `namespace` (the central Secret's consumers run there)."""
    for group, objects in groups.items():
        for obj in objects:
            if (obj.get("metadata") or {}).get("namespace") == namespace and obj.get("kind") in {"Deployment", "StatefulSet", "Job", "CronJob", "DaemonSet"}:
                return group
    return None


def _group_holding_service_account(groups: Mapping[str, list[dict]], key: str) -> Optional[str]:
    wanted = f"ServiceAccount {key}"
    for group, objects in groups.items():
        if any(obj.get("kind") == "ServiceAccount" and object_ref(obj) == wanted for obj in objects):
            return group
    return None
