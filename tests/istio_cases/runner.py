"""How a case ported from Istio's tests is put to the trace (analysis/trace.py, analysis/policies.py, analysis/routes.py).

Each area's cases are data in this folder (`<area>.yaml`), each with the Istio test or test data it comes from. `outcome`
returns what the trace answers for a case, in the form of the case's `want`; a shape the trace does not evaluate
answers `refused` (it raised NotModelled), never a guess.

`python -m tests.istio_cases.runner` prints, per area, how the trace fares on the held-out cases (`held_out/`), the
figure tests/test_istio_cases.py holds at 95 % or more of the cases it answers.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import yaml

from analysis import policies as authz
from analysis import trace as t
from analysis.routes import resolve_gateway_name, virtual_services_for_gateway

HERE = Path(__file__).parent
AREAS = ("authorization", "routing", "jwt", "peer_authentication")
#: The `now` of Istio's TestComposePeerAuthentication, fixed.
NOW = datetime(2025, 1, 1, tzinfo=timezone.utc)


def load(area: str, folder: Path = HERE) -> list[dict[str, Any]]:
    return yaml.safe_load((folder / f"{area}.yaml").read_text()) or []


# --- authorization ----------------------------------------------------------------------------------------------


def _policy(spec: dict[str, Any], namespace: str = "foo") -> dict[str, Any]:
    body = {key: value for key, value in spec.items() if key in ("action", "rules", "provider", "targetRef", "targetRefs")}
    if spec.get("selector"):
        body["selector"] = {"matchLabels": dict(spec["selector"])}
    metadata: dict[str, Any] = {"name": spec["name"], "namespace": spec.get("namespace", namespace)}
    if "dry_run" in spec:
        metadata["annotations"] = {authz.DRY_RUN_ANNOTATION: spec["dry_run"]}
    return {"kind": "AuthorizationPolicy", "metadata": metadata, "spec": body}


def _workload(case: dict[str, Any]) -> dict[str, Any]:
    """A selection case's workload: namespace, labels, waypoint (bool) and the Services it serves ([name, namespace]
    or [name, namespace, registry])."""
    workload = dict(case["workload"])
    return {"namespace": workload["namespace"], "labels": dict(workload.get("labels") or {}),
            "is_waypoint": bool(workload.get("waypoint")), "services": [tuple(s) for s in workload.get("services") or []]}


def authorization_selection(case: dict[str, Any]) -> Any:
    """Which AuthorizationPolicies istiod lists for a workload (ListAuthorizationPolicies): `namespace/name` by action."""
    workload = _workload(case)
    policies = [_policy(p) for p in case["policies"]]
    version = authz.istio_minor(case.get("istio_version"))
    try:
        found = authz.policies_for_workload(
            policies, workload["namespace"], workload["labels"], case.get("root", "istio-config"),
            waypoint_services=workload["services"] if workload["is_waypoint"] else None, istio_version=version)
    except authz.NotModelled:
        return "refused"
    return {action: sorted(f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in chosen)
            for action, chosen in found.items() if chosen}


def policy_attachment(case: dict[str, Any]) -> bool:
    """ShouldAttachPolicy for one policy and one workload (`attach`: workload, policy, selector_based_gateway_policy,
    root)."""
    attach = case["attach"]
    workload = _workload(attach)
    return authz.should_attach(
        _policy(attach["policy"]), workload["namespace"], workload["labels"], attach.get("root", "istio-system"),
        is_waypoint=workload["is_waypoint"], services=workload["services"],
        istio_version=authz.istio_minor(case.get("istio_version")),
        selector_based_gateway_policy=attach.get("selector_based_gateway_policy", True))


def authorization(case: dict[str, Any]) -> Any:
    if "attach" in case:
        return policy_attachment(case)
    if "workload" in case:
        return authorization_selection(case)
    request = case.get("request") or {}
    settings = t.MeshSettings(trust_domain=case.get("trust_domain", "cluster.local"),
                              istio_version=str(case.get("istio_version") or "1.28"))
    model = t.MeshModel([_policy(p) for p in case["policies"]], settings)
    principal = request.get("request_principal")
    claims = None
    if principal:
        iss, _, sub = principal.rpartition("/")
        claims = {"iss": iss, "sub": sub, **(request.get("claims") or {})}
    req = authz.Request(request.get("principal"), int(request.get("port", 8080)), dict(request.get("headers") or {}),
                        settings.trust_domain, request.get("method", "GET"), request.get("path", "/"),
                        request.get("host", "httpbin.foo.svc.cluster.local"), principal, claims,
                        tuple(case.get("trust_domain_aliases") or ()))
    trace = t.Trace("case", t.anonymous())
    try:
        allowed = t.authorize(model, trace, "sidecar foo/httpbin", "foo", {"app": "httpbin", "version": "v1"}, req,
                              for_tcp=bool(case.get("tcp")),
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


def _sidecar(spec: dict[str, Any]) -> dict[str, Any]:
    body = dict(spec["spec"] or {}) if "spec" in spec else {"egress": [{"hosts": list(spec.get("hosts") or [])}]}
    if spec.get("selector"):
        body["workloadSelector"] = {"labels": dict(spec["selector"])}
    metadata: dict[str, Any] = {"name": spec["name"], "namespace": spec["namespace"]}
    if "created" in spec:
        metadata["creationTimestamp"] = (NOW + timedelta(seconds=spec["created"])).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"kind": "Sidecar", "metadata": metadata, "spec": body}


def _service(entry: dict[str, Any]) -> dict[str, Any]:
    """A registry entry of a case as the Kubernetes Service istiod would read it (exportTo as its annotation)."""
    metadata: dict[str, Any] = {"name": entry.get("name", entry.get("host")), "namespace": entry["namespace"]}
    if entry.get("exportTo") is not None:
        metadata["annotations"] = {t.SERVICE_EXPORT_TO: ",".join(entry["exportTo"])}
    return {"kind": "Service", "metadata": metadata, "spec": {"ports": [{"port": p} for p in entry.get("ports") or []]}}


def sidecar_visibility(case: dict[str, Any]) -> Any:
    """Which Sidecar governs the proxy and which of the registry's services it holds: those exported to its namespace
    (servicesExportedToNamespace) that its egress listeners import, `namespace/host`, with `:port,port` when the
    entry has ports (the ports imported, a listener with a port trimming the rest)."""
    settings = t.MeshSettings(root_namespace="istio-system",
                              default_service_export_to=tuple(case.get("default_service_export_to") or ("*",)))
    model = t.MeshModel([_sidecar(s) for s in case["sidecars"]], settings)
    proxy = case["proxy"]
    scope = t.sidecar_scope(model, proxy["namespace"], dict(proxy.get("labels") or {}))
    imported = []
    try:
        if scope is not None:
            t.sidecar_egress_listeners(scope)  # a shape the trace does not evaluate is refused, services or not
        for entry in case["registry"]:
            if not t.service_visible(settings, _service(entry), proxy["namespace"]):
                continue
            ports = list(entry.get("ports") or [])
            if scope is not None and ports:
                ports = t.sidecar_imported_ports(scope, proxy["namespace"], entry["host"], entry["namespace"], ports)
                if not ports:
                    continue
            elif scope is not None and not t.sidecar_imports(scope, proxy["namespace"], entry["host"], entry["namespace"]):
                continue
            imported.append(f"{entry['namespace']}/{entry['host']}" + (f":{','.join(map(str, ports))}" if ports else ""))
    except authz.NotModelled:
        return "refused"
    name = f"{scope['metadata']['namespace']}/{scope['metadata']['name']}" if scope is not None else None
    return {"scope": name, "imported": imported}


def service_visibility(case: dict[str, Any]) -> list[str]:
    """PushContext.IsServiceVisible over the case's Services for a proxy of `proxy_namespace`: the names visible, in
    registry order."""
    defaults = tuple(case["default_service_export_to"]) if "default_service_export_to" in case else ("*",)
    settings = t.MeshSettings(default_service_export_to=defaults)
    return [entry["name"] for entry in case["services"] if t.service_visible(settings, _service(entry), case["proxy_namespace"])]


def outbound(case: dict[str, Any]) -> str:
    """The outbound traffic policy of a proxy of namespace not-default under the mesh's mode and, if any, a Sidecar."""
    settings = t.MeshSettings(outbound_traffic_policy=case.get("mesh_mode") or "ALLOW_ANY")
    sidecar = None
    if case.get("sidecar") is not None:
        sidecar = {"kind": "Sidecar", "metadata": {"name": "foo", "namespace": "not-default"}, "spec": dict(case["sidecar"])}
    try:
        return t.outbound_traffic_policy(t.MeshModel([sidecar] if sidecar else [], settings), sidecar)[0]
    except authz.NotModelled:
        return "refused"


def gateway_merging(case: dict[str, Any]) -> Any:
    """A request through gateway pods {istio: ingressgateway} whose Gateways are the case's (each with one server, as
    TestMergeGateways' makeConfig writes them); each Gateway has a VirtualService for its server's host routing to a
    backend of its own. Answers the backend reached (`reached <gateway>`), the status of a refusal, or `refused`."""
    objects: list[dict[str, Any]] = [{"kind": "Namespace", "metadata": {"name": "backend"}}]
    for gateway in case["gateways"]:
        name, namespace = gateway["name"], gateway["namespace"]
        server = {"hosts": [gateway["host"]], "port": {"number": gateway["port"], "name": gateway.get("port_name", "p"),
                                                     "protocol": gateway["protocol"]}}
        if gateway.get("tls"):
            server["tls"] = dict(gateway["tls"])
        if gateway.get("bind"):
            server["bind"] = gateway["bind"]
        objects.append({"kind": "Gateway", "metadata": {"name": name, "namespace": namespace},
                        "spec": {"selector": {"istio": gateway.get("selector", "ingressgateway")}, "servers": [server]}})
        objects.append({"kind": "VirtualService", "metadata": {"name": f"vs-{name}-{namespace}", "namespace": namespace},
                        "spec": {"hosts": [gateway["host"]], "gateways": [f"{namespace}/{name}"],
                                 "http": [{"route": [{"destination": {"host": f"{name}-{namespace}.backend.svc.cluster.local",
                                                                      "port": {"number": 80}}}]}]}})
        labels = {"app": f"{name}-{namespace}"}
        objects.append({"kind": "Service", "metadata": {"name": f"{name}-{namespace}", "namespace": "backend"},
                        "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]}})
        objects.append({"kind": "Deployment", "metadata": {"name": f"{name}-{namespace}", "namespace": "backend"},
                        "spec": {"template": {"metadata": {"labels": labels},
                                              "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 8080}]}]}}}})
    model = t.MeshModel(objects, t.MeshSettings())
    try:
        traced = t.trace_request(model, case["url"], t.anonymous())
    except authz.NotModelled:
        return "refused"
    if traced.reached:
        return "reached " + traced.backend.split(" port ")[0].rpartition("/")[2]
    return f"status {traced.status}"


def _destination_rule(spec: dict[str, Any]) -> dict[str, Any]:
    body = {"host": spec["host"], **({"exportTo": list(spec["exportTo"])} if "exportTo" in spec else {})}
    if spec.get("selector"):
        body["workloadSelector"] = {"matchLabels": dict(spec["selector"])}
    return {"kind": "DestinationRule", "metadata": {"name": spec["name"], "namespace": spec["namespace"]}, "spec": body}


def destination_rule_lookup(case: dict[str, Any]) -> Any:
    """The DestinationRule (`namespace/name`, or None) a proxy of `proxy_namespace` applies to `host` of `service_namespace`."""
    model = t.MeshModel([_destination_rule(r) for r in case["destination_rules"]], t.MeshSettings(root_namespace="istio-system"))
    try:
        rule = t.destination_rule_for(model, case["proxy_namespace"], case["service_namespace"], case["host"])
    except authz.NotModelled:
        return "refused"
    return f"{rule['metadata']['namespace']}/{rule['metadata']['name']}" if rule is not None else None


def gateway_service_visibility(case: dict[str, Any]) -> str:
    """A request through gateway pods of namespace `gateway_namespace` whose one VirtualService (in the same
    namespace) routes to `destination` (`name.namespace`); the Services of `services` (with their exportTo) each
    select a pod of their own. Answers `reached <service>`, `status <code>` or `refused`."""
    gateway_namespace = case["gateway_namespace"]
    objects: list[dict[str, Any]] = [
        {"kind": "Gateway", "metadata": {"name": "gateway", "namespace": gateway_namespace},
         "spec": {"selector": {"istio": "ingressgateway"},
                  "servers": [{"hosts": ["*"], "port": {"number": 80, "name": "http", "protocol": "HTTP"}}]}},
        {"kind": "VirtualService", "metadata": {"name": "virtual-service", "namespace": gateway_namespace},
         "spec": {"hosts": ["*"], "gateways": ["gateway"], "http": [{"route": [{"destination": {
             "host": f"{case['destination']}.svc.cluster.local"}}]}]}}]
    for entry in case["services"]:
        labels = {"app": entry["name"]}
        service = _service({**entry, "ports": [entry["port"]]})
        service["spec"]["selector"] = labels
        objects.append(service)
        objects.append({"kind": "Deployment", "metadata": {"name": entry["name"], "namespace": entry["namespace"]},
                        "spec": {"template": {"metadata": {"labels": labels},
                                              "spec": {"containers": [{"name": "c", "ports": [{"containerPort": entry["port"]}]}]}}}})
    model = t.MeshModel(objects, t.MeshSettings(gateway_namespace=gateway_namespace))
    try:
        traced = t.trace_request(model, "http://example.org/", t.anonymous())
    except authz.NotModelled:
        return "refused"
    if traced.reached:
        return "reached " + traced.backend.split(" port ")[0].rpartition(" ")[2]
    return f"status {traced.status}"


def routing(case: dict[str, Any]) -> Any:
    if "gateway_reference" in case:
        reference = case["gateway_reference"]
        return resolve_gateway_name(reference["gateway"], reference["namespace"])
    if "gateway_services" in case:
        return gateway_service_visibility(case["gateway_services"])
    if "outbound" in case:
        return outbound(case["outbound"])
    if "service_visibility" in case:
        return service_visibility(case["service_visibility"])
    if "destination_rules" in case:
        return destination_rule_lookup(case)
    if "sidecars" in case:
        return sidecar_visibility(case)
    if "gateways" in case:
        return gateway_merging(case)
    services = FIXTURES[case["fixture"]] if "fixture" in case else [
        _virtual_service(s["name"], s["namespace"], s["hosts"], s.get("gateways"), s.get("exportTo")) for s in case["services"]]
    found = virtual_services_for_gateway(services, case["proxy_namespace"], case["gateway"])
    if "want_names" in case:
        return [service["metadata"]["name"] for service in found]
    return [host for service in found for host in service["spec"]["hosts"]]


# --- JWT --------------------------------------------------------------------------------------------------------


#: createTestConfigs' RequestAuthentications (istio/istio@1.28.0 pilot/pkg/model/authentication_test.go:1606-1650;
#: @1.24.6 the same but for global-with-ref): namespace, name, selector, targetRef.
_GATEWAY = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "my-gateway"}
AUTHN_FIXTURE = [
    ("istio-config", "default", None, None),
    ("istio-config", "global-with-selector", {"app": "httpbin"}, None),
    ("istio-config", "global-with-ref", None, {"group": "gateway.networking.k8s.io", "kind": "GatewayClass", "name": "istio-waypoint"}),
    ("foo", "default", None, None),
    ("bar", "default", None, None),
    ("foo", "with-selector", {"app": "httpbin", "version": "v1"}, None),
    ("foo", "with-targetref", None, _GATEWAY),
    ("foo", "ignored-gateway-selector", {"gateway.networking.k8s.io/gateway-name": "my-gateway"}, None),
    ("bar", "with-targetref", {"app": "httpbin"}, _GATEWAY),
    ("bar", "with-targetref-service", None, {"group": "", "kind": "Service", "name": "target-service-bar"}),
]


def request_authentication_selection(case: dict[str, Any]) -> Any:
    """Which RequestAuthentications istiod applies to a workload (getConfigsForWorkload), as `namespace/name`."""
    workload = _workload(case)
    objects = []
    for namespace, name, selector, target in AUTHN_FIXTURE:
        spec: dict[str, Any] = {"jwtRules": [{"issuer": f"https://{namespace}.{name}.example.com"}]}
        if selector:
            spec["selector"] = {"matchLabels": dict(selector)}
        if target:
            spec["targetRef"] = dict(target)
        objects.append({"kind": "RequestAuthentication", "metadata": {"name": name, "namespace": namespace}, "spec": spec})
    settings = t.MeshSettings(root_namespace="istio-config", istio_version=str(case.get("istio_version") or "1.28"))
    model = t.MeshModel(objects, settings)
    try:
        rules = t.jwt_rules_for(model, workload["namespace"], workload["labels"], is_waypoint=workload["is_waypoint"],
                                services=workload["services"],
                                selector_based_gateway_policy=case.get("selector_based_gateway_policy", True))
    except authz.NotModelled:
        return "refused"
    return sorted({f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p, _ in rules})


def jwt(case: dict[str, Any]) -> Any:
    """`rules`: one RequestAuthentication's jwtRules, or `policies`: several RequestAuthentications' jwtRules.
    `served` (default true): the Istio test serves the keys of every issuer (its mock key server, or inline `jwks`),
    which the harness states as the stack declaring those issuers; false: the trace judges the key location alone.
    `mesh_hosts`: hosts of the case's service registry (ServiceEntries). `fetch_mode`: PILOT_JWT_ENABLE_REMOTE_JWKS.
    `sent`: headers the client sends besides the token (`Authorization: Bearer <token>` when there is one); a case
    wanting `upstream` gets the headers jwt_authn passes on. A case with `workload` asks which RequestAuthentications
    of AUTHN_FIXTURE apply to it instead. `istio_version`: the mesh's (default 1.28)."""
    if "workload" in case:
        return request_authentication_selection(case)
    groups = case["policies"] if "policies" in case else ([case["rules"]] if case["rules"] else [])
    objects: list[dict[str, Any]] = [
        {"kind": "RequestAuthentication", "metadata": {"name": f"ra-{index}", "namespace": "foo"},
         "spec": {"jwtRules": list(rules)} if rules else {}} for index, rules in enumerate(groups)]
    objects += [{"kind": "ServiceEntry", "metadata": {"name": host, "namespace": "mesh"}, "spec": {"hosts": [host]}}
                for host in case.get("mesh_hosts") or []]
    issuers = tuple(t.Issuer(str(rule["issuer"])) for rules in groups for rule in rules or []
                    if case.get("served", True) and rule.get("issuer"))
    model = t.MeshModel(objects, t.MeshSettings(issuers=issuers, jwks_fetch_mode=case.get("fetch_mode", "istiod"),
                                                istio_version=str(case.get("istio_version") or "1.28")))
    sent = {str(name): str(value) for name, value in (case.get("sent") or {}).items()}
    if case.get("token") is not None:
        sent["authorization"] = "Bearer <token>"
    try:
        rules = t.jwt_rules_for(model, "foo", {"app": "httpbin"})
        verdict = t.verify_token(rules, case.get("token"), now=NOW.timestamp(), headers=sent)
    except authz.NotModelled:
        return {"outcome": "refused"}
    found: dict[str, Any] = {"outcome": verdict.outcome}
    if verdict.status is not None:
        found["status"] = verdict.status
    if verdict.headers:
        found["headers"] = dict(verdict.headers)
    if "upstream" in (case.get("want") or {}) and verdict.outcome != "invalid":
        found["upstream"] = verdict.forward(sent)
    if "claims" in (case.get("want") or {}):
        found["claims"] = {key: verdict.claims[key] for key in case["want"]["claims"]} if verdict.claims else None
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
    settings = t.MeshSettings(root_namespace=case.get("root", "root-namespace"))
    model = t.MeshModel([_peer_authentication(p) for p in case["policies"]], settings)
    labels = case["labels"] if "labels" in case else {"app": "foo", "stage": "prod"}
    workload = t.Workload({}, case.get("namespace", "my-ns"), dict(labels or {}), {}, "sa", [])
    found: dict[str, Any] = {"mode": t.peer_authentication_mode(model, workload, 1)[0]}
    ports = (case.get("want") or {}).get("ports")
    if ports:
        found["ports"] = {str(port): t.peer_authentication_mode(model, workload, int(port))[0] for port in ports}
    return found


OUTCOME = {"authorization": authorization, "routing": routing, "jwt": jwt, "peer_authentication": peer_authentication}


def outcome(area: str, case: dict[str, Any]) -> Any:
    return OUTCOME[area](case)


def expected(area: str, case: dict[str, Any]) -> Any:
    for key in ("want_hosts", "want_names"):
        if key in case:
            return case[key]
    return case["want"]


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
