"""A preview registers profiles in batches, each once the one before has registered: the same plan as all at once."""

from __future__ import annotations

import io

import pulumi
import pytest
from pulumi.runtime.sync_await import _sync_await

import components.tenancy as tenancy_module
from components.tenancy import Tenancy, profile_batches
from manifests.tenancy import ProfileSpec
from tests.conftest import run_stack
from tests.upstream import manifests_path
from tools.bench_case import generated_tenancy, machine_users
from tools.plan import build_plan
from tools.preview import preview

PROFILES = 7


def _tenancy() -> dict:
    return generated_tenancy(PROFILES, machine_users("dev"))


def _preview_run(monkeypatch, batch: int, seen: list | None = None, tenancies: list | None = None):
    monkeypatch.setattr(tenancy_module, "PROFILES_PER_PREVIEW_BATCH", batch)
    register_profile, construct = Tenancy._profile, Tenancy.__init__

    def profile(self, name, spec, args):
        if seen is not None:
            # What the monitor had recorded when this profile's registration began.
            seen.append((spec.name, {r.name for r in pulumi.runtime.settings.get_monitor().registrations}))
        return register_profile(self, name, spec, args)

    def init(self, *args, **kwargs):
        construct(self, *args, **kwargs)
        if tenancies is not None:
            tenancies.append(self)

    monkeypatch.setattr(Tenancy, "_profile", profile)
    monkeypatch.setattr(Tenancy, "__init__", init)
    return run_stack("dev", {"tenancy": _tenancy()}, preview=True)


def test_batches_are_the_preview_batch_size_in_a_preview_and_one_in_an_update(monkeypatch):
    monkeypatch.setattr(tenancy_module, "PROFILES_PER_PREVIEW_BATCH", 3)
    profiles = [ProfileSpec(name=f"p{i}", owner=f"p{i}@example.com") for i in range(PROFILES)]
    assert [len(batch) for batch in profile_batches(profiles, dry_run=True)] == [3, 3, 1]
    assert profile_batches(profiles, dry_run=False) == [profiles]
    assert profile_batches([], dry_run=True) == [()]


def test_each_batch_is_registered_once_every_resource_of_the_batches_before_it_has_been(monkeypatch):
    seen: list = []
    run = _preview_run(monkeypatch, 2, seen)
    names = [name for name, _ in seen]
    assert names == [f"user{i:04d}" for i in range(PROFILES)]
    own = {name: {r.name for r in run.resources if r.name.startswith(f"tenancy-{name}-")} for name in names}
    assert all(len(own[name]) == 7 for name in names)  # Pod Identity: patch, group, policy patch, role, policy, 2 associations
    for index, (name, registered) in enumerate(seen):
        earlier = {resource for previous in names[: index - index % 2] for resource in own[previous]}
        assert earlier <= registered, f"{name} began before {sorted(earlier - registered)[:3]} were registered"
    # The first batch is registered with the rest of the program, before the SDK has sent any of it.
    assert not any(own[name] & registered for name, registered in seen[:2] for name in names)


def test_the_plan_of_a_batched_preview_is_the_plan_of_one_batch(monkeypatch):
    tenancies: list = []
    batched = _preview_run(monkeypatch, 2, tenancies=tenancies)
    whole = _preview_run(monkeypatch, 1000, tenancies=tenancies)
    assert len(batched.resources) == len(whole.resources)
    assert build_plan(batched) == build_plan(whole)
    # Every profile's role ARN is the component's output, also for the profiles registered after it was constructed.
    arns = [{name: _sync_await(arn.future()) for name, arn in tenancy.data_lake_role_arns.items()} for tenancy in tenancies]
    roles = {r.inputs["name"] for r in batched.of_type("aws:iam/role:Role") if r.name.startswith("tenancy-")}
    assert arns[0] == arns[1] and len(arns[0]) == PROFILES
    assert {arn.rsplit("/", 1)[-1] for arn in arns[0].values()} == roles


def test_an_error_registering_a_later_batch_fails_the_preview_with_its_message(monkeypatch, tmp_path):
    monkeypatch.setattr(tenancy_module, "PROFILES_PER_PREVIEW_BATCH", 2)
    static_objects = tenancy_module.static_objects

    def refusing(profile, mesh):
        if profile.name == "user0005":
            raise pulumi.RunError("profile user0005: refused while registering its batch")
        return static_objects(profile, mesh)

    monkeypatch.setattr(tenancy_module, "static_objects", refusing)
    with pytest.raises(pulumi.RunError, match="profile user0005: refused while registering its batch"):
        run_stack("dev", {"tenancy": _tenancy()}, preview=True)
    stderr = io.StringIO()
    status = preview("dev", manifests=str(manifests_path()), out=tmp_path / "dev", settings={"tenancy": _tenancy()},
                     stdout=io.StringIO(), stderr=stderr)
    assert status == 1
    assert "error: profile user0005: refused while registering its batch" in stderr.getvalue()
    assert "Traceback" not in stderr.getvalue()


def test_the_offline_runs_unknowns_check_answers_as_the_sdks_and_leaves_no_garbage():
    import gc

    from pulumi.output import Unknown
    from pulumi.runtime import rpc

    from tools.mock_runtime import _contains_unknowns

    shared = {"a": [1, {"b": "x"}]}
    cyclic: list = [1]
    cyclic.append(cyclic)
    # The wire's unknown marker is a string the SDK turns into Unknown() when it deserializes: not unknown itself.
    values = [None, "text", rpc.UNKNOWN, Unknown(), {"a": {"b": [1, 2, {"c": Unknown()}]}}, [shared, shared],
              {"x": shared, "y": [shared, Unknown()]}, cyclic, [cyclic, Unknown()], ({"tuple": Unknown()},)]
    assert [_contains_unknowns(v) for v in values] == [rpc.contains_unknowns(v) for v in values]
    assert [_contains_unknowns(v) for v in values] == [False, False, False, True, True, False, True, False, True, False]
    collecting = gc.isenabled()
    gc.disable()
    try:
        gc.collect()
        for _ in range(100):
            _contains_unknowns({"a": [{"b": Unknown()}]})
        assert gc.collect() == 0
    finally:
        if collecting:
            gc.enable()


def test_a_run_answers_with_the_offline_check_and_leaves_the_sdks_own_in_place(monkeypatch):
    from pulumi.runtime import rpc

    from tools import mock_runtime

    original, used = rpc.contains_unknowns, []
    register = mock_runtime.RecordingMonitor.RegisterResource

    def recording(self, request):
        used.append(rpc.contains_unknowns is mock_runtime._contains_unknowns)
        return register(self, request)

    monkeypatch.setattr(mock_runtime.RecordingMonitor, "RegisterResource", recording)
    run_stack("dev", preview=True)
    assert used and all(used)
    assert rpc.contains_unknowns is original


def test_the_preview_lets_go_of_the_runs_records_once_its_plan_is_built_and_a_callers_run_stays_whole():
    from tools.mock_runtime import release_mocks
    from tools.preview import Progress, evaluate

    run = run_stack("dev", preview=True)
    monitor = pulumi.runtime.settings.get_monitor()
    count = len(run.resources)
    assert monitor.registrations is run.resources and monitor.resources
    release_mocks()
    assert monitor.registrations == [] and monitor.resources == {}
    assert len(run.resources) == count
    plan, _ = evaluate("dev", manifests=str(manifests_path()), progress=Progress(io.StringIO()))
    assert len(plan["resources"]) == count
    monitor = pulumi.runtime.settings.get_monitor()
    assert monitor.registrations == [] and monitor.resources == {}
