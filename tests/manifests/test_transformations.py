"""Each transformation on small hand-written fixtures: older shapes and edge cases."""

from __future__ import annotations

import json

import pytest
import yaml

from manifests.argo import use_external_argo
from manifests.exclusions import exclude_components
from manifests.images import mirror_image, normalize_image, rewrite_images
from manifests.mesh import (
    EXCLUDE_OUTBOUND_PORTS, INJECT, UPSTREAM_GATEWAY_PRINCIPAL, fix_sidecar_conflicts, give_metadata_envoy_its_own_account,
    label_namespaces, label_pod_templates, route_virtual_services, trust_gateway_principal,
)
from manifests.objects import pod_template
from manifests.options import (
    ExternalArgoOptions,
    ExternalStoresOptions,
    GatewayOptions,
    ImageMirrorOptions,
    ImageMirrorRule,
    MeshOptions,
    PodTemplateOptions,
    TransformOptions,
)
from manifests.pipeline import transform
from manifests.sources import ManifestError
from manifests.stores import use_external_stores

RULES = (
    ImageMirrorRule("docker.io", "mirror.corp/hub"),
    ImageMirrorRule("docker.io/library", "mirror.corp/official"),
    ImageMirrorRule("quay.io/argoproj", "mirror.corp/argo"),
    ImageMirrorRule("gcr.io", "mirror.corp/gcr"),
)


def workload(kind: str, name: str, namespace: str = "kubeflow", **pod_spec) -> dict:
    template = {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "main", "image": "busybox:1.36"}], **pod_spec}}
    spec = {"jobTemplate": {"spec": {"template": template}}, "schedule": "@daily"} if kind == "CronJob" else {"selector": {"matchLabels": {"app": name}}, "template": template}
    api = "batch/v1" if kind in {"Job", "CronJob"} else "apps/v1"
    return {"apiVersion": api, "kind": kind, "metadata": {"name": name, "namespace": namespace}, "spec": spec}


# ------------------------------------------------------------------------------------------- images

@pytest.mark.parametrize(
    ("reference", "normalized"),
    [
        ("mysql:8.0.29", "docker.io/library/mysql:8.0.29"),
        ("kserve/agent", "docker.io/kserve/agent"),
        ("index.docker.io/foo/bar:1", "docker.io/foo/bar:1"),
        ("localhost:5000/x/y:2", "localhost:5000/x/y:2"),
        ("gcr.io/a/b@sha256:" + "a" * 64, "gcr.io/a/b@sha256:" + "a" * 64),
        ("{{ .ProxyImage }}", None),
        ("$VOLUME_VIEWER_IMAGE", None),
    ],
)
def test_image_names_are_normalised_like_the_runtime_reads_them(reference, normalized):
    assert normalize_image(reference) == normalized


def test_longest_rule_wins_and_tag_and_digest_are_kept():
    digest = "sha256:" + "b" * 64
    assert mirror_image("mysql:8.0.29", RULES) == "mirror.corp/official/mysql:8.0.29"
    assert mirror_image("foo/bar", RULES) == "mirror.corp/hub/foo/bar"
    assert mirror_image(f"gcr.io/knative-releases/knative.dev/queue:v1@{digest}", RULES) == f"mirror.corp/gcr/knative-releases/knative.dev/queue:v1@{digest}"
    assert mirror_image("quay.io/jetstack/cert-manager:v1", RULES) is None


def test_images_in_every_container_list_args_env_and_cronjobs_are_mirrored():
    cron = workload("CronJob", "cleanup")
    spec = pod_template(cron)["spec"]
    spec["initContainers"] = [{"name": "init", "image": "alpine"}]
    spec["ephemeralContainers"] = [{"name": "debug", "image": "gcr.io/dbg/shell:1"}]
    spec["containers"][0].update(
        args=["--executor-image", "quay.io/argoproj/argoexec:v3.5.14", "--sidecar-image=mysql:8", "--name=busybox:1"],
        env=[{"name": "V2_LAUNCHER_IMAGE", "value": "gcr.io/ml-pipeline/launcher:2"}, {"name": "GREETING", "value": "hello"}],
    )
    result = rewrite_images([cron], ImageMirrorOptions(RULES))
    container = pod_template(result.objects[0])["spec"]["containers"][0]
    assert container["image"] == "mirror.corp/official/busybox:1.36"
    assert container["args"] == ["--executor-image", "mirror.corp/argo/argoexec:v3.5.14", "--sidecar-image=mirror.corp/official/mysql:8", "--name=busybox:1"]
    assert container["env"][0]["value"] == "mirror.corp/gcr/ml-pipeline/launcher:2"
    assert pod_template(result.objects[0])["spec"]["initContainers"][0]["image"] == "mirror.corp/official/alpine"
    assert pod_template(result.objects[0])["spec"]["ephemeralContainers"][0]["image"] == "mirror.corp/gcr/dbg/shell:1"
    assert pod_template(cron)["spec"]["containers"][0]["image"] == "busybox:1.36"  # input untouched


def test_images_inside_configmap_text_are_mirrored_but_knative_examples_are_not():
    queue = "gcr.io/knative-releases/knative.dev/serving/cmd/queue@sha256:" + "c" * 64
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "inferenceservice-config", "namespace": "kubeflow"},
        "data": {
            "queue-sidecar-image": queue,
            "agent": json.dumps({"image": "kserve/agent:v0.15.0", "cpu": "1"}),
            "spawner.yaml": "image:\n  options:\n  - gcr.io/nb/jupyter:v1\n",
            "sync.py": 'os.environ.get("FRONTEND_IMAGE", "gcr.io/ml-pipeline/frontend")',
            "values": '{"image": "proxyv2", "enabled": "true"}',
            "_example": "queue-sidecar-image: " + queue,
        },
    }
    result = rewrite_images([configmap], ImageMirrorOptions(RULES))
    data = result.objects[0]["data"]
    assert data["queue-sidecar-image"].startswith("mirror.corp/gcr/knative-releases/")
    assert json.loads(data["agent"])["image"] == "mirror.corp/hub/kserve/agent:v0.15.0"
    assert "- mirror.corp/gcr/nb/jupyter:v1" in data["spawner.yaml"]
    assert '"mirror.corp/gcr/ml-pipeline/frontend"' in data["sync.py"]
    assert data["values"] == configmap["data"]["values"]
    assert data["_example"] == configmap["data"]["_example"]


def test_images_without_a_rule_are_reported_with_where_they_are():
    deployment = workload("Deployment", "x")
    pod_template(deployment)["spec"]["containers"][0]["image"] = "quay.io/jetstack/cert-manager-controller:v1"
    result = rewrite_images([deployment], ImageMirrorOptions(RULES))
    assert list(result.unmatched) == ["quay.io/jetstack/cert-manager-controller:v1"]
    assert "Deployment kubeflow/x" in result.unmatched["quay.io/jetstack/cert-manager-controller:v1"][0]
    assert result.objects[0] is deployment


def test_already_mirrored_images_are_left_alone():
    deployment = workload("Deployment", "x")
    pod_template(deployment)["spec"]["containers"][0]["image"] = "mirror.corp/hub/foo/bar:1"
    result = rewrite_images([deployment], ImageMirrorOptions(RULES))
    assert result.changes == () and result.unmatched == {}


# --------------------------------------------------------------------------------------------- mesh

def test_namespaces_get_the_revision_label_and_lose_istio_injection():
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kubeflow", "labels": {"istio-injection": "enabled"}}}
    labels = label_namespaces([namespace], MeshOptions(revision="1-22")).objects[0]["metadata"]["labels"]
    assert labels == {"istio.io/rev": "1-22"}
    plain = label_namespaces([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}}], MeshOptions())
    assert plain.objects[0]["metadata"]["labels"] == {"istio-injection": "enabled"}


def _profile_labels(text):
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "namespace-labels-data-2k29b64d74", "namespace": "kubeflow"},
            "data": {"namespace-labels.yaml": text}}


UPSTREAM_PROFILE_LABELS = '# Profile controller will not replace a namespace label if its key already exists.\npipelines.kubeflow.org/enabled: "true"\n'


def test_profile_namespaces_the_controller_adopts_get_the_mesh_label():
    result = label_namespaces([_profile_labels(UPSTREAM_PROFILE_LABELS)], MeshOptions())
    labels = yaml.safe_load(result.objects[0]["data"]["namespace-labels.yaml"])
    assert labels == {"pipelines.kubeflow.org/enabled": "true", "istio-injection": "enabled"}
    assert [change.ref for change in result.changes] == ["ConfigMap kubeflow/namespace-labels-data-2k29b64d74"]


def test_a_revisioned_mesh_removes_the_injection_label_the_profile_controller_sets_on_creation():
    result = label_namespaces([_profile_labels(UPSTREAM_PROFILE_LABELS)], MeshOptions(revision="1-24"))
    labels = yaml.safe_load(result.objects[0]["data"]["namespace-labels.yaml"])
    # An empty value is the controller's way to remove a label; Istio would obey istio-injection over istio.io/rev.
    assert labels["istio.io/rev"] == "1-24" and labels["istio-injection"] == ""
    again = label_namespaces(result.objects, MeshOptions(revision="1-24"))
    assert again.changes == () and again.objects[0] is result.objects[0]


@pytest.mark.parametrize("kind", ["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob"])
def test_every_workload_kind_gets_the_sidecar_annotation_and_org_labels(kind):
    result = label_pod_templates([workload(kind, "w")], PodTemplateOptions(labels=(("team", "ml"),), annotations=(("cost", "42"),)))
    metadata = pod_template(result.objects[0])["metadata"]
    assert metadata["annotations"] == {INJECT: "true", "cost": "42"}
    assert metadata["labels"] == {"app": "w", "team": "ml"}


def test_upstream_injection_opt_out_label_is_overridden_unless_kept():
    deployment = workload("Deployment", "katib-db-manager")
    pod_template(deployment)["metadata"]["labels"][INJECT] = "false"
    forced = pod_template(label_pod_templates([deployment], PodTemplateOptions()).objects[0])["metadata"]
    assert forced["labels"][INJECT] == "true" and forced["annotations"][INJECT] == "true"
    kept = pod_template(label_pod_templates([deployment], PodTemplateOptions(keep_upstream_injection_opt_outs=True)).objects[0])["metadata"]
    assert kept["labels"][INJECT] == "false" and INJECT not in kept["annotations"]


def test_authservice_statefulset_of_older_releases_gets_port_443_excluded():
    authservice = workload("StatefulSet", "authservice", namespace="istio-system")
    oauth2_proxy = workload("Deployment", "oauth2-proxy", namespace="oauth2-proxy")
    pod_template(oauth2_proxy)["metadata"]["annotations"] = {EXCLUDE_OUTBOUND_PORTS: "8443"}
    result = fix_sidecar_conflicts([authservice, oauth2_proxy])
    assert pod_template(result.objects[0])["metadata"]["annotations"][EXCLUDE_OUTBOUND_PORTS] == "443"
    assert pod_template(result.objects[1])["metadata"]["annotations"][EXCLUDE_OUTBOUND_PORTS] == "8443,443"


def test_metadata_envoy_gets_base_id_after_its_config_path():
    bare = workload("Deployment", "metadata-envoy-deployment")
    pod_template(bare)["spec"]["containers"][0] = {"name": "container", "image": "gcr.io/ml-pipeline/metadata-envoy:1.4.1"}
    with_args = workload("Deployment", "metadata-envoy-deployment")
    pod_template(with_args)["spec"]["containers"][0] = {"name": "container", "image": "ghcr.io/kubeflow/kfp-metadata-envoy:2.5.0", "args": ["/etc/envoy.yaml", "-l", "info"]}
    already = workload("Deployment", "metadata-envoy-deployment")
    pod_template(already)["spec"]["containers"][0] = {"name": "container", "image": "envoy", "args": ["/etc/envoy.yaml", "--base-id", "2"]}
    result = fix_sidecar_conflicts([bare, with_args, already])
    containers = [pod_template(obj)["spec"]["containers"][0] for obj in result.objects]
    assert containers[0]["args"] == ["/etc/envoy.yaml", "--base-id", "1"]
    assert containers[1]["args"] == ["/etc/envoy.yaml", "-l", "info", "--base-id", "1"]
    assert containers[2]["args"] == ["/etc/envoy.yaml", "--base-id", "2"]
    assert len(result.changes) == 2


def test_virtual_services_move_to_the_central_gateway_keeping_mesh_entries():
    def service(gateways):
        return {"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService", "metadata": {"name": "v", "namespace": "kubeflow"}, "spec": {"gateways": gateways, "hosts": ["*"], "http": []}}

    gateway = GatewayOptions("istio-ingress/central", ("kubeflow.corp.example",), "istio-ingress", "corp.example/ns/istio-ingress/sa/central-gateway")
    result = route_virtual_services([service(["kubeflow-gateway", "mesh"]), service(["mesh"])], gateway)
    assert result.objects[0]["spec"] == {"gateways": ["istio-ingress/central", "mesh"], "hosts": ["kubeflow.corp.example"], "exportTo": [".", "istio-ingress"], "http": []}
    assert result.objects[1]["spec"]["hosts"] == ["*"]


def test_virtual_services_in_the_gateway_pods_namespace_need_no_second_export():
    service = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "v", "namespace": "istio-ingress"}, "spec": {"gateways": ["g"], "hosts": ["*"]}}
    gateway = GatewayOptions("istio-ingress/central", ("kubeflow.corp.example",), "istio-ingress", "cluster.local/ns/istio-ingress/sa/gw")
    assert route_virtual_services([service], gateway).objects[0]["spec"]["exportTo"] == ["."]


def _policy(name, source):
    return {"apiVersion": "security.istio.io/v1beta1", "kind": "AuthorizationPolicy", "metadata": {"name": name, "namespace": "kubeflow"},
            "spec": {"action": "ALLOW", "rules": [{"from": [{"source": source}]}]}}


def test_policies_and_the_profile_controller_name_the_configured_gateway_principal():
    wanted = "corp.example/ns/istio-ingress/sa/central-gateway"
    gateway = GatewayOptions("istio-ingress/central", ("kubeflow.corp.example",), "istio-ingress", wanted)
    profiles_config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "profiles-config-5h9m86f79f", "namespace": "kubeflow"},
                       "data": {"ISTIO_INGRESS_GATEWAY_PRINCIPAL": UPSTREAM_GATEWAY_PRINCIPAL, "KFP_UI_PRINCIPAL": "cluster.local/ns/kubeflow/sa/ml-pipeline-ui"}}
    objects = [
        _policy("any-name", {"principals": [UPSTREAM_GATEWAY_PRINCIPAL]}),
        _policy("other-domain", {"notPrincipals": ["other.td/ns/istio-system/sa/istio-ingressgateway-service-account", "cluster.local/ns/kubeflow/sa/x"]}),
        _policy("unrelated", {"principals": ["cluster.local/ns/kubeflow/sa/centraldashboard"]}),
        profiles_config,
    ]
    result = trust_gateway_principal(objects, gateway)
    assert result.objects[0]["spec"]["rules"][0]["from"][0]["source"] == {"principals": [wanted]}
    assert result.objects[1]["spec"]["rules"][0]["from"][0]["source"] == {"notPrincipals": [wanted, "cluster.local/ns/kubeflow/sa/x"]}
    assert result.objects[2] is objects[2]
    assert result.objects[3]["data"] == {**profiles_config["data"], "ISTIO_INGRESS_GATEWAY_PRINCIPAL": wanted}
    assert objects[0]["spec"]["rules"][0]["from"][0]["source"] == {"principals": [UPSTREAM_GATEWAY_PRINCIPAL]}
    assert len(result.changes) == 3
    assert trust_gateway_principal(result.objects, gateway).changes == ()


def test_metadata_envoy_runs_as_an_account_of_its_own():
    upstream = workload("Deployment", "metadata-envoy-deployment")
    already = workload("Deployment", "metadata-envoy-deployment", namespace="other", serviceAccountName="corp-envoy")
    result = give_metadata_envoy_its_own_account([upstream, already, workload("Deployment", "ml-pipeline")])
    assert pod_template(result.objects[0])["spec"]["serviceAccountName"] == "metadata-envoy"
    assert result.objects[1] is already and "serviceAccountName" not in pod_template(result.objects[2])["spec"]
    assert [(a["kind"], a["metadata"]["namespace"], a["metadata"]["name"]) for a in result.added] == [("ServiceAccount", "kubeflow", "metadata-envoy")]
    assert "serviceAccountName" not in pod_template(upstream)["spec"]


# ----------------------------------------------------------------------------------- exclusions

def test_unknown_exclusion_name_suggests_the_closest_and_lists_all():
    with pytest.raises(ManifestError) as error:
        exclude_components([], ["istio", "cert-manger"])
    message = str(error.value)
    assert "kubeflow.exclude[1]" in message and "did you mean 'cert-manager'" in message and "seaweedfs" in message


def test_older_authservice_shape_is_excluded_by_its_rule():
    authservice = workload("StatefulSet", "authservice", namespace="istio-system")
    envoy_filter = {"apiVersion": "networking.istio.io/v1alpha3", "kind": "EnvoyFilter", "metadata": {"name": "authn-filter", "namespace": "istio-system"}}
    result = exclude_components([authservice, envoy_filter], ["authservice", "istio"])
    assert result.excluded == {"StatefulSet istio-system/authservice": "authservice", "EnvoyFilter istio-system/authn-filter": "authservice"}


def test_istio_crds_are_kept_when_the_mesh_does_not_own_them():
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "gateways.networking.istio.io"}, "spec": {"group": "networking.istio.io"}}
    kept = transform([crd], TransformOptions(exclusions=("istio",), mesh=MeshOptions(owns_crds=False)))
    owned = transform([crd], TransformOptions(exclusions=("istio",)))
    assert kept.excluded == {} and owned.excluded == {"CustomResourceDefinition gateways.networking.istio.io": "istio-crds"}


# ------------------------------------------------------------------------------ external services

STORES = ExternalStoresOptions(mysql_host="db.internal", secret_name="central", bucket="b", region="eu-west-1", secret_namespace="kubeflow")


def test_consumers_outside_the_secret_namespace_are_refused():
    consumer = workload("Deployment", "model-registry", namespace="model-registry")
    pod_template(consumer)["spec"]["containers"][0]["env"] = [{"name": "P", "valueFrom": {"secretKeyRef": {"name": "mysql-secret", "key": "password"}}}]
    with pytest.raises(ManifestError, match="own namespace"):
        use_external_stores([consumer], STORES)


def test_unknown_key_of_a_bundled_secret_is_refused():
    consumer = workload("Deployment", "x")
    pod_template(consumer)["spec"]["containers"][0]["env"] = [{"name": "P", "valueFrom": {"secretKeyRef": {"name": "mysql-secret", "key": "token"}}}]
    with pytest.raises(ManifestError, match="no central equivalent"):
        use_external_stores([consumer], STORES)


def test_external_argo_configmap_uses_irsa_and_no_static_keys():
    result = use_external_argo([], ExternalArgoOptions(namespace="argo", bucket="b", region="us-east-2"))
    (configmap,) = result.added
    repository = yaml.safe_load(configmap["data"]["artifactRepository"])["s3"]
    assert repository["useSDKCreds"] is True and repository["endpoint"] == "s3.us-east-2.amazonaws.com"
    assert "accessKeySecret" not in repository and "secretKeySecret" not in repository
    assert configmap["metadata"]["namespace"] == "argo"


def test_argo_and_object_store_buckets_must_agree():
    options = TransformOptions(argo=ExternalArgoOptions(namespace="argo", bucket="one", region="r"), stores=STORES)
    with pytest.raises(ManifestError, match="one artifact bucket"):
        transform([], options)


def test_default_mirror_takes_what_no_rule_covers_under_its_registry_name():
    digest = "sha256:" + "c" * 64
    assert mirror_image("quay.io/jetstack/cert-manager:v1", RULES, "mirror.corp/any") == "mirror.corp/any/quay.io/jetstack/cert-manager:v1"
    assert mirror_image(f"busybox@{digest}", (), "mirror.corp/any") == f"mirror.corp/any/docker.io/library/busybox@{digest}"
    # A rule still wins over the default.
    assert mirror_image("mysql:8.0.29", RULES, "mirror.corp/any") == "mirror.corp/official/mysql:8.0.29"


def test_default_mirror_leaves_nothing_unmirrored_and_never_mirrors_twice():
    deployment = workload("Deployment", "app")
    pod_template(deployment)["spec"]["containers"][0]["image"] = "cr.example.org/team/app:1"
    options = ImageMirrorOptions((), default_mirror="mirror.corp/any")
    once = rewrite_images([deployment], options)
    assert once.unmatched == {}
    assert pod_template(once.objects[0])["spec"]["containers"][0]["image"] == "mirror.corp/any/cr.example.org/team/app:1"
    twice = rewrite_images(once.objects, options)
    assert twice.changes == () and twice.objects[0] is once.objects[0]
