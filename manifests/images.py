"""Image mirroring (issue 4, point 4).

Every image reference is normalised the way the container runtime reads it (`mysql:8.0.29` is
`docker.io/library/mysql:8.0.29`), matched against the mirror rules by registry or prefix, and rewritten
with its tag and digest kept. References are found in pod specs and custom resources (`image:` fields),
in container args (`--executor-image`), in env values (`V2_LAUNCHER_IMAGE`), and inside ConfigMap data
(Knative's `queue-sidecar-image`, KServe's inferenceservice-config JSON, Katib's and the notebook
spawner's YAML, KFP's `cacheImage`). References no rule covers are reported, never guessed.

Some images are named nowhere in the manifests: an operator pulls a default compiled into its code (the
training-operator's PyTorch init container `alpine:3.10`). `name_code_default_images` writes each such
default into the flag or env the operator reads, so it is mirrored like any other and lands in the image map.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from manifests.objects import CONTAINER_LISTS, Change, TransformResult, clone, containers_of, object_ref, pod_template, walk_strings
from manifests.options import ImageMirrorOptions, ImageMirrorRule

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN = r"(?:localhost|[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)+)(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"sha256:[0-9a-fA-F]{64}"
_REFERENCE = re.compile(rf"^(?:(?P<domain>{_DOMAIN})/)?(?P<path>{_COMPONENT}(?:/{_COMPONENT})*)(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?$")

#: Public registries whose names are recognised inside free text even when no rule names them, so an
#: image the rules forgot is reported instead of silently pulled from the internet.
PUBLIC_REGISTRIES = (
    "docker.io", "index.docker.io", "registry-1.docker.io", "gcr.io", "ghcr.io", "quay.io", "registry.k8s.io",
    "k8s.gcr.io", "nvcr.io", "public.ecr.aws", "mcr.microsoft.com", "cr.l5d.io", "registry.access.redhat.com",
    # Istio moved its images here from gcr.io/istio-release (Kubeflow 26.03.1 follows).
    "registry.istio.io",
)
_DOCKER_HUB_ALIASES = {"index.docker.io", "registry-1.docker.io"}


@dataclass(frozen=True)
class ImageReference:
    domain: str
    path: str
    tag: str | None
    digest: str | None

    @property
    def repository(self) -> str:
        return f"{self.domain}/{self.path}"

    def __str__(self) -> str:
        return self.repository + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")


def parse_image(reference: str) -> ImageReference | None:
    """The normalised reference, or None when the text is not an image reference (templates, `$VAR`)."""
    match = _REFERENCE.match(reference.strip())
    if not match:
        return None
    domain, path = match.group("domain"), match.group("path")
    if domain is None:
        # Docker's rule: a first component without '.', ':' or `localhost` is a Docker Hub namespace.
        domain = "docker.io"
        if "/" not in path:
            path = f"library/{path}"
    elif domain in _DOCKER_HUB_ALIASES:
        domain = "docker.io"
    return ImageReference(domain, path, match.group("tag"), match.group("digest"))


def normalize_image(reference: str) -> str | None:
    parsed = parse_image(reference)
    return str(parsed) if parsed else None


def _normalized_source(source: str) -> str:
    source = source.strip().rstrip("/")
    first = source.split("/", 1)[0]
    if "." not in first and ":" not in first and first != "localhost":
        source = f"docker.io/{source}"  # `library` or `bitnami` mean Docker Hub namespaces
    return source


def mirror_image(reference: str, rules: tuple[ImageMirrorRule, ...], default_mirror: str | None = None) -> str | None:
    """The mirrored reference, or None when no rule covers it. The longest matching source wins; with
    `default_mirror`, an image no rule matches goes to `<default_mirror>/<registry>/<path>`."""
    parsed = parse_image(reference)
    if parsed is None:
        return None
    repository = parsed.repository
    best: tuple[int, ImageMirrorRule] | None = None
    for rule in rules:
        source = _normalized_source(rule.source)
        if repository == source or repository.startswith(source + "/"):
            if best is None or len(source) > best[0]:
                best = (len(source), rule)
    if best is None and default_mirror is None:
        return None
    if best is None:
        mirrored = f"{default_mirror.rstrip('/')}/{repository}"
    else:
        mirrored = best[1].mirror.rstrip("/") + repository[best[0]:]
    return mirrored + (f":{parsed.tag}" if parsed.tag else "") + (f"@{parsed.digest}" if parsed.digest else "")


def _is_mirrored(reference: str, rules: tuple[ImageMirrorRule, ...], default_mirror: str | None = None) -> bool:
    mirrors = [rule.mirror for rule in rules] + ([default_mirror] if default_mirror else [])
    return any(reference.startswith(mirror.rstrip("/") + "/") for mirror in mirrors)


# ------------------------------------------------------------------------------------------ discovery

_FLAG_WITH_IMAGE = re.compile(r"^(--?[\w.-]*image[\w.-]*=)(.+)$", re.IGNORECASE)
_FLAG_BEFORE_IMAGE = re.compile(r"^--?[\w.-]*image[\w.-]*$", re.IGNORECASE)
# `image: ref`, `"image" : "ref"`, `defaultJobImage: ref` inside YAML or JSON text.
_KEYED_IN_TEXT = re.compile(r"""(?P<lead>["']?\b\w*[iI]mage["']?\s*:\s*["']?)(?P<ref>[\w][\w./:@-]*[\w])""")
# A reference with an explicit registry anywhere in text (a list item, a Python default value).
_EXPLICIT_IN_TEXT = re.compile(rf"(?<![\w./:@-])(?P<ref>(?P<domain>{_DOMAIN})/{_COMPONENT}(?:/{_COMPONENT})*(?::{_TAG})?(?:@{_DIGEST})?)(?![\w/@-])")

#: ConfigMap keys that are documentation only. Knative rejects a ConfigMap whose `_example` no longer
#: matches its checksum annotation, so these are never rewritten.
_DOCUMENTATION_KEYS = {"_example"}


@dataclass
class _Edits:
    rules: tuple[ImageMirrorRule, ...]
    registries: frozenset[str]
    default_mirror: str | None = None
    #: path -> new value
    edits: list[tuple[tuple, Any]] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)
    mapped: dict[str, str] = field(default_factory=dict)
    unmatched: dict[str, list[str]] = field(default_factory=dict)

    def rewrite(self, reference: str, where: str) -> str | None:
        """The mirrored reference for a whole-value reference, recording the outcome."""
        if _is_mirrored(reference, self.rules, self.default_mirror):
            return None
        normalized = normalize_image(reference)
        if normalized is None:
            return None
        mirrored = mirror_image(normalized, self.rules, self.default_mirror)
        if mirrored is None:
            self.unmatched.setdefault(normalized, []).append(where)
            return None
        self.mapped[normalized] = mirrored
        self.changes.append(f"{where}: {reference} -> {mirrored}")
        return mirrored

    def rewrite_text(self, text: str, where: str, implicit: bool) -> str:
        """Rewrite references inside free text; `implicit` also accepts Docker Hub short names after `image:`."""

        def keyed(match: re.Match) -> str:
            reference = match.group("ref")
            if not implicit and not self._explicit(reference):
                return match.group(0)
            if not any(mark in reference for mark in "/:@"):
                return match.group(0)  # `"image": "proxyv2"` is Istio's hub-relative name, `true` a flag
            mirrored = self.rewrite(reference, where)
            return match.group("lead") + mirrored if mirrored else match.group(0)

        def explicit(match: re.Match) -> str:
            if match.group("domain") not in self.registries:
                return match.group(0)
            mirrored = self.rewrite(match.group("ref"), where)
            return mirrored or match.group(0)

        return _EXPLICIT_IN_TEXT.sub(explicit, _KEYED_IN_TEXT.sub(keyed, text))

    def _explicit(self, reference: str) -> bool:
        first = reference.split("/", 1)[0]
        return "/" in reference and ("." in first or ":" in first)


def _find_container_edits(container: dict, path: tuple, state: _Edits, ref: str) -> None:
    name = container.get("name", "?")
    for list_name in ("command", "args"):
        items = container.get(list_name) or []
        for index, item in enumerate(items):
            if not isinstance(item, str):
                continue
            where = f"{ref} container {name} {list_name}[{index}]"
            flag = _FLAG_WITH_IMAGE.match(item)
            previous = items[index - 1] if index else None
            if flag:
                mirrored = state.rewrite(flag.group(2), where)
                new = flag.group(1) + mirrored if mirrored else None
            elif isinstance(previous, str) and _FLAG_BEFORE_IMAGE.match(previous):
                new = state.rewrite(item, where)
            else:
                rewritten = state.rewrite_text(item, where, implicit=False)
                new = rewritten if rewritten != item else None
            if new is not None:
                state.edits.append((path + (list_name, index), new))
    for index, env in enumerate(container.get("env") or []):
        value = env.get("value") if isinstance(env, dict) else None
        if not isinstance(value, str):
            continue
        where = f"{ref} container {name} env {env.get('name')}"
        if "IMAGE" in str(env.get("name", "")).upper():
            new = state.rewrite(value, where)
        else:
            rewritten = state.rewrite_text(value, where, implicit=False)
            new = rewritten if rewritten != value else None
        if new is not None:
            state.edits.append((path + ("env", index, "value"), new))


def _find_edits(obj: dict, state: _Edits) -> None:
    kind = obj.get("kind")
    ref = object_ref(obj)
    if kind == "CustomResourceDefinition":
        return  # schemas describe `image` fields; they hold no references
    if kind == "ConfigMap":
        for key, value in (obj.get("data") or {}).items():
            if key in _DOCUMENTATION_KEYS or not isinstance(value, str):
                continue
            where = f"{ref} data.{key}"
            if key.lower().endswith("image") and parse_image(value):
                new = state.rewrite(value, where)
            else:
                rewritten = state.rewrite_text(value, where, implicit=True)
                new = rewritten if rewritten != value else None
            if new is not None:
                state.edits.append((("data", key), new))
        return
    for path, value in walk_strings(obj):
        if path and path[-1] == "image":
            if value == INJECTED_PROXY_IMAGE and istio_fills_image(obj):
                continue
            new = state.rewrite(value, f"{ref} {'.'.join(map(str, path))}")
            if new is not None:
                state.edits.append((path, new))
        elif len(path) >= 3 and path[-3] in CONTAINER_LISTS and path[-1] == "name":
            # one visit per container (keyed on its name): args, command and env
            container = _get(obj, path[:-1])
            _find_container_edits(container, path[:-1], state, ref)


#: Istio's placeholder for an injected gateway's proxy: the injector puts the mesh's own proxy image there
#: (istio/istio@1.24.6 manifests/charts/gateway/templates/deployment.yaml:64-66, values.yaml:33).
INJECTED_PROXY_IMAGE = "auto"


def istio_fills_image(obj: dict) -> bool:
    """The object's pods ask Istio's injector for its `gateway` template, which sets the proxy's image."""
    template = (obj.get("spec") or {}).get("template") if isinstance(obj.get("spec"), dict) else None
    annotations = ((template or {}).get("metadata") or {}).get("annotations") or {}
    return "gateway" in str(annotations.get("inject.istio.io/templates", "")).split(",")


def _get(node: Any, path: tuple) -> Any:
    for step in path:
        node = node[step]
    return node


def _set(node: Any, path: tuple, value: Any) -> None:
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value


@dataclass(frozen=True)
class ImageRewriteResult:
    objects: list[dict]
    changes: tuple[Change, ...]
    #: normalised source reference -> mirrored reference, sorted by source; the registry team pre-pulls these
    image_map: dict[str, str]
    #: normalised references no rule covers -> where they appear
    unmatched: dict[str, tuple[str, ...]]


def rewrite_images(objects: list[dict], options: ImageMirrorOptions) -> ImageRewriteResult:
    registries = frozenset(PUBLIC_REGISTRIES) | {_normalized_source(rule.source).split("/", 1)[0] for rule in options.rules}
    result: list[dict] = []
    changes: list[Change] = []
    mapped: dict[str, str] = {}
    unmatched: dict[str, list[str]] = {}
    for obj in objects:
        state = _Edits(options.rules, registries, options.default_mirror)
        _find_edits(obj, state)
        mapped.update(state.mapped)
        for reference, places in state.unmatched.items():
            unmatched.setdefault(reference, []).extend(places)
        if not state.edits:
            result.append(obj)
            continue
        copy = clone(obj)
        for path, value in state.edits:
            _set(copy, path, value)
        result.append(copy)
        changes.extend(Change(object_ref(obj), what) for what in state.changes)
    return ImageRewriteResult(
        result,
        tuple(changes),
        dict(sorted(mapped.items())),
        {reference: tuple(places) for reference, places in sorted(unmatched.items())},
    )


# ------------------------------------------------------------------------------------------ code defaults


@dataclass(frozen=True)
class CodeDefaultImage:
    """An image an operator pulls by a default compiled into its code unless a flag or env names another."""

    deployment: str
    container: str
    #: `--flag` (written `--flag=<image>`) or `env:NAME`
    setting: str
    #: the operator's own image tag -> its default image; tag "*" for every version
    defaults: tuple[tuple[str, str], ...]
    #: where the default is written (repo@tag path:line), per release; the contracts table repeats these
    source: str


#: Read at the tags each release pins (manifests/facts/contracts/images.yaml holds the same facts per release).
CODE_DEFAULT_IMAGES: tuple[CodeDefaultImage, ...] = (
    CodeDefaultImage(
        "training-operator", "training-operator", "--pytorch-init-container-image", (("*", "alpine:3.10"),),
        "kubeflow/training-operator@v1.9.0 pkg/config/config.go:28; cmd/training-operator.v1/main.go:100-101",
    ),
    CodeDefaultImage(
        "training-operator", "training-operator", "--mpi-kubectl-delivery-image", (("*", "kubeflow/kubectl-delivery:latest"),),
        "kubeflow/training-operator@v1.9.0 pkg/config/config.go:35; cmd/training-operator.v1/main.go:108-109",
    ),
    # KFP 2.5.0's manifests (and 2.15.0's, 2.16.0's) set both (so the `:latest` code defaults never apply); 2.3.0's set neither.
    CodeDefaultImage(
        "ml-pipeline", "ml-pipeline-api-server", "env:V2_LAUNCHER_IMAGE",
        (("2.3.0", "gcr.io/ml-pipeline/kfp-launcher@sha256:bef55a344574a25c557256d7c66cb19edacfd2008d694e5b6bb5b612d59feae0"),),
        "kubeflow/pipelines@2.3.0 backend/src/v2/compiler/argocompiler/container.go:33-34, 78-84",
    ),
    CodeDefaultImage(
        "ml-pipeline", "ml-pipeline-api-server", "env:V2_DRIVER_IMAGE",
        (("2.3.0", "gcr.io/ml-pipeline/kfp-driver@sha256:dc8b56a2eb071f30409828a8884d621092e68385af11a6c06aa9e9fbcfbb19de"),),
        "kubeflow/pipelines@2.3.0 backend/src/v2/compiler/argocompiler/container.go:35-36, 86-92",
    ),
)


def _names_setting(container: dict, setting: str) -> bool:
    if setting.startswith("env:"):
        return any(entry.get("name") == setting[4:] for entry in container.get("env") or [])
    words = [*(container.get("command") or []), *(container.get("args") or [])]
    return any(isinstance(w, str) and (w == setting or w.startswith(setting + "=")) for w in words)


def name_code_default_images(objects: list[dict], table: tuple[CodeDefaultImage, ...] = CODE_DEFAULT_IMAGES) -> TransformResult:
    """Each operator's code-default image, written into the flag or env it reads where upstream leaves it
    unset, with the value the operator would use anyway; mirroring then rewrites it like any other image.
    An operator version whose default is not in the table is left alone and said so in the changes."""
    result, changes = [], []
    for obj in objects:
        entries = [entry for entry in table if obj.get("kind") == "Deployment" and (obj.get("metadata") or {}).get("name") == entry.deployment]
        if not entries:
            result.append(obj)
            continue
        copy = clone(obj)
        ref = object_ref(obj)
        changed = False
        for container in containers_of((pod_template(copy) or {}).get("spec") or {}):
            for entry in (e for e in entries if e.container == container.get("name")):
                if _names_setting(container, entry.setting):
                    continue
                shown = entry.setting.replace("env:", "env ")
                parsed = parse_image(container.get("image") or "")
                tag = parsed.tag if parsed else None
                defaults = dict(entry.defaults)
                image = defaults.get(tag or "", defaults.get("*"))
                if image is None:
                    changes.append(Change(ref, f"container {entry.container} {shown} left unset, "
                                               f"the code default of version {tag!r} is not known (pulled unmirrored)"))
                    continue
                if entry.setting.startswith("env:"):
                    container.setdefault("env", []).append({"name": entry.setting[4:], "value": image})
                else:
                    container.setdefault("args", []).append(f"{entry.setting}={image}")
                changes.append(Change(ref, f"container {entry.container} {shown} -> {image} (its code default, named so it is mirrored)"))
                changed = True
        result.append(copy if changed else obj)
    return TransformResult(result, tuple(changes))
