"""Who may send kubeflow-userid, and whether every consumer names the gateway the stack configures.

The DENY policies are evaluated with analysis/policies.py (Istio's rule matching) on what both stacks
emit; the gateway's principal is followed through upstream's policies, the profile controller's
ConfigMap and the program's own policies with a non-default service account, namespace and trust domain.
"""

from __future__ import annotations

import json

import pytest

from analysis.policies import Request, denies
from manifests.mesh import GATEWAY_PRINCIPAL_KEY, METADATA_ENVOY_SERVICE_ACCOUNT
from manifests.objects import object_ref, pod_template
from tests.conftest import STACKS, run_stack
from tests.test_contracts import SUPPORTED_RELEASES, emitted_objects, objects_of
from tools.mock_runtime import stack_config

POLICY = "kubeflow-identity-header-from-gateway-only"
USER = {"kubeflow-userid": "alice@example.com"}
GATEWAY = "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"


def _one(objects, kind, namespace, name_prefix):
    found = [o for o in objects if o["kind"] == kind and o["metadata"].get("namespace") == namespace
             and o["metadata"]["name"].startswith(name_prefix)]
    assert len(found) == 1, (kind, namespace, name_prefix, [object_ref(o) for o in found])
    return found[0]


@pytest.mark.parametrize("release", SUPPORTED_RELEASES)
@pytest.mark.parametrize("stack", STACKS)
def test_metadata_envoy_may_forward_the_identity_header_to_metadata_grpc(stack, release):
    objects = objects_of(stack, release)
    envoy = _one(objects, "Deployment", "kubeflow", "metadata-envoy-deployment")
    assert pod_template(envoy)["spec"]["serviceAccountName"] == METADATA_ENVOY_SERVICE_ACCOUNT
    _one(objects, "ServiceAccount", "kubeflow", METADATA_ENVOY_SERVICE_ACCOUNT)
    policy = _one(objects, "AuthorizationPolicy", "kubeflow", POLICY)
    # metadata-envoy passes the gateway's header on to metadata-grpc-service:8080.
    assert not denies(policy, Request(f"cluster.local/ns/kubeflow/sa/{METADATA_ENVOY_SERVICE_ACCOUNT}", 8080, USER))
    # Not by trusting `default`: every other workload of the namespace is still refused the header.
    for other in ("default", "ml-pipeline-visualizationserver", "kubeflow-pipelines-metadata-writer"):
        assert denies(policy, Request(f"cluster.local/ns/kubeflow/sa/{other}", 8080, USER)), other
    assert denies(policy, Request(None, 8080, USER))


def _dashboard_account(objects) -> str:
    (dashboard,) = [o for o in objects if o["kind"] == "Deployment" and o["metadata"].get("namespace") == "kubeflow"
                    and o["metadata"]["name"] in ("centraldashboard", "dashboard")]
    return f"cluster.local/ns/kubeflow/sa/{pod_template(dashboard)['spec']['serviceAccountName']}"


def _passes_the_user_on_to_kfam(objects, dashboard: str) -> None:
    policy = _one(objects, "AuthorizationPolicy", "kubeflow", POLICY)
    # The dashboard lists and manages contributors by calling KFAM (profiles-kfam:8081) as the user.
    assert not denies(policy, Request(dashboard, 8081, USER))
    assert denies(policy, Request("cluster.local/ns/kubeflow/sa/jupyter-web-app-service-account", 8081, USER))


@pytest.mark.parametrize("release", SUPPORTED_RELEASES)
@pytest.mark.parametrize("stack", STACKS)
def test_the_dashboard_may_call_kfam_as_the_user(stack, release):
    objects = objects_of(stack, release)
    _passes_the_user_on_to_kfam(objects, _dashboard_account(objects))


def test_the_dashboard_renamed_upstream_may_still_call_kfam_as_the_user(tmp_path):
    # kubeflow/community-distribution@26.03.1-rc.2 applications/dashboard/upstream/centraldashboard/base/
    # service-account.yaml:4 and deployment.yaml:4, 66: Deployment and ServiceAccount `dashboard`, image
    # ghcr.io/kubeflow/dashboard/dashboard (kustomization.yaml:16-19). The renamed copy of 26.03 stands in for it.
    from tests.test_newest_releases import renamed_release

    manifests = tmp_path / "26.03-renamed.yaml"
    manifests.write_text("\n---\n".join(json.dumps(obj) for obj in renamed_release()))
    kubeflow = dict(stack_config("dev")["kubeflow-platform:kubeflow"], version="26.03", manifests=str(manifests))
    objects = emitted_objects(run_stack("dev", {"kubeflow": kubeflow}))
    dashboard = _dashboard_account(objects)
    assert dashboard == "cluster.local/ns/kubeflow/sa/dashboard"
    _passes_the_user_on_to_kfam(objects, dashboard)
    # The old name trusts nobody: no workload of the release runs as it any more.
    policy = _one(objects, "AuthorizationPolicy", "kubeflow", POLICY)
    assert "cluster.local/ns/kubeflow/sa/centraldashboard" not in policy["spec"]["rules"][0]["from"][0]["source"]["notPrincipals"]
    for profile in (p["name"] for p in stack_config("dev")["kubeflow-platform:tenancy"]["profiles"]):
        assert not denies(_one(objects, "AuthorizationPolicy", profile, POLICY), Request(dashboard, 8888, USER)), profile


@pytest.mark.parametrize("release", SUPPORTED_RELEASES)
@pytest.mark.parametrize("stack", STACKS)
def test_each_profile_namespace_takes_the_identity_header_only_from_legitimate_callers(stack, release):
    objects = objects_of(stack, release)
    profiles = [p["name"] for p in stack_config(stack)["kubeflow-platform:tenancy"]["profiles"]]
    assert profiles
    for profile in profiles:
        policy = _one(objects, "AuthorizationPolicy", profile, POLICY)
        # A notebook opened through the gateway; the pipelines UI asking the profile's artifact server.
        assert not denies(policy, Request(GATEWAY, 8888, USER)), profile
        assert not denies(policy, Request("cluster.local/ns/kubeflow/sa/ml-pipeline-ui", 80, USER)), profile
        # Knative relays the gateway's request to an inference service's queue-proxy, and only there.
        assert not denies(policy, Request("cluster.local/ns/knative-serving/sa/activator", 8012, USER)), profile
        assert denies(policy, Request("cluster.local/ns/knative-serving/sa/activator", 8888, USER)), profile
        # Anyone else, another profile's workloads included, and a pod without a sidecar.
        assert denies(policy, Request(f"cluster.local/ns/{profile}-other/sa/default-editor", 8888, USER)), profile
        assert denies(policy, Request(None, 8888, USER)), profile
        assert denies(policy, Request(f"cluster.local/ns/{profile}/sa/default-editor", 8888, {"kubeflow_userid": "x"}))
        # Calls without the header are not this policy's business.
        assert not denies(policy, Request(f"cluster.local/ns/{profile}/sa/default-editor", 8888, {})), profile


def test_a_custom_gateway_identity_reaches_every_policy_and_the_profile_controller():
    config = stack_config("dev")
    auth = dict(config["kubeflow-platform:auth"], gatewayServiceAccount="corp-ingress", trustDomain="corp.example")
    ingress = dict(config["kubeflow-platform:ingress"], namespace="corp-ingress")
    objects = emitted_objects(run_stack("dev", {"auth": auth, "ingress": ingress}))
    configured = "corp.example/ns/corp-ingress/sa/corp-ingress"

    profiles_config = _one(objects, "ConfigMap", "kubeflow", "profiles-config")
    assert profiles_config["data"][GATEWAY_PRINCIPAL_KEY] == configured

    naming_gateway: dict[str, list[str]] = {}
    for obj in objects:
        if obj["kind"] != "AuthorizationPolicy":
            continue
        for rule in obj.get("spec", {}).get("rules") or []:
            for entry in rule.get("from") or []:
                source = entry.get("source") or {}
                for principal in [*source.get("principals", []), *source.get("notPrincipals", [])]:
                    if principal.endswith("/sa/istio-ingressgateway-service-account") or "/sa/corp-ingress" in principal:
                        naming_gateway.setdefault(principal, []).append(object_ref(obj))
    assert list(naming_gateway) == [configured], naming_gateway
    policies = {ref.split(" ", 1)[1] for ref in naming_gateway[configured]}
    # Upstream's web apps, the program's own DENY policy, and the contributors' policies of the profiles.
    assert {f"kubeflow/{name}" for name in ("central-dashboard", "ml-pipeline-ui", "jupyter-web-app", "katib-ui",
                                            "kserve-models-web-app", "tensorboards-web-app", "volumes-web-app",
                                            POLICY)} <= policies
    assert f"alice/{POLICY}" in policies
    assert any(ref.startswith("alice/kubeflow-platform-user-") for ref in policies)
