"""`make bench`: whole-process timings and peak memory of the platform's evaluation, against a floor.

Each case runs several times as a separate process (tools/bench_case.py); the figures are the median
wall time and the largest peak RSS of those runs. The floor is a process that only parses the same
manifests file with libyaml. Results go to build/bench.json and a table on stdout. This is a
measurement, not a test: CI runs it only as a smoke run on small input (`--smoke`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = REPO_ROOT / "build" / "cache"

#: Targets from the performance issue; the benchmark reports whether each holds.
TARGETS = {
    "dev_cold_over_floor": 2.0,
    "dev_peak_rss_mb": 300.0,
    "tenancy_1000_over_100": 12.0,
    "tenancy_1000_seconds": 10.0,
}


def run_case(args: list[str], *, clear_cache: bool = False) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one whole process."""
    if clear_cache and CACHE_DIR.exists():
        shutil.rmtree(CACHE_DIR)
    env = dict(os.environ, PYTHONHASHSEED="0")
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "tools.bench_case", *args], cwd=REPO_ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _pid, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"benchmark case {' '.join(args)} failed:\n{stderr}")
    # ru_maxrss is in KiB on Linux.
    return elapsed, usage.ru_maxrss / 1024


def measure(name: str, args: list[str], repeat: int, *, cold: bool = False) -> dict:
    times, peaks = [], []
    for i in range(repeat):
        elapsed, peak = run_case(args, clear_cache=cold)
        times.append(elapsed)
        peaks.append(peak)
        print(f"  {name} run {i + 1}/{repeat}: {elapsed:.2f} s, {peak:.0f} MB", file=sys.stderr, flush=True)
    return {"case": name, "median_s": round(statistics.median(times), 3), "peak_rss_mb": round(max(peaks), 1),
            "runs_s": [round(t, 3) for t in times]}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__)
    parser.add_argument("--manifests", required=True, help="rendered upstream Kubeflow manifests file")
    parser.add_argument("--stack", default="dev")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profiles", default="10,100,1000", help="tenancy sizes to measure")
    parser.add_argument("--smoke", action="store_true", help="one run per case, small sizes: checks the benchmark runs")
    parser.add_argument("--output", default=str(REPO_ROOT / "build" / "bench.json"))
    args = parser.parse_args(argv)
    repeat = 1 if args.smoke else args.repeat
    sizes = [10] if args.smoke else [int(n) for n in args.profiles.split(",")]

    results = {}
    results["floor"] = measure("floor (libyaml parse only)", ["floor", args.manifests], repeat)
    results["dev_cold"] = measure(f"{args.stack} stack, cold", ["stack", args.stack, args.manifests], repeat, cold=True)
    results["dev_warm"] = measure(f"{args.stack} stack, warm", ["stack", args.stack, args.manifests], repeat)
    for size in sizes:
        results[f"tenancy_{size}"] = measure(f"{args.stack} stack, {size} profiles", ["stack", args.stack, args.manifests, str(size)], repeat)

    floor = results["floor"]["median_s"]
    ratios = {
        "dev_cold_over_floor": round(results["dev_cold"]["median_s"] / floor, 2),
        "dev_warm_over_floor": round(results["dev_warm"]["median_s"] / floor, 2),
        "dev_peak_rss_mb": max(results["dev_cold"]["peak_rss_mb"], results["dev_warm"]["peak_rss_mb"]),
    }
    if "tenancy_100" in results and "tenancy_1000" in results:
        ratios["tenancy_1000_over_100"] = round(results["tenancy_1000"]["median_s"] / results["tenancy_100"]["median_s"], 2)
        ratios["tenancy_1000_seconds"] = results["tenancy_1000"]["median_s"]
    verdicts = {key: ratios[key] <= limit for key, limit in TARGETS.items() if key in ratios}
    verdicts["dev_warm_below_cold"] = results["dev_warm"]["median_s"] < results["dev_cold"]["median_s"]

    print(f"\n{'case':40s} {'median s':>9s} {'peak MB':>8s}")
    for result in results.values():
        print(f"{result['case']:40s} {result['median_s']:9.2f} {result['peak_rss_mb']:8.0f}")
    print()
    for key, value in ratios.items():
        limit = TARGETS.get(key)
        mark = "" if limit is None else ("  ok" if value <= limit else f"  OVER target {limit}")
        print(f"{key:28s} {value}{mark}")
    print(f"{'dev_warm_below_cold':28s} {verdicts['dev_warm_below_cold']}")

    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({"smoke": args.smoke, "repeat": repeat, "results": results, "ratios": ratios,
                                  "targets": TARGETS, "met": verdicts}, indent=2, sort_keys=True) + "\n")
    print(f"\nwrote {output.relative_to(REPO_ROOT) if output.is_relative_to(REPO_ROOT) else output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
