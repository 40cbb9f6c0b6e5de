"""The guardrails as CrossGuard policies: thin adapters from the engine's arguments to the pure checks
in `manifests.guardrails`, so `pulumi preview --policy-pack policy` enforces exactly what the tests and
the offline preview check.

Resource policies see one registration's inputs; the two stack policies join resources (a bucket and
its companion resources, profiles and the profile controller's labels). Only the SDK's public API is
used. A value Pulumi cannot know during a preview (a new bucket's id, a role ARN) raises when it is read,
and the SDK reports that policy as "can't run during preview"; `pulumi up` runs it on the real values.
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

from manifests import guardrails
from manifests.guardrails import GuardrailParams, PlannedObject, PlannedResource

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


def plain(value: Any) -> Any:
    """The engine's proxied inputs as plain dicts and lists. Reading a value unknown during a preview
    raises the SDK's own error, which it reports as "can't run policy during preview"."""
    if isinstance(value, Mapping):
        return {key: plain(value[key]) for key in list(value)}
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return [plain(value[index]) for index in range(len(value))]
    return value


def _params(policy: str, args: ResourceValidationArgs | StackValidationArgs) -> GuardrailParams:
    return GuardrailParams.from_policy_config({policy: {**DEFAULTS.get(policy, {}), **dict(args.get_config() or {})}})


def _in_config_group(urn: str) -> bool:
    # A URN carries its parents' types: `...::kubernetes:yaml/v2:ConfigGroup$kubernetes:core/v1:Secret::name`.
    return f"{guardrails.CONFIG_GROUP}$" in (urn or "")


def _resource_policy(name: str, types: Sequence[str] | None, check: Callable[[PlannedResource, GuardrailParams], list[str]]) -> ResourceValidationPolicy:
    """A policy over single registrations of `types` (None: every Kubernetes registration)."""

    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        if types is None:
            if not args.resource_type.startswith("kubernetes:"):
                return
        elif args.resource_type not in types:
            return
        resource = PlannedResource(args.resource_type, args.name, plain(args.props), args.urn)
        for violation in check(resource, _params(name, args)):
            report_violation(violation, None)

    return ResourceValidationPolicy(name=name, description=guardrails.POLICIES[name], validate=validate, config_schema=_SCHEMAS.get(name))


def _object_check(check: Callable[[PlannedObject, GuardrailParams], list[str]]) -> Callable[[PlannedResource, GuardrailParams], list[str]]:
    """Runs an object rule over every Kubernetes object a registration carries. A typed resource that is
    itself a child of a ConfigGroup is one of its documents, so it counts as manifest text."""

    def run(resource: PlannedResource, params: GuardrailParams) -> list[str]:
        in_config_group = _in_config_group(resource.urn)
        return [violation for planned in guardrails.objects_by_origin([resource])
                for violation in check(PlannedObject(planned.obj, planned.typed and not in_config_group), params)]

    return run


def _stack_resources(args: StackValidationArgs) -> list[PlannedResource]:
    return [PlannedResource(r.resource_type, r.name, plain(r.props), r.urn) for r in args.resources]


def _bucket_companions(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    for violation in guardrails.s3_bucket_companions_present(_stack_resources(args)).violations:
        report_violation(violation, None)


def _profile_namespaces(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    objects = [planned.obj for planned in guardrails.objects_by_origin(_stack_resources(args))]
    for violation in guardrails.profile_namespaces_in_mesh(objects, _params("profile-namespaces-in-mesh", args)):
        report_violation(violation, None)


def all_policies() -> list:
    """Every guardrail, one policy each, in `manifests.guardrails.POLICIES` order: the pure rules as they are."""
    g = guardrails
    policies: dict[str, Any] = {}
    for name, (types, check) in g.RESOURCE_RULES.items():
        policies[name] = _resource_policy(name, types, check)
    for name, object_check in g.OBJECT_RULES.items():
        policies[name] = _resource_policy(name, None, _object_check(object_check))
    policies["s3-bucket-companions"] = StackValidationPolicy(
        name="s3-bucket-companions", description=g.POLICIES["s3-bucket-companions"], validate=_bucket_companions)
    policies["profile-namespaces-in-mesh"] = StackValidationPolicy(
        name="profile-namespaces-in-mesh", description=g.POLICIES["profile-namespaces-in-mesh"], validate=_profile_namespaces,
        config_schema=_SCHEMAS["profile-namespaces-in-mesh"])
    return [policies[name] for name in g.POLICIES]
