"""Where istiod's routing differs between the Istio versions the releases ship (1.24.6 for the prod mesh, 1.28.0), the
trace refuses rather than follow one: the only such difference in the code it models is how istiod verifies a
Gateway's `kubernetes-gateway://` credential (istio/istio@1.28.0 pilot/pkg/model/gateway.go:199-230 also matches the
Gateway's service account and ListenerSets; @1.24.6 :197-213 does not). tests/istio_cases/README.md lists what was
compared."""

from __future__ import annotations

import pytest

from analysis import policies as authz
from analysis import trace as t


def _model(protocol: str, credential: str) -> t.MeshModel:
    labels = {"app": "web"}
    return t.MeshModel([
        {"kind": "Gateway", "metadata": {"name": "web", "namespace": "istio-system"},
         "spec": {"selector": {"istio": "ingressgateway"}, "servers": [
             {"hosts": ["web.example.com"], "port": {"number": 443, "name": "https", "protocol": protocol},
              "tls": {"mode": "SIMPLE", "credentialName": credential}}]}},
        {"kind": "VirtualService", "metadata": {"name": "web", "namespace": "istio-system"},
         "spec": {"hosts": ["web.example.com"], "gateways": ["web"],
                  "http": [{"route": [{"destination": {"host": "web.web.svc.cluster.local", "port": {"number": 80}}}]}]}},
        {"kind": "Service", "metadata": {"name": "web", "namespace": "web"},
         "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]}},
        {"kind": "Deployment", "metadata": {"name": "web", "namespace": "web"},
         "spec": {"template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 8080}]}]}}}},
    ], t.MeshSettings())


@pytest.mark.parametrize("credential", ["kubernetes-gateway://istio-system/web-cert", "kubernetes-gateway://certs/web-cert"])
def test_an_https_server_with_a_gateway_api_credential_is_refused_by_name(credential):
    with pytest.raises(authz.NotModelled, match=f"credentialName {credential} .*which istiod verifies per version"):
        t.trace_request(_model("HTTPS", credential), "https://web.example.com/", t.anonymous())


def test_a_secret_of_the_gateways_namespace_and_a_plaintext_server_are_answered():
    # A plain credentialName is a Secret of the gateway pods' own namespace at both versions.
    assert t.trace_request(_model("HTTPS", "web-cert"), "https://web.example.com/", t.anonymous()).reached
    # An HTTP server never serves its credential, so it is not judged (TestMergeGateways' credential cases).
    assert t.trace_request(_model("HTTP", "kubernetes-gateway://certs/web-cert"), "https://web.example.com/",
                           t.anonymous()).reached
