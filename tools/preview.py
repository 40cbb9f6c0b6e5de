"""Offline preview: runs the program for a stack under the mock runtime and shows what it would register.

No credentials, no state backend, no cluster. Secrets are not in the stack files (they live encrypted
in the real stack's config); the preview stands in a placeholder for each, still marked secret.
"""

from __future__ import annotations

import argparse
import collections
import sys

import pulumi

from tools.mock_runtime import ProgramRun, known_stacks, run_program

PLACEHOLDER_SECRET = "preview-placeholder-secret"


def print_tree(run: ProgramRun) -> None:
    children: dict[str, list] = collections.defaultdict(list)
    urns = {r.urn for r in run.resources}
    for resource in run.resources:
        parent = resource.parent if resource.parent in urns else ""
        children[parent].append(resource)

    def show(parent: str, depth: int) -> None:
        for resource in children.get(parent, []):
            print(f"{'    ' * depth}+ {resource.type}  {resource.name}")
            show(resource.urn, depth + 1)

    print(f"Previewing stack {run.stack} (offline, mock runtime)")
    show("", 1)
    counts = collections.Counter(r.type for r in run.resources)
    print("\nResources by type:")
    for type_, count in sorted(counts.items()):
        print(f"    {count:5d}  {type_}")
    print(f"\n{len(run.resources)} to create")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="make preview", description=__doc__)
    parser.add_argument("--stack", default="dev", choices=known_stacks())
    parser.add_argument("--manifests", help="rendered upstream Kubeflow manifests (file, directory or kustomize dir)")
    args = parser.parse_args(argv)
    overrides = {}
    if args.manifests:
        from tools.mock_runtime import stack_config

        kubeflow = dict(stack_config(args.stack)["kubeflow-platform:kubeflow"])
        kubeflow["manifests"] = args.manifests
        overrides["kubeflow"] = kubeflow
    import config

    secrets = {key: PLACEHOLDER_SECRET for key in config.SECRET_KEYS}
    try:
        run = run_program(args.stack, config_overrides=overrides, secrets=secrets, preview=True)
    except pulumi.RunError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print_tree(run)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
