"""Profiles that change stacks between two plans of a platform stack: where each goes, and what deploying it does.

A platform stack says where its profiles live: its own `profiles` output (the ones it creates), and with
`tenancy.stacks` its `tenancyParts` output (part to profile names, each part a tenancy stack of its own). Between
two plans of it (`make diff A=<before> B=<after>`), a profile whose place differs moves between two Pulumi states.
Pulumi has no cross-stack identity: a resource's URN holds its stack's name, and `aliases` are looked up in the
updating stack's own state only (pulumi/pulumi@v3.259.0 pkg/resource/deploy/step_generator.go:575-584, 678-680),
so a moved profile is a delete in one stack and a create in the other. What that does is said once per move.

Pure Python over plans, no Pulumi.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Where a profile lives when its platform stack creates it.
PLATFORM = "the platform stack"


def places(plan: Mapping[str, Any]) -> dict[str, str]:
    """Profile name to where it lives, from a platform stack's plan: the platform stack, or `part <name>`."""
    outputs = plan.get("outputs") or {}
    found: dict[str, str] = {}
    for name in outputs.get("profiles") or ():
        if isinstance(name, str):
            found[name] = PLATFORM
    parts = outputs.get("tenancyParts")
    if isinstance(parts, Mapping):
        for part, names in parts.items():
            for name in names or ():
                found[str(name)] = f"part {part}"
    return found


@dataclass(frozen=True)
class Move:
    source: str
    destination: str
    profiles: tuple[str, ...]


def profile_moves(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[Move]:
    """The profiles present in both plans whose place differs, grouped by where from and where to."""
    old, new = places(before), places(after)
    grouped: dict[tuple[str, str], list[str]] = {}
    for name in sorted(set(old) & set(new)):
        if old[name] != new[name]:
            grouped.setdefault((old[name], new[name]), []).append(name)
    return [Move(source, destination, tuple(names)) for (source, destination), names in sorted(grouped.items())]


#: What deploying a move does, in order; said once under the moves.
WHAT_HAPPENS = (
    "Deploy the stack a profile leaves first, then the one it joins: the second creates the profile's objects and "
    "its data-lake role (an IAM name of the account), which fail as already existing while the first still holds "
    "them (pulumi-kubernetes creates client-side, IAM refuses a second role of one name).",
    "The leaving stack deletes the Profile, its contributors' RoleBindings and AuthorizationPolicies, its quota, "
    "serving policies and data-lake role; its Namespace patch and its closed-when-removed policy are retained on "
    "delete, so the namespace keeps its notebooks, volumes and runs, closed to every caller until the joining "
    "stack's `pulumi up` creates them again and patches the namespace.",
    "`pulumi state move` would move the state instead, but it re-parents the moved resources to the joining "
    "stack's root unless their parent (the `tenancy` component, which the leaving stack keeps) moves too, and the "
    "joining stack declares them under its own `tenancy` component: their URNs would not match, and `aliases` "
    "cannot bridge stacks (they name earlier URNs of the same stack only).",
    "Moving profiles with tenancy.stacks by count: removing or inserting one shifts every later profile across the "
    "part boundaries after it; add new profiles at the end, or place them by group.",
)


def move_lines(moves: list[Move], shown: int = 5) -> list[str]:
    """The moves as the diff prints them: one line per where-from and where-to, then what deploying them does."""
    if not moves:
        return []
    total = sum(len(move.profiles) for move in moves)
    lines = [f"Profiles moving between stacks: {total}"]
    for move in moves:
        names = ", ".join(move.profiles[:shown]) + (f", ... {len(move.profiles) - shown} more" if len(move.profiles) > shown else "")
        lines.append(f"  > {len(move.profiles)} from {move.source} to {move.destination}: {names}")
    lines += [f"    {line}" for line in WHAT_HAPPENS]
    return lines
