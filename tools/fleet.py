"""`make fleet`: previews a fleet (a global stack and the regional stacks it names) and runs the fleet check.

    python -m tools.fleet [--global global] [--set STACK:KEY=VALUE ...] [--manifests PATH] [--out build/fleet]

Offline, before any `pulumi up`, in the order the first `pulumi up`s take (docs/fleet.md):
1. each regional stack is evaluated (its global stack has no saved preview yet, as it has not been deployed);
2. the global stack is evaluated, reading each region's saved preview through its stack references;
3. each regional stack is previewed in full (its offline checks and mesh trace), now reading the global stack's.
Then the fleet check (analysis/fleet.py) holds the saved plans together. Every stack's plan is written under
OUT/<stack>/ (with the preview's own output in preview.txt), and OUT/fleet.json names the fleet, so
`make diff A=<a saved fleet> B=<another>` shows a change region by region.

`--set prod-us-east-1:artifacts.bucketPrefix=example-ml-prod-usw2` evaluates the fleet with a setting changed (the
value read as YAML, like make upgrade-plan's FROM_SET). Exit status: 0 the fleet is clean, 1 a stack's offline
checks or the fleet check found problems, 2 an error (bad usage, a configuration error, a stack that cannot be
evaluated).
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional, TextIO

import pulumi

import config

from analysis import fleet as fleet_check
from config import pulumi_project
from tools.mock_runtime import PROJECT, REPO_ROOT, known_stacks, stack_config
from tools.plan import PLAN_FILE, load_plan, write_plan_dir
from tools.preview import Progress, display_path, evaluate, preview, with_settings
from tools.upgrade_plan import SideError, parse_settings

DEFAULT_OUT = Path("build") / "fleet"
#: What marks a directory as a saved fleet (tools/diff.py compares two of them region by region).
FLEET_FILE = "fleet.json"
PREVIEW_OUTPUT = "preview.txt"


class FleetError(ValueError):
    """Bad usage or a fleet that cannot be evaluated; the message says what to fix."""


def parse_fleet_settings(assignments: list[str], stacks: list[str]) -> dict[str, dict[str, Any]]:
    """`<stack>:<dotted.key>=<value>` items, per stack; the part after `<stack>:` is parsed as FROM_SET's items are."""
    per_stack: dict[str, list[str]] = {}
    for assignment in assignments:
        stack, sep, rest = assignment.partition(":")
        if not sep or not stack or "=" in stack:
            raise FleetError(f"{assignment!r} is not <stack>:<key>=<value> (like prod-us-east-1:artifacts.bucketPrefix=x)")
        if stack not in stacks:
            raise FleetError(f"{assignment!r}: {stack!r} is not a stack of this project ({', '.join(stacks)})")
        per_stack.setdefault(stack, []).append(rest)
    try:
        return {stack: parse_settings(items) for stack, items in per_stack.items()}
    except SideError as error:
        raise FleetError(str(error)) from None


def _fleet_setting(stack: str, settings: Mapping[str, Any], root: Path) -> Any:
    changed = with_settings(stack, {}, settings, root)
    return changed["fleet"] if "fleet" in changed else stack_config(stack, root).get(f"{PROJECT}:fleet")


def find_global(root: Path, settings: Mapping[str, Mapping[str, Any]], chosen: Optional[str]) -> str:
    stacks = known_stacks(root)
    roles = {}
    for stack in stacks:
        fleet = _fleet_setting(stack, settings.get(stack, {}), root)
        roles[stack] = fleet.get("role") if isinstance(fleet, Mapping) else None
    if chosen is not None:
        if chosen not in stacks:
            raise FleetError(f"--global {chosen!r} is not a stack of this project ({', '.join(stacks)})")
        if roles[chosen] != "global":
            raise FleetError(f"stack {chosen!r} is not a global stack (its fleet.role is {roles[chosen]!r})")
        return chosen
    found = [stack for stack, role in roles.items() if role == "global"]
    if len(found) != 1:
        listed = ", ".join(found) or "none"
        raise FleetError(f"this project has {len(found)} global stacks (fleet.role global: {listed}); name one with GLOBAL=<stack>")
    return found[0]


def region_stacks(global_stack: str, settings: Mapping[str, Any], root: Path) -> list[tuple[str, Optional[str]]]:
    fleet = _fleet_setting(global_stack, settings, root) or {}
    regions = fleet.get("regions") if isinstance(fleet, Mapping) else None
    listed = [(str(r.get("stack")), r.get("failover")) for r in regions or [] if isinstance(r, Mapping)]
    stacks = known_stacks(root)
    unknown = [stack for stack, _ in listed if stack not in stacks]
    if unknown:
        raise FleetError(f"{global_stack}'s fleet.regions names {', '.join(unknown)}, which this project has no stack file for")
    return listed


def _offline_problems(text: str) -> list[str]:
    """The problems a preview listed under "Offline checks:" (its stdout)."""
    lines = text.splitlines()
    if "Offline checks: passed" in lines:
        return []
    start = next((i for i, line in enumerate(lines) if line.startswith("Offline checks:")), None)
    if start is None:
        return ["the preview stopped before its offline checks"]
    found = []
    for line in lines[start + 1:]:
        if not line.startswith("    - "):
            break
        found.append(line[len("    - "):])
    return found


def run_fleet(*, global_stack: Optional[str] = None, assignments: list[str] = (), manifests: Optional[str] = None,
              out: Path = DEFAULT_OUT, root: Path = REPO_ROOT, stdout: TextIO = sys.stdout,
              stderr: TextIO = sys.stderr) -> int:
    """The whole `make fleet`; returns its exit status (0 clean, 1 problems, 2 an error)."""
    progress = Progress(stderr, "fleet")
    try:
        settings = parse_fleet_settings(list(assignments), known_stacks(root))
        global_stack = find_global(root, settings, global_stack)
        regions = region_stacks(global_stack, settings.get(global_stack, {}), root)
        outside = sorted(set(settings) - {global_stack, *(stack for stack, _ in regions)})
        if outside:
            raise FleetError(f"FLEET_SET names {', '.join(outside)}, which is not in {global_stack}'s fleet")
    except (FleetError, pulumi.RunError, FileNotFoundError) as error:
        print(f"error: {error}", file=stderr)
        return 2
    shown = ", ".join(f"{stack} ({role})" if role else stack for stack, role in regions)
    print(f"Fleet: {global_stack} -> {shown}; plans in {display_path(out)}{'/'}", file=stdout)
    for stack, changed in settings.items():
        print(f"    {stack} with " + ", ".join(f"{k}={json.dumps(v)}" for k, v in changed.items()), file=stdout)
    # A clean start: no plan of an earlier run may stand in for a stack this run has not previewed yet.
    for stack in (global_stack, *(stack for stack, _ in regions)):
        shutil.rmtree(out / stack, ignore_errors=True)
    (out / FLEET_FILE).unlink(missing_ok=True)
    # A stack whose settings the program refuses (a region on its peer's bucket prefix or database, say) is a problem
    # the fleet check found, named with the stack (exit 1); the global stack, which reads every region, is then not run.
    refused_settings: list[str] = []
    try:
        for stack in (*(stack for stack, _ in regions), global_stack):
            if stack == global_stack and refused_settings:
                break
            # What `pulumi preview` checks first: a stack the CLI refuses is an error, not a finding.
            refused = io.StringIO()
            if not pulumi_project.preflight(root, stack, pulumi_project.DEPLOYING_SECRETS, refused):
                raise FleetError(f"stack {stack}: {refused.getvalue().strip()}")
            try:
                plan, leaks = evaluate(stack, manifests=None if stack == global_stack else manifests, root=root,
                                       settings=settings.get(stack), plans_dir=out, progress=progress)
            except config.SettingsError as error:
                refused_settings += [f"{stack}: {line}" for line in error.problems]
                continue
            if leaks:
                raise FleetError(f"stack {stack}: " + "; ".join(leaks))
            write_plan_dir(plan, out / stack)
    except (FleetError, pulumi.RunError, FileNotFoundError) as error:
        print(f"error: {error}", file=stderr)
        return 2
    if refused_settings:
        print("", file=stdout)
        print(f"Stacks' settings: {len(refused_settings)} problem{'s' if len(refused_settings) != 1 else ''} "
              "(nothing previewed further; the fleet check runs once every stack's settings are accepted)", file=stdout)
        for problem in refused_settings:
            print(f"    - {problem}", file=stdout)
        return 1
    problems: list[str] = []
    print(f"    {global_stack}: evaluated ({len(load_plan(out / global_stack)['resources'])} resources)", file=stdout)
    for stack, _ in regions:
        # In full now that the global stack has a saved preview: the region reads its cookie secret.
        captured = io.StringIO()
        with progress.step(f"previewing {stack} in full"):
            status = preview(stack, manifests=manifests, out=out / stack, stdout=captured, stderr=stderr, root=root,
                             settings=settings.get(stack), plans_dir=out)
        (out / stack / PREVIEW_OUTPUT).write_text(captured.getvalue())
        found = _offline_problems(captured.getvalue()) if status else []
        resources = len(load_plan(out / stack)["resources"]) if (out / stack / PLAN_FILE).is_file() else 0
        verdict = "offline checks passed" if not status else f"{len(found)} offline problems"
        print(f"    {stack}: previewed, {verdict} ({resources} resources; {display_path(out / stack / PREVIEW_OUTPUT)})",
              file=stdout)
        problems += [f"{stack}: {problem}" for problem in found or ([] if not status else ["its preview failed"])]
    plans = {stack: load_plan(out / stack) for stack in (global_stack, *(stack for stack, _ in regions))}
    found = fleet_check.check(fleet_check.Fleet(global_stack=global_stack, plans=plans))
    (out / FLEET_FILE).write_text(json.dumps({"global": global_stack, "regions": [stack for stack, _ in regions],
                                              "settings": settings}, indent=2, sort_keys=True) + "\n")
    print("", file=stdout)
    if problems:
        print(f"Stacks' offline checks: {len(problems)} problem{'s' if len(problems) != 1 else ''}", file=stdout)
        for problem in problems:
            print(f"    - {problem}", file=stdout)
    if found:
        print(f"Fleet check: {len(found)} problem{'s' if len(found) != 1 else ''}", file=stdout)
        for problem in found:
            print(f"    - {problem}", file=stdout)
    else:
        print(f"Fleet check: passed ({len(fleet_check.RULES)} rules over {len(plans)} stacks)", file=stdout)
    return 1 if problems or found else 0


def main(argv: list[str], stdout: TextIO = sys.stdout, stderr: TextIO = sys.stderr) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.fleet", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--global", dest="global_stack", help="the global stack (default: the one stack with fleet.role global)")
    parser.add_argument("--set", action="append", default=[], metavar="STACK:KEY=VALUE",
                        help="evaluate the fleet with a stack's setting changed (repeatable)")
    parser.add_argument("--manifests", help="rendered upstream Kubeflow manifests for every regional stack")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"directory for the plans (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    return run_fleet(global_stack=args.global_stack, assignments=args.set, manifests=args.manifests, out=args.out,
                     stdout=stdout, stderr=stderr)


if __name__ == "__main__":
    try:
        status = main(sys.argv[1:])
    except Exception:  # noqa: BLE001 - a crash is an error (2), never mistaken for "problems found" (1)
        traceback.print_exc()
        status = 2
    sys.exit(status)
