"""How long a first `pulumi up` of a stack takes, estimated from its plan, and what it waits on.

    python -m tools.critical_path --stack dev --manifests path/to/v1.10.2.yaml [--json]
    python -m tools.critical_path --plan build/dev              # a plan `make preview` wrote

Every resource of the plan is weighted with the typical time AWS or the cluster takes to provision one of
its kind (`PROVISIONING`, each figure with where it comes from). A resource starts once everything it
waits for is done:

- its dependencies as the plan records them (its inputs' resources and `depends_on`, components expanded
  to their children by the SDK);
- its parent: the SDK registers a child only after the parent's registration returned, and a component's
  registration returns once its own dependencies are done, so a component's `depends_on` holds back all
  of its children (its own duration is nil);
- its provider.

The estimate is the longest chain through that graph; everything off it runs in parallel with it. It
assumes the engine's default parallelism is never the bottleneck (a first deploy of a stack has far
fewer than its default of 4 x CPUs ready resources at a time, apart from a burst of seconds-long ones).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from tools.plan import CONFIG_GROUP, KNOWN_AFTER_DEPLOY, SECRET, load_plan


@dataclass(frozen=True)
class Provisioning:
    """A typical provisioning time and what it rests on."""

    seconds: float
    what: str
    source: str


# Typical figures, not guarantees; each source gives the figure or its order of magnitude. Where a
# source gives only a bound (a waiter's timeout, a CI wait), the figure is an estimate below it and
# says so.
_ROUTE53 = Provisioning(
    60, "Route 53 change until INSYNC (the provider waits for it)",
    "https://docs.aws.amazon.com/Route53/latest/DeveloperGuide/resource-record-sets-editing.html "
    "(\"Changes generally propagate to all Route 53 name servers within 60 seconds\")",
)
_IAM = Provisioning(
    10, "IAM create plus propagation",
    "https://github.com/hashicorp/terraform/issues/2869 (\"It takes a few seconds for permissions to propagate through AWS\")",
)
_S3 = Provisioning(
    5, "S3 bucket or bucket setting (one API call)",
    "estimate: one synchronous API call, no waiter in the provider",
)
_K8S_APPLY = Provisioning(
    5, "Kubernetes objects without readiness to await (RBAC, CRDs, ConfigMaps, custom resources)",
    "https://www.pulumi.com/blog/improving-kubernetes-management-with-pulumis-await-logic/ "
    "(only workloads, Services and a few kinds are awaited; the rest is done when the API server accepts it)",
)
_K8S_ROLLOUT = Provisioning(
    120, "Kubernetes workloads rolled out: image pulls, containers started, readiness probes passing",
    "estimate below kubeflow/manifests' own CI wait of 180 s for the dashboard's pods "
    "(https://github.com/kubeflow/manifests/blob/master/tests/central_dashboard_install.sh) and "
    "pulumi-kubernetes' 10 min Deployment timeout "
    "(https://www.pulumi.com/registry/packages/kubernetes/api-docs/apps/v1/deployment/)",
)

PROVISIONING: dict[str, Provisioning] = {
    "aws:acm/certificate:Certificate": Provisioning(
        10, "ACM certificate requested (PENDING_VALIDATION at once)",
        "https://docs.aws.amazon.com/sdk-for-kotlin/api/latest/acm/aws.sdk.kotlin.services.acm.model/-certificate-detail/status.html "
        "(a certificate enters PENDING_VALIDATION upon being requested)",
    ),
    "aws:acm/certificateValidation:CertificateValidation": Provisioning(
        300, "ACM DNS validation until ISSUED",
        "https://github.com/aws/aws-cdk/issues/2914 (a 5 min wait occasionally too short, raised to 9.5 min) and "
        "https://github.com/hashicorp/terraform-provider-aws/issues/9338 (validation \"should complete\" well "
        "within the provider's 45 min default; occasionally an hour)",
    ),
    "aws:route53/record:Record": _ROUTE53,
    "aws:route53/zone:Zone": _ROUTE53,
    "aws:eks/nodeGroup:NodeGroup": Provisioning(
        180, "EKS managed node group until ACTIVE",
        "https://github.com/umotif-public/terraform-aws-eks-node-group/issues/7 (\"Creation complete after "
        "2m50s\") and https://github.com/eksctl-io/eksctl/pull/482 (node group stack \"done after 3m36s\")",
    ),
    "aws:eks/accessEntry:AccessEntry": Provisioning(
        2, "EKS access entry (one API call)",
        "https://docs.aws.amazon.com/eks/latest/APIReference/API_CreateAccessEntry.html "
        "(synchronous: the response carries the created entry)",
    ),
    "aws:eks/podIdentityAssociation:PodIdentityAssociation": Provisioning(
        2, "EKS Pod Identity association (one API call)",
        "https://docs.aws.amazon.com/eks/latest/APIReference/API_CreatePodIdentityAssociation.html "
        "(synchronous: the response carries the created association)",
    ),
    "aws:autoscaling/tag:Tag": Provisioning(2, "Auto Scaling group tag (one API call)", "estimate: one synchronous API call"),
    "aws:ec2/launchTemplate:LaunchTemplate": Provisioning(
        2, "EC2 launch template (one API call)",
        "https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateLaunchTemplate.html "
        "(synchronous: the response carries the created template)",
    ),
    "aws:iam/role:Role": _IAM,
    "aws:iam/rolePolicy:RolePolicy": _IAM,
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": _IAM,
    "aws:iam/policy:Policy": _IAM,
    "aws:iam/openIdConnectProvider:OpenIdConnectProvider": _IAM,
    "kubernetes:core/v1:ServicePatch": Provisioning(
        90, "gateway Service re-annotated: the AWS Load Balancer Controller creates the NLB and reports its hostname",
        "https://github.com/kubernetes/kubernetes/issues/44695 (an AWS load balancer takes over 2 minutes to be "
        "created, \"but the DNS name is reported fairly quickly\"); targets become healthy 4-5 min later "
        "(https://github.com/kubernetes-sigs/aws-load-balancer-controller/issues/1786), which `pulumi up` does not wait for",
    ),
    "kubernetes:apps/v1:Deployment": _K8S_ROLLOUT,
    "kubernetes:apps/v1:StatefulSet": _K8S_ROLLOUT,
    "kubernetes:apps/v1:DaemonSet": _K8S_ROLLOUT,
}

#: Kinds whose readiness pulumi-kubernetes awaits inside a ConfigGroup.
_WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet"})
_NO_TIME = Provisioning(0, "no cloud work (component, provider)", "")


def provisioning(resource: Mapping[str, Any]) -> Provisioning:
    """The typical time of one resource of the plan."""
    type_ = resource["type"]
    if not resource.get("custom", True) and type_ != CONFIG_GROUP:
        return _NO_TIME
    if type_.startswith("pulumi:providers:"):
        return _NO_TIME
    if type_ == CONFIG_GROUP:
        return _K8S_ROLLOUT if _config_group_kinds(resource) & _WORKLOAD_KINDS else _K8S_APPLY
    if type_ in PROVISIONING:
        return PROVISIONING[type_]
    if type_.startswith("aws:s3/"):
        return _S3
    if type_.startswith("kubernetes:"):
        return _K8S_APPLY
    return Provisioning(10, "other AWS resource", "estimate: one API call with a short waiter")


def _config_group_kinds(resource: Mapping[str, Any]) -> frozenset[str]:
    text = resource.get("inputs", {}).get("yaml")
    if not isinstance(text, str) or text in (KNOWN_AFTER_DEPLOY, SECRET):
        # Known only at deploy time: a profile's own group holds its Profile and service accounts only.
        return frozenset()
    return _kinds_in(text)


@lru_cache(maxsize=None)
def _kinds_in(text: str) -> frozenset[str]:
    from manifests.objects import objects_from_config_group_inputs

    return frozenset(str(obj.get("kind")) for obj in objects_from_config_group_inputs({"yaml": text}))


# --- the graph -----------------------------------------------------------------------------------------


def waits_for(resource: Mapping[str, Any], urns: set[str]) -> list[str]:
    """What a resource cannot start before: dependencies, parent and provider that are in the plan."""
    edges = list(resource.get("dependencies", ()))
    for key in ("parent", "provider"):
        if resource.get(key):
            edges.append(resource[key])
    return sorted({edge for edge in edges if edge in urns})


def all_waits(plan: Mapping[str, Any], urn: str) -> set[str]:
    """Everything `urn` waits for, directly or through what it waits for."""
    resources = {r["urn"]: r for r in plan["resources"]}
    urns = set(resources)
    seen: set[str] = set()
    stack = [urn]
    while stack:
        for edge in waits_for(resources[stack.pop()], urns):
            if edge not in seen:
                seen.add(edge)
                stack.append(edge)
    return seen


@dataclass(frozen=True)
class Step:
    name: str
    type: str
    start: float
    seconds: float
    what: str


@dataclass(frozen=True)
class Estimate:
    """The estimated duration of a first `pulumi up` and the chain that decides it."""

    stack: str
    seconds: float
    chain: list[Step]
    #: Top-level component name -> when its last resource is done.
    milestones: dict[str, float]
    #: Resource type -> (seconds, what, source) for every type in the plan.
    table: dict[str, tuple[float, str, str]]

    def as_json(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "seconds": round(self.seconds),
            "chain": [{"name": s.name, "type": s.type, "start": round(s.start), "seconds": s.seconds, "what": s.what}
                      for s in self.chain],
            "componentsDone": {name: round(at) for name, at in sorted(self.milestones.items())},
            "provisioningTimes": {t: {"seconds": s, "what": w, "source": src} for t, (s, w, src) in sorted(self.table.items())},
        }

    def lines(self) -> list[str]:
        minutes, seconds = divmod(round(self.seconds), 60)
        out = [f"estimated first `pulumi up` of {self.stack}: {minutes} min {seconds:02d} s, critical chain:"]
        for step in self.chain:
            if step.seconds:
                out.append(f"  {step.start:5.0f} s +{step.seconds:4.0f} s  {step.type} {step.name}  ({step.what})")
        done = ", ".join(f"{name} {at:.0f} s" for name, at in sorted(self.milestones.items(), key=lambda item: (item[1], item[0])))
        out.append(f"components done at: {done}")
        return out


def estimate(plan: Mapping[str, Any]) -> Estimate:
    """The longest chain of provisioning times through the plan's waits."""
    resources = {r["urn"]: r for r in plan["resources"]}
    urns = set(resources)
    finish: dict[str, float] = {}
    before: dict[str, str | None] = {}

    def done(urn: str, visiting: frozenset[str] = frozenset()) -> float:
        if urn in finish:
            return finish[urn]
        if urn in visiting:
            raise ValueError(f"the plan's waits form a cycle through {urn}")
        start, previous = 0.0, None
        for edge in waits_for(resources[urn], urns):
            end = done(edge, visiting | {urn})
            if end > start or previous is None and end == start:
                start, previous = end, edge
        finish[urn] = start + provisioning(resources[urn]).seconds
        before[urn] = previous
        return finish[urn]

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(resources) + 100))
    for urn in sorted(resources):
        done(urn)
    last = max(sorted(finish), key=lambda urn: finish[urn]) if finish else None
    chain: list[Step] = []
    while last is not None:
        resource = resources[last]
        cost = provisioning(resource)
        chain.append(Step(resource["name"], resource["type"], finish[last] - cost.seconds, cost.seconds, cost.what))
        last = before[last]
    chain.reverse()
    milestones: dict[str, float] = {}
    for urn, resource in resources.items():
        top = _top_level(resources, urn)
        if top is not None:
            name = resources[top]["name"]
            milestones[name] = max(milestones.get(name, 0.0), finish[urn])
    table = {}
    for resource in resources.values():
        cost = provisioning(resource)
        if cost.seconds:
            key = resource["type"] if resource["type"] != CONFIG_GROUP else f"{CONFIG_GROUP} ({cost.what.split(':')[0]})"
            table[key] = (cost.seconds, cost.what, cost.source)
    return Estimate(str(plan.get("stack", "")), max(finish.values(), default=0.0), chain, milestones, table)


def _top_level(resources: Mapping[str, Mapping[str, Any]], urn: str) -> str | None:
    """The component directly under the stack that `urn` belongs to (None for providers and the stack's own)."""
    while True:
        parent = resources[urn].get("parent")
        if parent not in resources:
            return urn if not resources[urn].get("custom", True) else None
        urn = parent


# --- the command ---------------------------------------------------------------------------------------


def _plan_for(args: argparse.Namespace) -> dict[str, Any]:
    if args.plan:
        return load_plan(Path(args.plan))
    from tools.preview import Progress, evaluate

    plan, _leaks = evaluate(args.stack, manifests=args.manifests, progress=Progress(prefix="critical-path"))
    return plan


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.critical_path", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", default="dev")
    parser.add_argument("--manifests", help="rendered upstream Kubeflow manifests instead of the stack's kubeflow.manifests")
    parser.add_argument("--plan", help="a directory holding a plan.json written by `make preview`")
    parser.add_argument("--json", action="store_true", help="print the estimate as JSON")
    args = parser.parse_args(argv)
    result = estimate(_plan_for(args))
    if args.json:
        print(json.dumps(result.as_json(), indent=2, sort_keys=True))
    else:
        print("\n".join(result.lines()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
