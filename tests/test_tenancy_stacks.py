"""Tenancy stacks: a platform stack places its profiles in parts, each part a stack of its own that previews,
diffs and deploys alone, reading the platform's outputs through a StackReference."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

import config
from analysis.tenancy_moves import PLATFORM, WHAT_HAPPENS, places, profile_moves
from config.access import TenancySettings, tenancy_parts
from config.loader import Problems, from_raw
from config.tenancy_stacks import same_part_elsewhere, tenancy_stack_raw
from tests.conftest import shared_run
from tests.stack_files import copy_program, preview_in_process, stack_document
from tools import diff as plan_diff
from tools.bench_case import generated_tenancy
from tools.mock_runtime import StackReferenceError, stack_reference_outputs
from tools.plan import build_plan, kubernetes_objects, load_plan
from tools.tenancy_stacks import tenancy_stack_documents, write_generated_split, write_tenancy_stacks

PROJECT = "kubeflow-platform"


def tenancy_of(raw: dict) -> tuple[TenancySettings | None, list[str]]:
    problems = Problems()
    return from_raw(TenancySettings, raw, "tenancy", problems), problems.lines


# --- Placing profiles in parts (pure) -------------------------------------------------------------------


def test_by_count_places_10000_profiles_in_10_parts_of_1000_in_listed_order():
    raw = generated_tenancy(10_000)
    raw["stacks"] = {"by": "count", "size": 1000}
    tenancy, problems = tenancy_of(raw)
    assert problems == []
    parts = tenancy_parts(tenancy)
    assert list(parts) == [str(n) for n in range(1, 11)]
    assert all(len(names) == 1000 for names in parts.values())
    assert parts["1"][0] == "user0000" and parts["10"][-1] == "user9999"
    assert [name for names in parts.values() for name in names] == [p["name"] for p in raw["profiles"]]


def test_by_count_puts_the_rest_in_the_last_part():
    raw = generated_tenancy(25)
    raw["stacks"] = {"by": "count", "size": 10}
    tenancy, _ = tenancy_of(raw)
    assert [len(names) for names in tenancy_parts(tenancy).values()] == [10, 10, 5]


def test_by_group_places_each_profile_by_its_label_and_refuses_a_profile_without_it():
    raw = generated_tenancy(4)
    raw["stacks"] = {"by": "group", "label": "team"}
    for profile, team in zip(raw["profiles"], ("vision", "speech", "vision")):
        profile["labels"] = {"team": team}
    _, problems = tenancy_of(raw)
    assert problems == ["tenancy.profiles[3].labels: has no 'team' label, whose value names the profile's tenancy stack "
                        "(tenancy.stacks.by group); add it"]
    raw["profiles"][3]["labels"] = {"team": "speech"}
    tenancy, problems = tenancy_of(raw)
    assert problems == []
    assert tenancy_parts(tenancy) == {"speech": ("user0001", "user0003"), "vision": ("user0000", "user0002")}


@pytest.mark.parametrize("stacks, expected", [
    ({"by": "count"}, ["tenancy.stacks.size: required with by count: how many profiles each tenancy stack holds (like 1000)"]),
    ({"by": "group"}, ["tenancy.stacks.label: required with by group: the profiles' label whose value names their tenancy stack (like team)"]),
    ({"by": "count", "size": 10, "label": "team"}, ["tenancy.stacks.label: applies only with by group; remove it"]),
    ({"by": "count", "size": 0}, ["tenancy.stacks.size: 0 is outside 1..5000"]),
    ({"by": "region"}, ["tenancy.stacks.by: 'region' is not one of 'count', 'group'"]),
])
def test_a_wrong_tenancy_stacks_setting_is_refused_with_its_key(stacks, expected):
    raw = generated_tenancy(3)
    raw["stacks"] = stacks
    _, problems = tenancy_of(raw)
    assert problems == expected


def test_a_tenancy_stack_names_its_platform_as_a_stack_reference_does():
    _, problems = tenancy_of({"platform": "dev", "part": 1})
    assert problems == ["tenancy.platform: 'dev' is not a stack of this project as StackReference names one: "
                        "<organization>/kubeflow-platform/<stack> (like organization/kubeflow-platform/dev)"]
    _, problems = tenancy_of({"platform": "organization/kubeflow-platform/dev"})
    assert problems == ["tenancy.part: a tenancy stack names both its platform stack (platform) and its part (part)"]


# --- Tenancy stack files --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> Path:
    """The program with dev's profiles placed two by two in tenancy stacks (dev-tenancy-1, -2), dev previewed."""
    program = copy_program(tmp_path_factory.mktemp("split"))
    document = stack_document("dev")
    document["config"][f"{PROJECT}:tenancy"]["stacks"] = {"by": "count", "size": 2}
    (program / "Pulumi.dev.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    write_tenancy_stacks(program, "dev")
    status, stderr = preview_in_process(program, "dev", program / "build" / "dev")
    assert status == 0, stderr
    return program


def dev_profiles() -> list[str]:
    return [p["name"] for p in stack_document("dev")["config"][f"{PROJECT}:tenancy"]["profiles"]]


def test_the_tenancy_stack_files_hold_the_platform_settings_but_tenancy_and_no_encrypted_value(split):
    platform = yaml.safe_load((split / "Pulumi.dev.yaml").read_text())["config"]
    names = sorted(p.name for p in split.glob("Pulumi.dev-tenancy-*.yaml"))
    assert names == [f"Pulumi.dev-tenancy-{n}.yaml" for n in range(1, (len(dev_profiles()) + 1) // 2 + 1)]
    first = yaml.safe_load((split / "Pulumi.dev-tenancy-1.yaml").read_text())["config"]
    assert first[f"{PROJECT}:tenancy"] == {"platform": "organization/kubeflow-platform/dev", "part": 1}
    shared = {k: v for k, v in platform.items() if k != f"{PROJECT}:tenancy" and not (isinstance(v, dict) and "secure" in v)}
    assert {k: v for k, v in first.items() if k != f"{PROJECT}:tenancy"} == shared


def test_the_platform_creates_no_profile_and_exports_its_parts(split):
    plan = load_plan(split / "build" / "dev")
    names = dev_profiles()
    assert plan["outputs"]["profiles"] == []
    assert plan["outputs"]["tenancyParts"] == {str(n // 2 + 1): names[n:n + 2] for n in range(0, len(names), 2)}
    assert not [r for r in plan["resources"] if r["name"].startswith(tuple(f"tenancy-{n}-" for n in names))]
    # Who may create profiles at run time stays the platform's.
    assert [r["name"] for r in plan["resources"] if r["name"] == "tenancy-registration"] == ["tenancy-registration"]


def test_the_platform_declares_no_cowriter_for_the_namespaces_of_profiles_it_places_elsewhere(split):
    # Its outputs are read whole by every tenancy stack's StackReference: with 10,000 profiles, a cowriter entry per
    # profile made them megabytes, which each tenancy stack's program walked, though the platform writes none of them.
    outputs = load_plan(split / "build" / "dev")["outputs"]
    namespaces = {entry["name"] for entry in outputs["ownership"]["cowriters"] if entry["kind"] == "Namespace"}
    assert not namespaces & set(dev_profiles())
    unsplit = build_plan(shared_run("dev"))[0]["outputs"]["ownership"]["cowriters"]
    assert set(dev_profiles()) <= {entry["name"] for entry in unsplit if entry["kind"] == "Namespace"}


def _profile_objects(plan: dict, profile: str) -> list[str]:
    return sorted(json.dumps(o.obj, sort_keys=True) for o in kubernetes_objects(plan).objects
                  if (o.obj.get("metadata") or {}).get("namespace") == profile
                  or (o.obj.get("kind") == "Namespace" and o.obj["metadata"]["name"] == profile))


def _profile_resources(plan: dict, profile: str, preview_of: dict | None = None) -> dict[tuple, dict]:
    """The profile's resources; with `preview_of` (a preview's plan) without the inputs it leaves to deploy (the
    preview's role id), so a preview compares with a run that knows them."""
    found = {(r["type"], r["name"]): {"inputs": r["inputs"], "options": r["options"]} for r in plan["resources"]
             if r["name"].startswith(f"tenancy-{profile}-")}
    if preview_of is not None:
        unknown = {(key, field) for key, resource in _profile_resources(preview_of, profile).items()
                   for field, value in resource["inputs"].items() if value == "(known after deploy)"}
        for key, resource in found.items():
            resource["inputs"] = {f: v for f, v in resource["inputs"].items() if (key, f) not in unknown}
    return found


def test_a_tenancy_stack_creates_its_part_with_the_objects_the_unsplit_platform_creates(split):
    status, stderr = preview_in_process(split, "dev-tenancy-1", split / "build" / "dev-tenancy-1")
    assert status == 0, stderr
    part = load_plan(split / "build" / "dev-tenancy-1")
    unsplit = build_plan(shared_run("dev"))[0]
    first, second = dev_profiles()[:2], dev_profiles()[2:]
    assert part["outputs"]["profiles"] == first
    assert part["outputs"]["tenancyPart"] == {"platform": "organization/kubeflow-platform/dev", "part": "1"}
    for profile in first:
        assert _profile_objects(part, profile) and _profile_objects(part, profile) == _profile_objects(unsplit, profile)
        # Role names and ARNs are the platform's: a profile's role is the same whichever stack holds it.
        assert _profile_resources(part, profile, part) == _profile_resources(unsplit, profile, part)
    for profile in second:
        assert not _profile_resources(part, profile)
    assert not [r for r in part["resources"] if r["type"].startswith("kubeflow-platform:") and r["name"] not in ("tenancy", "identity")]


def test_a_tenancy_stack_reads_the_platform_outputs_through_a_stack_reference(split):
    outputs, secret = stack_reference_outputs("organization/kubeflow-platform/dev", split / "build")
    saved = load_plan(split / "build" / "dev")["outputs"]
    assert outputs["tenancyPlatform"] == saved["tenancyPlatform"]
    assert outputs["tenancyPlatform"]["headerForwarders"] and outputs["clusterOidcIssuer"].startswith("https://oidc.eks.")
    # Values a preview knows only after deploy are left out (one would make every read through it unknown).
    assert all("(known after deploy)" not in json.dumps(value) for value in outputs.values())
    assert secret == sorted(k for k, v in saved.items() if v == "[secret]")


def test_a_tenancy_stack_previewed_before_its_platform_is_told_to_preview_the_platform_first(split, tmp_path):
    program = copy_program(tmp_path / "program")
    for path in split.glob("Pulumi.*.yaml"):
        shutil.copy2(path, program / path.name)
    status, stderr = preview_in_process(program, "dev-tenancy-2", program / "build" / "dev-tenancy-2")
    assert status == 1
    assert "stack reference 'organization/kubeflow-platform/dev': no saved preview of stack 'dev' (build/dev/plan.json); preview it first: make preview STACK=dev" in stderr
    with pytest.raises(StackReferenceError):
        stack_reference_outputs("organization/kubeflow-platform/dev", program / "build")


def test_the_part_s_profiles_are_traced_through_the_platform(split):
    status, stderr = preview_in_process(split, "dev-tenancy-2", split / "build" / "dev-tenancy-2")
    assert status == 0, stderr
    # The preview's stdout is not kept by preview_in_process: trace the saved plans as the preview does.
    from tools.preview import mesh_trace, traced_plan

    table, problems = mesh_trace(traced_plan(load_plan(split / "build" / "dev-tenancy-2"), split))
    assert problems == []
    for profile in dev_profiles()[2:4]:
        assert f"/notebook/{profile}/" in table
    assert f"/notebook/{dev_profiles()[0]}/" not in table


def _load_errors(program: Path, stack: str) -> str:
    status, stderr = preview_in_process(program, stack, program / "build" / stack)
    assert status == 1
    return stderr


def test_one_part_in_two_stacks_is_refused_naming_both(split, tmp_path):
    program = copy_program(tmp_path / "program")
    for path in split.glob("Pulumi.*.yaml"):
        shutil.copy2(path, program / path.name)
    shutil.copy2(program / "Pulumi.dev-tenancy-1.yaml", program / "Pulumi.dev-research.yaml")
    stderr = _load_errors(program, "dev-research")
    assert ("tenancy.part: stack 'dev-tenancy-1' (Pulumi.dev-tenancy-1.yaml) holds part '1' of "
            "organization/kubeflow-platform/dev too: its profiles would be in both stacks 'dev-research' and "
            "'dev-tenancy-1'; give one of them another part or remove its stack file") in stderr


def test_one_part_in_two_stacks_is_refused_whatever_the_yaml_style_of_the_other_file(tmp_path):
    (tmp_path / "Pulumi.dev.yaml").write_text("config:\n  kubeflow-platform:tenancy:\n    users: []\n")
    (tmp_path / "Pulumi.dev-a.yaml").write_text(
        '{"config": {"kubeflow-platform:tenancy": {"platform": "organization/kubeflow-platform/dev", "part": 3}}}\n')
    (tmp_path / "Pulumi.dev-b.yaml").write_text(
        "config:\n  kubeflow-platform:tenancy: {platform: organization/kubeflow-platform/dev, part: 3}\n")
    found = list(same_part_elsewhere("dev-c", "organization/kubeflow-platform/dev", 3, tmp_path))
    assert [message.split(" (")[0] for _, message in found] == ["stack 'dev-a'", "stack 'dev-b'"]


def test_a_tenancy_stack_parses_its_platform_stack_file_once(split, monkeypatch):
    import config.tenancy_stacks as tenancy_stacks

    parsed: list[str] = []
    real = tenancy_stacks.stack_file_config
    monkeypatch.setattr(tenancy_stacks, "stack_file_config", lambda path: parsed.append(path.name) or real(path))
    own = {key.split(":", 1)[1]: value for key, value in
           yaml.safe_load((split / "Pulumi.dev-tenancy-1.yaml").read_text())["config"].items()}
    _, problems = tenancy_stack_raw("dev-tenancy-1", own, list(config.settings_keys()), split)
    assert problems == []
    # The platform's file (thousands of profiles at scale) once; the other tenancy stacks' small files for their part.
    assert parsed.count("Pulumi.dev.yaml") == 1
    assert sorted(parsed) == sorted(["Pulumi.dev.yaml", *(p.name for p in split.glob("Pulumi.dev-tenancy-*.yaml")
                                                          if p.name != "Pulumi.dev-tenancy-1.yaml")])


def test_a_tenancy_stack_that_differs_from_its_platform_or_names_no_part_of_it_gets_every_problem(split, tmp_path):
    program = copy_program(tmp_path / "program")
    for path in split.glob("Pulumi.*.yaml"):
        shutil.copy2(path, program / path.name)
    document = yaml.safe_load((program / "Pulumi.dev-tenancy-1.yaml").read_text())
    document["config"][f"{PROJECT}:auth"]["userIdPrefix"] = "oidc:"
    document["config"][f"{PROJECT}:tenancy"].update(part=9, users=["eve@example.com"])
    (program / "Pulumi.dev-tenancy-1.yaml").write_text(yaml.safe_dump(document))
    stderr = _load_errors(program, "dev-tenancy-1")
    assert "auth: differs from Pulumi.dev.yaml's: a tenancy stack shares every setting of its platform stack but tenancy" in stderr
    assert ("tenancy.users: a tenancy stack's users, groups and profiles are its platform stack's (Pulumi.dev.yaml); "
            "remove it here and set it there") in stderr
    parts = ", ".join(str(n) for n in range(1, (len(dev_profiles()) + 1) // 2 + 1))
    assert f"tenancy.part: '9' is not a part of organization/kubeflow-platform/dev (tenancy.stacks by count): its parts are {parts}" in stderr
    assert "Traceback" not in stderr


def test_a_platform_without_tenancy_stacks_has_no_parts_to_hold(tmp_path):
    program = copy_program(tmp_path / "program")
    (program / "Pulumi.dev.yaml").write_text(yaml.safe_dump(stack_document("dev")))
    document = stack_document("dev")
    document["config"][f"{PROJECT}:tenancy"] = {"platform": "organization/kubeflow-platform/dev", "part": 1}
    (program / "Pulumi.dev-tenancy-1.yaml").write_text(yaml.safe_dump(document))
    stderr = _load_errors(program, "dev-tenancy-1")
    assert ("tenancy.platform: organization/kubeflow-platform/dev places no profiles in tenancy stacks: set "
            "tenancy.stacks on it (by count or by group), or remove tenancy.platform and tenancy.part here") in stderr


def test_the_generated_10000_profile_split_gives_each_of_10_tenancy_stacks_its_1000_profiles(tmp_path):
    stacks = write_generated_split(tmp_path, profiles=10_000, size=1_000)
    assert stacks == [f"dev-tenancy-{n}" for n in range(1, 11)]
    (tmp_path / "Pulumi.yaml").write_text((Path(config.__file__).parent.parent / "Pulumi.yaml").read_text())
    keys = list(config.settings_keys())
    seen: list[str] = []
    for n, stack in enumerate(stacks, start=1):
        own = {key.split(":", 1)[1]: value for key, value in
               yaml.load((tmp_path / f"Pulumi.{stack}.yaml").read_text(), Loader=yaml.CSafeLoader)["config"].items()}
        raw, problems = tenancy_stack_raw(stack, own, keys, tmp_path)
        assert problems == []
        tenancy, problems = tenancy_of(raw["tenancy"])
        assert problems == []
        names = tenancy_parts(tenancy)[str(tenancy.part)]
        assert len(names) == 1000 and names[0] == f"user{(n - 1) * 1000:04d}"
        seen += names
    assert len(seen) == len(set(seen)) == 10_000


# --- Moving profiles between stacks ---------------------------------------------------------------------


def _platform_plan(profiles: list[str], parts: dict[str, list[str]] | None = None) -> dict:
    outputs: dict = {"profiles": profiles}
    if parts is not None:
        outputs["tenancyParts"] = parts
    return {"stack": "dev", "resources": [], "outputs": outputs}


def test_moving_a_profile_between_stacks_is_shown_as_delete_and_create_with_what_happens():
    before = _platform_plan([], {"1": ["alice", "bob"], "2": ["carol"]})
    after = _platform_plan([], {"1": ["alice"], "2": ["bob", "carol"]})
    moves = profile_moves(before, after)
    assert [(m.source, m.destination, m.profiles) for m in moves] == [("part 1", "part 2", ("bob",))]
    lines = plan_diff.render(plan_diff.diff_plans(before, after), "before", "after").splitlines()
    start = lines.index("Profiles moving between stacks: 1")
    assert lines[start + 1] == "  > 1 from part 1 to part 2: bob"
    assert [line.strip() for line in lines[start + 2:start + 2 + len(WHAT_HAPPENS)]] == list(WHAT_HAPPENS)
    assert "`pulumi state move`" in WHAT_HAPPENS[2] and "`aliases`" in WHAT_HAPPENS[2]


def test_splitting_a_stack_shows_every_profile_leaving_the_platform():
    before = _platform_plan(["alice", "bob", "carol"])
    after = _platform_plan([], {"1": ["alice", "bob"], "2": ["carol"]})
    assert places(before) == {name: PLATFORM for name in ("alice", "bob", "carol")}
    moves = profile_moves(before, after)
    assert [(m.destination, m.profiles) for m in moves] == [("part 1", ("alice", "bob")), ("part 2", ("carol",))]
    assert profile_moves(after, after) == []
    # A diff of plans that move nothing says nothing about moves.
    assert "Profiles moving" not in plan_diff.render(plan_diff.diff_plans(after, after), "a", "b")


# --- A tenancy stack checks its part in full, and of the others what the rules across parts compare ---------


@pytest.fixture(scope="module")
def generated_split(tmp_path_factory) -> Path:
    """Stack files of the generated 10,000-profile dev split into 10 tenancy stacks of 1,000 (no preview)."""
    directory = tmp_path_factory.mktemp("generated-split")
    write_generated_split(directory, profiles=10_000, size=1_000)
    (directory / "Pulumi.yaml").write_text((Path(config.__file__).parent.parent / "Pulumi.yaml").read_text())
    return directory


def _load_tenancy_stack(directory: Path, stack: str, change=None):
    """The settings of `stack` as the program loads them, after `change` edited the platform's tenancy settings."""
    platform = yaml.load((directory / "Pulumi.dev.yaml").read_text(), Loader=yaml.CSafeLoader)
    if change is not None:
        change(platform["config"][f"{PROJECT}:tenancy"])
        directory = directory / "changed"
        directory.mkdir(exist_ok=True)
        for path in directory.parent.glob("Pulumi*.yaml"):
            shutil.copy2(path, directory / path.name)
        (directory / "Pulumi.dev.yaml").write_text(yaml.dump(platform, Dumper=yaml.CSafeDumper, sort_keys=False))
    own = {key.split(":", 1)[1]: value for key, value in
           yaml.load((directory / f"Pulumi.{stack}.yaml").read_text(), Loader=yaml.CSafeLoader)["config"].items()}
    raw, problems = tenancy_stack_raw(stack, own, list(config.settings_keys()), directory)
    return config.parse(raw, config.Secrets(), set(config.SECRET_KEYS), stack, stack_problems=problems)


def _problems_of(directory: Path, stack: str, change) -> list[str]:
    with pytest.raises(config.SettingsError) as raised:
        _load_tenancy_stack(directory, stack, change)
    return raised.value.problems


def test_a_tenancy_stack_holds_its_part_s_settings_and_an_index_of_the_other_parts(generated_split):
    settings = _load_tenancy_stack(generated_split, "dev-tenancy-3")
    names = [profile.name for profile in settings.tenancy.profiles]
    assert names == [f"user{n:04d}" for n in range(2000, 3000)]
    assert settings.profiles_created() == settings.tenancy.profiles
    other = settings.other_parts
    assert other.indices == tuple(range(2000, 3000))
    assert len(other.names) == len(other.owners) == len(other.lakes) == 9_000
    assert other.names["user5000"] == "part 6" and "user2500" not in other.names
    # The stack's machine identities contribute to a profile of part 1 only: granted there, so none is refused here.
    assert settings.auth.extra_issuers and settings.tenancy_part == "3"


def test_a_profile_of_another_part_is_checked_by_its_own_stack_and_the_platform_not_this_one(generated_split):
    def break_part_6(tenancy):
        tenancy["profiles"][5000]["owner"] = "not-an-email"
        tenancy["profiles"][5001]["quota"] = {"gpus": "many"}

    settings = _load_tenancy_stack(generated_split, "dev-tenancy-3", break_part_6)
    assert len(settings.profiles_created()) == 1000
    assert _problems_of(generated_split, "dev-tenancy-6", break_part_6) == [
        "tenancy.profiles[5000].owner: 'not-an-email' is not an email address",
        "tenancy.profiles[5001].quota.gpus: expected a whole number, got string 'many'",
    ]


def test_a_name_owner_or_data_lake_prefix_shared_with_another_part_is_refused_at_its_platform_index(generated_split):
    def clash(tenancy):
        profiles = tenancy["profiles"]
        profiles[2000]["name"] = profiles[5000]["name"]
        profiles[2001]["owner"] = profiles[7000]["owner"]
        profiles[2002]["dataLake"]["prefix"] = "profiles/user9000/sub"
        profiles[2003]["dataLake"]["prefix"] = "profiles"

    problems = _problems_of(generated_split, "dev-tenancy-3", clash)
    assert problems[:2] == [
        "tenancy.profiles[2000].name: 'user5000' is listed twice: a profile in part 6 has this name too; give each "
        "profile a name of its own",
        "tenancy.profiles[2001].owner: 'user7000@example.com' already owns another profile (in part 8)",
    ]
    assert ("tenancy.profiles[2002].dataLake.prefix: 'profiles/user9000/sub' lies inside 'profiles/user9000' of profile "
            "'user9000' (part 10) in bucket 'example-ml-dev-pipelines'; each profile's role reaches its whole prefix, so "
            "give each a prefix of its own (like profiles/<name>)") in problems
    # Against its own part and the others alike, one line per profile it overlaps (here every profile of the split).
    inside_own = [p for p in problems if p.startswith("tenancy.profiles[2003].dataLake.prefix: 'profiles' contains")]
    assert len(inside_own) == 9_999 and any("of tenancy.profiles[2002].dataLake" in p for p in inside_own)
    assert any("of profile 'user0000' (part 1)" in p for p in inside_own)


def test_a_trusted_principal_in_another_part_s_profile_namespace_is_refused():
    tenancy, problems = tenancy_of({"trustedPrincipals": ["cluster.local/ns/user5000/sa/default-editor"]})
    assert problems == []
    assert list(tenancy.tenant_principals(set())) == []
    assert [key for key, _ in tenancy.tenant_principals(set(), elsewhere=["user5000"])] == ["tenancy.trustedPrincipals[0]"]


def test_a_tenancy_stack_whose_part_only_the_full_check_can_place_is_checked_in_full(generated_split):
    def unnamed(tenancy):
        tenancy["profiles"][4000]["name"] = 42

    assert _problems_of(generated_split, "dev-tenancy-3", unnamed) == [
        "tenancy.profiles[4000].name: expected a string, got number 42: YAML reads an unquoted number; quote it as "
        'written, like "42"']


def test_a_tenancy_stack_by_group_holds_the_profiles_labelled_with_its_part(tmp_path):
    write_generated_split(tmp_path, profiles=30, size=None)
    (tmp_path / "Pulumi.yaml").write_text((Path(config.__file__).parent.parent / "Pulumi.yaml").read_text())
    platform = yaml.load((tmp_path / "Pulumi.dev.yaml").read_text(), Loader=yaml.CSafeLoader)
    tenancy = platform["config"][f"{PROJECT}:tenancy"]
    tenancy["stacks"] = {"by": "group", "label": "team"}
    for n, profile in enumerate(tenancy["profiles"]):
        profile["labels"] = {"team": "vision" if n % 3 else "speech"}
    (tmp_path / "Pulumi.dev.yaml").write_text(yaml.dump(platform, Dumper=yaml.CSafeDumper, sort_keys=False))
    write_tenancy_stacks(tmp_path, "dev")
    settings = _load_tenancy_stack(tmp_path, "dev-tenancy-speech")
    assert [profile.name for profile in settings.tenancy.profiles] == [f"user{n:04d}" for n in range(0, 30, 3)]
    assert settings.other_parts.indices == tuple(range(0, 30, 3))
    assert settings.other_parts.names["user0001"] == "part vision"
