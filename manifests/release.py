"""An upstream release made ready to apply: loaded once, its version checked, transformed, validated.

`prepare_release` runs before anything is registered, so every problem with the source, the options or
the resulting objects stops the program with all of them listed. The exports built here
(`image_mirror_export`, `transform_report_export`) are plain JSON data that the offline preview and the
registry team read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from manifests.images import parse_image
from manifests.objects import object_ref, pod_containers
from manifests.options import TransformOptions
from manifests.pipeline import TransformReport, transform
from manifests.release_changes import api_server_needs_head_bucket
from manifests.release_identity import identify, identity_export, judge
from manifests.sources import LoadedManifests, ManifestError, Problem, UrlSource, load_source
from manifests.validate import validate_objects

#: Stack setting named in this module's errors.
CONFIG_KEY = "kubeflow.manifests"


@dataclass(frozen=True)
class PreparedRelease:
    """What will be applied, and what was done to upstream to get there."""

    #: The release the stack pins (`kubeflow.version`), exported as `kubeflowVersion`.
    release: str
    #: The dashboard's version found in the manifests (1.10.2 of the manifests ships 1.10.0 images), or None;
    #: the release itself is identified from several components (`identity`).
    component_version: str | None
    version_evidence: str | None
    #: sha256 of the source the objects were parsed from.
    sha256: str
    #: How many objects upstream has.
    input_count: int
    report: TransformReport
    #: Which release the objects were identified as, from which components, and the warnings it gave.
    identity: dict
    #: The oauth2-proxy image the release pins (its own oauth2-proxy is excluded: the platform runs one), or None.
    auth_proxy_image: str | None = None
    #: Whether the release's KFP API server needs HeadBucket to start (KFP before 2.16).
    api_server_needs_head_bucket: bool = True

    @property
    def warnings(self) -> list[str]:
        return list(self.identity.get("warnings", []))

    @property
    def groups(self) -> dict[str, list[dict]]:
        """Group name -> objects, in apply order, empty groups left out."""
        return {name: objects for name, objects in self.report.groups.objects.items() if objects}


# --------------------------------------------------------------------------------------- loading

_LOADED: dict[tuple, LoadedManifests] = {}


#: Environment variable naming the cache directory instead of `$XDG_CACHE_HOME/kubeflow-platform`.
CACHE_DIR_VARIABLE = "KUBEFLOW_PLATFORM_CACHE_DIR"


def cache_root() -> Path:
    """The user's cache for this project (not the project's directory): downloads and parsed manifests."""
    configured = os.environ.get(CACHE_DIR_VARIABLE)
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "kubeflow-platform"


def default_cache_dir() -> Path:
    """Where `{url, sha256}` downloads are kept, keyed by checksum."""
    return cache_root() / "manifests"


def parsed_cache_dir() -> Path:
    """Where parsed upstream releases are kept, keyed by checksum (manifests.parse_cache)."""
    return cache_root() / "parsed"


def load_once(source: str | Mapping | UrlSource, cache_dir: Path | None = None) -> LoadedManifests:
    """`load_source`, remembered per process and, for large streams, across processes.

    The tests and the preview evaluate the program many times in one process: a file is loaded again only
    when its size or modification time changes; directories (kustomize output can change) always are.
    Across processes the parsed documents come from `parsed_cache_dir()` when the bytes' checksum matches.
    """
    if isinstance(source, Mapping) and set(source) == {"url", "sha256"}:
        source = UrlSource(str(source["url"]), str(source["sha256"]).lower())
    key: tuple | None = None
    if isinstance(source, UrlSource):
        key = ("url", source.url, source.sha256)
    elif isinstance(source, str) and Path(source).is_file():
        stat = Path(source).stat()
        key = ("file", str(Path(source).resolve()), stat.st_size, stat.st_mtime_ns)
    if key is not None and key in _LOADED:
        return _LOADED[key]
    loaded = load_source(source, cache_dir=cache_dir or default_cache_dir(), config_key=CONFIG_KEY,
                         parsed_cache=parsed_cache_dir())
    if key is not None:
        _LOADED[key] = loaded
    return loaded


# ----------------------------------------------------------------------------------------- prepare


def prepare_release(
    source: str | Mapping | UrlSource,
    options: TransformOptions,
    pinned_version: str,
    cache_dir: Path | None = None,
) -> PreparedRelease:
    """Load, check the version, transform and validate; a `ManifestError` lists every problem."""
    loaded = load_once(source, cache_dir)
    if not loaded.objects:
        # An empty render (a failed kustomize redirected to a file, a wrong path in a directory) would
        # otherwise apply no Kubeflow at all and look like success.
        raise ManifestError([Problem(loaded.origin, "holds no Kubernetes objects", "point kubeflow.manifests at the rendered release")])
    identity = identify(loaded.objects)
    verdict = judge(pinned_version, identity)
    if verdict.problems:
        raise ManifestError(list(verdict.problems))
    problems: list[Problem] = []
    try:
        report = transform(list(loaded.objects), options)
    except (TypeError, AttributeError, KeyError, IndexError, ValueError):
        # The transformations read upstream's fields as Kubernetes defines them, before the emitted objects
        # are validated. When one fails, the input is checked against those definitions: an object of the
        # wrong shape (`containers: 5`, `image: [a]`) is reported as such; a valid input means the failure
        # is the program's own, and it stays a traceback.
        malformed = validate_objects(loaded.objects)
        if not malformed:
            raise
        raise ManifestError([Problem(f"{loaded.origin}: {problem.ref} {problem.path or '<root>'}", problem.message,
                                     "upstream's own schema refuses this object; render the release again")
                             for problem in malformed]) from None
    if options.images.default_mirror:
        for image, places in report.unmirrored_images.items():
            problems.append(Problem(places[0], f"image {image} is not under the mirror", "add a kubeflow.images.rules entry for it"))
    # The CRDs of excluded components (Istio's, Argo's) are the mesh's and Argo's now; their schemas
    # still check the custom resources Kubeflow brings for them (VirtualServices, AuthorizationPolicies).
    excluded_crds = [obj for obj in loaded.objects if obj.get("kind") == "CustomResourceDefinition" and object_ref(obj) in report.excluded]
    for problem in validate_objects(report.objects, extra_crds=excluded_crds):
        problems.append(Problem(f"{problem.ref} {problem.path or '<root>'}", problem.message))
    if problems:
        raise ManifestError(problems)
    return PreparedRelease(
        release=pinned_version,
        component_version=loaded.version,
        version_evidence=loaded.version_evidence,
        sha256=loaded.sha256,
        input_count=len(loaded.objects),
        report=report,
        identity=identity_export(pinned_version, identity, verdict),
        auth_proxy_image=released_auth_proxy_image(loaded.objects),
        api_server_needs_head_bucket=api_server_needs_head_bucket(loaded.objects),
    )


def released_auth_proxy_image(objects) -> str | None:
    """The image of upstream's oauth2-proxy Deployment (found by the image it runs), as the release pins it."""
    for _, container in pod_containers(objects, "Deployment"):
        parsed = parse_image(str(container.get("image") or ""))
        if parsed is not None and parsed.path.rsplit("/", 1)[-1] == "oauth2-proxy":
            return str(container["image"])
    return None


def error_message(error: ManifestError) -> str:
    """One line per problem, in the same shape as the settings errors."""
    count = len(error.problems)
    lines = "\n".join(f"  - {problem}" for problem in error.problems)
    return f"the Kubeflow manifests cannot be applied ({count} problem{'s' if count != 1 else ''}):\n{lines}"


# ----------------------------------------------------------------------------------------- exports


def image_mirror_export(report: TransformReport) -> list[dict[str, str]]:
    """`[{source, target}]` sorted by source: every upstream image and where the cluster pulls it from."""
    return [{"source": source, "target": target} for source, target in sorted(report.image_map.items())]


def transform_report_export(prepared: PreparedRelease, resource_names: Mapping[str, str] | None = None,
                            crd_resource_names: Mapping[str, str] | None = None) -> dict:
    """A JSON-able account of what was done to upstream. `resource_names`: group -> ConfigGroup name;
    `crd_resource_names`: group -> the retained ConfigGroup that applies the group's CRDs before it."""
    report = prepared.report
    resource_names, crd_resource_names = resource_names or {}, crd_resource_names or {}
    groups = [
        {"name": name, "objects": len(objects),
         **({"resource": resource_names[name]} if name in resource_names else {}),
         **({"crdResource": crd_resource_names[name]} if name in crd_resource_names else {})}
        for name, objects in prepared.groups.items()
    ]
    return {
        "release": prepared.release,
        "componentVersion": prepared.component_version,
        "versionEvidence": prepared.version_evidence,
        "releaseIdentity": prepared.identity,
        "sha256": prepared.sha256,
        "counts": {
            "input": prepared.input_count,
            "emitted": len(report.objects),
            "excluded": len(report.excluded),
            "added": len(report.added),
        },
        "exclusions": dict(report.exclusions),
        "excluded": dict(report.excluded),
        "added": list(report.added),
        "changes": {step: [f"{change.ref}: {change.what}" for change in changes] for step, changes in report.changes.items()},
        "groups": groups,
        "mesh": dict(report.mesh),
        "namespaces": dict(report.namespaces),
    }
