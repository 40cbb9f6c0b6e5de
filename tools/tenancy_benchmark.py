"""Times the whole program under the mock runtime with many generated profiles.

    python -m tools.tenancy_benchmark --stack dev --manifests path/to/v1.10.2.yaml 10 100 1000

Each profile gets a contributor group, half of them GPU access and a data lake, so every kind of
object a profile can cost is present. Prints seconds per run and per profile: evaluation time must grow
linearly with the number of profiles.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time

from tools.bench_case import machine_users
from tools.mock_runtime import run_program, stack_config

PLACEHOLDER_SECRET = "benchmark-placeholder-secret"


def generated_tenancy(stack: str, count: int) -> dict:
    """The stack's tenancy settings with `count` profiles, each with an owner, a group and a direct contributor."""
    config = stack_config(stack)
    tenancy = copy.deepcopy(config["kubeflow-platform:tenancy"])
    pool = config["kubeflow-platform:gpu"]["pools"][0]["name"]
    users = [f"user{i:05d}@example.com" for i in range(count)]
    tenancy["users"] = users
    tenancy["groups"] = [
        {"name": f"team-{t:04d}", "members": users[t * 10 : t * 10 + 10]} for t in range((count + 9) // 10)
    ]
    profiles = []
    for i, owner in enumerate(users):
        profile = {
            "name": f"user{i:05d}",
            "owner": owner,
            "contributors": [
                {"group": f"team-{i // 10:04d}", "role": "edit"},
                {"user": users[(i + 1) % count], "role": "view"},
            ],
        }
        if i % 2 == 0:
            profile["gpuPools"] = [pool]
            profile["quota"] = {"gpus": 1, "cpu": "16", "memory": "64Gi"}
            profile["dataLake"] = {"bucket": "pipelines", "prefix": f"profiles/user{i:05d}"}
        profiles.append(profile)
    # The stack's machine identities must stay granted somewhere (loading refuses them otherwise).
    machines = machine_users(stack)
    tenancy["users"] = [*users, *machines]
    profiles[0]["contributors"] += [{"user": machine, "role": "edit"} for machine in machines]
    tenancy["profiles"] = profiles
    return tenancy


def measure(stack: str, manifests: str | None, count: int) -> tuple[float, float, int]:
    """Wall-clock and CPU seconds of one whole-program run, and the number of registrations."""
    overrides: dict = {"tenancy": generated_tenancy(stack, count)}
    if manifests:
        kubeflow = dict(stack_config(stack)["kubeflow-platform:kubeflow"], manifests=manifests)
        overrides["kubeflow"] = kubeflow
    import config

    secrets = {key: PLACEHOLDER_SECRET for key in config.SECRET_KEYS}
    started, cpu_started = time.perf_counter(), time.process_time()
    run = run_program(stack, config_overrides=overrides, secrets=secrets)
    # CPU time too: on a shared machine wall-clock time also measures the neighbours.
    return time.perf_counter() - started, time.process_time() - cpu_started, len(run.resources)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", default="dev")
    parser.add_argument("--manifests", help="rendered upstream Kubeflow manifests")
    parser.add_argument("counts", nargs="*", type=int, default=[10, 100, 1000])
    args = parser.parse_args(argv)
    print(f"{'profiles':>8} {'resources':>9} {'wall s':>8} {'cpu s':>8} {'cpu ms/profile':>14}")
    for count in args.counts:
        wall, cpu, resources = measure(args.stack, args.manifests, count)
        print(f"{count:8d} {resources:9d} {wall:8.2f} {cpu:8.2f} {1000 * cpu / count:14.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
