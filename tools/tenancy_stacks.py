"""Writes the tenancy stack files of a platform stack that places its profiles in tenancy stacks (tenancy.stacks).

    python -m tools.tenancy_stacks --platform dev [--organization organization] [--dir .]

One `Pulumi.<platform>-tenancy-<part>.yaml` per part: the platform stack's settings but `tenancy`, which names the
platform stack and the part (config/tenancy_stacks.py reads the profiles from the platform's file). Encrypted
values are not copied: a stack's secrets are encrypted for that stack alone, so each tenancy stack is given its
own (the commands are printed). Files already there are rewritten only where their settings changed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from config.access import TenancySettings, tenancy_parts
from config.loader import Problems, from_raw
from config.tenancy_stacks import PROJECT, stack_file_config
from tools.mock_runtime import is_encrypted

_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def parts_of(platform_config: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """The platform stack file's parts (config.access.tenancy_parts); ValueError naming every problem of its tenancy."""
    problems = Problems()
    tenancy = from_raw(TenancySettings, platform_config.get(f"{PROJECT}:tenancy") or {}, "tenancy", problems)
    if problems or tenancy is None:
        raise ValueError("the platform stack's tenancy has problems:\n" + "\n".join(f"  - {line}" for line in problems.lines))
    if tenancy.stacks is None:
        raise ValueError("the platform stack places no profiles in tenancy stacks: set tenancy.stacks (by count or by group)")
    return tenancy_parts(tenancy)


def tenancy_stack_name(platform: str, part: str) -> str:
    return f"{platform}-tenancy-{part}"


def tenancy_stack_documents(platform: str, platform_config: Mapping[str, Any],
                            organization: str = "organization") -> dict[str, dict[str, Any]]:
    """Stack name to stack file document, one per part of the platform stack."""
    shared = {key: value for key, value in platform_config.items()
              if key != f"{PROJECT}:tenancy" and not is_encrypted(value)}
    documents = {}
    for part in parts_of(platform_config):
        tenancy = {"platform": f"{organization}/{PROJECT}/{platform}", "part": int(part) if part.isdigit() else part}
        documents[tenancy_stack_name(platform, part)] = {"config": {**shared, f"{PROJECT}:tenancy": tenancy}}
    return documents


def write_tenancy_stacks(directory: Path, platform: str, organization: str = "organization") -> list[Path]:
    """Writes (or rewrites) the tenancy stack files of `platform` in `directory`; returns the files changed."""
    platform_config = stack_file_config(directory / f"Pulumi.{platform}.yaml")
    written = []
    for name, document in tenancy_stack_documents(platform, platform_config, organization).items():
        path = directory / f"Pulumi.{name}.yaml"
        text = yaml.dump(document, Dumper=_DUMPER, sort_keys=False, default_flow_style=False)
        if path.is_file():
            # Keep the stack's own encrypted values (its secrets) and encryption salt.
            existing = yaml.safe_load(path.read_text()) or {}
            kept = {k: v for k, v in (existing.get("config") or {}).items() if is_encrypted(v)}
            extra = {k: v for k, v in existing.items() if k != "config"}
            document = {**extra, "config": {**document["config"], **kept}}
            text = yaml.dump(document, Dumper=_DUMPER, sort_keys=False, default_flow_style=False)
            if path.read_text() == text:
                continue
        path.write_text(text)
        written.append(path)
    return written


#: What a copy of the program needs to run stacks of its own (tests, the deploy estimate at scale).
PROGRAM_FILES = ("__main__.py", "Pulumi.yaml", "config", "components", "manifests", "analysis", "tools")


def copy_program(directory: Path) -> Path:
    """The program's code in `directory`, to hold generated stack files outside the repository."""
    import shutil

    from tools.mock_runtime import REPO_ROOT

    directory.mkdir(parents=True, exist_ok=True)
    for name in PROGRAM_FILES:
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, directory / name, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, directory / name)
    return directory


def write_generated_split(directory: Path, *, platform: str = "dev", profiles: int = 10_000, size: int | None = 1_000,
                          manifests: str | None = None, source: Path | None = None) -> list[str]:
    """For tests and the benchmark: `Pulumi.<platform>.yaml` in `directory` as the repository's, with `profiles`
    generated profiles (tools.bench_case.generated_tenancy) placed in tenancy stacks of `size` by count, and its
    tenancy stack files; returns the tenancy stacks' names in part order."""
    from tools.bench_case import generated_tenancy, machine_users
    from tools.mock_runtime import REPO_ROOT

    document = yaml.load(((source or REPO_ROOT) / f"Pulumi.{platform}.yaml").read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    config = document["config"]
    tenancy = generated_tenancy(profiles, machine_users(platform))
    if size is not None:
        tenancy["stacks"] = {"by": "count", "size": size}
    config[f"{PROJECT}:tenancy"] = tenancy
    if manifests is not None:
        config[f"{PROJECT}:kubeflow"] = {**config[f"{PROJECT}:kubeflow"], "manifests": manifests}
    (directory / f"Pulumi.{platform}.yaml").write_text(yaml.dump(document, Dumper=_DUMPER, sort_keys=False))
    if size is None:
        return []
    write_tenancy_stacks(directory, platform)
    return [tenancy_stack_name(platform, str(n + 1)) for n in range((profiles + size - 1) // size)]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.tenancy_stacks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--platform", required=True, help="the platform stack (its Pulumi.<stack>.yaml sets tenancy.stacks)")
    parser.add_argument("--organization", default="organization",
                        help="the Pulumi organization of the platform stack, as StackReference names it")
    parser.add_argument("--dir", type=Path, default=Path("."), help="the project directory (beside Pulumi.yaml)")
    args = parser.parse_args(argv)
    try:
        written = write_tenancy_stacks(args.dir, args.platform, args.organization)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path}")
        stack = path.name[len("Pulumi."):-len(".yaml")]
        if "secure:" not in path.read_text():
            print(f"    then: pulumi stack init {args.organization}/{stack}; "
                  f"pulumi config set --secret authClientSecret <value> -s {stack}  (the CLI requires it on every stack)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
