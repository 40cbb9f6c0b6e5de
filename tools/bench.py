"""`make bench`: the whole `make preview` timed per stack and per number of profiles, against a parse floor.

Each case runs as a separate process (tools/bench_case.py), measured from start to exit with wait4: wall time,
CPU time (user + system) and peak RSS. Cases are interleaved round by round (floor, preview, floor, preview...),
so a neighbour slowing the machine down slows every case alike and the ratios hold; the figures are medians over
the rounds (peak RSS: the largest).

- floor: a process that only parses the release with libyaml, as `yaml.load_all` with `CSafeLoader` does;
- dev cold: `make preview` of dev as on a fresh machine: no cache of this project (parsed release, CEL grammar,
  admission verdicts, what earlier previews kept of each ConfigGroup) and no earlier output;
- dev, prod: `make preview` of each stack run again, nothing changed (every non-cold case runs once unmeasured
  before the rounds: what users run from the second time);
- N profiles, one changed: `make preview` of dev with N generated profiles (tools/bench_case.py generated_tenancy),
  one profile's contributor role different from the run before (the variant alternates run by run): what a review
  of a change to one profile previews (the changed profile's file is written again, as its output differs from the
  run before; its guardrail findings were kept two runs before, which spares a thousandth of the checks);
- 1,000 profiles, cold: the same as on a fresh machine, reported beside the others (not a target).

Every preview case also reports its phases, measured inside the process: evaluate (the program under the mock
runtime and the plan), write (plan.json, manifests, the printed tree), checks (ownership, schemas, guardrails,
pod admission), trace (the mesh and run-time traces); `other` is the rest of the process (starting Python,
importing, the Pulumi CLI's checks, exit). Phases are given in seconds and as a share of the case's wall time.

Python's own bytecode cache is written once before anything is timed (as any first run of a checkout does).

This is a measurement, not a test: CI runs it only as a smoke run on small input (`--smoke`: one round,
10 and 20 profiles), which checks that every case runs and the report is complete, and never fails on time.
`--write-docs docs/performance.md` replaces the figures between its bench markers with this run's.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CACHE_DIR = REPO_ROOT / "build" / "bench" / "cache"
PHASES = ("evaluate", "write", "checks", "trace")
DOCS_BEGIN, DOCS_END = "<!-- bench figures: begin (written by make bench-scale) -->", "<!-- bench figures: end -->"

#: Targets from the performance issue; the benchmark reports whether each holds.
TARGETS = {
    "dev_over_floor": 2.0,
    "tenancy_1000_over_floor": 10.0,
    "tenancy_10000_over_1000": 11.0,
    "tenancy_10000_peak_rss_mb": 2048.0,
}
_SOURCES = ("__main__.py", "components", "config", "manifests", "tools", "analysis")


class Case:
    """One process the benchmark times. `cold`: every run starts with no cache of this project (its own cache
    directory, emptied) and no earlier output; otherwise the case is run once unmeasured first (`warm_up`), so each
    measured run is a preview run again, as a reviewer runs it. `changing`: the last argument (a number of generated
    profiles) gets a variant that alternates from run to run (tools/bench_case.py generated_tenancy), so each measured
    run previews one profile changed since the run before."""

    def __init__(self, key: str, label: str, args: list[str], *, cold: bool = False, phases: Path | None = None,
                 out: Path | None = None, changing: bool = False) -> None:
        self.key, self.label, self.args, self.cold, self.phases_file = key, label, args, cold, phases
        self.out, self.changing = out, changing
        self.directory = REPO_ROOT
        self.runs = 0
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self.rss: list[float] = []
        self.phases: list[dict[str, float]] = []

    def warm_up(self, cache_dir: Path) -> None:
        if not self.cold:
            self.run(cache_dir, measured=False)

    def run(self, cache_dir: Path, *, measured: bool = True) -> None:
        if self.cold:
            cache_dir = cache_dir.with_name(cache_dir.name + "-cold")
            for directory in (cache_dir, self.out):
                if directory is not None and directory.exists():
                    shutil.rmtree(directory)
        args = list(self.args)
        if self.changing:
            args[-1] = f"{args[-1]}:{(self.runs + 1) % 2}"
        self.runs += 1
        env = dict(os.environ, PYTHONHASHSEED="0", KUBEFLOW_PLATFORM_CACHE_DIR=str(cache_dir))
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-m", "tools.bench_case", *args], cwd=self.directory, env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # Read stderr while waiting: a case that writes much must not block on a full pipe.
        stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
        _pid, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - started
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"benchmark case {' '.join(args)} failed:\n{stderr[-4000:]}")
        if not measured:
            return
        self.wall.append(elapsed)
        self.cpu.append(usage.ru_utime + usage.ru_stime)
        self.rss.append(usage.ru_maxrss / 1024)  # KiB on Linux
        if self.phases_file is not None:
            self.phases.append(json.loads(self.phases_file.read_text()))

    def result(self) -> dict:
        wall = statistics.median(self.wall)
        found = {
            "case": self.label,
            "median_s": round(wall, 3),
            "median_cpu_s": round(statistics.median(self.cpu), 3),
            "peak_rss_mb": round(max(self.rss), 1),
            "runs_s": [round(t, 3) for t in self.wall],
        }
        if self.phases:
            seconds = {phase: statistics.median(run[phase] for run in self.phases) for phase in PHASES}
            seconds["other"] = max(0.0, wall - sum(seconds.values()))
            found["phases_s"] = {phase: round(value, 3) for phase, value in seconds.items()}
            found["phases_share"] = {phase: round(value / wall, 3) for phase, value in seconds.items()}
        return found


def per_profile_ms(results: dict, sizes: list[int]) -> dict[str, float]:
    """Milliseconds each added profile costs between consecutive sizes: flat means linear."""
    slopes = {}
    for small, large in zip(sizes, sizes[1:]):
        added = results[f"tenancy_{large}"]["median_s"] - results[f"tenancy_{small}"]["median_s"]
        slopes[f"{small}->{large}"] = round(1000 * added / (large - small), 2)
    return slopes


def critical_path(stack: str, manifests: str, cache_dir: Path) -> dict:
    env = dict(os.environ, KUBEFLOW_PLATFORM_CACHE_DIR=str(cache_dir))
    completed = subprocess.run([sys.executable, "-m", "tools.critical_path", "--stack", stack, "--manifests", manifests,
                                "--json"], cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    if completed.returncode != 0:
        raise SystemExit(f"critical path estimate failed:\n{completed.stderr}")
    return json.loads(completed.stdout)


def split_bench(manifests: str, cache_dir: Path, repeat: int, profiles: int = 10_000, parts: int = 10,
                measured: tuple[int, ...] = ()) -> int:
    """`make bench BENCH_ARGS=--split`: the whole `make preview` of a `profiles`-profile tenancy split into `parts`
    tenancy stacks, stack by stack (the platform first, as a tenancy stack reads its saved preview), against the
    dev stack holding `profiles / parts` profiles in one stack. Each tenancy stack must preview within that figure."""
    from tools.tenancy_stacks import copy_program, write_generated_split

    work = REPO_ROOT / "build" / "bench"
    size = profiles // parts
    one = copy_program(work / f"one-{size}")
    write_generated_split(one, profiles=size, size=None, manifests=manifests)
    split = copy_program(work / f"split-{profiles}")
    stacks = write_generated_split(split, profiles=profiles, size=size, manifests=manifests)
    chosen = [stacks[n - 1] for n in measured] if measured else stacks
    cases = [Case(f"one_{size}", f"make preview, one stack of {size:,} profiles", ["preview-dir", str(one), "dev"]),
             Case("platform", f"make preview, platform of the {profiles:,} split", ["preview-dir", str(split), "dev"]),
             *(Case(stack, f"make preview, {stack} ({size:,} profiles)", ["preview-dir", str(split), stack]) for stack in chosen)]
    for case in cases:
        case.directory = one if case.key.startswith("one_") else split
    for round_ in range(1, repeat + 1):
        for case in cases:
            case.run(cache_dir)
            print(f"  round {round_}/{repeat} {case.label}: {case.wall[-1]:.2f} s, {case.rss[-1]:.0f} MB",
                  file=sys.stderr, flush=True)
    results = {case.key: case.result() for case in cases}
    limit = results[f"one_{size}"]["median_s"]
    print(f"\n{'case':52s} {'median s':>9s} {'cpu s':>7s} {'peak MB':>8s}   runs")
    for result in results.values():
        runs = " ".join(f"{t:.2f}" for t in result["runs_s"])
        print(f"{result['case']:52s} {result['median_s']:9.2f} {result['median_cpu_s']:7.2f} {result['peak_rss_mb']:8.0f}   {runs}")
    within = {stack: results[stack]["median_s"] <= limit for stack in chosen}
    print(f"\neach tenancy stack within the one-stack {size:,}-profile figure ({limit:.2f} s): "
          + ", ".join(f"{stack} {'pass' if ok else 'FAIL'}" for stack, ok in within.items()))
    output = REPO_ROOT / "build" / "bench-split.json"
    output.write_text(json.dumps({"profiles": profiles, "parts": parts, "repeat": repeat, "results": results,
                                  "withinOneStack": within}, indent=2, sort_keys=True) + "\n")
    print(f"wrote {output.relative_to(REPO_ROOT)}")
    return 0 if all(within.values()) else 1


def ratios_of(results: dict, sizes: list[int]) -> dict[str, float]:
    floor = results["floor"]
    ratios = {
        "dev_over_floor": round(results["dev"]["median_s"] / floor["median_s"], 2),
        "dev_cpu_over_floor_cpu": round(results["dev"]["median_cpu_s"] / floor["median_cpu_s"], 2),
        "dev_cold_over_floor": round(results["dev_cold"]["median_s"] / floor["median_s"], 2),
        "prod_over_floor": round(results["prod"]["median_s"] / floor["median_s"], 2),
        "dev_peak_rss_mb": max(results["dev_cold"]["peak_rss_mb"], results["dev"]["peak_rss_mb"]),
    }
    for n in sizes:
        ratios[f"tenancy_{n}_over_floor"] = round(results[f"tenancy_{n}"]["median_s"] / floor["median_s"], 2)
        ratios[f"tenancy_{n}_cpu_over_floor_cpu"] = round(results[f"tenancy_{n}"]["median_cpu_s"] / floor["median_cpu_s"], 2)
        if f"tenancy_{n}_cold" in results:
            ratios[f"tenancy_{n}_cold_over_floor"] = round(results[f"tenancy_{n}_cold"]["median_s"] / floor["median_s"], 2)
    if 1000 in sizes and 10000 in sizes:
        ratios["tenancy_10000_over_1000"] = round(results["tenancy_10000"]["median_s"] / results["tenancy_1000"]["median_s"], 2)
        ratios["tenancy_10000_cpu_over_1000_cpu"] = round(results["tenancy_10000"]["median_cpu_s"]
                                                          / results["tenancy_1000"]["median_cpu_s"], 2)
        ratios["tenancy_10000_peak_rss_mb"] = results["tenancy_10000"]["peak_rss_mb"]
    return ratios


def machine() -> str:
    """The machine in general terms: cores, architecture, Python, and how busy it was when the run began."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{os.cpu_count()}-core {platform.machine()} {platform.system()}, Python {platform.python_version()}, "
            f"load average {load:.1f} at the start")


def docs_block(report: dict) -> str:
    """The figures docs/performance.md quotes, as a Markdown table and the ratios, from one run."""
    results, ratios = report["results"], report["ratios"]
    rounds = "one round" if report["repeat"] == 1 else f"medians of {report['repeat']} rounds"
    floors = len(results["floor"]["runs_s"])
    lines = [DOCS_BEGIN, "",
             f"`make bench` on a {report['machine']}; the {report['release']} release; {rounds}, each case a whole "
             f"process from start to exit, a floor run beside each preview ({floors} floor runs, their median):", "",
             "| case | wall | CPU | peak RSS | over the floor | evaluate / write / checks / trace / other |",
             "| --- | --- | --- | --- | --- | --- |"]
    floor = results["floor"]["median_s"]
    order = {"floor": (0, 0), "dev_cold": (1, 0), "dev": (2, 0), "prod": (3, 0)}

    def place(key: str) -> tuple[int, int, int]:
        if key in order:
            return (*order[key], 0)
        size = key.split("_")[1] if key.startswith("tenancy_") else ""
        return (4, int(size) if size.isdigit() else 0, key.endswith("_cold"))

    for key in sorted(results, key=place):
        result = results[key]
        shares = result.get("phases_share")
        split = " / ".join(f"{100 * shares[p]:.0f} %" for p in (*PHASES, "other")) if shares else "-"
        lines.append(f"| {result['case']} | {result['median_s']:.2f} s | {result['median_cpu_s']:.2f} s | "
                     f"{result['peak_rss_mb']:.0f} MB | {result['median_s'] / floor:.2f} | {split} |")
    lines += ["", "| ratio | value | target |", "| --- | --- | --- |"]
    for key, value in ratios.items():
        limit = TARGETS.get(key)
        verdict = "" if limit is None else (f"at most {limit:g}: " if not key.endswith("rss_mb") else f"under {limit:g}: ") \
            + ("met" if value <= limit else "**not met**")
        lines.append(f"| `{key}` | {value} | {verdict} |")
    if report["perProfileMs"]:
        lines += ["", "Each added profile: " + ", ".join(f"{span} profiles {ms:.1f} ms" for span, ms in report["perProfileMs"].items()) + "."]
    lines += ["", DOCS_END]
    return "\n".join(lines)


def write_docs(path: Path, block: str) -> None:
    text = path.read_text()
    if DOCS_BEGIN not in text or DOCS_END not in text:
        raise SystemExit(f"{path}: no bench markers ({DOCS_BEGIN} ... {DOCS_END}) to write the figures between")
    before, rest = text.split(DOCS_BEGIN, 1)
    after = rest.split(DOCS_END, 1)[1]
    path.write_text(before + block + after)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifests", required=True, help="rendered upstream Kubeflow manifests file")
    parser.add_argument("--repeat", type=int, default=5, help="rounds; every case runs once per round")
    parser.add_argument("--profiles", default="10,100,1000", help="numbers of generated profiles to measure")
    parser.add_argument("--smoke", action="store_true",
                        help="one round, 10 and 20 profiles: checks the benchmark runs, judges no target")
    parser.add_argument("--cache-dir", default=str(DEFAULT_CACHE_DIR), help="parsed-manifests cache the cases use")
    parser.add_argument("--output", default=str(REPO_ROOT / "build" / "bench.json"))
    parser.add_argument("--split", action="store_true", help="instead: `make preview` of a 10,000-profile tenancy split "
                        "into 10 tenancy stacks, stack by stack, against one stack of 1,000 profiles (split_bench)")
    parser.add_argument("--split-parts", default="", help="with --split: only these tenancy stacks (like 1,10)")
    parser.add_argument("--write-docs", type=Path, help="replace the figures between the bench markers of this file")
    parser.add_argument("--docs-from", type=Path, help="write --write-docs from this report (a bench.json) instead of "
                        "running the benchmark")
    args = parser.parse_args(argv)
    if args.docs_from is not None:
        if args.write_docs is None:
            parser.error("--docs-from needs --write-docs")
        write_docs(args.write_docs, docs_block(json.loads(args.docs_from.read_text())))
        return 0
    if args.split:
        parts = tuple(int(n) for n in args.split_parts.split(",") if n)
        # --smoke: 20 profiles in 2 tenancy stacks, to check the cases run; judged all the same.
        return split_bench(str(Path(args.manifests).resolve()), Path(args.cache_dir), 1 if args.smoke else args.repeat,
                           profiles=20 if args.smoke else 10_000, parts=2 if args.smoke else 10, measured=parts)
    repeat = 1 if args.smoke else args.repeat
    sizes = [10, 20] if args.smoke else sorted(int(n) for n in args.profiles.split(","))
    cache_dir = Path(args.cache_dir)
    manifests = str(Path(args.manifests).resolve())
    work = Path(args.output).resolve().parent / "bench"
    work.mkdir(parents=True, exist_ok=True)
    started_on = machine()

    compileall.compile_file(str(REPO_ROOT / "__main__.py"), quiet=1)
    for name in _SOURCES[1:]:
        compileall.compile_dir(str(REPO_ROOT / name), quiet=1)

    def preview(key: str, label: str, stack: str, profiles: int | None = None, cold: bool = False) -> Case:
        phases = work / f"{key}.phases.json"
        extra = [] if profiles is None else [str(profiles)]
        return Case(key, label, ["preview", stack, manifests, str(work / key), str(phases), *extra], cold=cold,
                    phases=phases, out=work / key, changing=profiles is not None and not cold)

    floor = Case("floor", "floor (libyaml parse only)", ["floor", manifests])
    cold_sizes = [n for n in sizes if n == 1000] if not args.smoke else sizes[:1]
    previews = [
        preview("dev_cold", "make preview dev, cold", "dev", cold=True),
        preview("dev", "make preview dev", "dev"),
        preview("prod", "make preview prod", "prod"),
        *(preview(f"tenancy_{n}", f"make preview dev, {n} profiles, one changed", "dev", n) for n in sizes),
        *(preview(f"tenancy_{n}_cold", f"make preview dev, {n} profiles, cold", "dev", n, cold=True) for n in cold_sizes),
    ]
    for case in previews:
        case.warm_up(cache_dir)
        print(f"  warmed up: {case.label}" if not case.cold else f"  cold, no warm-up: {case.label}", file=sys.stderr, flush=True)
    for round_ in range(1, repeat + 1):
        for case in previews:
            # Floor and preview alternate: each preview has a floor run beside it.
            for each in (floor, case):
                each.run(cache_dir)
                print(f"  round {round_}/{repeat} {each.label}: {each.wall[-1]:.2f} s, {each.cpu[-1]:.2f} s CPU, "
                      f"{each.rss[-1]:.0f} MB", file=sys.stderr, flush=True)
    results = {case.key: case.result() for case in (floor, *previews)}
    ratios = ratios_of(results, sizes)
    verdicts = {key: ratios[key] <= limit for key, limit in TARGETS.items() if key in ratios}
    estimate = critical_path("dev", manifests, cache_dir)

    print(f"\n{'case':34s} {'median s':>9s} {'cpu s':>7s} {'peak MB':>8s}   phases (evaluate/write/checks/trace/other)")
    for result in results.values():
        shares = result.get("phases_share")
        split = " ".join(f"{100 * shares[p]:3.0f}%" for p in (*PHASES, "other")) if shares else ""
        print(f"{result['case']:34s} {result['median_s']:9.2f} {result['median_cpu_s']:7.2f} {result['peak_rss_mb']:8.0f}   {split}")
    print()
    judged = not args.smoke
    for key, value in ratios.items():
        limit = TARGETS.get(key)
        mark = "" if limit is None else f"  target <= {limit}: " + (("pass" if value <= limit else "FAIL") if judged else "not judged (smoke)")
        print(f"{key:34s} {value}{mark}")
    slopes = per_profile_ms(results, sizes)
    print("per added profile: " + ", ".join(f"{span} {ms:.1f} ms" for span, ms in slopes.items()))
    minutes, seconds = divmod(estimate["seconds"], 60)
    print(f"\nestimated first `pulumi up` of dev: {minutes} min {seconds:02d} s; critical chain:")
    for step in estimate["chain"]:
        if step["seconds"]:
            print(f"  {step['start']:5d} s +{step['seconds']:4.0f} s  {step['type']} {step['name']}")

    report = {
        "smoke": args.smoke, "repeat": repeat, "machine": started_on, "release": Path(manifests).stem,
        "results": results, "ratios": ratios, "perProfileMs": slopes, "targets": TARGETS,
        "met": verdicts if judged else None, "criticalPath": estimate,
    }
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    print(f"\nwrote {output.relative_to(REPO_ROOT) if output.is_relative_to(REPO_ROOT) else output}")
    if args.write_docs is not None:
        write_docs(args.write_docs, docs_block(report))
        print(f"wrote the figures into {args.write_docs}")
    # The run's figures are the answer; a target not met is reported, and the exit says so only for a full run.
    return 0 if args.smoke or all(verdicts.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
