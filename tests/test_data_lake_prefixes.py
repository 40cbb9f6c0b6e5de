"""Data-lake prefixes never share keys: each profile's role reaches its whole prefix, so equal or nested
prefixes, or a prefix of the platform's own (KFP's `pipelines` and `v2`, Argo's `artifacts`), would hand
one profile another's data. Refused at load, every problem at once, each under its profile's key path."""

from __future__ import annotations

import copy

import pulumi
import pytest

from tests.conftest import run_stack
from tools.mock_runtime import stack_config


def _tenancy_with(prefixes: dict[int, str], bucket: str = "pipelines") -> dict:
    tenancy = copy.deepcopy(stack_config("dev")["kubeflow-platform:tenancy"])
    for index, prefix in prefixes.items():
        tenancy["profiles"][index]["dataLake"] = {"bucket": bucket, "prefix": prefix}
    return {"tenancy": tenancy}


def _refused(overrides: dict) -> list[str]:
    with pytest.raises(pulumi.RunError) as caught:
        run_stack("dev", overrides)
    assert caught.value.program_run.resources == [], "resources were registered despite bad settings"
    message = str(caught.value)
    assert "Traceback" not in message
    return [line.removeprefix("  - ") for line in message.splitlines() if line.startswith("  - ")]


@pytest.mark.parametrize("prefixes,expected", [
    ({0: "profiles", 1: "profiles/bob"}, [
        "tenancy.profiles[0].dataLake.prefix: 'profiles' contains 'profiles/bob' of tenancy.profiles[1].dataLake",
        "tenancy.profiles[1].dataLake.prefix: 'profiles/bob' lies inside 'profiles' of tenancy.profiles[0].dataLake",
    ]),
    ({0: "profiles/shared", 1: "/profiles/shared/"}, [
        "tenancy.profiles[0].dataLake.prefix: 'profiles/shared' is the same prefix as 'profiles/shared' of tenancy.profiles[1].dataLake",
        "tenancy.profiles[1].dataLake.prefix: 'profiles/shared' is the same prefix as 'profiles/shared' of tenancy.profiles[0].dataLake",
    ]),
    ({0: "v2"}, ["tenancy.profiles[0].dataLake.prefix: 'v2' is the same prefix as the platform's prefix 'v2' (KFP v2 artifacts"]),
    ({0: "artifacts"}, ["tenancy.profiles[0].dataLake.prefix: 'artifacts' is the same prefix as the platform's prefix 'artifacts' (Argo"]),
    ({0: "pipelines/alice"}, ["tenancy.profiles[0].dataLake.prefix: 'pipelines/alice' lies inside the platform's prefix 'pipelines' (KFP pipeline packages"]),
    ({0: "profiles/*"}, ["tenancy.profiles[0].dataLake.prefix: 'profiles/*': use letters, digits"]),
    ({0: "/"}, ["tenancy.profiles[0].dataLake.prefix: '/' names no prefix"]),
], ids=["nested", "identical", "kfp v2", "argo artifacts", "kfp packages", "wildcard", "only slashes"])
def test_a_data_lake_prefix_that_shares_keys_is_refused_under_each_profiles_key(prefixes, expected):
    problems = _refused(_tenancy_with(prefixes))
    for line in expected:
        assert any(problem.startswith(line) for problem in problems), problems
    assert len(problems) == len(expected), problems


def test_every_overlap_is_reported_at_once():
    problems = _refused(_tenancy_with({0: "v2", 1: "pipelines/bob"}))
    assert [p.split(":")[0] for p in problems] == ["tenancy.profiles[0].dataLake.prefix", "tenancy.profiles[1].dataLake.prefix"]


def test_stems_and_other_buckets_do_not_overlap():
    # profiles/al is not inside profiles/alice (the roles list `<prefix>/` only); another bucket shares no keys.
    run = run_stack("dev", _tenancy_with({0: "profiles/al", 1: "profiles/alice"}))
    assert run.named("aws:iam/role:Role", "tenancy-alice-data-lake")
    # The platform's prefixes are the pipelines bucket's: the same name in another bucket is a profile's own.
    tenancy = _tenancy_with({0: "v2"}, bucket="example-ml-dev-elsewhere")
    tenancy["tenancy"]["dataLakeBuckets"] = ["example-ml-dev-elsewhere"]  # a bucket outside the stack must be listed
    elsewhere = run_stack("dev", tenancy)
    assert elsewhere.named("aws:iam/role:Role", "tenancy-alice-data-lake")
