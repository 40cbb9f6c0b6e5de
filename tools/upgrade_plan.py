"""What `pulumi up` will do to a live cluster when the stack moves from one Kubeflow release to another.

    python -m tools.upgrade_plan FROM TO [--stack dev] [--from-set KEY=VALUE ...] [--to-set KEY=VALUE ...] [--out DIR]

FROM is a release (`1.10.2`, rendered into build/upstream/ when missing), a rendered manifests file, or a
directory holding a plan saved by `make preview`; TO is a release or a manifests file. Both sides are the
stack's plan (evaluated offline, as `make preview` does) with that release. Prints what needs attention
first, then the rest as counts, and writes the whole plan as JSON to DIR (build/upgrade-plan/).
`--from-set`/`--to-set kubeflow.objectStore.staticKeys=true` evaluate a side with a setting the stack
has at that release but not in its file today (the value is read as YAML).
Exits 0 when nothing needs attention, 1 when something does, 2 on an error (like `make diff`).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import traceback
from pathlib import Path
from typing import Any, TextIO

import pulumi
import yaml

from analysis.upgrade import plan_upgrade, render
from manifests.sources import ManifestError
from tools.mock_runtime import known_stacks
from tools.plan import PLAN_FILE, load_plan
from tools.preview import Progress, display_path, evaluate
from tools.upstream_manifests import ensure, release_path

_RELEASE = re.compile(r"^(\d+\.\d+\.\d+|\d{2}\.\d{2}(\.\d+)?)$")
DEFAULT_OUT = Path("build") / "upgrade-plan"


class SideError(ValueError):
    """A side that is neither a release, a manifests file nor a saved plan; the message says which."""


def _identified_release(path: Path) -> str:
    from manifests.release import load_once
    from manifests.release_identity import identify

    candidates = identify(load_once(str(path)).objects).candidates
    if len(candidates) != 1:
        raise SideError(f"{path}: cannot tell which Kubeflow release it is (identified as "
                        f"{' or '.join(candidates) or 'no known release'}); give the release instead")
    return candidates[0]


def parse_settings(assignments: list[str]) -> dict[str, Any]:
    """`key.path=value` pairs, each value read as YAML (`true`, `"26.03"`, `[a, b]`)."""
    settings: dict[str, Any] = {}
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z][\w]*(\.[A-Za-z][\w]*)*", key):
            raise SideError(f"{assignment!r} is not KEY=VALUE with a dotted settings key "
                            "(like kubeflow.objectStore.staticKeys=true)")
        try:
            settings[key] = yaml.safe_load(value)
        except yaml.YAMLError as error:
            raise SideError(f"{assignment!r}: the value is not YAML ({error.problem})") from None
    return settings


def _with(label: str, settings: dict[str, Any]) -> str:
    shown = ", ".join(f"{key}={json.dumps(value)}" for key, value in settings.items())
    return f"{label} with {shown}" if settings else label


def load_side(spec: str, stack: str, *, allow_saved: bool, stderr: TextIO,
              settings: dict[str, Any] | None = None) -> tuple[dict[str, Any], str]:
    path = Path(spec)
    if allow_saved and path.is_dir():
        if settings:
            raise SideError(f"{spec} is a saved plan: its settings are the ones it was saved with")
        if not (path / PLAN_FILE).is_file():
            raise SideError(f"{spec} is a directory without a {PLAN_FILE} (save one with make preview OUT={spec})")
        return load_plan(path), f"saved plan {display_path(path)}"
    if _RELEASE.match(spec):
        problem = ensure(spec)
        if problem:
            raise SideError(problem)
        manifests, release = release_path(spec), spec
    elif path.is_file():
        manifests, release = path, _identified_release(path)
    else:
        kinds = "a release (like 1.10.2), a manifests file" + (" or a saved plan directory" if allow_saved else "")
        raise SideError(f"{spec!r} is not {kinds}")
    plan, _ = evaluate(stack, manifests=str(manifests), kubeflow_version=release,
                       progress=Progress(stderr, "upgrade-plan"), settings=settings)
    return plan, _with(f"Kubeflow {release} (stack {stack})", settings or {})


_DOC_BLOCK = re.compile(r"(<!-- upgrade-plan (\S+) (\S+) (\S+)((?: (?:from|to):\S+)*) -->\n```\n)(.*?)(```)", re.S)


def refresh_docs(path: Path, stderr: TextIO) -> int:
    """Rewrites each `<!-- upgrade-plan FROM TO STACK [from:KEY=VALUE] [to:KEY=VALUE] -->` block of a docs page
    with the plan's real output."""
    text = path.read_text(encoding="utf-8")

    def block(match: re.Match) -> str:
        source, target, stack = match.group(2), match.group(3), match.group(4)
        sides = {"from": [], "to": []}
        for token in match.group(5).split():
            side, _, assignment = token.partition(":")
            sides[side].append(assignment)
        before, before_label = load_side(source, stack, allow_saved=False, stderr=stderr,
                                         settings=parse_settings(sides["from"]))
        after, after_label = load_side(target, stack, allow_saved=False, stderr=stderr,
                                       settings=parse_settings(sides["to"]))
        shown = render(plan_upgrade(before, after, before_label, after_label))
        command = f"make upgrade-plan FROM={source} TO={target}" + (f" STACK={stack}" if stack != "dev" else "")
        for side in ("from", "to"):
            if sides[side]:
                command += f" {side.upper()}_SET='{' '.join(sides[side])}'"
        return f"{match.group(1)}$ {command}\n{shown}{match.group(7)}"

    path.write_text(_DOC_BLOCK.sub(block, text), encoding="utf-8")
    return 0


def main(argv: list[str], stdout: TextIO = sys.stdout, stderr: TextIO = sys.stderr) -> int:
    if argv[:1] == ["--refresh-docs"] and len(argv) == 2:
        return refresh_docs(Path(argv[1]), stderr)
    parser = argparse.ArgumentParser(prog="python -m tools.upgrade_plan", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", metavar="FROM", help="release, manifests file or saved plan directory")
    parser.add_argument("target", metavar="TO", help="release or manifests file")
    parser.add_argument("--stack", default="dev")
    parser.add_argument("--from-set", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting the stack has at FROM (dotted key, YAML value); repeatable")
    parser.add_argument("--to-set", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting the stack takes with TO (dotted key, YAML value); repeatable")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="directory for the JSON plan")
    args = parser.parse_args(argv)
    if args.stack not in known_stacks():
        print(f"error: no stack {args.stack!r} (stacks: {', '.join(known_stacks())})", file=stderr)
        return 2
    try:
        source, source_label = load_side(args.source, args.stack, allow_saved=True, stderr=stderr,
                                         settings=parse_settings(args.from_set))
        target, target_label = load_side(args.target, args.stack, allow_saved=False, stderr=stderr,
                                         settings=parse_settings(args.to_set))
    except (SideError, pulumi.RunError, FileNotFoundError, ValueError, ManifestError) as error:
        # ValueError: a saved plan that is not one; ManifestError: a file that is no manifests at all.
        print(f"error: {error}", file=stderr)
        return 2
    result = plan_upgrade(source, target, source_label, target_label)
    stdout.write(render(result))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{args.stack}-{Path(args.source).name}-to-{Path(args.target).name}")
    written = out / f"{name}.json"
    written.write_text(json.dumps(result.as_json(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    stdout.write(f"\nWrote {display_path(written)}\n")
    return 1 if result.needs_attention else 0


if __name__ == "__main__":
    try:
        status = main(sys.argv[1:])
    except Exception:  # noqa: BLE001 - a crash is an error (2), never "needs attention" (1)
        traceback.print_exc()
        status = 2
    sys.exit(status)
