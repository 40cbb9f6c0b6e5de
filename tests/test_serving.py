"""Model serving: the hosts Knative and KServe give InferenceServices are the hosts the platform serves.

Knative names a route's host from its ConfigMaps; net-istio marks the route ready only once the gateway
pods answer a probe sent with that host (knative-extensions/net-istio@knative-v1.16.0
pkg/reconciler/ingress/lister.go:62-100, ingress.go:254-270). So the tests below derive the hosts the way
Knative and KServe do, from what the program emits, and hold the Gateway, the certificate and the DNS
records to them, for both stacks and both supported releases.
"""

from __future__ import annotations

import json
import re

import pytest
import yaml

from manifests.options import ServingOptions
from manifests.serving import set_serving_domain
from tests.conftest import STACKS, run_stack
from tests.test_contracts import SUPPORTED_RELEASES, emitted_objects, objects_of
from tests.test_kubeflow import run_release
from tools.mock_runtime import stack_config

#: knative/serving@knative-v1.16.2 vendor/knative.dev/networking/pkg/config/config.go:56 (same in 1.12.4).
KNATIVE_DEFAULT_TEMPLATE = "{{.Name}}.{{.Namespace}}.{{.Domain}}"
#: What Knative uses when config-domain names no default domain (pkg/reconciler/route/config/domain.go:116-118).
CLUSTER_LOCAL_DOMAIN = "svc.cluster.local"
SAMPLE_INFERENCE_SERVICE = "sklearn-iris"


def _dns(stack: str) -> dict:
    return stack_config(stack)["kubeflow-platform:dns"]


def _profile_namespace(stack: str) -> str:
    return stack_config(stack)["kubeflow-platform:tenancy"]["profiles"][0]["name"]


def _configmap(objects: list[dict], namespace: str | None, name: str) -> dict:
    (found,) = [
        o for o in objects
        if o.get("kind") == "ConfigMap" and o["metadata"]["name"] == name
        and (namespace is None or o["metadata"].get("namespace") == namespace)
    ]
    return found.get("data") or {}


def knative_default_domain(objects: list[dict]) -> str:
    """The domain Knative gives a route without labels: the key whose value has no selector
    (knative/serving@knative-v1.16.2 pkg/reconciler/route/config/domain.go:95-120)."""
    data = _configmap(objects, "knative-serving", "config-domain")
    defaults = [key for key, value in data.items()
                if key != "_example" and not (yaml.safe_load(value or "") or {}).get("selector")]
    assert len(defaults) <= 1, f"config-domain names several default domains: {defaults}"
    return defaults[0] if defaults else CLUSTER_LOCAL_DOMAIN


def knative_route_host(objects: list[dict], route: str, namespace: str) -> str:
    """The host Knative gives an external route (pkg/reconciler/route/domains/domains.go:97-135)."""
    template = _configmap(objects, "knative-serving", "config-network").get("domain-template", KNATIVE_DEFAULT_TEMPLATE)
    values = {"Name": route, "Namespace": namespace, "Domain": knative_default_domain(objects)}
    return re.sub(r"\{\{\s*\.(\w+)\s*\}\}", lambda m: values[m.group(1)], template)


def kserve_service_host(knative_predictor_host: str) -> str:
    """A serverless InferenceService's host: its predictor's Knative host without `-predictor`
    (kserve/kserve@v0.15.0 pkg/controller/v1beta1/inferenceservice/reconcilers/ingress/ingress_reconciler.go:163-197)."""
    return knative_predictor_host.replace("-predictor", "", 1)


def istio_host_matches(gateway_host: str, host: str) -> bool:
    """istio/istio@1.24.6 pkg/config/host/name.go:37-60: a wildcard matches by suffix, any depth."""
    if gateway_host == "*":
        return True
    if gateway_host.startswith("*"):
        return host.endswith(gateway_host[1:])
    return host == gateway_host


def tls_name_covers(certificate_name: str, host: str) -> bool:
    """A certificate's wildcard covers exactly one leftmost label (RFC 6125 section 6.4.3)."""
    if certificate_name.startswith("*."):
        label, _, rest = host.partition(".")
        return bool(label) and rest == certificate_name[2:]
    return host == certificate_name


def _sample_hosts(objects: list[dict], stack: str) -> list[str]:
    """The external hosts of a sample InferenceService in a profile's namespace: Knative's route for its
    predictor, and KServe's top-level host derived from it."""
    predictor = knative_route_host(objects, f"{SAMPLE_INFERENCE_SERVICE}-predictor", _profile_namespace(stack))
    return [predictor, kserve_service_host(predictor)]


def _central_gateway(objects: list[dict], stack: str) -> dict:
    ingress = stack_config(stack)["kubeflow-platform:ingress"]
    (gateway,) = [
        o for o in objects
        if o.get("kind") == "Gateway" and o["metadata"]["name"] == ingress["gatewayName"]
        and o["metadata"]["namespace"] == ingress.get("gatewayNamespace", "kubeflow")
    ]
    return gateway


@pytest.mark.parametrize("release", SUPPORTED_RELEASES)
@pytest.mark.parametrize("stack", STACKS)
def test_serving_hosts_are_served_by_the_central_gateway(stack, release):
    objects = objects_of(stack, release)
    gateway = _central_gateway(objects, stack)
    gateway_ref = f"{gateway['metadata']['namespace']}/{gateway['metadata']['name']}"
    # net-istio binds external routes to, and probes, the gateways config-istio names (gateway.<ns>.<name>);
    # KServe binds its InferenceService routes to `ingressGateway`.
    istio_gateways = {key.removeprefix("gateway.").replace(".", "/", 1)
                      for key in _configmap(objects, "knative-serving", "config-istio") if key.startswith("gateway.")}
    assert istio_gateways == {gateway_ref}
    assert json.loads(_configmap(objects, None, "inferenceservice-config")["ingress"])["ingressGateway"] == gateway_ref

    hosts = _sample_hosts(objects, stack)
    assert all(not h.endswith("." + CLUSTER_LOCAL_DOMAIN) for h in hosts), f"{hosts} are cluster-local only"
    served = [h for server in gateway["spec"]["servers"] for h in server["hosts"]]
    assert [h for h in hosts if not any(istio_host_matches(g, h) for g in served)] == []
    # Kubeflow's own hosts are not taken over by the serving wildcard.
    assert all(not istio_host_matches(g, _dns(stack)["host"]) for g in served if g.startswith("*"))


def kserve_status_url_host(objects: list[dict], stack: str) -> str:
    """The host of the URL KServe reports for the sample InferenceService (`status.url`): its top-level
    host, or `ingressDomain` when `ingress.pathTemplate` is set, the URL then being
    `<urlScheme>://<ingressDomain>/<path>` (kserve/kserve@v0.16.0
    pkg/controller/v1beta1/inferenceservice/reconcilers/ingress/ingress_reconciler.go:159-183; the
    VirtualService then serves that host too, :568, 661)."""
    ingress = json.loads(_configmap(objects, None, "inferenceservice-config")["ingress"])
    if ingress.get("pathTemplate"):
        return ingress.get("ingressDomain") or "example.com"  # configmap.go:328-330
    return _sample_hosts(objects, stack)[1]


#: Kubeflow 26.03's manifests turn on KServe's path-based URLs (`pathTemplate`), the first release to do so.
PATH_TEMPLATE_RELEASE = "26.03"


@pytest.mark.parametrize("release", list(dict.fromkeys((PATH_TEMPLATE_RELEASE, *SUPPORTED_RELEASES))))
@pytest.mark.parametrize("stack", STACKS)
def test_inference_service_urls_are_hosts_the_gateway_and_certificate_serve(stack, release):
    run = run_release(stack, release)
    objects = objects_of(stack, release)
    host = kserve_status_url_host(objects, stack)
    served = [h for server in _central_gateway(objects, stack)["spec"]["servers"] for h in server["hosts"]]
    (certificate,) = run.of_type("aws:acm/certificate:Certificate")
    names = [certificate.inputs["domainName"], *certificate.inputs.get("subjectAlternativeNames", [])]
    # The URL users are shown (the models web app reads status.url) must answer: on the Gateway, under the
    # certificate, and so in the serving wildcard's DNS records.
    assert any(istio_host_matches(g, host) for g in served), f"{host} is not served by {served}"
    assert any(tls_name_covers(n, host) for n in names), f"{host} is not covered by {names}"


def test_kserve_path_based_urls_are_turned_off_with_or_without_a_serving_domain():
    ingress = {"ingressGateway": "kubeflow/kubeflow-gateway", "ingressDomain": "example.com",
               "pathTemplate": "/serving/{{ .Namespace }}/{{ .Name }}"}
    kserve = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "inferenceservice-config", "namespace": "kubeflow"},
              "data": {"ingress": json.dumps(ingress)}}
    for domain in ("serving.example.net", None):
        result = set_serving_domain([kserve], ServingOptions(domain=domain))
        patched = json.loads(result.objects[0]["data"]["ingress"])
        assert "pathTemplate" not in patched
        assert any("pathTemplate" in change.what for change in result.changes)
    assert "pathTemplate" in json.loads(kserve["data"]["ingress"])  # the input is never modified


def test_serving_domain_has_certificate_and_dns_records(stack_run):
    objects = emitted_objects(stack_run)
    hosts = _sample_hosts(objects, stack_run.stack)
    (certificate,) = stack_run.of_type("aws:acm/certificate:Certificate")
    names = [certificate.inputs["domainName"], *certificate.inputs.get("subjectAlternativeNames", [])]
    # TLS ends at the NLB with this certificate: every host must be covered, or clients refuse it.
    assert [h for h in hosts if not any(tls_name_covers(n, h) for n in names)] == []

    wildcard = f"*.{_dns(stack_run.stack)['servingDomain']}"
    validated = [r.inputs["name"] for r in stack_run.of_type("aws:route53/record:Record")
                 if r.name.startswith("certificate-validation-")]
    (option,) = [o for o in certificate.outputs["domainValidationOptions"] if o["domainName"] == wildcard]
    assert option["resourceRecordName"] in validated

    aliases = [r for r in stack_run.of_type("aws:route53/record:Record") if r.inputs.get("aliases")]
    serving = sorted(r.inputs["type"] for r in aliases if r.inputs["name"] == wildcard)
    assert serving == ["A", "AAAA"]
    for record in aliases:
        assert record.inputs["aliases"][0]["name"] == stack_run.exports["loadBalancerHostname"]


def test_knative_config_domain_is_the_serving_domain(stack_run):
    objects = emitted_objects(stack_run)
    domain = _dns(stack_run.stack)["servingDomain"]
    data = _configmap(objects, "knative-serving", "config-domain")
    assert {key: value for key, value in data.items() if key != "_example"} == {domain: ""}
    assert knative_default_domain(objects) == domain
    ingress = json.loads(_configmap(objects, None, "inferenceservice-config")["ingress"])
    assert (ingress["ingressDomain"], ingress["urlScheme"]) == (domain, "https")
    assert _configmap(objects, "knative-serving", "config-network")["default-external-scheme"] == "https"


def test_without_a_serving_domain_knative_routes_stay_cluster_local():
    dns = {key: value for key, value in _dns("dev").items() if key != "servingDomain"}
    run = run_stack("dev", {"dns": dns})
    objects = emitted_objects(run)
    # No default domain: Knative falls back to svc.<cluster domain>, and such routes get no external host
    # (knative/serving@knative-v1.16.2 pkg/reconciler/route/visibility/visibility.go:65-72).
    assert knative_default_domain(objects) == CLUSTER_LOCAL_DOMAIN
    assert all(h.endswith("." + CLUSTER_LOCAL_DOMAIN) for h in _sample_hosts(objects, "dev"))
    # Nothing external is promised: no wildcard on the Gateway, the certificate or in DNS.
    served = [h for server in _central_gateway(objects, "dev")["spec"]["servers"] for h in server["hosts"]]
    (certificate,) = run.of_type("aws:acm/certificate:Certificate")
    records = [r.inputs["name"] for r in run.of_type("aws:route53/record:Record") if r.inputs.get("aliases")]
    assert not any(name.startswith("*") for name in [*served, *certificate.inputs.get("subjectAlternativeNames", []), *records])


def test_only_knatives_and_kserves_own_configmaps_are_rewritten():
    lookalike = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "config-domain", "namespace": "team-a"},
                 "data": {"example.com": ""}}
    knative = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "config-domain", "namespace": "knative-serving"},
               "data": {"_example": "docs", "example.com": "", "example.org": "selector:\n  app: nonprofit\n"}}
    result = set_serving_domain([lookalike, knative], ServingOptions(domain="serving.example.net"))
    assert result.objects[0] is lookalike
    assert result.objects[1]["data"] == {"_example": "docs", "serving.example.net": ""}
    assert knative["data"]["example.com"] == ""  # the input is never modified
