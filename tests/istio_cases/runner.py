"""How a case ported from Istio's tests is put to the trace (analysis/trace.py, analysis/policies.py, analysis/routes.py).

Each area's cases are data in this folder (`<area>.yaml`), each with the Istio test or test data it comes from. `outcome`
returns what the trace answers for a case, in the form of the case's `want`; a shape the trace does not evaluate
answers `refused` (it raised NotModelled), never a guess.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import yaml

from analysis import policies as authz
from analysis import trace as t
from analysis.routes import virtual_services_for_gateway

HERE = Path(__file__).parent
AREAS = ("authorization", "routing", "jwt", "peer_authentication")
#: The `now` of Istio's TestComposePeerAuthentication, fixed.
NOW = datetime(2025, 1, 1, tzinfo=timezone.utc)


def load(area: str, folder: Path = HERE) -> list[dict[str, Any]]:
    return yaml.safe_load((folder / f"{area}.yaml").read_text()) or []


# --- authorization ----------------------------------------------------------------------------------------------


def _policy(spec: dict[str, Any], namespace: str = "foo") -> dict[str, Any]:
    body = {key: value for key, value in spec.items() if key in ("action", "rules", "provider")}
    if spec.get("selector"):
        body["selector"] = {"matchLabels": dict(spec["selector"])}
    metadata: dict[str, Any] = {"name": spec["name"], "namespace": spec.get("namespace", namespace)}
    if "dry_run" in spec:
        metadata["annotations"] = {authz.DRY_RUN_ANNOTATION: spec["dry_run"]}
    return {"kind": "AuthorizationPolicy", "metadata": metadata, "spec": body}


def authorization(case: dict[str, Any]) -> str:
    request = case.get("request") or {}
    settings = t.MeshSettings(trust_domain=case.get("trust_domain", "cluster.local"))
    model = t.MeshModel([_policy(p) for p in case["policies"]], settings)
    principal = request.get("request_principal")
    claims = None
    if principal:
        iss, _, sub = principal.rpartition("/")
        claims = {"iss": iss, "sub": sub}
    req = authz.Request(request.get("principal"), int(request.get("port", 8080)), dict(request.get("headers") or {}),
                        settings.trust_domain, request.get("method", "GET"), request.get("path", "/"),
                        request.get("host", "httpbin.foo.svc.cluster.local"), principal, claims,
                        tuple(case.get("trust_domain_aliases") or ()))
    trace = t.Trace("case", t.anonymous())
    try:
        allowed = t.authorize(model, trace, "sidecar foo/httpbin", "foo", {"app": "httpbin", "version": "v1"}, req,
                              ext_authz=lambda policy: (False, "no external authorizer in the case", 403))
    except authz.NotModelled:
        return "refused"
    return "allow" if allowed else "deny"


# --- routing ----------------------------------------------------------------------------------------------------


def _virtual_service(name: str, namespace: str, hosts: list[str], gateways: list[str] | None = None,
                     export_to: list[str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"hosts": hosts}
    if gateways:
        spec["gateways"] = gateways
    if export_to:
        spec["exportTo"] = export_to
    return {"kind": "VirtualService", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


#: TestVirtualServiceWithExportTo's objects (istio/istio@1.28.0 pilot/pkg/model/push_context_test.go:2751-2815).
FIXTURES = {
    "export_to": [
        _virtual_service("rule1", "test1", ["rule1.com"], None, [".", "ns1"]),
        _virtual_service("rule2", "test2", ["rule2.com"], None, ["test2", "ns1", "test1"]),
        _virtual_service("rule3", "test3", ["rule3.com"], ["mesh"], ["test1", "test2", "*"]),
        _virtual_service("rule2Gw", "test2", ["rule2gw.com"], ["default/gateway", "mesh"], ["test2", "ns1", "test1"]),
        _virtual_service("rule3Gw", "test3", ["rule3gw.com"], ["default/gateway"], ["test1", "test2", "*"]),
        _virtual_service("zzz", "zzz", ["rootNS.com"]),
    ],
}


def routing(case: dict[str, Any]) -> list[str]:
    services = FIXTURES[case["fixture"]] if "fixture" in case else [
        _virtual_service(s["name"], s["namespace"], s["hosts"], s.get("gateways"), s.get("exportTo")) for s in case["services"]]
    found = virtual_services_for_gateway(services, case["proxy_namespace"], case["gateway"])
    return [host for service in found for host in service["spec"]["hosts"]]


# --- JWT --------------------------------------------------------------------------------------------------------


def jwt(case: dict[str, Any]) -> dict[str, Any]:
    policy = {"kind": "RequestAuthentication", "metadata": {"name": "ra", "namespace": "foo"},
              "spec": {"jwtRules": list(case["rules"])}}
    model = t.MeshModel([policy] if case["rules"] else [], t.MeshSettings())
    try:
        rules = t.jwt_rules_for(model, "foo", {"app": "httpbin"})
        verdict = t.verify_token(rules, case.get("token"), now=NOW.timestamp())
    except authz.NotModelled:
        return {"outcome": "refused"}
    found: dict[str, Any] = {"outcome": verdict.outcome}
    if verdict.status is not None:
        found["status"] = verdict.status
    if verdict.headers:
        found["headers"] = dict(verdict.headers)
    return found


# --- PeerAuthentication -----------------------------------------------------------------------------------------


def _peer_authentication(spec: dict[str, Any]) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": spec["name"], "namespace": spec["namespace"]}
    if "created" in spec:
        metadata["creationTimestamp"] = (NOW + timedelta(seconds=spec["created"])).strftime("%Y-%m-%dT%H:%M:%SZ")
    body: dict[str, Any] = {}
    if spec.get("selector"):
        body["selector"] = {"matchLabels": dict(spec["selector"])}
    if spec.get("mode"):
        body["mtls"] = {"mode": spec["mode"]}
    if spec.get("ports"):
        body["portLevelMtls"] = {str(port): ({"mode": mode} if mode else {}) for port, mode in spec["ports"].items()}
    return {"kind": "PeerAuthentication", "metadata": metadata, "spec": body}


def peer_authentication(case: dict[str, Any]) -> dict[str, Any]:
    settings = t.MeshSettings(root_namespace="root-namespace")
    model = t.MeshModel([_peer_authentication(p) for p in case["policies"]], settings)
    workload = t.Workload({}, "my-ns", {"app": "foo", "stage": "prod"}, {}, "sa", [])
    found: dict[str, Any] = {"mode": t.peer_authentication_mode(model, workload, 1)[0]}
    ports = (case.get("want") or {}).get("ports")
    if ports:
        found["ports"] = {str(port): t.peer_authentication_mode(model, workload, int(port))[0] for port in ports}
    return found


OUTCOME = {"authorization": authorization, "routing": routing, "jwt": jwt, "peer_authentication": peer_authentication}


def outcome(area: str, case: dict[str, Any]) -> Any:
    return OUTCOME[area](case)


def expected(area: str, case: dict[str, Any]) -> Any:
    return case["want_hosts"] if area == "routing" else case["want"]


def measure(folder: Path = HERE / "held_out") -> dict[str, tuple[int, int, int, list[str]]]:
    """Per area: (cases, agreeing, refused, disagreeing ids) over cases the suite does not hold."""
    found = {}
    for area in AREAS:
        agree, refused, disagree = 0, 0, []
        cases = load(area, folder) if (folder / f"{area}.yaml").exists() else []
        for case in cases:
            got = outcome(area, case)
            if got == "refused" or (isinstance(got, dict) and got.get("outcome") == "refused"):
                refused += 1
            elif got == expected(area, case):
                agree += 1
            else:
                disagree.append(case["id"])
        found[area] = (len(cases), agree, refused, disagree)
    return found


if __name__ == "__main__":
    # python -m tests.istio_cases.runner: agreement on the held-out cases (tests/istio_cases/held_out/), which no test
    # asserts, so that the figure measures the trace rather than what it was tuned to.
    results = measure()
    total = sum(r[0] for r in results.values())
    agree = sum(r[1] for r in results.values())
    refused = sum(r[2] for r in results.values())
    for area, (cases, agreeing, refusing, disagreeing) in results.items():
        print(f"{area}: {cases} cases, {agreeing} agree, {refusing} refused, {len(disagreeing)} disagree {disagreeing or ''}")
    print(f"held out: {total} cases; {agree} of {total - refused} the trace answers agree "
          f"({100 * agree / max(total - refused, 1):.1f} %); {refused} refused")
