"""Entry point Pulumi runs for `--policy-pack policy`: serves the guardrail policies to the engine."""

import sys
from pathlib import Path

# The policies reuse the program's pure checks (manifests/), which live beside this directory.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi_policy import EnforcementLevel, PolicyPack  # noqa: E402

from policy.guardrail_policies import all_policies  # noqa: E402

PolicyPack(
    name="kubeflow-platform-guardrails",
    # Mandatory: a violation stops `pulumi up`; the enterprise's rules are not advice.
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=all_policies(),
)
