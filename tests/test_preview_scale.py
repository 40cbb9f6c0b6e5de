"""The preview at scale does each piece of work once, and what it prints and writes does not depend on how."""

from __future__ import annotations

import io

import pytest

from analysis import trace_sharing
from tests.plans import evaluated_plan
from tests.upstream import manifests_path
from tools import plan_checks
from tools.bench_case import generated_tenancy, machine_users
from tools.preview import preview


def test_the_checks_with_the_guardrail_report_given_find_what_they_find_alone():
    plan, _ = evaluated_plan("prod")
    report = plan_checks.guardrail_report(plan)
    assert plan_checks.validate_plan(plan, report) == plan_checks.validate_plan(plan)
    # The report given is the one used: a violation in it is reported (and nothing computes it again).
    report.violations.append("a violation only the given report holds")
    assert "a violation only the given report holds" in plan_checks.validate_plan(plan, report)


def _preview(tmp_path, name: str, monkeypatch, sharing: str) -> tuple[int, str, dict[str, bytes]]:
    monkeypatch.setenv(trace_sharing.SHARING_ENV, sharing)
    monkeypatch.chdir(tmp_path)
    stdout = io.StringIO()
    tenancy = generated_tenancy(60, machine_users("dev"))
    tenancy["profiles"][7]["contributors"].append({"group": "everyone", "role": "edit"})
    status = preview("dev", manifests=str(manifests_path()), out=tmp_path / name, settings={"tenancy": tenancy},
                     stdout=stdout, stderr=io.StringIO())
    files = {str(p.relative_to(tmp_path / name)): p.read_bytes() for p in sorted((tmp_path / name).rglob("*")) if p.is_file()}
    return status, stdout.getvalue().replace(name, "OUT"), files


def test_the_whole_preview_of_many_profiles_prints_and_writes_the_same_with_and_without_sharing(tmp_path, monkeypatch):
    shared = _preview(tmp_path, "shared", monkeypatch, "1")
    alone = _preview(tmp_path, "alone", monkeypatch, "0")
    assert shared[0] == alone[0] == 0, shared[1][-3000:]
    assert shared[1] == alone[1]
    assert shared[2] == alone[2] and "plan.json" in shared[2]
    assert "every other profile (59)" in shared[1]


def test_registrations_under_the_mocks_carry_no_stack_trace_and_the_sdk_is_left_as_it_was(monkeypatch):
    """The offline run spares the SDK's per-resource stack walk (the engine's source positions, which the mocks never
    read); the SDK's own function is back once the run ends, so the real engine would still get it."""
    import pulumi.runtime.resource as sdk_resource

    from tools import mock_runtime

    original = sdk_resource._get_stack_trace
    seen = []
    register = mock_runtime.RecordingMonitor.RegisterResource

    def recording(self, request):
        if request.type != "pulumi:pulumi:Stack":  # the root stack is registered when the mocks are set, before the run
            seen.append(len(request.stackTrace.frames))
        return register(self, request)

    monkeypatch.setattr(mock_runtime.RecordingMonitor, "RegisterResource", recording)
    from tools.preview import config_overrides, placeholder_secrets

    run = mock_runtime.run_program("dev", config_overrides=config_overrides("dev", str(manifests_path()), None),
                                   secrets=placeholder_secrets(), preview=True)
    assert run.resources and len(seen) == len(run.resources)
    assert set(seen) == {0}
    assert sdk_resource._get_stack_trace is original


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_mocks_answers_are_sent_back_as_the_sdks_serializer_sends_them_for_every_registration(stack):
    """The monitor's shortcut for a plain answer (tools/mock_runtime.py `_plain_struct`) gives the very Struct the SDK's
    serializer gives, for every registration of a preview and of an update, unknowns and secrets included."""
    import asyncio

    from pulumi.runtime import rpc

    from tests.conftest import run_stack
    from tools.mock_runtime import _plain_struct

    unknowns = secrets = 0
    states = [r.outputs for preview in (True, False) for r in run_stack(stack, preview=preview).resources]
    loop = asyncio.new_event_loop()  # its own: the runs' loop stays as the SDK left it
    try:
        for state in states:
            fast = _plain_struct(state)
            assert fast is not None, state
            assert fast == loop.run_until_complete(rpc.serialize_properties(state, {})), state
            unknowns += rpc.UNKNOWN in str(fast)
            secrets += rpc._special_secret_sig in str(fast)
    finally:
        loop.close()
    assert unknowns and secrets  # the preview's unknowns (an ARN before the role exists) and the stack's secrets
    # Anything else (a resource, an asset, a tuple) is left to the SDK.
    assert _plain_struct({"files": ("a",)}) is None and _plain_struct({"a": {1: "b"}}) is None
