"""The guardrails as CrossGuard policies: thin adapters from the engine's arguments to the pure checks
in `manifests.guardrails`, so `pulumi preview --policy-pack policy` enforces exactly what the tests and
the offline preview check.

Resource policies see one registration's inputs; the two stack policies join resources (a bucket and
its companion resources, profiles and the profile controller's labels). Values Pulumi cannot know
during a preview (a new bucket's id, a role ARN) are kept as unknown: a policy that finds a violation
in a resource holding unknowns does not guess, it reports that it can only run during `pulumi up`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Callable

from pulumi_policy import (
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError

from manifests import guardrails
from manifests.guardrails import GuardrailParams, PlannedResource

#: Default configuration of each policy; `--policy-pack-config` (or the Pulumi Cloud policy group)
#: overrides any of it. `mirror` has no default: the approved registry is the enterprise's to name.
DEFAULTS: Mapping[str, Mapping[str, Any]] = {
    "images-from-approved-mirror": {},
    "irsa-trust-pinned": {"clusterOidcIssuer": "", "wildcardTrustRoles": []},
    "only-gateway-load-balancer": {"gatewayService": "istio-system/istio-ingressgateway"},
    "gateway-nlb-restricted": {"gatewayService": "istio-system/istio-ingressgateway"},
    "namespaces-in-mesh": {"meshRevision": "", "namespacesOutsideMesh": []},
    "profile-namespaces-in-mesh": {"meshRevision": ""},
}

_SCHEMAS: Mapping[str, PolicyConfigSchema] = {
    "images-from-approved-mirror": PolicyConfigSchema(
        properties={"mirror": {"type": "string", "description": "The approved internal registry, like registry.example.com/kubeflow."}},
        required=["mirror"],
    ),
    "irsa-trust-pinned": PolicyConfigSchema(properties={
        "clusterOidcIssuer": {"type": "string", "description": "The cluster's OIDC issuer URL every IRSA trust policy must name (empty: not checked)."},
        "wildcardTrustRoles": {"type": "array", "items": {"type": "string"}, "description": "Role names allowed a StringLike service-account subject."},
    }),
    "only-gateway-load-balancer": PolicyConfigSchema(properties={
        "gatewayService": {"type": "string", "description": "namespace/name of the only Service allowed type LoadBalancer."},
    }),
    "gateway-nlb-restricted": PolicyConfigSchema(properties={
        "gatewayService": {"type": "string", "description": "namespace/name of the gateway Service whose NLB must be restricted."},
    }),
    "namespaces-in-mesh": PolicyConfigSchema(properties={
        "meshRevision": {"type": "string", "description": "Istio revision namespaces join (istio.io/rev); empty: istio-injection: enabled."},
        "namespacesOutsideMesh": {"type": "array", "items": {"type": "string"}, "description": "Namespaces deliberately outside the mesh."},
    }),
    "profile-namespaces-in-mesh": PolicyConfigSchema(properties={
        "meshRevision": {"type": "string", "description": "Istio revision profile namespaces join; empty: istio-injection: enabled."},
    }),
}


# ------------------------------------------------------------------------------------------ adapters


class _Unknown:
    """Where the engine sent a value unknown until deployment; never equal to anything a check wants."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __repr__(self) -> str:
        return f"<unknown {self.path}>"


def plain(value: Any, path: str = "", unknown: list[str] | None = None) -> Any:
    """The engine's proxied inputs as plain dicts and lists; unknown values become `_Unknown` markers,
    their paths collected in `unknown`."""
    unknown = [] if unknown is None else unknown
    if isinstance(value, Mapping):
        result = {}
        for key in list(value):
            try:
                item = value[key]
            except UnknownValueError:
                unknown.append(f"{path}.{key}" if path else str(key))
                result[key] = _Unknown(unknown[-1])
                continue
            result[key] = plain(item, f"{path}.{key}" if path else str(key), unknown)
        return result
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        result_list = []
        for index in range(len(value)):
            try:
                item = value[index]
            except UnknownValueError:
                unknown.append(f"{path}[{index}]")
                result_list.append(_Unknown(unknown[-1]))
                continue
            result_list.append(plain(item, f"{path}[{index}]", unknown))
        return result_list
    return value


def _report(violations: list[str], unknown: list[str], report_violation: ReportViolation, urn: str | None = None) -> None:
    if violations and unknown:
        # The SDK turns this into "can't run policy during preview"; `pulumi up` checks known values.
        raise UnknownValueError(UNKNOWN_STRING_VALUE, unknown[0].split("."))
    for violation in violations:
        report_violation(violation, urn)


def _config(policy: str, args: ResourceValidationArgs | StackValidationArgs) -> dict[str, Any]:
    return {**DEFAULTS.get(policy, {}), **dict(args.get_config() or {})}


def _params(policy: str, args: ResourceValidationArgs | StackValidationArgs) -> GuardrailParams:
    config = _config(policy, args)
    return GuardrailParams(
        mirror=str(config.get("mirror") or ""),
        gateway_service=str(config.get("gatewayService") or "istio-system/istio-ingressgateway"),
        cluster_oidc_issuer=str(config.get("clusterOidcIssuer") or "") or None,
        wildcard_trust_roles=frozenset(config.get("wildcardTrustRoles") or ()),
        mesh_revision=str(config.get("meshRevision") or "") or None,
        namespaces_outside_mesh=frozenset(config.get("namespacesOutsideMesh") or ()),
    )


def _in_config_group(urn: str) -> bool:
    # A URN carries its parents' types: `...::kubernetes:yaml/v2:ConfigGroup$kubernetes:core/v1:Secret::name`.
    return f"{guardrails.CONFIG_GROUP}$" in (urn or "")


def _resource_policy(name: str, types: Sequence[str] | None, check: Callable[[PlannedResource, GuardrailParams, bool], list[str]]) -> ResourceValidationPolicy:
    """A policy over single registrations of `types` (None: every Kubernetes registration)."""

    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        if types is None:
            if not args.resource_type.startswith("kubernetes:"):
                return
        elif args.resource_type not in types:
            return
        unknown: list[str] = []
        resource = PlannedResource(args.resource_type, args.name, plain(args.props, unknown=unknown))
        violations = check(resource, _params(name, args), _in_config_group(args.urn))
        _report(violations, unknown, report_violation)

    return ResourceValidationPolicy(name=name, description=guardrails.POLICIES[name], validate=validate, config_schema=_SCHEMAS.get(name))


def _object_check(check: Callable[[dict, GuardrailParams, bool], list[str]]) -> Callable[[PlannedResource, GuardrailParams, bool], list[str]]:
    """Runs an object check over every Kubernetes object a registration carries."""

    def run(resource: PlannedResource, params: GuardrailParams, in_config_group: bool) -> list[str]:
        violations = []
        for obj, typed in guardrails.objects_by_origin([resource]):
            violations.extend(check(obj, params, typed and not in_config_group))
        return violations

    return run


def _stack_resources(args: StackValidationArgs) -> list[PlannedResource]:
    """Every resource as a PlannedResource, unknowns collected; a companion whose `bucket` is unknown
    (a new bucket's id during preview) is joined through the bucket it depends on for that property."""
    by_urn = {r.urn: r for r in args.resources}
    planned = []
    for resource in args.resources:
        props = plain(resource.props)
        if resource.resource_type in guardrails.COMPANION_TYPES and not isinstance(props.get("bucket"), str):
            for dependency in (resource.property_dependencies or {}).get("bucket", []):
                target = by_urn.get(getattr(dependency, "urn", dependency))
                if target is not None and target.resource_type in guardrails.BUCKET_TYPES:
                    target_props = plain(target.props, unknown=[])
                    props["bucket"] = guardrails.bucket_name(PlannedResource(target.resource_type, target.name, target_props))
        planned.append(PlannedResource(resource.resource_type, resource.name, props))
    return planned


def _bucket_companions(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    planned = _stack_resources(args)
    for violation in guardrails.s3_bucket_companions_present(planned):
        report_violation(violation, None)


def _profile_namespaces(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    planned = _stack_resources(args)
    objects = guardrails.kubernetes_objects_of(planned)
    for violation in guardrails.profile_namespaces_in_mesh(objects, _params("profile-namespaces-in-mesh", args)):
        report_violation(violation, None)


def all_policies() -> list:
    """Every guardrail, one policy each, in `manifests.guardrails.POLICIES` order."""
    g = guardrails
    policies = {
        "images-from-approved-mirror": _resource_policy(
            "images-from-approved-mirror", None,
            _object_check(lambda obj, params, _: g.images_from_approved_mirror(obj, params.mirror) if params.mirror
                          else ["images-from-approved-mirror: no approved mirror configured (set its `mirror` in --policy-pack-config)"])),
        "s3-bucket-encrypted": _resource_policy("s3-bucket-encrypted", g.ENCRYPTION_TYPES, lambda r, p, _: g.bucket_encryption(r)),
        "s3-bucket-versioned": _resource_policy("s3-bucket-versioned", g.VERSIONING_TYPES, lambda r, p, _: g.bucket_versioning(r)),
        "s3-bucket-public-access-blocked": _resource_policy(
            "s3-bucket-public-access-blocked", (g.PUBLIC_ACCESS_BLOCK_TYPE,), lambda r, p, _: g.bucket_public_access_block(r)),
        "s3-bucket-tls-only": _resource_policy(
            "s3-bucket-tls-only", (g.BUCKET_POLICY_TYPE,), lambda r, p, _: g.bucket_policy_denies_insecure_transport(r)),
        "s3-bucket-companions": StackValidationPolicy(
            name="s3-bucket-companions", description=g.POLICIES["s3-bucket-companions"], validate=_bucket_companions),
        "irsa-trust-pinned": _resource_policy("irsa-trust-pinned", (g.ROLE_TYPE,), lambda r, p, _: g.irsa_roles_pinned(r, p)),
        "gpu-node-groups-tainted-and-labelled": _resource_policy(
            "gpu-node-groups-tainted-and-labelled", (g.NODE_GROUP_TYPE,), lambda r, p, _: g.gpu_node_group_tainted_and_labelled(r)),
        "only-gateway-load-balancer": _resource_policy(
            "only-gateway-load-balancer", None, _object_check(lambda obj, p, _: g.only_gateway_is_load_balancer(obj, p.gateway_service))),
        "gateway-nlb-restricted": _resource_policy(
            "gateway-nlb-restricted", None, _object_check(lambda obj, p, _: g.gateway_load_balancer_restricted(obj, p.gateway_service))),
        "namespaces-in-mesh": _resource_policy("namespaces-in-mesh", None, _object_check(lambda obj, p, _: g.namespace_in_mesh(obj, p))),
        "profile-namespaces-in-mesh": StackValidationPolicy(
            name="profile-namespaces-in-mesh", description=g.POLICIES["profile-namespaces-in-mesh"], validate=_profile_namespaces,
            config_schema=_SCHEMAS["profile-namespaces-in-mesh"]),
        "no-static-credentials": _resource_policy(
            "no-static-credentials", None, _object_check(lambda obj, p, typed: g.no_static_credentials(obj, typed))),
    }
    if set(policies) != set(g.POLICIES):
        raise RuntimeError(f"guardrails without a policy: {sorted(set(g.POLICIES) - set(policies))}")
    return [policies[name] for name in g.POLICIES]
