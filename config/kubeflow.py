"""What upstream Kubeflow to apply and how it is fitted into the enterprise's mesh, Argo and registry."""

from __future__ import annotations

import re
import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal, Optional, Union

from config import checks
from config.loader import setting

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_VERSION = re.compile(r"^\d+\.\d+\.\d+$")


@dataclass(frozen=True, kw_only=True)
class ManifestUrlSettings:
    url: str = setting(check=checks.not_empty)
    """Where to download a rendered upstream release (https://... or file://...)."""
    sha256: str = setting()
    """Expected SHA-256 of the download; a different file is refused."""

    def cross_check(self) -> Iterator[tuple[str, str]]:
        if not _SHA256.match(self.sha256):
            yield "sha256", f"{self.sha256!r} is not a SHA-256 digest (64 lower-case hex characters)"
        if not self.url.startswith(("https://", "file://")):
            yield "url", f"{self.url!r} must be an https:// or file:// URL"


@dataclass(frozen=True, kw_only=True)
class MeshSettings:
    istio_version: str = setting("1.24")
    """Version of the enterprise's Istio control plane (chooses API versions and filter shapes)."""
    revision: Optional[str] = setting(None, check=checks.dns1123_label)
    """Istio revision to join (istio.io/rev label) instead of the default istio-injection label."""

    def cross_check(self) -> Iterator[tuple[str, str]]:
        if not re.match(r"^1\.\d+$", self.istio_version):
            yield "istioVersion", f"{self.istio_version!r} is not an Istio minor version like 1.24"


@dataclass(frozen=True, kw_only=True)
class ImageRuleSettings:
    source: str = setting(check=checks.not_empty)
    """Registry or image prefix to rewrite (like gcr.io/ml-pipeline or docker.io)."""
    target: str = setting(check=checks.not_empty)
    """What replaces that prefix (like registry.corp.example/gcr/ml-pipeline)."""


@dataclass(frozen=True, kw_only=True)
class ImageSettings:
    mirror: str = setting(check=checks.not_empty)
    """The approved internal registry; every image must end up under it."""
    rules: tuple[ImageRuleSettings, ...] = setting(())
    """Rewrite rules, most specific first; an image no rule matches goes to `<mirror>/<registry>/<path>`."""


@dataclass(frozen=True, kw_only=True)
class ArgoSettings:
    external: bool = setting(True)
    """Use the enterprise's own Argo Workflows instead of the one bundled with Kubeflow Pipelines."""
    namespace: str = setting("argo", check=checks.dns1123_label)
    """Namespace of the external Argo workflow controller (its ConfigMap is produced there)."""
    key_format: str = setting("artifacts/{{workflow.namespace}}/{{workflow.name}}/{{pod.name}}")
    """Artifact key format inside the bucket, per namespace and workflow."""


@dataclass(frozen=True, kw_only=True)
class DatabaseSettings:
    host: str = setting(check=checks.not_empty)
    """Host of the external MySQL-compatible database."""
    port: int = setting(3306, check=checks.between(1, 65535))
    """Database port."""
    user: str = setting("kubeflow", check=checks.not_empty)
    """Database user; its password is the secret `databasePassword`."""


@dataclass(frozen=True, kw_only=True)
class KubeflowSettings:
    version: str = setting()
    """Kubeflow release the manifests are (like 1.10.2); recorded, exported and checked against them."""
    manifests: Union[str, ManifestUrlSettings] = setting()
    """Rendered upstream manifests: a YAML file, a directory, a kustomize directory, or {url, sha256}."""
    exclude: tuple[str, ...] = setting(("istio", "argo"), check=checks.unique("rule"))
    """Bundled components the enterprise already runs (istio, argo, cert-manager, dex, knative, ...)."""
    mesh: MeshSettings = setting(MeshSettings())
    """The enterprise's Istio mesh."""
    pod_labels: Mapping[str, str] = setting(types.MappingProxyType({}), check=checks.labels)
    """Labels added to every workload's pod template."""
    pod_annotations: Mapping[str, str] = setting(types.MappingProxyType({}), check=checks.annotation_keys)
    """Annotations added to every workload's pod template (sidecar.istio.io/inject is always set)."""
    images: Optional[ImageSettings] = setting(None)
    """Image mirroring to the internal registry."""
    argo: ArgoSettings = setting(ArgoSettings())
    """Argo Workflows that runs the pipelines."""
    database: Optional[DatabaseSettings] = setting(None)
    """External MySQL for pipelines, metadata, Katib and the model registry (bundled MySQL excluded)."""
    central_secret: str = setting("kubeflow-platform-credentials", check=checks.dns1123_label)
    """Name of the one Secret holding database and object store settings for every consumer."""

    def cross_check(self) -> Iterator[tuple[str, str]]:
        if not _VERSION.match(self.version):
            yield "version", f"{self.version!r} is not a release version like 1.10.2"
        if isinstance(self.manifests, str) and not self.manifests.strip():
            yield "manifests", "must name a file, a directory or {url, sha256}"
