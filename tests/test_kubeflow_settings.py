"""Kubeflow settings reach every transformation option."""

from __future__ import annotations

import dataclasses

from config.kubeflow import KubeflowSettings, transform_options
from config.loader import Problems, from_raw
from manifests.options import GatewayPodsOptions, TransformOptions

RAW = {
    "version": "1.10.2",
    "manifests": "kubeflow.yaml",
    "exclude": ["istio", "argo", "cert-manager"],
    "mesh": {"revision": "prod-1-24", "ownsCrds": False, "keepUpstreamInjectionOptOuts": True},
    "podLabels": {"team": "ml"},
    "podAnnotations": {"example.com/cost-center": "ml"},
    "images": {"mirror": "registry.example.com/kf", "rules": [{"source": "ghcr.io", "target": "registry.example.com/kf/ghcr"}]},
    "argo": {"namespace": "workflows", "keyFormat": "a/{{workflow.namespace}}/{{pod.name}}", "configmapName": "argo-config", "serviceAccount": "pipeline-runner"},
    "database": {"host": "db.example.com", "port": 3307, "user": "kf"},
    "objectStore": {"endpoint": "minio.example.com:9000", "secure": False},
    "centralSecret": "kf-stores",
    "centralSecretNamespace": "kubeflow",
    "gatewayApi": True,
}


def settings(**changes) -> KubeflowSettings:
    problems = Problems()
    value = from_raw(KubeflowSettings, {**RAW, **changes}, "kubeflow", problems)
    assert not problems, problems.lines
    return value


def options(kubeflow: KubeflowSettings) -> TransformOptions:
    return transform_options(kubeflow, gateway="kubeflow/kubeflow-gateway", hosts=("kubeflow.example.com",), gateway_pods_namespace="istio-system", gateway_principal="cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account", artifact_bucket="ml-pipelines", region="eu-west-1",
                             serving_domain="serving.example.com",
                             gateway_pods=GatewayPodsOptions("istio-ingress", (("istio", "ingressgateway"),)))


def test_every_option_comes_from_a_setting():
    result = options(settings(namespace="ml-platform-x7", systemNamespace="ml-jobs-q4"))
    assert (result.namespace, result.system_namespace) == ("ml-platform-x7", "ml-jobs-q4")
    assert result.exclusions == ("istio", "argo", "cert-manager")
    assert (result.mesh.revision, result.mesh.owns_crds) == ("prod-1-24", False)
    assert result.pod_templates.labels == (("team", "ml"),)
    assert result.pod_templates.annotations == (("example.com/cost-center", "ml"),)
    assert result.pod_templates.keep_upstream_injection_opt_outs is True
    assert result.images.default_mirror == "registry.example.com/kf"
    assert [(r.source, r.mirror) for r in result.images.rules] == [("ghcr.io", "registry.example.com/kf/ghcr")]
    assert (result.gateway.gateway, result.gateway.hosts) == ("kubeflow/kubeflow-gateway", ("kubeflow.example.com",))
    assert result.serving.domain == "serving.example.com"
    argo = result.argo
    assert (argo.namespace, argo.bucket, argo.region, argo.configmap_name, argo.service_account) == ("workflows", "ml-pipelines", "eu-west-1", "argo-config", "pipeline-runner")
    assert argo.key_format == "a/{{workflow.namespace}}/{{pod.name}}" and argo.endpoint == "minio.example.com:9000"
    stores = result.stores
    assert (stores.mysql_host, stores.mysql_port, stores.secret_name, stores.secret_namespace) == ("db.example.com", 3307, "kf-stores", "kubeflow")
    assert (stores.bucket, stores.region, stores.endpoint, stores.secure) == ("ml-pipelines", "eu-west-1", "minio.example.com:9000", False)
    assert result.gateway_pods == GatewayPodsOptions("istio-ingress", (("istio", "ingressgateway"),))
    assert result.gateway_api is True
    # Every field of the options is decided by the mapping, none left to a default by accident.
    assert [f.name for f in dataclasses.fields(TransformOptions)] == ["namespace", "system_namespace", "exclusions", "mesh", "pod_templates", "images", "gateway", "serving", "argo", "stores", "gateway_pods", "gateway_api", "do_not_disrupt_training", "standby"]
    # Not a Kubeflow setting: components.kubeflow.prepare sets it when a GPU pool is Karpenter's.
    assert result.do_not_disrupt_training is False
    # Nor this one: prepare sets it from recovery.mode standby.
    assert result.standby is False


def test_bundled_argo_and_database_stay_when_not_external():
    result = options(settings(argo={"external": False}, exclude=["istio"], database=None))
    assert result.argo is None and result.stores is None
