"""Loading a manifest source into plain objects.

A source is one of: a rendered YAML file; a directory of YAML files; a kustomize directory (rendered with
`kubectl kustomize` or `kustomize build`); or `{url, sha256}` for an upstream release, downloaded once into
a cache keyed by its checksum. Every failure is a `ManifestError` listing each problem with the fix.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import yaml

from manifests import parse_cache, yaml_loader
from manifests.objects import object_ref, pod_template, containers_of

_YAML_SUFFIXES = (".yaml", ".yml")
_KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

#: How to point the stack at a local copy; named in every error a user can fix that way.
LOCAL_FILE_HINT = "pulumi config set --path kubeflow.manifests ./kubeflow.yaml"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a source: where (file, line or config key), what, and how to fix it."""

    where: str
    message: str
    fix: str = ""

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" + (f" (fix: {self.fix})" if self.fix else "")


class ManifestError(Exception):
    """A manifest source or option that cannot be used; carries every problem found, not just the first."""

    def __init__(self, problems: Iterable[Problem]):
        self.problems = tuple(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


@dataclass(frozen=True)
class UrlSource:
    """An upstream release to download: `{url, sha256}` in the stack config."""

    url: str
    sha256: str


@dataclass(frozen=True)
class LoadedManifests:
    objects: tuple[dict, ...]
    #: sha256 of the bytes the objects were parsed from (for a kustomize directory: of its rendered output).
    sha256: str
    #: Where the objects came from, for reports.
    origin: str
    #: Kubeflow version found in the objects or the URL, or None; see `detect_version`.
    version: str | None
    version_evidence: str | None


# --------------------------------------------------------------------------------------------- parsing


def parse_documents(text: str | bytes, origin: str, parsed_cache: Path | None = None) -> list[dict]:
    """Objects in a multi-document YAML stream: empty documents dropped, `kind: List` flattened.

    `parsed_cache`: a directory where the parsed documents of large streams are kept (manifests.parse_cache).
    """
    try:
        if isinstance(text, bytes):
            documents = parse_cache.load_all(text, parsed_cache)
        else:
            documents = yaml_loader.load_all(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{origin}:{mark.line + 1}:{mark.column + 1}" if mark else origin
        reason = getattr(error, "problem", None) or str(error)
        if isinstance(error, yaml_loader.DuplicateKeyError):
            raise ManifestError([Problem(where, reason, "keep one of the two lines, or render the release again")]) from None
        if isinstance(error, yaml_loader.NestingTooDeepError):
            raise ManifestError([Problem(where, reason, "render the release again; no Kubernetes object nests that deep")]) from None
        raise ManifestError([Problem(where, f"invalid YAML: {reason}", "fix the YAML at that line or render it again")]) from None
    except ValueError as error:  # a scalar PyYAML resolves but Python cannot build (an int of 5,000 digits)
        raise ManifestError([Problem(origin, f"invalid value: {error}", "render the release again")]) from None
    objects: list[dict] = []
    problems: list[Problem] = []
    for index, document in enumerate(documents):
        if document is None:
            continue
        _collect(document, f"{origin} document {index + 1}", objects, problems)
    if problems:
        raise ManifestError(problems)
    return objects


#: Fields every object must have as strings (the transformations read them before schema validation).
_IDENTITY_FIELDS = ("apiVersion", "kind")
_METADATA_STRINGS = ("name", "namespace", "generateName")
_METADATA_MAPPINGS = ("labels", "annotations")


def _collect(document: object, where: str, objects: list[dict], problems: list[Problem]) -> None:
    if not isinstance(document, dict):
        problems.append(Problem(where, f"expected a Kubernetes object, found {type(document).__name__}", "remove the document"))
        return
    kind = document.get("kind")
    if kind == "List" or (isinstance(kind, str) and kind.endswith("List") and "items" in document):
        items = document.get("items") or []
        if not isinstance(items, list):
            problems.append(Problem(f"{where} items", f"expected a list of objects, found {_type_name(items)}", "every document must be a complete Kubernetes object"))
            return
        for position, item in enumerate(items):
            _collect(item, f"{where} item {position + 1}", objects, problems)
        return
    wrong = [f"{key} ({_type_name(document[key])})" for key in _IDENTITY_FIELDS if document.get(key) and not isinstance(document[key], str)]
    metadata = document.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        wrong.append(f"metadata ({_type_name(metadata)}, not an object)")
        metadata = None
    metadata = metadata or {}
    wrong += [f"metadata.{key} ({_type_name(metadata[key])})" for key in _METADATA_STRINGS
              if metadata.get(key) is not None and not isinstance(metadata[key], str)]
    wrong += [f"metadata.{key} ({_type_name(metadata[key])}, not an object of strings)" for key in _METADATA_MAPPINGS
              if metadata.get(key) is not None and not _strings_by_string(metadata[key])]
    if wrong:
        problems.append(Problem(where, f"object with a wrong type at {', '.join(wrong)}", "every document must be a complete Kubernetes object"))
        return
    missing = [key for key in _IDENTITY_FIELDS if not document.get(key)]
    if not metadata.get("name"):
        missing.append("metadata.name")
    if missing:
        problems.append(Problem(where, f"object without {', '.join(missing)}", "every document must be a complete Kubernetes object"))
        return
    objects.append(document)


def _type_name(value: object) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__)


def _strings_by_string(value: object) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


# ----------------------------------------------------------------------------------------------- sources


def load_source(
    source: str | os.PathLike | UrlSource | Mapping,
    cache_dir: str | os.PathLike | None = None,
    config_key: str = "kubeflow.manifests",
    parsed_cache: Path | None = None,
) -> LoadedManifests:
    """Load any kind of source. `config_key` names the stack setting in errors; `cache_dir` keeps URL
    downloads, `parsed_cache` the parsed documents of large streams (manifests.parse_cache)."""
    if isinstance(source, Mapping):
        source = _url_source_from_mapping(source, config_key)
    if isinstance(source, UrlSource):
        if cache_dir is None:
            raise ManifestError([Problem(config_key, "a URL source needs a cache directory", "pass cache_dir")])
        return load_url(source, Path(cache_dir), config_key, parsed_cache)
    path = Path(source)
    if not path.exists():
        raise ManifestError([Problem(str(path), "no such file or directory", f"render the manifests to a file and run `{LOCAL_FILE_HINT}`")])
    if path.is_dir():
        if any((path / name).is_file() for name in _KUSTOMIZATION_FILES):
            return load_kustomize_dir(path, parsed_cache)
        return load_yaml_dir(path, parsed_cache)
    return load_yaml_file(path, parsed_cache)


def _url_source_from_mapping(source: Mapping, config_key: str) -> UrlSource:
    problems = []
    url, sha256 = source.get("url"), source.get("sha256")
    if not isinstance(url, str) or not url:
        problems.append(Problem(f"{config_key}.url", "missing", "set the release URL"))
    if not isinstance(sha256, str) or not _SHA256.match(sha256.lower()):
        problems.append(Problem(f"{config_key}.sha256", f"expected 64 hex digits, got {sha256!r}", "set the sha256 of the release file"))
    unknown = sorted(set(source) - {"url", "sha256"})
    if unknown:
        problems.append(Problem(config_key, f"unknown keys {unknown}", "a URL source has only url and sha256"))
    if problems:
        raise ManifestError(problems)
    return UrlSource(url=url, sha256=sha256.lower())


def _finish(data: bytes, objects: list[dict], origin: str, url: str | None = None) -> LoadedManifests:
    version, evidence = detect_version(objects, url=url)
    return LoadedManifests(tuple(objects), hashlib.sha256(data).hexdigest(), origin, version, evidence)


#: The largest manifests file read: ten times the largest rendered release (26.03, 12 MB). A bound, so that a
#: device such as /dev/zero or a runaway render ends in a message instead of exhausting memory.
MAX_MANIFESTS_BYTES = 128 * 1024 * 1024


def read_regular_file(path: Path, limit: int | None = None, unreadable_hint: str | None = None) -> bytes:
    """The bytes of `path` if it is a regular file of at most `limit` bytes; ManifestError naming it otherwise.

    Checked before opening: a FIFO blocks the open itself until someone writes, and a device never ends.
    """
    limit = MAX_MANIFESTS_BYTES if limit is None else limit
    try:
        status = path.stat()
    except OSError as error:
        raise ManifestError([Problem(str(path), f"cannot read: {error.strerror}", f"check the path, or `{LOCAL_FILE_HINT}`")]) from None
    if not stat.S_ISREG(status.st_mode):
        raise ManifestError([Problem(str(path), "is not a regular file (a pipe, device or socket)",
                                     f"render the manifests to a file first: `{LOCAL_FILE_HINT}`")])
    try:
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except OSError as error:
        raise ManifestError([Problem(str(path), f"cannot read: {error.strerror}",
                                     unreadable_hint or f"check the path, or `{LOCAL_FILE_HINT}`")]) from None
    if len(data) > limit:
        raise ManifestError([Problem(str(path), f"is larger than {limit // (1024 * 1024)} MiB, far beyond any Kubeflow release",
                                     "point at one rendered release")])
    return data


def load_yaml_file(path: Path, parsed_cache: Path | None = None) -> LoadedManifests:
    data = read_regular_file(path)
    return _finish(data, parse_documents(data, str(path), parsed_cache), str(path))


def load_yaml_dir(path: Path, parsed_cache: Path | None = None) -> LoadedManifests:
    """Every *.yaml/*.yml below `path`, in sorted path order so the result never depends on the filesystem."""
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in _YAML_SUFFIXES)
    if not files:
        raise ManifestError([Problem(str(path), "directory holds no .yaml or .yml files", "point at a rendered file or a kustomize directory")])
    digest = hashlib.sha256()
    objects: list[dict] = []
    problems: list[Problem] = []
    for file in files:
        try:
            data = read_regular_file(file, unreadable_hint="check the file's permissions, or render the release again")
        except ManifestError as error:
            problems.extend(error.problems)
            continue
        digest.update(str(file.relative_to(path)).encode() + b"\0" + data + b"\0")
        try:
            objects.extend(parse_documents(data, str(file), parsed_cache))
        except ManifestError as error:
            problems.extend(error.problems)
    if problems:
        raise ManifestError(problems)
    version, evidence = detect_version(objects)
    return LoadedManifests(tuple(objects), digest.hexdigest(), str(path), version, evidence)


def kustomize_command(path: Path) -> list[str]:
    """The installed renderer: `kubectl kustomize` or `kustomize build`."""
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize", str(path)]
    if shutil.which("kustomize"):
        return ["kustomize", "build", str(path)]
    raise ManifestError([Problem(
        str(path),
        "a kustomize directory needs `kubectl kustomize` or `kustomize build`, and neither kubectl nor kustomize is installed",
        f"install kubectl or kustomize, or render the manifests once and `{LOCAL_FILE_HINT}`",
    )])


def load_kustomize_dir(path: Path, parsed_cache: Path | None = None) -> LoadedManifests:
    command = kustomize_command(path)
    result = subprocess.run(command, capture_output=True)
    if result.returncode != 0:
        message = result.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise ManifestError([Problem(str(path), f"`{' '.join(command[:2])}` failed: {message[0]}", "fix the kustomization, or render it and point at the file")])
    return _finish(result.stdout, parse_documents(result.stdout, f"{path} (rendered)", parsed_cache), str(path))


def load_url(
    source: UrlSource, cache_dir: Path, config_key: str = "kubeflow.manifests", parsed_cache: Path | None = None
) -> LoadedManifests:
    """Download once into `cache_dir/<sha256>.yaml`; a cached copy is re-checked, never trusted blindly."""
    expected = source.sha256.lower()
    cached = cache_dir / f"{expected}.yaml"
    if cached.is_file():
        data = cached.read_bytes()
        if hashlib.sha256(data).hexdigest() == expected:
            return _finish(data, parse_documents(data, source.url, parsed_cache), source.url, url=source.url)
        cached.unlink()  # a truncated or tampered cache entry: fetch again
    try:
        with urllib.request.urlopen(source.url, timeout=60) as response:
            data = response.read()
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise ManifestError([Problem(
            config_key,
            f"cannot download {source.url} ({reason}) and no cached copy with sha256 {expected} is in {cache_dir}",
            f"download or render the release elsewhere, copy it here, and `{LOCAL_FILE_HINT}`",
        )]) from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise ManifestError([Problem(
            f"{config_key}.sha256",
            f"checksum mismatch for {source.url}: expected {expected}, actual {actual}",
            "check the URL points at the release you pinned; update sha256 only if you trust the new file",
        )])
    objects = parse_documents(data, source.url, parsed_cache)
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Write then rename, so an interrupted download never leaves a half file under the checksum name.
    with tempfile.NamedTemporaryFile(dir=cache_dir, delete=False, suffix=".part") as partial:
        partial.write(data)
    os.replace(partial.name, cached)
    return _finish(data, objects, source.url, url=source.url)


# ------------------------------------------------------------------------------------------- version

_VERSION_IN_URL = re.compile(r"v(\d+\.\d+\.\d+)")
_TAG = re.compile(r":v?(\d+\.\d+\.\d+)$")
#: Images built from the kubeflow/kubeflow repository at the platform's own version (the profile
#: controller, KFAM, the central dashboard). Their registry moved between releases (docker.io
#: kubeflownotebookswg in 1.9, ghcr.io/kubeflow/kubeflow in 1.10), so match the last path part.
#: The dashboard image moves to ghcr.io/kubeflow/dashboard/dashboard with the dashboard repository's manifests (26.03.1).
_PLATFORM_IMAGES = ("centraldashboard", "central-dashboard", "dashboard", "profile-controller", "kfam")


def detect_version(objects: Iterable[dict], url: str | None = None) -> tuple[str | None, str | None]:
    """The Kubeflow version and what it was read from.

    Rendered manifests carry no release label, so a tag in the release URL wins; otherwise the tag of
    the platform's own images. Those are the components' release (1.10.2 of the manifests ships 1.10.0
    images), so the stack config may still pin the exact manifests release.
    """
    if url:
        match = _VERSION_IN_URL.search(url)
        if match:
            return match.group(1), f"release URL {url}"
    for obj in objects:
        template = pod_template(obj)
        if template is None:
            continue
        spec = template.get("spec")
        for container in containers_of(spec if isinstance(spec, dict) else {}):
            image = container.get("image")
            if not isinstance(image, str):
                continue  # schema validation reports it
            repository = image.split("@", 1)[0].rsplit(":", 1)[0]
            if repository.rsplit("/", 1)[-1] in _PLATFORM_IMAGES:
                match = _TAG.search(image.split("@", 1)[0])
                if match:
                    return match.group(1), f"image {image} of {object_ref(obj)}"
    return None, None
