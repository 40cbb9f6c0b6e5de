"""Fixtures for the identity tests: the loopback servers and the Envoy gateways under test."""

from __future__ import annotations

import sys
from pathlib import Path

# The identity tests import the project (`manifests`) and their harness (`tests.identity`) from the
# repository root, whichever directory pytest was started from.
_REPO_ROOT = Path(__file__).resolve().parents[2]
if str(_REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(_REPO_ROOT))
