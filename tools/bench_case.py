"""One benchmark case, run as its own process by tools/bench.py so each is measured whole.

    python -m tools.bench_case floor FILE              parse FILE with libyaml and exit (the floor)
    python -m tools.bench_case stack STACK FILE [N]    evaluate the whole stack under mocks;
                                                       with N, the tenancy declares N generated profiles
    python -m tools.bench_case preview-dir DIR STACK   the whole offline preview of a stack of the program copy
                                                       in DIR (writes DIR/build/STACK), as `make preview` runs it
    python -m tools.bench_case preview STACK FILE OUT PHASES [N[:V]]
                                                       the whole `make preview` of the stack (with N generated
                                                       profiles, in variant V of generated_tenancy), its plan
                                                       written to OUT; the seconds of each phase (evaluate, write,
                                                       checks, trace) written to PHASES
"""

from __future__ import annotations

import gc
import sys


def parse_only(path: str) -> int:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with open(path, "rb") as stream:
        count = sum(1 for doc in yaml.load_all(stream, Loader=loader) if doc)
    return count


def generated_tenancy(count: int, machine_users: tuple[str, ...] = (), variant: int = 0) -> dict:
    """`count` users, each owning a profile; every tenth profile may use the first GPU pool. The stack's machine
    identities (which loading requires to be granted a profile) contribute to the first profile. `variant` 1 is the
    same tenancy with one change: the second profile's contributor may edit instead of view (what a review of one
    profile's change previews)."""
    users = [f"user{i:04d}@example.com" for i in range(count)]
    profiles = []
    for i, user in enumerate(users):
        profile = {"name": f"user{i:04d}", "owner": user, "dataLake": {"bucket": "pipelines", "prefix": f"profiles/user{i:04d}"}}
        role = "edit" if variant == 1 and i == 1 else "view"
        contributors = [{"user": users[i + 1], "role": role}] if i + 1 < count else []
        if i == 0:
            contributors += [{"user": machine, "role": "edit"} for machine in machine_users]
        if contributors:
            profile["contributors"] = contributors
        if i % 10 == 0:
            profile["gpuPools"] = ["gpu-a10g"]
            profile["quota"] = {"gpus": 1}
        profiles.append(profile)
    return {"users": [*users, *machine_users], "groups": [{"name": "everyone", "members": users[:50]}], "profiles": profiles}


def machine_users(stack: str) -> tuple[str, ...]:
    """The Kubeflow users the stack's token issuers act as (auth.extraIssuers[].machineIdentity.user)."""
    from tools.mock_runtime import stack_config

    issuers = stack_config(stack)["kubeflow-platform:auth"].get("extraIssuers") or []
    return tuple(issuer["machineIdentity"]["user"] for issuer in issuers if issuer.get("machineIdentity"))


def evaluate_stack(stack: str, manifests: str, profiles: int | None) -> int:
    # The same overrides and placeholder secrets as the offline preview, so the benchmark times what it runs.
    from tools.mock_runtime import run_program
    from tools.preview import config_overrides, placeholder_secrets

    overrides = config_overrides(stack, manifests, None)
    if profiles is not None:
        overrides["tenancy"] = generated_tenancy(profiles, machine_users(stack))
    run = run_program(stack, config_overrides=overrides, secrets=placeholder_secrets(), preview=True)
    return len(run.resources)


def preview_stack(directory: str, stack: str) -> int:
    import io
    from pathlib import Path

    from tools.preview import placeholder_secrets, preview

    root = Path(directory)
    stdout = io.StringIO()
    status = preview(stack, out=root / "build" / stack, secrets=placeholder_secrets(), stdout=stdout,
                     stderr=sys.stderr, root=root)
    if status:
        print(stdout.getvalue()[-4000:], file=sys.stderr)
    return status


#: The preview's timed steps (tools/preview.py) by the phase `make bench` reports them in.
PHASES = (("running __main__.py", "evaluate"), ("building the plan", "evaluate"), ("writing", "write"),
          ("classifying the objects", "checks"), ("running the offline checks", "checks"),
          ("checking pod admission", "checks"), ("tracing", "trace"))


def run_preview(stack: str, manifests: str, out: str, phases_file: str, profiles: int | None, variant: int = 0) -> int:
    """`make preview` as tools.preview runs it, with the seconds of each phase recorded."""
    import io
    import json
    import time
    from pathlib import Path

    from tools.preview import Progress, _Step, preview

    seconds = {phase: 0.0 for _, phase in PHASES}

    class Timed(_Step):
        def __exit__(self, *exc: object) -> None:
            phase = next(phase for prefix, phase in PHASES if self.what.startswith(prefix))
            seconds[phase] += time.monotonic() - self.started
            super().__exit__(*exc)

    class Recording(Progress):
        def step(self, what: str) -> _Step:
            return Timed(self, what)

    settings = {"tenancy": generated_tenancy(profiles, machine_users(stack), variant)} if profiles is not None else None
    status = preview(stack, manifests=manifests, out=Path(out), settings=settings, stdout=io.StringIO(),
                     progress=Recording(sys.stderr), freeze_evaluated=True)
    Path(phases_file).write_text(json.dumps(seconds))
    return status


def main(argv: list[str]) -> int:
    if argv[:1] == ["floor"]:
        print(parse_only(argv[1]))
        return 0
    if argv[:1] == ["stack"]:
        profiles = int(argv[3]) if len(argv) > 3 else None
        print(evaluate_stack(argv[1], argv[2], profiles))
        return 0
    if argv[:1] == ["preview"]:
        profiles, _, variant = argv[5].partition(":") if len(argv) > 5 else ("", "", "")
        return run_preview(argv[1], argv[2], argv[3], argv[4], int(profiles) if profiles else None, int(variant or 0))
    if argv[:1] == ["preview-dir"]:
        return preview_stack(argv[1], argv[2])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    status = main(sys.argv[1:])
    # As the preview does: what is left is freed by the exit, and freezing it spares the interpreter's
    # final collections their walk over the evaluated program (tools/preview.py).
    gc.freeze()
    sys.exit(status)
