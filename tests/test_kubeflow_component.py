"""The Kubeflow component on its own, with a small release: IRSA patches, ordering, the decoder."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from components.kubeflow import IRSA_ROLE_ANNOTATION, CentralSecretArgs, Kubeflow, KubeflowArgs
from manifests.objects import config_group_yaml, objects_from_config_group_inputs
from manifests.options import TransformOptions
from manifests.release import prepare_release
from tools.mock_runtime import Registration, install_mocks

RELEASE = """
apiVersion: v1
kind: Namespace
metadata: {name: kubeflow}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: pipeline-runner, namespace: kubeflow}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: ml-pipeline, namespace: kubeflow}
spec:
  selector: {matchLabels: {app: ml-pipeline}}
  template:
    metadata: {labels: {app: ml-pipeline}}
    spec:
      serviceAccountName: pipeline-runner
      containers:
        - {name: api, image: ghcr.io/kubeflow/kfp-api-server:2.5.0}
"""


def register(build) -> list[Registration]:
    _, monitor = install_mocks({}, stack="test")
    _sync_await(run_pulumi_func(build))
    return monitor.registrations


def small_release(tmp_path):
    path = tmp_path / "release.yaml"
    path.write_text(RELEASE)
    return prepare_release(str(path), TransformOptions(), "1.10.2")


def test_a_workloads_role_is_on_its_service_account_before_its_first_pod(tmp_path):
    # The EKS pod identity webhook acts on pod CREATE only: the annotation must be on the ServiceAccount in
    # the group that creates it with its Deployment, and that group must wait for the role and its policy.
    release = small_release(tmp_path)
    roles = {
        "kubeflow/pipeline-runner": pulumi.Output.from_input("arn:aws:iam::111111111111:role/kubeflow-pipelines"),
        "argo/argo-workflow": pulumi.Output.from_input("arn:aws:iam::111111111111:role/argo"),
    }

    def build():
        provider = k8s.Provider("k8s", kubeconfig="{}")
        role = pulumi.CustomResource("test:index:Role", "role")
        Kubeflow("kubeflow", KubeflowArgs(release=release, service_account_roles=roles, service_account_roles_ready=[role]),
                 pulumi.ResourceOptions(provider=provider))

    registered = register(build)
    (role,) = [r for r in registered if r.type == "test:index:Role"]
    groups = {r.name: r for r in registered if r.type == "kubernetes:yaml/v2:ConfigGroup"}
    # The Pod Security admission policies (manifests/admission.py) come right after the namespaces.
    assert list(groups) == ["kubeflow-namespaces", "kubeflow-admission", "kubeflow-core"]
    core = objects_from_config_group_inputs(groups["kubeflow-core"].inputs)
    (account,) = [o for o in core if o["kind"] == "ServiceAccount"]
    assert account["metadata"]["annotations"] == {IRSA_ROLE_ANNOTATION: "arn:aws:iam::111111111111:role/kubeflow-pipelines"}
    assert any(o["kind"] == "Deployment" for o in core)
    assert role.urn in groups["kubeflow-core"].dependencies
    assert role.urn not in groups["kubeflow-namespaces"].dependencies
    patches = {r.name: r for r in registered if r.type == "kubernetes:core/v1:ServiceAccountPatch"}
    # Only the external Argo's account, which the program does not create, is patched, once the role exists.
    assert list(patches) == ["kubeflow-irsa-argo-argo-workflow"]
    assert patches["kubeflow-irsa-argo-argo-workflow"].dependencies == [role.urn]
    (provider,) = [r for r in registered if r.type == "pulumi:providers:kubernetes"]
    for resource in [*groups.values(), *patches.values()]:
        assert resource.provider.startswith(provider.urn), resource.name


def test_without_a_namespaces_group_the_secret_still_precedes_its_consumers(tmp_path):
    path = tmp_path / "release.yaml"
    path.write_text(RELEASE.split("---", 1)[1])  # the Namespace is someone else's
    release = prepare_release(str(path), TransformOptions(), "1.10.2")
    secret_args = CentralSecretArgs(
        name="central", namespace="kubeflow", db_host="db.example.com", db_port=3306, db_user="kf",
        db_password=pulumi.Output.secret("pw"),
    )

    def build():
        provider = k8s.Provider("k8s", kubeconfig="{}")
        Kubeflow("kubeflow", KubeflowArgs(release=release, central_secret=secret_args), pulumi.ResourceOptions(provider=provider))

    registered = register(build)
    (secret,) = [r for r in registered if r.type == "kubernetes:core/v1:Secret"]
    # The only other group is the Pod Security admission policies' (manifests/admission.py), which need no Secret.
    (core,) = [r for r in registered if r.type == "kubernetes:yaml/v2:ConfigGroup" and r.name.endswith("-core")]
    assert secret.urn in core.dependencies and "stringData" in secret.secret_paths


def test_config_group_text_decodes_back_to_the_same_objects():
    objects = [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "é\n---\nx"}}, {"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "b"}}]
    assert objects_from_config_group_inputs({"yaml": config_group_yaml(objects)}) == objects
    assert objects_from_config_group_inputs({"objs": objects}) == objects
    assert objects_from_config_group_inputs({"yaml": "kind: A\\nmetadata: {name: x}\n---\nkind: B\n".replace("\\n", "\n")}) == [{"kind": "A", "metadata": {"name": "x"}}, {"kind": "B"}]
