"""All transformations composed: upstream objects + options -> the exact objects to apply.

The accounting always holds: every input object is either emitted (possibly transformed) or excluded
by a named rule, and objects the transformations produce are listed as added:
`len(emitted) == len(input) - len(excluded) + len(added)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from manifests.argo import upstream_executor, use_external_argo
from manifests.exclusions import check_rule_names, exclude_components
from manifests.groups import Groups, split_into_groups
from manifests.images import name_code_default_images, rewrite_images
from manifests.karpenter import keep_training_on_its_node
from manifests.mesh import (
    admit_api_server_to_webhooks, admit_sidecarless_clients, egress_service_entries, let_net_istio_probe_gateways,
    let_runtime_jobs_complete,
    provide_cluster_local_gateway, readmitted_cluster_local_gateway_account, fix_sidecar_conflicts, give_metadata_envoy_its_own_account,
    label_namespaces, label_pod_templates, let_jobs_complete, namespaces_kept_outside_mesh, pod_security_levels,
    route_virtual_services, set_pod_security, trust_gateway_principal, ztunnel_l7_policies,
)
from manifests.namespace import DEFAULT_NAMESPACE, DEFAULT_SYSTEM_NAMESPACE, move_namespaces
from manifests.network_policies import admit_gateway_namespace
from manifests.objects import Change, TransformResult, object_key, object_ref
from manifests.options import TransformOptions
from manifests.recovery import hold_store_writers
from manifests.release_changes import implied_exclusions, release_problems
from manifests.serving import set_serving_domain
from manifests.sources import ManifestError, Problem, detect_version
from manifests.stores import bundled_mysql_image, use_external_stores


@dataclass(frozen=True)
class TransformReport:
    """The outcome of `transform`."""

    #: Objects to apply, sorted by group, kind, namespace, name.
    objects: list[dict]
    #: object ref -> exclusion rule name
    excluded: dict[str, str]
    #: refs of objects produced by transformations (not in the input)
    added: tuple[str, ...]
    #: exclusion rules in force, with why each one that was not asked for was added
    exclusions: dict[str, str]
    #: transformation name -> its changes, in pipeline order
    changes: dict[str, tuple[Change, ...]]
    #: normalised upstream image -> mirror, sorted (export it for the registry team's pre-pull)
    image_map: dict[str, str]
    #: images no mirror rule covers -> where they appear (a guardrail refuses these)
    unmirrored_images: dict[str, tuple[str, ...]]
    version: str | None
    version_evidence: str | None
    #: The mesh the objects are fitted to, and what that decided (transformReport.mesh).
    mesh: dict = field(default_factory=dict)
    #: Upstream's namespace -> where it was moved (`kubeflow.namespace`, `kubeflow.systemNamespace`); both, always.
    namespaces: dict = field(default_factory=dict)
    groups: Groups = field(repr=False, default=None)  # type: ignore[assignment]


def _with(objects: list[dict], result: TransformResult) -> TransformResult:
    """A step that only adds objects, with the objects it was given."""
    return TransformResult(objects, result.changes, result.added)


def _also(result: TransformResult, changes: list[Change]) -> TransformResult:
    return TransformResult(result.objects, tuple(changes) + result.changes, result.added)


def namespace_moves(options: TransformOptions) -> dict[str, str]:
    """Upstream's fixed namespace -> the one chosen, for those that differ."""
    chosen = {DEFAULT_NAMESPACE: options.namespace, DEFAULT_SYSTEM_NAMESPACE: options.system_namespace}
    return {old: new for old, new in chosen.items() if old != new}


def effective_exclusions(options: TransformOptions) -> dict[str, str]:
    """Rule name -> why it applies. External Argo and stores imply excluding the bundled ones."""
    check_rule_names(options.exclusions)
    rules = {name: "configured" for name in options.exclusions}
    if "istio" in rules and options.mesh.owns_crds:
        rules.setdefault("istio-crds", "the mesh owns the Istio CRDs")
    if options.argo is not None:
        rules.setdefault("argo", "an external Argo Workflows controller is configured")
    if options.stores is not None:
        for name in ("mysql", "minio", "seaweedfs"):
            rules.setdefault(name, "an external MySQL and object store are configured")
    return rules


def _check(options: TransformOptions) -> None:
    problems = []
    if options.argo and options.stores and options.argo.bucket != options.stores.bucket:
        problems.append(Problem("kubeflow.argo.bucket", f"{options.argo.bucket!r} differs from the object store bucket {options.stores.bucket!r}", "KFP's launcher and Argo must share one artifact bucket"))
    if options.gateway and ("/" not in options.gateway.gateway or not options.gateway.hosts):
        problems.append(Problem("kubeflow.gateway", f"gateway {options.gateway.gateway!r} with hosts {options.gateway.hosts!r}", "set `namespace/name` and at least one host"))
    if problems:
        raise ManifestError(problems)


def transform(objects: list[dict], options: TransformOptions) -> TransformReport:
    """Apply every configured transformation; the input list and its objects are never modified."""
    _check(options)
    problems = release_problems(objects, options)
    if problems:
        raise ManifestError(problems)
    exclusions = effective_exclusions(options)
    # What this release ships that the organisation's cluster must not run (manifests.release_changes).
    for name, why in implied_exclusions(objects, options).items():
        exclusions.setdefault(name, why)
    excluded = exclude_components(objects, tuple(exclusions))
    mesh = options.mesh
    # The cluster-local gateway the program runs keeps upstream's ServiceAccount (and so its principal).
    readmitted, readmitted_changes = readmitted_cluster_local_gateway_account(objects, excluded.excluded, mesh)
    for obj in readmitted:
        del excluded.excluded[object_ref(obj)]
    current = excluded.kept + readmitted
    changes: dict[str, tuple[Change, ...]] = {}
    added: list[dict] = []

    moves = namespace_moves(options)
    # First of all: every later step, and the checks, see the namespaces the enterprise chose.
    moved = move_namespaces(current, moves)
    current = moved.objects
    changes["move_namespaces"] = moved.changes

    outside = namespaces_kept_outside_mesh(current)
    steps = [
        # First, so the gateway's pods get the organisation's labels like every other.
        ("provide_cluster_local_gateway", lambda objs: _with(objs, _also(provide_cluster_local_gateway(objs, mesh), readmitted_changes))),
        ("label_namespaces", lambda objs: label_namespaces(objs, mesh, outside)),
        ("label_pod_templates", lambda objs: label_pod_templates(objs, options.pod_templates, mesh, outside)),
        ("set_pod_security", lambda objs: set_pod_security(objs, mesh, outside)),
        ("admit_api_server_to_webhooks", lambda objs: admit_api_server_to_webhooks(objs, mesh, outside)),
        # After the webhooks: a workload both need keeps one PeerAuthentication (Istio applies only the oldest).
        ("admit_sidecarless_clients", lambda objs: admit_sidecarless_clients(objs, mesh, outside)),
        # After label_pod_templates, which asks every pod template for a sidecar.
        ("let_net_istio_probe_gateways", lambda objs: let_net_istio_probe_gateways(objs, mesh)),
        ("fix_sidecar_conflicts", fix_sidecar_conflicts),
        # Always: without a serving domain Knative's routes are made cluster-local, not left on example.com.
        ("set_serving_domain", lambda objs: set_serving_domain(objs, options.serving)),
        ("give_metadata_envoy_its_own_account", give_metadata_envoy_its_own_account),
    ]
    if options.gateway is not None:
        steps.append(("route_virtual_services", lambda objs: route_virtual_services(objs, options.gateway)))
        steps.append(("trust_gateway_principal", lambda objs: trust_gateway_principal(objs, options.gateway)))
    if options.gateway_pods is not None:
        steps.append(("admit_gateway_namespace", lambda objs: admit_gateway_namespace(objs, options.gateway_pods)))
    if options.stores is not None:
        # The setup Job's MySQL client is upstream's bundled MySQL image, read before the exclusion removed it.
        client_image = bundled_mysql_image(objects)
        steps.append(("use_external_stores", lambda objs: use_external_stores(objs, options.stores, client_image, options.pod_templates)))
    if options.argo is not None:
        # Upstream's executor settings are read before the `argo` exclusion removed their ConfigMap.
        executor = upstream_executor(objects)
        steps.append(("use_external_argo", lambda objs: use_external_argo(objs, options.argo, executor)))
    # After the stores: the database setup Job is one of the Jobs.
    steps.append(("let_jobs_complete", lambda objs: let_jobs_complete(objs, mesh)))
    steps.append(("let_runtime_jobs_complete", lambda objs: let_runtime_jobs_complete(objs, mesh)))
    if options.standby:
        # After the setup Job exists, so the standby leaves it out with the writers it prepares for.
        steps.append(("hold_store_writers", lambda objs: hold_store_writers(objs, options.namespace)))
    egress_namespace = options.stores.secret_namespace if options.stores is not None else options.namespace
    steps.append(("egress_service_entries", lambda objs: _with(objs, egress_service_entries(mesh, egress_namespace))))
    steps.append(("name_code_default_images", name_code_default_images))
    if options.do_not_disrupt_training:
        steps.append(("keep_training_on_its_node", keep_training_on_its_node))
    for name, step in steps:
        result = step(current)
        current = result.objects + list(result.added)
        added.extend(result.added)
        changes[name] = result.changes

    if mesh.data_plane == "ambient":
        # ztunnel enforces only L4; a policy with HTTP rules it enforces fails safe and refuses Kubeflow's users.
        refused = ztunnel_l7_policies(current)
        if refused:
            named = "; ".join(f"{ref} ({', '.join(attributes[:2])})" for ref, attributes in refused[:3])
            raise ManifestError([Problem(
                "kubeflow.mesh.dataPlane",
                f"ambient: ztunnel would enforce {len(refused)} AuthorizationPolicies that match on HTTP, which it "
                f"cannot read, and deny what they allow: {named}{'; ...' if len(refused) > 3 else ''}",
                "use sidecar-cni (or sidecar-init): Kubeflow's identity-header and per-profile policies are HTTP "
                "policies, and the profile controller writes its own at run time with no waypoint to target")])

    # Mirroring runs last so it also covers what the other steps produced.
    images = rewrite_images(current, options.images)
    current = images.objects
    changes["rewrite_images"] = images.changes

    emitted = sorted(current, key=object_key)
    version, evidence = detect_version(objects)
    return TransformReport(
        objects=emitted,
        excluded=dict(sorted(excluded.excluded.items())),
        added=tuple(object_ref(obj) for obj in added),
        exclusions=exclusions,
        changes=changes,
        image_map=images.image_map,
        unmirrored_images=images.unmatched,
        version=version,
        version_evidence=evidence,
        mesh={
            "dataPlane": mesh.data_plane, "mtls": mesh.mtls, "outboundTrafficPolicy": mesh.outbound_traffic_policy,
            "nativeSidecars": mesh.native_sidecars, "revision": mesh.revision,
            "clusterLocalGateway": mesh.cluster_local_gateway,
            "namespacesOutsideMesh": sorted(outside),
            "podSecurity": pod_security_levels(emitted),
        },
        namespaces={DEFAULT_NAMESPACE: options.namespace, DEFAULT_SYSTEM_NAMESPACE: options.system_namespace},
        groups=split_into_groups(emitted),
    )
