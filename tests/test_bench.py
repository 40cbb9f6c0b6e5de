"""`make bench` as CI runs it: a smoke run that must complete and report every case, never judged on time."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.upstream import REPO_ROOT, manifests_path


def test_smoke_run_reports_every_case_ratio_and_the_critical_path(tmp_path):
    output = tmp_path / "bench.json"
    completed = subprocess.run(
        [sys.executable, "-m", "tools.bench", "--smoke", "--manifests", str(manifests_path()),
         "--cache-dir", str(tmp_path / "cache"), "--output", str(output)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    report = json.loads(output.read_text())
    assert report["smoke"] is True and report["met"] is None  # a smoke run judges nothing
    assert set(report["results"]) == {"floor", "dev_cold", "dev", "prod", "tenancy_10", "tenancy_20", "tenancy_10_cold"}
    for key, result in report["results"].items():
        assert result["median_s"] > 0 and result["peak_rss_mb"] > 0
        if key == "floor":
            # The floor runs beside every preview case: once per case in a round.
            assert len(result["runs_s"]) == 6 and "phases_s" not in result
            continue
        assert len(result["runs_s"]) == 1
        # Every phase of the preview measured, and the shares (with the rest of the process) cover its time.
        assert set(result["phases_s"]) == {"evaluate", "write", "checks", "trace", "other"}
        assert all(result["phases_s"][phase] > 0 for phase in ("evaluate", "write", "checks", "trace"))
        assert abs(sum(result["phases_share"].values()) - 1) < 0.01 or result["phases_s"]["other"] == 0
    assert {"dev_over_floor", "dev_cold_over_floor", "prod_over_floor", "dev_peak_rss_mb",
            "tenancy_10_over_floor", "tenancy_20_over_floor"} <= set(report["ratios"])
    assert set(report["perProfileMs"]) == {"10->20"}
    assert "tenancy_10_cold_over_floor" in report["ratios"]
    # Every case but the cold ones ran once unmeasured first; the cold ones used a cache of their own, emptied.
    assert completed.stderr.count("warmed up:") == 4 and completed.stderr.count("cold, no warm-up:") == 2
    assert list((tmp_path / "cache" / "parsed").glob("*.marshal"))
    assert list((tmp_path / "cache-cold" / "parsed").glob("*.marshal"))
    # Each preview wrote its plan, as `make preview` does.
    assert (tmp_path / "bench" / "tenancy_20" / "plan.json").is_file()
    estimate = report["criticalPath"]
    assert estimate["seconds"] > 0 and estimate["chain"] and "kubeflow" in estimate["componentsDone"]
    assert "estimated first `pulumi up`" in completed.stdout and "not judged (smoke)" in completed.stdout


def test_a_changing_case_previews_one_profile_changed_since_the_run_before():
    from tools.bench_case import generated_tenancy

    one, other = generated_tenancy(5, variant=0), generated_tenancy(5, variant=1)
    changed = [i for i, (a, b) in enumerate(zip(one["profiles"], other["profiles"])) if a != b]
    assert changed == [1]
    assert one["profiles"][1]["contributors"][0]["role"] == "view" and other["profiles"][1]["contributors"][0]["role"] == "edit"


def test_the_docs_block_is_written_between_the_markers_from_a_report(tmp_path):
    from tools import bench

    result = {"case": "make preview dev", "median_s": 3.0, "median_cpu_s": 2.5, "peak_rss_mb": 200.0, "runs_s": [3.0],
              "phases_share": {"evaluate": 0.4, "write": 0.1, "checks": 0.2, "trace": 0.1, "other": 0.2}}
    report = {"machine": "2-core x86_64 Linux", "release": "26.03", "repeat": 3, "perProfileMs": {"10->100": 4.0},
              "results": {"floor": {"case": "floor", "median_s": 1.0, "median_cpu_s": 1.0, "peak_rss_mb": 30.0, "runs_s": [1.0, 1.1]},
                          "dev": result},
              "ratios": {"dev_over_floor": 3.0, "tenancy_1000_over_floor": 9.5}}
    page = tmp_path / "performance.md"
    page.write_text(f"# Performance\n\nbefore\n{bench.DOCS_BEGIN}\nold figures\n{bench.DOCS_END}\nafter\n")
    bench.write_docs(page, bench.docs_block(report))
    text = page.read_text()
    assert "old figures" not in text and text.startswith("# Performance\n\nbefore\n") and text.endswith("after\n")
    assert "| make preview dev | 3.00 s | 2.50 s | 200 MB | 3.00 | 40 % / 10 % / 20 % / 10 % / 20 % |" in text
    assert "| `dev_over_floor` | 3.0 | at most 2: **not met** |" in text
    assert "| `tenancy_1000_over_floor` | 9.5 | at most 10: met |" in text
    assert "medians of 3 rounds" in text and "(2 floor runs, their median)" in text
