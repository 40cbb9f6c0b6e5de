"""Shared fixtures: run the whole program for a stack under the mock runtime."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.upstream import CURRENT_VERSION, manifests_path  # noqa: E402
from tools.mock_runtime import ProgramRun, run_program  # noqa: E402

#: Marker secrets: tests assert these never appear in clear anywhere.
MARKER_SECRETS = {
    "authClientSecret": "MARKER-client-secret-3f9a",
    "authCookieSecret": "MARKER-cookie-secret-7c21",
    "databasePassword": "MARKER-db-password-b5e8",
    "objectStoreAccessKeyId": "MARKER-access-key-id-1d4e",
    "objectStoreSecretAccessKey": "MARKER-secret-access-key-9a7b",
}

STACKS = ("dev", "prod")


def run_stack(stack: str, overrides: dict | None = None, secrets: dict | None = None, **kwargs) -> ProgramRun:
    """The whole program for `stack` with the real upstream manifests and marker secrets."""
    return run_program(stack, config_overrides=_overrides(stack, overrides),
                       secrets=MARKER_SECRETS if secrets is None else secrets, **kwargs)


def _overrides(stack: str, overrides: dict | None) -> dict:
    config = {}
    kubeflow = _stack_kubeflow(stack)
    kubeflow["manifests"] = str(manifests_path(kubeflow.get("version", CURRENT_VERSION)))
    config["kubeflow"] = kubeflow
    config.update(overrides or {})
    if "identity" not in (overrides or {}) and not pod_identity_usable(config["kubeflow"].get("version", CURRENT_VERSION)):
        # A stack on Pod Identity (dev) is refused at a release whose SDKs cannot use it (tests/test_pod_identity.py):
        # at such a release it runs on IRSA, as it would have before switching.
        config.update(irsa_overrides(stack) or {})
    return config


def pod_identity_usable(release: str) -> bool:
    from manifests.pod_identity import pod_identity_blockers

    return not pod_identity_blockers(release)


def _stack_kubeflow(stack: str) -> dict:
    from tools.mock_runtime import stack_config

    return dict(stack_config(stack)["kubeflow-platform:kubeflow"])


_RUNS: dict[str, ProgramRun] = {}


def shared_run(stack: str, overrides: dict | None = None) -> ProgramRun:
    """`run_stack(stack, overrides)`, run once per session for each distinct configuration and shared by
    every caller that only reads it (tests must not mutate it).

    Keyed by the configuration the program receives, so `stack_run`, a release pinned to the stack's own
    version and a plain `run_stack(stack)` are one run, not three.
    """
    key = json.dumps([stack, _overrides(stack, overrides)], sort_keys=True)
    if key not in _RUNS:
        _RUNS[key] = run_stack(stack, overrides)
    return _RUNS[key]


@pytest.fixture(params=STACKS)
def stack_run(request) -> ProgramRun:
    """Each stack's run, evaluated once per test session (tests must not mutate it)."""
    return shared_run(request.param)


def irsa_overrides(stack: str) -> dict | None:
    """The overrides that put `stack` on IRSA, or None where its stack file already does (prod).

    dev shows EKS Pod Identity; tests about IRSA's OIDC provider, trust and annotations run on dev with
    only `identity.mechanism` changed, and on prod as it is.
    """
    from tools.mock_runtime import stack_config

    identity = dict(stack_config(stack).get("kubeflow-platform:identity") or {})
    if identity.get("mechanism", "irsa") == "irsa":
        return None
    return {"identity": {**identity, "mechanism": "irsa"}}


def irsa_settings(stack: str) -> dict | None:
    """`irsa_overrides` as the dotted settings of tools.preview.evaluate."""
    return None if irsa_overrides(stack) is None else {"identity.mechanism": "irsa"}


@pytest.fixture(params=STACKS)
def irsa_run(request) -> ProgramRun:
    """Each stack's run on IRSA: prod as it is, dev with `identity.mechanism: irsa` (tests must not mutate it)."""
    run = shared_run(request.param, irsa_overrides(request.param))
    assert run.exports["identityMechanism"] == "irsa"
    return run


# Each stack's preview plan at 26.03, for the trace tests (one deep copy per test module: tests.plans.evaluated_plan).
@pytest.fixture(scope="module")
def prod() -> dict:
    from tests.plans import evaluated_plan

    return evaluated_plan("prod", "26.03")[0]


@pytest.fixture(scope="module")
def dev() -> dict:
    from tests.plans import evaluated_plan

    return evaluated_plan("dev", "26.03")[0]
