"""Invariants of the whole pipeline over both real upstream releases (issue 4, "Done when")."""

from __future__ import annotations

import json
import re
import time

from manifests.images import INJECTED_PROXY_IMAGE, PUBLIC_REGISTRIES, istio_fills_image, parse_image
from manifests.mesh import INJECT, NET_ISTIO_CONTROLLER
from manifests.objects import CONTAINER_LISTS, object_ref, pod_template, walk_strings
from manifests.pipeline import transform
from manifests.stores import DATABASE_SETUP_JOB
from manifests.validate import validate_objects
from tests.manifests.conftest import ENTERPRISE, MIRROR, enterprise_result
from tests.upstream import upstream_objects


def test_every_input_object_is_emitted_or_excluded_by_a_named_rule(version):
    upstream = upstream_objects(version)
    result = enterprise_result(version)
    assert len(result.objects) == len(upstream) - len(result.excluded) + len(result.added)
    emitted_refs = {object_ref(obj) for obj in result.objects}
    for obj in upstream:
        ref = object_ref(obj)
        assert (ref in emitted_refs) != (ref in result.excluded), ref
    assert set(result.excluded.values()) <= set(result.exclusions)


def test_transform_never_modifies_its_input(version):
    upstream = upstream_objects(version)
    before = json.dumps(upstream, sort_keys=True)
    transform(upstream, ENTERPRISE)
    assert json.dumps(upstream, sort_keys=True) == before


def test_output_order_is_deterministic(version):
    upstream = upstream_objects(version)
    first = [object_ref(o) for o in transform(upstream, ENTERPRISE).objects]
    second = [object_ref(o) for o in transform(list(reversed(upstream)), ENTERPRISE).objects]
    assert first == second


def test_every_workload_pod_template_carries_the_sidecar_annotation_and_org_labels(version):
    workloads = [obj for obj in enterprise_result(version).objects if pod_template(obj) is not None]
    assert len(workloads) > 20
    for obj in workloads:
        metadata = pod_template(obj)["metadata"]
        # The exceptions: the database setup Job talks only to the external MySQL, and a proxy that
        # outlives its client would keep the Job from ever completing; under REGISTRY_ONLY net-istio's
        # controller, whose gateway probes its own sidecar would drop.
        net_istio = (object_ref(obj) == "Deployment " + "/".join(NET_ISTIO_CONTROLLER)
                     and ENTERPRISE.mesh.outbound_traffic_policy == "REGISTRY_ONLY")
        expected = "false" if object_ref(obj) == f"Job kubeflow/{DATABASE_SETUP_JOB}" or net_istio else "true"
        assert metadata["annotations"][INJECT] == expected, object_ref(obj)
        assert metadata["annotations"]["corp.example/cost-center"] == "ml", object_ref(obj)
        assert metadata["labels"]["corp.example/team"] == "ml-platform", object_ref(obj)
        assert metadata["labels"].get(INJECT, expected) == expected, object_ref(obj)


def test_every_namespace_joins_the_mesh(version):
    namespaces = [obj for obj in enterprise_result(version).objects if obj["kind"] == "Namespace"]
    assert {"kubeflow"} <= {ns["metadata"]["name"] for ns in namespaces}
    for namespace in namespaces:
        assert namespace["metadata"]["labels"]["istio-injection"] == "enabled"


# A public-registry name anywhere in a string, or an implicit Docker Hub name where an image belongs.
_PUBLIC = re.compile(r"(?<![\w.-])(" + "|".join(re.escape(r) for r in PUBLIC_REGISTRIES) + r")/[\w./-]+")


def test_no_image_reference_anywhere_points_outside_the_mirror(version):
    result = enterprise_result(version)
    assert result.unmirrored_images == {}
    for obj in result.objects:
        if obj["kind"] == "CustomResourceDefinition":
            continue
        for path, text in walk_strings(obj):
            if path and path[0] == "data" and path[1] == "_example":
                continue  # Knative's checksummed documentation; never read by anything
            found = _PUBLIC.search(text)
            assert found is None, f"{object_ref(obj)} {path}: {found.group(0)}"
            if text == INJECTED_PROXY_IMAGE and istio_fills_image(obj):
                continue  # Istio's injector sets the mesh's own proxy image there
            if path[-1] == "image" or (len(path) > 2 and path[-3] in CONTAINER_LISTS and path[-1] == "image"):
                assert text.startswith(MIRROR + "/"), f"{object_ref(obj)} {path}: {text}"
    for container_image in _container_images(result.objects):
        assert container_image.startswith(MIRROR + "/"), container_image


def _container_images(objects):
    for obj in objects:
        template = pod_template(obj)
        if template:
            for list_name in CONTAINER_LISTS:
                for container in template["spec"].get(list_name) or []:
                    if not (container["image"] == INJECTED_PROXY_IMAGE and istio_fills_image(obj)):
                        yield container["image"]


def test_image_map_lists_every_mirrored_image_with_tags_and_digests_kept(version):
    result = enterprise_result(version)
    assert list(result.image_map) == sorted(result.image_map)
    for source, mirrored in result.image_map.items():
        parsed, mirror = parse_image(source), parse_image(mirrored)
        assert (parsed.tag, parsed.digest) == (mirror.tag, mirror.digest)
        assert mirrored.startswith(MIRROR + "/")
    assert set(_container_images(result.objects)) <= set(result.image_map.values())


def test_every_virtual_service_is_on_the_central_gateway_and_host(version):
    services = [obj for obj in enterprise_result(version).objects if obj["kind"] == "VirtualService"]
    assert len(services) >= 8
    for service in services:
        spec = service["spec"]
        assert [g for g in spec["gateways"] if g != "mesh"] == ["istio-ingress/central-gateway"], object_ref(service)
        assert spec["hosts"] == ["kubeflow.corp.example"]
        assert spec["exportTo"] == [".", "istio-ingress"]


def test_no_bundled_istio_argo_or_database_object_remains(version):
    for obj in enterprise_result(version).objects:
        ref = object_ref(obj)
        labels = obj["metadata"].get("labels") or {}
        assert labels.get("app.kubernetes.io/part-of") != "istio", ref
        # Knative's local gateway Service stays, and the gateway behind it that the program runs (mesh.clusterLocalGateway)
        if labels.get("app.kubernetes.io/name") != "knative-serving" and labels.get("istio") != "cluster-local-gateway":
            assert obj["metadata"].get("namespace") not in {"istio-system", "cert-manager", "auth", "oauth2-proxy"}, ref
        assert not (obj["kind"] == "CustomResourceDefinition" and obj["spec"]["group"].endswith(("istio.io", "argoproj.io"))), ref
        assert obj["metadata"]["name"] not in {"workflow-controller", "mysql", "minio", "katib-mysql", "mysql-secret", "mlpipeline-minio-artifact"}, ref
        assert not (obj["kind"] == "Gateway" and obj["metadata"]["name"] == "kubeflow-gateway"), ref


def test_no_consumer_references_a_bundled_credentials_secret(version):
    text = json.dumps(enterprise_result(version).objects)
    for bundled in ("mysql-secret", "katib-mysql-secrets", "mlpipeline-minio-artifact"):
        assert f'"name": "{bundled}"' not in text
    assert text.count('"name": "kubeflow-external-stores"') >= 10


def test_external_argo_gets_its_configmap_with_irsa_and_per_namespace_keys(version):
    result = enterprise_result(version)
    (configmap,) = [o for o in result.objects if o["kind"] == "ConfigMap" and o["metadata"].get("namespace") == "argo"]
    assert configmap["metadata"]["name"] == "workflow-controller-configmap"
    repository = configmap["data"]["artifactRepository"]
    assert "useSDKCreds: true" in repository and "bucket: kf-artifacts" in repository
    assert "accessKeySecret" not in repository and "{{workflow.namespace}}" in repository
    launcher = next(o for o in result.objects if o["metadata"]["name"] == "kfp-launcher")
    assert launcher["data"]["defaultPipelineRoot"] == "s3://kf-artifacts/v2/artifacts"


def test_everything_emitted_validates_against_its_schema(version):
    upstream = upstream_objects(version)
    # The Istio and Argo CRDs are the mesh's and Argo's; their schemas still check our custom resources.
    assert validate_objects(enterprise_result(version).objects, extra_crds=upstream) == []


def test_upstream_as_is_validates(version):
    assert validate_objects(upstream_objects(version)) == []


def test_groups_hold_every_object_once_in_order(version):
    result = enterprise_result(version)
    grouped = [object_ref(o) for objects in result.groups.objects.values() for o in objects]
    assert sorted(grouped) == sorted(object_ref(o) for o in result.objects)
    assert len(grouped) == len(set(grouped))
    assert set(result.groups.placement) == set(grouped)
    assert all(o["kind"] != "CustomResourceDefinition" for o in result.groups.objects["apps"])


def test_detects_the_platform_version(version):
    # The dashboard's version: 1.11.0 and 26.03 still ship the v1.10.0 dashboard.
    expected = {"26.03": "1.10", "1.11.0": "1.10", "1.10.2": "1.10", "1.9.1": "1.9"}[version]
    assert enterprise_result(version).version.startswith(expected)


def test_pipeline_over_the_current_release_runs_well_under_a_second():
    upstream = upstream_objects("1.10.2")
    transform(upstream, ENTERPRISE)
    started = time.perf_counter()
    transform(upstream, ENTERPRISE)
    assert time.perf_counter() - started < 0.5
