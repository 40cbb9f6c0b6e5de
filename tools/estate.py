"""Records the estate: what the preview must know about the real cluster and account (analysis/estate.py).

    python -m tools.estate --stack dev [--out estate/dev.yaml] [--plan build/dev | --manifests PATH] [--list]

Run by a platform engineer with their own credentials (the current kubectl context and AWS profile). It
evaluates the stack's plan offline (or reads a saved one with --plan), prints every command it will run,
then runs them: `kubectl get` and AWS CLI describe/list/get/head calls only, each an argument list, never a
shell, each checked to be a read before it runs. The answers go to the estate file, which `make preview
ESTATE=estate/<stack>.yaml` checks the stack against. `--list` prints the commands and runs none.

Exit status: 0 recorded; 1 recorded, but some commands failed (listed in the file and on stderr, and
the preview refuses the file until they succeed); 2 nothing recorded (a configuration mistake, a
missing kubectl or aws).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Optional, TextIO

import pulumi

from analysis.karpenter_estate import INTERRUPTION_QUEUE, interruption_queue
from analysis.estate import ZONE_ID, Answer, Command, EstateError, Target, commands, dump_estate, record, refuse_writes, zone_id_of
from tools.mock_runtime import PROJECT, REPO_ROOT, known_stacks, stack_config

#: One command's limit: a cluster-wide list on a large cluster takes seconds, not minutes.
COMMAND_TIMEOUT_S = 300

Runner = Callable[[list[str]], Answer]


def stack_settings(stack: str, root: Path = REPO_ROOT) -> Any:
    """The stack's validated settings, read from its stack file as the program reads them (secrets stand-ins)."""
    import config

    raw = {key.split(":", 1)[1]: value for key, value in stack_config(stack, root).items() if key.startswith(f"{PROJECT}:")}
    raw = {key: value for key, value in raw.items() if key not in config.SECRET_KEYS}
    return config.parse(raw, config.Secrets(), set(config.SECRET_KEYS), stack)


def declared_settings(settings: Any) -> dict[str, Any]:
    """The settings the estate checks compare, by the key path a user writes in the stack file."""
    mesh, argo = settings.kubeflow.mesh, settings.kubeflow.argo
    declared = {
        "kubeflow.version": settings.kubeflow.version,
        "kubeflow.mesh.istioVersion": mesh.istio_version,
        "kubeflow.mesh.revision": mesh.revision,
        "kubeflow.mesh.dataPlane": mesh.data_plane,
        "kubeflow.mesh.mtls": mesh.mtls,
        "kubeflow.mesh.outboundTrafficPolicy": mesh.outbound_traffic_policy,
        "kubeflow.mesh.nativeSidecars": mesh.native_sidecars,
        "kubeflow.argo.external": argo.external and "argo" in settings.kubeflow.exclude,
        "kubeflow.argo.namespace": argo.namespace,
        "kubeflow.argo.configmapName": argo.configmap_name,
        "ingress.namespace": settings.ingress.namespace,
        "ingress.selector": dict(settings.ingress.selector),
        "auth.gatewayServiceAccount": settings.auth.gateway_service_account,
        "auth.trustDomain": settings.auth.trust_domain,
        "tenancy.trustedPrincipals": tuple(settings.tenancy.trusted_principals),
        "identity.oidcProviderArn": settings.identity.oidc_provider_arn,
        "cluster.name": settings.cluster.name,
    }
    if hasattr(mesh, "cluster_local_gateway"):
        declared["kubeflow.mesh.clusterLocalGateway"] = mesh.cluster_local_gateway
    return declared


def estate_check(stack: str, plan: Mapping[str, Any], path: Path, root: Path = REPO_ROOT) -> list[str]:
    """`make preview ESTATE=<path>`: every disagreement between the stack and the estate file, one line each."""
    from analysis.estate import load_estate
    from analysis.estate_checks import estate_problems

    try:
        estate = load_estate(path)
    except EstateError as error:
        return [f"estate: {error}"]
    declared = declared_settings(stack_settings(stack, root))
    # The release the plan was made from (--kubeflow-version may differ from the stack file's).
    declared["kubeflow.version"] = (plan.get("outputs") or {}).get("kubeflowVersion") or declared["kubeflow.version"]
    return estate_problems(estate, plan, declared)


def target_of(stack: str, settings: Any) -> Target:
    argo = settings.kubeflow.argo
    external = argo.external and "argo" in settings.kubeflow.exclude
    return Target(stack=stack, cluster_name=settings.cluster.name, region=settings.aws.region,
                  zone_name=settings.dns.zone_name, argo_namespace=argo.namespace if external else None,
                  argo_configmap=argo.configmap_name, gateway_selector=dict(settings.ingress.selector))


def run_read(argv: list[str]) -> Answer:
    """Runs one read command as an argument list (no shell) and returns its answer."""
    refuse_writes(argv)
    completed = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False)
    return Answer(completed.returncode, completed.stdout, completed.stderr)


def run_all(planned: list[Command], runner: Runner, stderr: TextIO) -> dict[str, Answer]:
    answers: dict[str, Answer] = {}
    for command in planned:
        argv = list(command.argv)
        if ZONE_ID in argv:
            zone = answers.get("zone")
            zone_id = zone_id_of(zone) if zone is not None and zone.returncode == 0 else None
            if zone_id is None:
                answers[command.key] = Answer(1, "", "no hosted zone id: the list-hosted-zones-by-name answer named none")
                continue
            argv[argv.index(ZONE_ID)] = zone_id
        if INTERRUPTION_QUEUE in argv:
            # Asked only of a queue the Karpenter controller is set up with.
            controller = answers.get("karpenter")
            queue = interruption_queue(controller.stdout) if controller is not None and controller.returncode == 0 else None
            if queue is None:
                continue
            argv[argv.index(INTERRUPTION_QUEUE)] = queue
        print(f"estate: {' '.join(argv)}", file=stderr, flush=True)
        answers[command.key] = runner(argv)
    return answers


def record_estate(stack: str, plan: Mapping[str, Any], settings: Any, *, runner: Runner = run_read,
                  stdout: TextIO = sys.stdout, stderr: TextIO = sys.stderr,
                  list_only: bool = False) -> tuple[Optional[dict[str, Any]], list[Command]]:
    target = target_of(stack, settings)
    planned = commands(plan, target)
    print(f"The estate of stack {stack} is read with these {len(planned)} commands, in this order (reads only):", file=stdout)
    for command in planned:
        print(f"    {command.shown()}", file=stdout)
    stdout.flush()
    if list_only:
        return None, planned
    answers = run_all(planned, runner, stderr)
    return record(plan, target, answers, planned), planned


def _plan(stack: str, plan_dir: Optional[Path], manifests: Optional[str], kubeflow_version: Optional[str],
          root: Path) -> dict[str, Any]:
    if plan_dir is not None:
        from tools.plan import load_plan

        return load_plan(plan_dir)
    from tools.preview import evaluate

    plan, _ = evaluate(stack, manifests=manifests, kubeflow_version=kubeflow_version, root=root)
    return plan


def main(argv: list[str], *, runner: Runner = run_read, stdout: TextIO = sys.stdout, stderr: TextIO = sys.stderr,
         root: Path = REPO_ROOT) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.estate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", default="dev", choices=known_stacks(root))
    parser.add_argument("--out", type=Path, help="the estate file (default estate/<stack>.yaml)")
    parser.add_argument("--plan", type=Path, help="a plan saved by `make preview` (its directory) instead of evaluating the stack")
    parser.add_argument("--manifests", help="rendered upstream Kubeflow manifests instead of the stack's kubeflow.manifests")
    parser.add_argument("--kubeflow-version", help="Kubeflow release of those manifests")
    parser.add_argument("--list", action="store_true", help="print the commands and run none")
    args = parser.parse_args(argv)
    try:
        settings = stack_settings(args.stack, root)
        plan = _plan(args.stack, args.plan, args.manifests, args.kubeflow_version, root)
        estate, planned = record_estate(args.stack, plan, settings, runner=runner, stdout=stdout, stderr=stderr,
                                        list_only=args.list)
    except (pulumi.RunError, EstateError, OSError, ValueError) as error:
        # A missing kubectl or aws is an OSError naming it; a config mistake a RunError listing every problem.
        print(f"error: {error}", file=stderr)
        return 2
    if estate is None:
        return 0
    out = args.out or Path("estate") / f"{args.stack}.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(dump_estate(estate))
    print(f"\nWrote: {out}", file=stdout)
    for failed in estate["failed"]:
        print(f"estate: failed: {failed}", file=stderr)
    return 1 if estate["failed"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
