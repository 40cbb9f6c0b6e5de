"""checkov (Kubernetes framework) over what each stack applies, against the same scan of unmodified upstream.

Our transformations must not add a finding: a (check id, resource) pair in the Kubeflow component's output
that upstream does not have fails the test. Upstream findings that are gone are listed in
build/checkov-report.md, split into those our transformations fixed (the object is still applied) and
those of objects the stack excludes (the enterprise runs that component itself). The objects the other
components write themselves (auth proxy, profiles, GPU placeholders) are scanned too, and held to the
findings written down below, each with its reason.

checkov has heavy dependencies of its own, so it lives in its own venv (`make scan-venv`, `.venv-scan`)
and runs as a subprocess; CHECKOV names another binary. Each input is scanned once per session, all of
them in parallel.
"""

from __future__ import annotations

import concurrent.futures
import functools
import json
import os
import subprocess
import tempfile
from collections import Counter
from pathlib import Path

import pytest
import yaml

from tests.conftest import STACKS
from tests.plans import evaluated_plan
from tests.upstream import CURRENT_VERSION, REPO_ROOT, upstream_objects
from tools.plan import CONFIG_GROUP, kubernetes_objects

CHECKOV = os.environ.get("CHECKOV") or str(REPO_ROOT / ".venv-scan" / "bin" / "checkov")
REPORT = REPO_ROOT / "build" / "checkov-report.md"
# checkov skips files above its size limit silently (a 10 MB rendered release scans as 0 resources),
# so objects are written a few dozen per file.
OBJECTS_PER_FILE = 50
#: The Kubeflow component's ConfigGroups: upstream, transformed.
KUBEFLOW_COMPONENT = "kubeflow-platform:kubeflow:Kubeflow$"

Finding = tuple[str, str]  # (check id, resource as checkov names it: Kind.namespace.name)

_PROXY = "Deployment.oauth2-proxy.oauth2-proxy"
_PLACEHOLDER = "Deployment.gpu-warm-capacity.gpu-placeholder-gpu-a10g"
#: The findings left on objects our components write themselves: check -> (where, why it stays). The test
#: fails on any other, and on one of these that is gone.
OWN_FINDINGS_ACCEPTED: dict[str, tuple[frozenset[str], str]] = {
    "CKV_K8S_11": (frozenset({_PROXY}), "No CPU limit on the auth proxy: CFS throttling under a burst would stall every "
                   "login; its memory is limited."),
    "CKV_K8S_15": (frozenset({_PROXY, _PLACEHOLDER}), "Images come from the enterprise mirror under pinned tags; pulling "
                   "Always would make every restart depend on the registry."),
    "CKV_K8S_43": (frozenset({_PROXY, _PLACEHOLDER}), "Pinned by tag through the same mirror rules as every Kubeflow image "
                   "(images.txt is reviewed); digests are the mirror's to pin."),
    "CKV_K8S_35": (frozenset({_PROXY}), "The client and cookie secrets reach oauth2-proxy as environment variables from "
                   "its Secret, never in its config file or arguments."),
    "CKV_K8S_8": (frozenset({_PLACEHOLDER}), "pause serves nothing: there is no endpoint to probe and no traffic to gate."),
    "CKV_K8S_9": (frozenset({_PLACEHOLDER}), "pause serves nothing: there is no endpoint to probe and no traffic to gate."),
}


_LOCAL_GATEWAY = "Deployment.istio-system.knative-local-gateway"
#: Findings on objects the Kubeflow component adds that upstream has under another name: check -> (where, why).
ADDED_FINDINGS_ACCEPTED: dict[str, tuple[frozenset[str], str]] = {
    "CKV_K8S_14": (frozenset({_LOCAL_GATEWAY}), "`image: auto` is Istio's placeholder: its injector puts the mesh's own proxy "
                   "image there (mesh.clusterLocalGateway program; upstream's excluded cluster-local-gateway pins one)."),
    "CKV_K8S_43": (frozenset({_LOCAL_GATEWAY}), "The same placeholder: the mesh's proxy image, as pinned by the mesh owner."),
    "CKV_K8S_38": (frozenset({_LOCAL_GATEWAY}), "An Istio gateway talks to istiod with its account (as upstream's, which mounts it too)."),
    "CKV_K8S_40": (frozenset({_LOCAL_GATEWAY}), "Istio's proxy runs as 1337, the UID its traffic rules and injector expect."),
    "CKV_K8S_8": (frozenset({_LOCAL_GATEWAY}), "Istio's gateways have a readiness probe and no liveness probe (as upstream's)."),
}


def checkov_resource(obj: dict) -> str:
    """How checkov names an object: Kind.namespace.name, `default` for cluster-scoped ones."""
    metadata = obj.get("metadata") or {}
    return f"{obj['kind']}.{metadata.get('namespace') or 'default'}.{metadata['name']}"


@functools.lru_cache(maxsize=None)
def checkov_version() -> str:
    if not Path(CHECKOV).exists():
        raise FileNotFoundError(f"checkov not found at {CHECKOV}: run `make scan-venv` (or set CHECKOV)")
    return subprocess.run([CHECKOV, "--version"], capture_output=True, text=True, check=True).stdout.strip()


def scan(objects: list[dict]) -> dict[Finding, str]:
    """Failed checks of `objects`: (check id, resource) -> check name."""
    # checkov has no check on CustomResourceDefinitions, and their schemas are most of the release's bytes:
    # leaving them out takes a scan from ~20 s to ~6 s with the same findings.
    objects = [obj for obj in objects if obj.get("kind") != "CustomResourceDefinition"]
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
    report = json.loads(result.stdout) if result.stdout.strip() else []
    reports = report if isinstance(report, list) else [report]
    summary = reports[0].get("summary", {}) if reports else {}
    if summary.get("parsing_errors") or summary.get("resource_count", 0) < len(objects) * 0.9:
        raise RuntimeError(f"checkov read {summary.get('resource_count')} of {len(objects)} objects "
                           f"({summary.get('parsing_errors')} parsing errors)")
    return {(failed["check_id"], failed["resource"]): failed["check_name"]
            for part in reports for failed in (part.get("results") or {}).get("failed_checks", [])}


def stack_objects(stack: str) -> tuple[list[dict], list[dict]]:
    """(the Kubeflow component's objects, the objects the other components write) of the stack's plan.
    Patches of existing objects are left out: checkov would judge a fragment as a whole object."""
    plan, _ = evaluated_plan(stack)
    types = {resource["urn"]: resource["type"] for resource in plan["resources"]}
    kubeflow, own = [], []
    for found in kubernetes_objects(plan).objects:
        if found.patch:
            continue
        in_kubeflow = types.get(found.urn) == CONFIG_GROUP and KUBEFLOW_COMPONENT in found.urn
        (kubeflow if in_kubeflow else own).append(found.obj)
    return kubeflow, own


@functools.lru_cache(maxsize=None)
def scans() -> dict[str, dict[Finding, str]]:
    """Upstream and each stack's output, scanned in parallel once per session."""
    inputs = {"upstream": upstream_objects(CURRENT_VERSION)}
    for stack in STACKS:
        inputs[stack], inputs[f"{stack}-own"] = stack_objects(stack)
    checkov_version()
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(inputs)) as pool:
        futures = {name: pool.submit(scan, objects) for name, objects in inputs.items()}
        return {name: future.result() for name, future in futures.items()}


def gone(results: dict[str, dict[Finding, str]], stack: str) -> tuple[list[Finding], list[Finding]]:
    """Upstream findings not in the stack's output: (fixed by a transformation, gone with an exclusion)."""
    applied = {checkov_resource(obj) for obj in stack_objects(stack)[0]}
    missing = sorted(set(results["upstream"]) - set(results[stack]))
    return [f for f in missing if f[1] in applied], [f for f in missing if f[1] not in applied]


def _write_report(results: dict[str, dict[Finding, str]]) -> None:
    upstream = results["upstream"]
    lines = ["# checkov (Kubernetes) findings: upstream Kubeflow vs each stack's output", "",
             f"checkov {checkov_version()}; upstream v{CURRENT_VERSION}: {len(upstream)} failed checks.", ""]
    for stack in STACKS:
        ours, own = results[stack], results[f"{stack}-own"]
        fixed, excluded = gone(results, stack)
        lines += [f"## {stack}", "",
                  f"Kubeflow component: {len(ours)} failed checks; added {len(set(ours) - set(upstream))}; "
                  f"{len(fixed)} fixed by our transformations; {len(excluded)} gone with excluded components.",
                  f"Objects the other components write: {len(own)} failed checks.", "",
                  "Fixed by our transformations:", ""]
        lines += [f"- {check} {resource}: {upstream[(check, resource)]}" for check, resource in fixed] or ["- none"]
        for title, found in (("Remaining in the Kubeflow component, by check:", ours), ("Own objects, by check:", own)):
            by_check = Counter(check for check, _ in found)
            names = {check: name for (check, _), name in found.items()}
            lines += ["", title, ""] + [f"- {check} ({count}): {names[check]}" for check, count in by_check.most_common()]
        lines.append("")
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text("\n".join(lines))


@pytest.fixture(scope="module")
def results() -> dict[str, dict[Finding, str]]:
    found = scans()
    _write_report(found)
    return found


@pytest.mark.parametrize("stack", STACKS)
def test_our_transformations_add_no_checkov_finding(results, stack):
    accepted = {(check, resource) for check, (resources, _) in ADDED_FINDINGS_ACCEPTED.items() for resource in resources}
    added = sorted(set(results[stack]) - set(results["upstream"]) - accepted)
    assert added == [], "\n".join(f"{check} {resource}: {results[stack][(check, resource)]}" for check, resource in added)


def test_the_upstream_scan_is_a_real_scan(results):
    # Upstream has hundreds of known findings (wildcard ClusterRoles, no resource limits, ...);
    # an empty scan would mean checkov read nothing and every comparison above passed vacuously.
    assert len(results["upstream"]) > 300
    assert ("CKV_K8S_49", "ClusterRole.default.dex") in results["upstream"]


def test_checkov_names_resources_the_way_the_comparison_assumes(results):
    upstream_resources = {resource for _, resource in results["upstream"]}
    assert upstream_resources <= {checkov_resource(o) for o in upstream_objects(CURRENT_VERSION)}


def test_our_own_objects_have_only_the_findings_written_down_with_their_reasons(results):
    accepted = {(check, resource) for check, (resources, _) in OWN_FINDINGS_ACCEPTED.items() for resource in resources}
    found = {finding for stack in STACKS for finding in results[f"{stack}-own"]}
    assert found - accepted == set(), "new findings on our own objects: fix them, or write down why they stay"
    assert accepted - found == set(), "an accepted finding is gone: remove it from OWN_FINDINGS_ACCEPTED"
