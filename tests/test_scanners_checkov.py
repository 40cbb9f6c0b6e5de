"""checkov (Kubernetes framework) over what each stack applies, against the same scan of unmodified upstream.

Our transformations must not add a finding: a (check id, resource) pair in our output that upstream
does not have fails the test. Upstream findings that are gone are listed in build/checkov-report.md,
split into those our transformations fixed (the object is still applied) and those of objects the
stack excludes (the enterprise runs that component itself).

checkov has heavy dependencies of its own, so it lives in its own venv (`make scan-venv`, `.venv-scan`)
and runs as a subprocess; CHECKOV names another binary. The scans run in parallel, and each result is
cached by the checksum of its input (and checkov's version) under build/checkov-cache.
"""

from __future__ import annotations

import concurrent.futures
import functools
import hashlib
import json
import os
import subprocess
import tempfile
from collections import Counter
from pathlib import Path

import pytest
import yaml

from manifests.objects import object_ref
from tests.conftest import STACKS
from tests.stack_transform import stack_transform
from tests.upstream import CURRENT_VERSION, REPO_ROOT, upstream_objects

CHECKOV = os.environ.get("CHECKOV") or str(REPO_ROOT / ".venv-scan" / "bin" / "checkov")
CACHE_DIR = REPO_ROOT / "build" / "checkov-cache"
REPORT = REPO_ROOT / "build" / "checkov-report.md"
# checkov skips files above its size limit silently (a 10 MB rendered release scans as 0 resources),
# so objects are written a few dozen per file.
OBJECTS_PER_FILE = 50

Finding = tuple[str, str]  # (check id, resource as checkov names it: Kind.namespace.name)


@functools.lru_cache(maxsize=None)
def checkov_version() -> str:
    if not Path(CHECKOV).exists():
        raise FileNotFoundError(f"checkov not found at {CHECKOV}: run `make scan-venv` (or set CHECKOV)")
    return subprocess.run([CHECKOV, "--version"], capture_output=True, text=True, check=True).stdout.strip()


def scan(objects: list[dict]) -> dict[Finding, str]:
    """Failed checks of `objects`: (check id, resource) -> check name. Cached by input checksum."""
    # checkov has no check on CustomResourceDefinitions, and their schemas are most of the release's bytes:
    # leaving them out takes a scan from ~20 s to ~6 s with the same findings.
    objects = [obj for obj in objects if obj.get("kind") != "CustomResourceDefinition"]
    text = json.dumps(objects, sort_keys=True)
    key = hashlib.sha256((checkov_version() + "\n" + text).encode()).hexdigest()
    cached = CACHE_DIR / f"{key}.json"
    if cached.is_file():
        return {tuple(k.split("\t", 1)): v for k, v in json.loads(cached.read_text()).items()}
    with tempfile.TemporaryDirectory() as workdir:
        for start in range(0, len(objects), OBJECTS_PER_FILE):
            Path(workdir, f"objects-{start // OBJECTS_PER_FILE:03d}.yaml").write_text(
                yaml.safe_dump_all(objects[start:start + OBJECTS_PER_FILE], sort_keys=False))
        result = subprocess.run(
            [CHECKOV, "-d", workdir, "--framework", "kubernetes", "-o", "json", "--quiet", "--compact",
             "--skip-download", "--skip-results-upload"],
            capture_output=True, text=True,
        )
    # Exit code 1 means "failed checks found"; anything else is checkov itself failing.
    if result.returncode not in (0, 1):
        raise RuntimeError(f"checkov exited {result.returncode}: {result.stderr[-2000:]}")
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    summary = reports[0].get("summary", {})
    if summary.get("parsing_errors") or summary.get("resource_count", 0) < len(objects) * 0.9:
        raise RuntimeError(f"checkov read {summary.get('resource_count')} of {len(objects)} objects "
                           f"({summary.get('parsing_errors')} parsing errors)")
    findings = {}
    for part in reports:
        for failed in (part.get("results") or {}).get("failed_checks", []):
            findings[(failed["check_id"], failed["resource"])] = failed["check_name"]
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps({"\t".join(k): v for k, v in sorted(findings.items())}))
    return findings


def checkov_resource(obj: dict) -> str:
    """How checkov names an object: Kind.namespace.name, `default` for cluster-scoped ones."""
    metadata = obj.get("metadata") or {}
    return f"{obj['kind']}.{metadata.get('namespace') or 'default'}.{metadata['name']}"


@functools.lru_cache(maxsize=None)
def scans() -> dict[str, dict[Finding, str]]:
    """Upstream and each stack's output, scanned in parallel once per session."""
    inputs = {"upstream": upstream_objects(CURRENT_VERSION)} | {stack: stack_transform(stack).objects for stack in STACKS}
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(inputs)) as pool:
        futures = {name: pool.submit(scan, objects) for name, objects in inputs.items()}
        return {name: future.result() for name, future in futures.items()}


def _write_report(results: dict[str, dict[Finding, str]]) -> None:
    upstream = results["upstream"]
    lines = ["# checkov (Kubernetes) findings: upstream Kubeflow vs each stack's output", "",
             f"Upstream v{CURRENT_VERSION}: {len(upstream)} failed checks.", ""]
    for stack in STACKS:
        ours = results[stack]
        report = stack_transform(stack)
        excluded = {checkov_resource(o) for o in upstream_objects(CURRENT_VERSION) if object_ref(o) in report.excluded}
        gone = sorted(set(upstream) - set(ours))
        fixed = [f for f in gone if f[1] not in excluded]
        lines += [f"## {stack}", "",
                  f"{len(ours)} failed checks; added {len(set(ours) - set(upstream))}; "
                  f"{len(fixed)} fixed by our transformations; {len(gone) - len(fixed)} gone with excluded components.", "",
                  "Fixed by our transformations:", ""]
        lines += [f"- {check} {resource}: {upstream[(check, resource)]}" for check, resource in fixed] or ["- none"]
        by_check = Counter(check for check, _ in ours)
        lines += ["", "Remaining, by check:", ""] + [f"- {check} ({count}): {next(n for (c, _), n in ours.items() if c == check)}"
                                                    for check, count in by_check.most_common()] + [""]
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text("\n".join(lines))


@pytest.fixture(scope="module")
def results() -> dict[str, dict[Finding, str]]:
    found = scans()
    _write_report(found)
    return found


@pytest.mark.parametrize("stack", STACKS)
def test_our_transformations_add_no_checkov_finding(results, stack):
    added = sorted(set(results[stack]) - set(results["upstream"]))
    assert added == [], "\n".join(f"{check} {resource}: {results[stack][(check, resource)]}" for check, resource in added)


def test_the_upstream_scan_is_a_real_scan(results):
    # Upstream has hundreds of known findings (wildcard ClusterRoles, no resource limits, ...);
    # an empty scan would mean checkov read nothing and every comparison above passed vacuously.
    assert len(results["upstream"]) > 300
    assert ("CKV_K8S_49", "ClusterRole.default.dex") in results["upstream"]


def test_checkov_names_resources_the_way_the_comparison_assumes(results):
    upstream_resources = {resource for _, resource in results["upstream"]}
    assert upstream_resources <= {checkov_resource(o) for o in upstream_objects(CURRENT_VERSION)}
