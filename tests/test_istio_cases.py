"""The trace held to Istio's own tests: every case in tests/istio_cases/*.yaml, each citing the Istio test or test data
it ports (istio/istio@1.28.0), answered by the trace as Istio decides it, or refused where the case says the trace
does not evaluate the shape."""

from __future__ import annotations

import pytest

from tests.istio_cases import runner

CASES = [pytest.param(area, case, id=f"{area}: {case['id']}") for area in runner.AREAS for case in runner.load(area)]


@pytest.mark.parametrize(("area", "case"), CASES)
def test_the_trace_decides_as_istio(area, case):
    assert case["source"].startswith("istio/istio@"), "each case names the Istio test it ports"
    assert runner.outcome(area, case) == runner.expected(area, case)


def test_every_area_holds_cases():
    counts = {area: len(runner.load(area)) for area in runner.AREAS}
    assert all(count >= 6 for count in counts.values()), counts
