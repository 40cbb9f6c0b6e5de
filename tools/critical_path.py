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

from tools.mock_runtime import REPO_ROOT
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


#: The engine's default parallelism: four resource operations per CPU of the machine running `pulumi up`, unless
#: --parallel or PULUMI_PARALLEL says otherwise (pulumi/pulumi@v3.259.0 pkg/cmd/pulumi/operations/up.go:71-89).
OPERATIONS_PER_CPU = 4


@dataclass(frozen=True)
class Schedule:
    """A first `pulumi up` with at most `parallel` resource operations at a time."""

    stack: str
    parallel: int
    seconds: float
    #: Resource operations that take time (components and providers take none).
    operations: int
    #: The sum of every operation's time: `seconds` is at least this over `parallel`.
    busy_seconds: float
    #: The critical chain's length alone (estimate()), which `seconds` is at least too.
    chain_seconds: float

    def as_json(self) -> dict[str, Any]:
        return {"stack": self.stack, "parallel": self.parallel, "seconds": round(self.seconds),
                "operations": self.operations, "busySeconds": round(self.busy_seconds),
                "chainSeconds": round(self.chain_seconds)}


def schedule(plan: Mapping[str, Any], parallel: int) -> Schedule:
    """The first `pulumi up` of `plan` with at most `parallel` operations at a time: each resource starts once what
    it waits for is done and a slot is free (earliest ready first, then by URN), and holds the slot for its typical
    time. A ConfigGroup counts as one operation of its own typical time, as in estimate()."""
    import heapq

    if parallel < 1:
        raise ValueError(f"parallel must be at least 1, got {parallel}")
    resources = {r["urn"]: r for r in plan["resources"]}
    urns = set(resources)
    waiting: dict[str, int] = {}
    dependents: dict[str, list[str]] = {urn: [] for urn in urns}
    for urn, resource in resources.items():
        edges = waits_for(resource, urns)
        waiting[urn] = len(edges)
        for edge in edges:
            dependents[edge].append(urn)
    seconds = {urn: provisioning(resource).seconds for urn, resource in resources.items()}
    ready = [(0.0, urn) for urn in sorted(urns) if not waiting[urn]]
    heapq.heapify(ready)
    running: list[tuple[float, str]] = []
    now, done = 0.0, 0

    def finish(urn: str, at: float) -> None:
        nonlocal done
        done += 1
        for dependent in dependents[urn]:
            waiting[dependent] -= 1
            if not waiting[dependent]:
                heapq.heappush(ready, (at, dependent))

    while ready or running:
        while ready and (ready[0][0] <= now or not running):
            at, urn = heapq.heappop(ready)
            now = max(now, at)
            if not seconds[urn]:
                finish(urn, now)  # a component or provider: no operation, no slot
            elif len(running) < parallel:
                heapq.heappush(running, (now + seconds[urn], urn))
            else:
                heapq.heappush(ready, (now, urn))
                break
        if running and (not ready or ready[0][0] > now or len(running) >= parallel):
            now, urn = heapq.heappop(running)
            finish(urn, now)
    if done != len(urns):
        raise ValueError("the plan's waits form a cycle")
    busy = sum(seconds.values())
    return Schedule(str(plan.get("stack", "")), parallel, now, sum(1 for v in seconds.values() if v), busy,
                    estimate(plan).seconds)


def _top_level(resources: Mapping[str, Mapping[str, Any]], urn: str) -> str | None:
    """The component directly under the stack that `urn` belongs to (None for providers and the stack's own)."""
    while True:
        parent = resources[urn].get("parent")
        if parent not in resources:
            return urn if not resources[urn].get("custom", True) else None
        urn = parent


# --- at scale: one stack against tenancy stacks ------------------------------------------------------------

#: Where performance.md's table of deploy estimates at scale sits (written by `--at-scale --write`).
AT_SCALE_BEGIN = "<!-- deploy estimate at scale: written by python -m tools.critical_path --at-scale --manifests <26.03 release file> --write docs/performance.md -->"
AT_SCALE_END = "<!-- end of the deploy estimate at scale -->"
AT_SCALE_SIZES = (1_000, 10_000)
AT_SCALE_PARTS = 10
AT_SCALE_PARALLEL = (8, 32)


def _plan_of_run(stack: str, root: Path, settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    from tools.mock_runtime import run_program
    from tools.plan import build_plan
    from tools.preview import placeholder_secrets

    return build_plan(run_program(stack, config_overrides=dict(settings or {}), secrets=placeholder_secrets(),
                                  preview=True, root=root))[0]


def at_scale(manifests: str, sizes: Sequence[int] = AT_SCALE_SIZES, parts: int = AT_SCALE_PARTS,
             parallel: Sequence[int] = AT_SCALE_PARALLEL, work: Path = Path("build") / "deploy-at-scale") -> list[dict[str, Any]]:
    """For each size: the dev stack with that many generated profiles in one stack, and split into a platform
    stack and `parts` tenancy stacks (tenancy.stacks by count): each stack's first `pulumi up` at each parallelism."""
    import shutil

    from tools.bench_case import generated_tenancy, machine_users
    from tools.plan import plan_json
    from tools.tenancy_stacks import copy_program, write_generated_split

    rows = []
    for size in sizes:
        one = _plan_of_run("dev", REPO_ROOT, {
            "tenancy": generated_tenancy(size, machine_users("dev")),
            "kubeflow": {**_stack_kubeflow("dev"), "manifests": manifests}})
        program = copy_program(work / f"split-{size}")
        stacks = write_generated_split(program, profiles=size, size=(size + parts - 1) // parts, manifests=manifests)
        platform = _plan_of_run("dev", program)
        (program / "build" / "dev").mkdir(parents=True, exist_ok=True)
        (program / "build" / "dev" / "plan.json").write_text(plan_json(platform))
        tenancy = [_plan_of_run(stack, program) for stack in stacks]
        shutil.rmtree(program, ignore_errors=True)
        for slots in parallel:
            rows.append({
                "profiles": size, "parallel": slots,
                "oneStack": schedule(one, slots).as_json(),
                "platform": schedule(platform, slots).as_json(),
                "tenancyStacks": [schedule(plan, slots).as_json() for plan in tenancy],
            })
    return rows


def _stack_kubeflow(stack: str) -> dict[str, Any]:
    from tools.mock_runtime import stack_config

    return dict(stack_config(stack)["kubeflow-platform:kubeflow"])


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def at_scale_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The rows as performance.md's table: per size and parallelism, one stack against the split, the tenancy stacks
    deployed after the platform either all at once or one after another."""
    lines = ["| profiles | `--parallel` | one stack | platform stack | largest tenancy stack | split, tenancy stacks in parallel | split, in sequence |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        parts = row["tenancyStacks"]
        platform = row["platform"]["seconds"]
        largest = max(part["seconds"] for part in parts)
        together = platform + largest
        sequence = platform + sum(part["seconds"] for part in parts)
        one = row["oneStack"]
        lines.append(
            f"| {row['profiles']:,} | {row['parallel']} | {_duration(one['seconds'])} ({one['operations']:,} operations) "
            f"| {_duration(platform)} | {_duration(largest)} ({len(parts)} stacks of {max(p['operations'] for p in parts):,} operations) "
            f"| **{_duration(together)}** | {_duration(sequence)} |")
    return lines


def write_at_scale(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    text = path.read_text()
    start, end = text.index(AT_SCALE_BEGIN) + len(AT_SCALE_BEGIN), text.index(AT_SCALE_END)
    path.write_text(text[:start] + "\n" + "\n".join(at_scale_table(rows)) + "\n" + text[end:])


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
    parser.add_argument("--parallel", type=int, help="at most this many resource operations at a time (the engine's "
                        f"default is {OPERATIONS_PER_CPU} per CPU); without it, as many as are ready")
    parser.add_argument("--at-scale", action="store_true", help="1,000 and 10,000 generated profiles in the dev stack, "
                        f"in one stack and split into {AT_SCALE_PARTS} tenancy stacks (needs --manifests; minutes)")
    parser.add_argument("--write", type=Path, help="with --at-scale: rewrite the table in this page (docs/performance.md)")
    args = parser.parse_args(argv)
    if args.at_scale:
        if not args.manifests:
            parser.error("--at-scale needs --manifests (the release file the dev stack pins)")
        rows = at_scale(args.manifests)
        Path("build").mkdir(exist_ok=True)
        (Path("build") / "deploy-at-scale.json").write_text(json.dumps(rows, indent=2, sort_keys=True) + "\n")
        if args.write:
            write_at_scale(args.write, rows)
        print("\n".join(at_scale_table(rows)))
        return 0
    if args.parallel is not None:
        result = schedule(_plan_for(args), args.parallel)
        print(json.dumps(result.as_json(), indent=2, sort_keys=True) if args.json else
              f"estimated first `pulumi up` of {result.stack} with --parallel {result.parallel}: {_duration(result.seconds)} "
              f"({result.operations} operations, {_duration(result.busy_seconds)} of work; the critical chain alone "
              f"{_duration(result.chain_seconds)})")
        return 0
    result = estimate(_plan_for(args))
    if args.json:
        print(json.dumps(result.as_json(), indent=2, sort_keys=True))
    else:
        print("\n".join(result.lines()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
