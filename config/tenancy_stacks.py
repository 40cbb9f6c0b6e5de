"""Tenancy stacks: a stack that holds one part of its platform stack's profiles reads them from that stack's file.

A platform stack with `tenancy.stacks` places its profiles in parts (config.access.tenancy_parts) and creates
none of them; a tenancy stack says which part of which platform stack it holds (`tenancy: {platform:
<organization>/kubeflow-platform/<stack>, part: 3}`). Its users, groups and profiles are the platform stack's,
read from `Pulumi.<stack>.yaml` beside this program, so every part is checked as the platform checks them all;
every other setting must equal the platform's (the Pulumi CLI requires them on every stack of the project,
pulumi/pulumi@v3.259.0 pkg/workspace/config.go:302-325, and a profile's objects are built from them: a tenancy
stack whose mesh or gateway settings differ would write other policies than the platform's trace judged).
What is known only once the platform is deployed (its OIDC provider, the release's header forwarders and kfam's
user) comes from the platform stack's outputs through `pulumi.StackReference` (components/tenancy.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

PROJECT = "kubeflow-platform"
#: The program's directory: the stack files sit beside `Pulumi.yaml` and `__main__.py`.
PROGRAM_DIR = Path(__file__).resolve().parent.parent


def project_directory() -> Path:
    """Where the stack files are: the project root the engine names (`pulumi.get_root_directory()`, the location
    of Pulumi.yaml: pulumi/pulumi@v3.259.0 sdk/python/lib/pulumi/runtime/settings.py:212-216), else this program's."""
    import pulumi

    root = pulumi.get_root_directory()
    return Path(root) if root and (Path(root) / "Pulumi.yaml").is_file() else PROGRAM_DIR
#: A tenancy stack's own `tenancy` keys; everything else of `tenancy` is the platform's.
OWN_TENANCY_KEYS = ("platform", "part")
#: Settings a tenancy stack may set apart from its platform: which release file it reads offline.
PER_STACK_KUBEFLOW_KEYS = ("manifests", "version")
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
#: A `platform` key, in block or flow style, quoted or not; `kubeflow-platform:` (every key's namespace) is not one.
_NAMES_A_PLATFORM = re.compile(r"(?<![-\w])[\"']?platform[\"']?\s*:")


def platform_stack_name(reference: str) -> str:
    """The stack name of `<organization>/kubeflow-platform/<stack>`."""
    return reference.rsplit("/", 1)[-1]


def is_tenancy_stack(raw_tenancy: Any) -> bool:
    return isinstance(raw_tenancy, Mapping) and raw_tenancy.get("platform") is not None


def stack_file_config(path: Path) -> dict[str, Any]:
    """The `config:` mapping of a stack file (empty when it has none)."""
    from manifests import yaml_loader

    documents = yaml_loader.load_all(path.read_bytes())
    document = (documents or [None])[0] or {}
    config = document.get("config") if isinstance(document, Mapping) else None
    return dict(config) if isinstance(config, Mapping) else {}


def _project_defaults(directory: Path) -> dict[str, Any]:
    project = yaml.load((directory / "Pulumi.yaml").read_text(), Loader=_LOADER) or {}
    return {key: declaration["default"] for key, declaration in (project.get("config") or {}).items()
            if isinstance(declaration, Mapping) and "default" in declaration}


def _comparable(key: str, value: Any) -> Any:
    if key == "kubeflow" and isinstance(value, Mapping):
        return {k: v for k, v in value.items() if k not in PER_STACK_KUBEFLOW_KEYS}
    return value


def tenancy_stack_raw(stack: str, raw: Mapping[str, Any], keys: list[str],
                      directory: Path | None = None) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The raw settings a tenancy stack runs with: its own, with `tenancy` replaced by the platform stack's
    (plus `platform` and `part`), and the problems of the stack as a tenancy stack, all at once: own tenancy keys
    besides platform and part, settings that differ from the platform's, an unreadable platform stack file, and
    another stack file holding the same part."""
    directory = directory or project_directory()
    own = dict(raw["tenancy"])
    reference = str(own["platform"])
    platform = platform_stack_name(reference)
    platform_file = directory / f"Pulumi.{platform}.yaml"
    problems: list[tuple[str, str]] = []
    for key in sorted(own):
        if key not in OWN_TENANCY_KEYS:
            problems.append((f"tenancy.{key}", (
                f"a tenancy stack's users, groups and profiles are its platform stack's ({platform_file.name}); "
                "remove it here and set it there")))
    if platform == stack:
        problems.append(("tenancy.platform", "names this stack itself; name the platform stack whose profiles it holds"))
        return dict(raw), problems
    if not platform_file.is_file():
        problems.append(("tenancy.platform", (
            f"no stack file {platform_file.name} beside this one: a tenancy stack reads its profiles from its platform "
            "stack's file in the same project directory")))
        return dict(raw), problems
    try:
        platform_config = stack_file_config(platform_file)
    except (yaml.YAMLError, ValueError, OSError) as error:
        problems.append(("tenancy.platform", f"{platform_file.name} cannot be read: {error}"))
        return dict(raw), problems
    defaults = _project_defaults(directory)
    for key in keys:
        if key == "tenancy":
            continue
        theirs = platform_config.get(f"{PROJECT}:{key}", defaults.get(key))
        if _comparable(key, raw.get(key, defaults.get(key))) != _comparable(key, theirs):
            problems.append((key, (
                f"differs from {platform_file.name}'s: a tenancy stack shares every setting of its platform stack but "
                f"tenancy (its profiles' objects are built from them); copy {key} from there "
                f"(`python -m tools.tenancy_stacks --platform {platform}` writes the tenancy stack files)")))
    platform_tenancy = platform_config.get(f"{PROJECT}:tenancy")
    merged = dict(platform_tenancy) if isinstance(platform_tenancy, Mapping) else {}
    for key in OWN_TENANCY_KEYS:
        merged.pop(key, None)
        merged[key] = own.get(key)
    problems += list(same_part_elsewhere(stack, reference, own.get("part"), directory, {platform: platform_config}))
    return {**raw, "tenancy": merged}, problems


def same_part_elsewhere(stack: str, reference: str, part: Any, directory: Path,
                        read: Mapping[str, Mapping[str, Any]] | None = None) -> Iterator[tuple[str, str]]:
    """Other stack files of the project holding the same part of the same platform stack: each of its profiles would
    be created by both stacks (the second `pulumi up` fails on objects the first created, and a removal in one
    deletes what the other still declares). `read`: stack files already parsed (stack to its config), not read again."""
    read = read or {}
    for path in sorted(directory.glob("Pulumi.*.yaml")):
        other = path.name[len("Pulumi."):-len(".yaml")]
        if other == stack:
            continue
        if other in read:
            config = read[other]
        else:
            if not _NAMES_A_PLATFORM.search(path.read_text(errors="replace")):
                continue  # no `platform` key: not a tenancy stack, and parsing a platform's thousands of profiles is dear
            try:
                config = stack_file_config(path)
            except (yaml.YAMLError, ValueError):
                continue  # that stack's own preview reports its file
        tenancy = config.get(f"{PROJECT}:tenancy")
        if is_tenancy_stack(tenancy) and tenancy.get("platform") == reference and str(tenancy.get("part")) == str(part):
            yield "tenancy.part", (
                f"stack {other!r} ({path.name}) holds part {str(part)!r} of {reference} too: its profiles would be in "
                f"both stacks {stack!r} and {other!r}; give one of them another part or remove its stack file")


@dataclass(frozen=True)
class OtherParts:
    """What a tenancy stack keeps of its platform's profiles in other parts: only what the rules across parts compare
    (a name or an owner in two parts, data-lake prefixes that overlap, a machine identity granted in some profile).
    Those profiles are checked in full by the platform stack and by the tenancy stack that holds them."""

    part: str
    """This stack's part."""
    indices: tuple[int, ...]
    """The index in the platform's tenancy.profiles of each profile of this part, in order."""
    names: Mapping[str, str]
    """Name to where it is (`part 3`), of the other parts' profiles."""
    owners: Mapping[str, str]
    """Owner to where the profile is (`part 3`), of the other parts' profiles."""
    granted: frozenset[str]
    """Owners and contributing users of the other parts' profiles."""
    lakes: tuple[tuple[str, str, str], ...]
    """(who, bucket, prefix) of the other parts' data lakes, as data_lake_overlaps takes them."""


def _raw_parts(profiles: list[Any], stacks: Any) -> list[str | None] | None:
    """Each raw profile's part, as config.access.tenancy_parts places the validated ones; None where only the full
    check can tell (a setting or a profile it would refuse)."""
    from config.access import TenancyStacksSettings
    from config.loader import Problems, from_raw

    problems = Problems()
    settings = from_raw(TenancyStacksSettings, stacks, "stacks", problems)
    if settings is None or problems:
        return None
    if not all(isinstance(profile, Mapping) and isinstance(profile.get("name"), str) for profile in profiles):
        return None
    if settings.by == "count":
        size = settings.size or len(profiles) or 1
        return [str(i // size + 1) for i in range(len(profiles))]
    parts: list[str | None] = []
    for profile in profiles:
        labels = profile.get("labels")
        if labels is None:
            parts.append(None)
            continue
        if not isinstance(labels, Mapping):
            return None
        value = labels.get(settings.label)
        if value is not None and not isinstance(value, str):
            return None
        parts.append(value)
    return parts


def _part_label(part: str | None) -> str:
    return f"part {part}" if part is not None else "no part"


def own_part(tenancy: Mapping[str, Any]) -> tuple[Mapping[str, Any], OtherParts | None]:
    """A tenancy stack's raw tenancy settings with only its part's profiles, and what it keeps of the others
    (OtherParts); unchanged, with None, where the part cannot be told before the full check (a wrong tenancy.stacks,
    a part the platform does not have, a profile without a name), so that check reports it as on the platform."""
    profiles, part = tenancy.get("profiles"), str(tenancy.get("part"))
    if not is_tenancy_stack(tenancy) or not isinstance(profiles, list):
        return tenancy, None
    parts = _raw_parts(profiles, tenancy.get("stacks"))
    if parts is None or part not in parts:
        return tenancy, None
    names: dict[str, str] = {}
    owners: dict[str, str] = {}
    granted: set[str] = set()
    lakes: list[tuple[str, str, str]] = []
    for profile, where in zip(profiles, parts):
        if where == part:
            continue
        # A profile in no part (by group, without the label) is the platform's problem; its name and owner still
        # take part in the rules, as they would in the platform's check.
        name = profile["name"]
        names.setdefault(name, _part_label(where))
        owner = profile.get("owner")
        if isinstance(owner, str):
            owners.setdefault(owner, _part_label(where))
            granted.add(owner)
        for contributor in profile.get("contributors") or ():
            if isinstance(contributor, Mapping) and isinstance(contributor.get("user"), str):
                granted.add(contributor["user"])
        lake = profile.get("dataLake")
        if isinstance(lake, Mapping) and isinstance(lake.get("bucket"), str) and isinstance(lake.get("prefix"), str):
            lakes.append((f"profile {name!r} ({_part_label(where)})", lake["bucket"], lake["prefix"]))
    indices = tuple(i for i, where in enumerate(parts) if where == part)
    other = OtherParts(part=part, indices=indices, names=names, owners=owners, granted=frozenset(granted),
                       lakes=tuple(lakes))
    return {**tenancy, "profiles": [profiles[i] for i in indices]}, other
