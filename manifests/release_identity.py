"""Which Kubeflow release a set of upstream objects is, from several components at once.

Rendered manifests carry no release number, and one component's tag is no release's identity: v1.11.0
and 26.03 both ship the v1.10.0 dashboard. So the versions of several components (dashboard, pipelines,
Katib, KServe, training, Istio) are read from their image tags and compared with a table of known
releases kept as data (`manifests/facts/releases.yaml`, each version with the line of kubeflow/manifests
that sets it).

- A known release other than the pinned one is refused, naming both.
- A release newer than every known one (each component found at or past the newest known release's
  version, one past it) is accepted with a warning naming what could not be verified, so next month's
  release is not blocked by this month's table.
- Anything else (older, mixed, unknown) is refused with what was found.
Pure Python, no Pulumi.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import yaml

from manifests.images import parse_image
from manifests.objects import object_ref, pod_containers
from manifests.sources import Problem

RELEASES_FILE = Path(__file__).resolve().parent / "facts" / "releases.yaml"
#: Stack settings named in this module's messages.
VERSION_KEY = "kubeflow.version"
MANIFESTS_KEY = "kubeflow.manifests"


@dataclass(frozen=True)
class KnownRelease:
    release: str
    #: component -> version, as its image tag reads (`v0.18.0`, `2.5.0`)
    components: Mapping[str, str]
    #: component -> where the release's manifests set that tag
    sources: Mapping[str, str]


@dataclass(frozen=True)
class ReleaseTable:
    #: component -> last parts of its image repository
    images: Mapping[str, tuple[str, ...]]
    releases: tuple[KnownRelease, ...]

    @property
    def newest(self) -> KnownRelease:
        return max(self.releases, key=lambda r: release_key(r.release))

    def named(self, release: str) -> KnownRelease | None:
        return next((r for r in self.releases if r.release == release), None)


@dataclass(frozen=True)
class Identity:
    """What the objects were found to be."""

    #: component -> (version, evidence: `image <ref> of <object>`)
    found: Mapping[str, tuple[str, str]]
    #: known releases every found component agrees with, oldest first
    candidates: tuple[str, ...]
    #: no known release matches, and the components are at or past the newest known release's
    newer: bool


@dataclass(frozen=True)
class Verdict:
    problems: tuple[Problem, ...]
    warnings: tuple[str, ...]


@functools.lru_cache(maxsize=None)
def release_table(path: Path = RELEASES_FILE) -> ReleaseTable:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    images = {name: tuple(parts) for name, parts in data["components"].items()}
    releases = tuple(
        KnownRelease(
            release=str(entry["release"]),
            components={name: str(c["version"]) for name, c in entry["components"].items()},
            sources={name: str(c["source"]) for name, c in entry["components"].items()},
        )
        for entry in data["releases"]
    )
    return ReleaseTable(images, releases)


_NUMBER = re.compile(r"^v?(\d+(?:\.\d+)*)$")


def release_key(version: str) -> tuple[int, ...]:
    """Orders releases and component versions: 1.9.1 < 1.10.2 < 1.11.0 < 26.03 (calendar releases are newer)."""
    match = _NUMBER.match(version)
    return tuple(int(part) for part in match.group(1).split(".")) if match else ()


def _image_tag(image: str) -> tuple[str, str] | None:
    """(last part of the repository, tag) of an image reference, or None without a tag."""
    parsed = parse_image(image)
    if parsed is None or not parsed.tag:
        return None
    return parsed.path.rsplit("/", 1)[-1], parsed.tag


def identify(objects: Iterable[dict], table: ReleaseTable | None = None) -> Identity:
    table = table or release_table()
    by_image = {part: name for name, parts in table.images.items() for part in parts}
    found: dict[str, tuple[str, str]] = {}
    for obj, container in pod_containers(objects):
        image = container.get("image")
        parsed = _image_tag(image) if isinstance(image, str) else None
        if parsed is None or parsed[0] not in by_image:
            continue
        component = by_image[parsed[0]]
        found.setdefault(component, (parsed[1], f"image {image} of {object_ref(obj)}"))
    candidates = tuple(
        r.release for r in sorted(table.releases, key=lambda r: release_key(r.release))
        if found and all(r.components.get(name) == version for name, (version, _) in found.items())
    )
    return Identity(found, candidates, newer=not candidates and _past_newest(found, table.newest))


def _past_newest(found: Mapping[str, tuple[str, str]], newest: KnownRelease) -> bool:
    ahead = False
    for name, (version, _) in found.items():
        known = newest.components.get(name)
        if known is None or version == known:
            continue
        mine, theirs = release_key(version), release_key(known)
        if not mine or not theirs:
            continue  # a commit-hash tag cannot be ordered; it neither proves nor refutes newer
        if mine < theirs:
            return False
        ahead = True
    return ahead


def _found_text(identity: Identity) -> str:
    return ", ".join(f"{name} {version}" for name, (version, _) in sorted(identity.found.items()))


def judge(pinned: str, identity: Identity, table: ReleaseTable | None = None) -> Verdict:
    """Problems (refusals) and warnings for manifests identified as `identity` under `kubeflow.version: pinned`."""
    table = table or release_table()
    known = [r.release for r in sorted(table.releases, key=lambda r: release_key(r.release))]
    pinned_known = table.named(pinned)
    if not identity.found:
        return Verdict((), (f"the release of {MANIFESTS_KEY} could not be identified: none of the components "
                            f"{', '.join(table.images)} was found by its image; {pinned} is taken on trust",))
    if pinned in identity.candidates:
        missing = sorted(set(pinned_known.components) - set(identity.found)) if pinned_known else []
        warnings = (f"{MANIFESTS_KEY} lacks {', '.join(missing)} of Kubeflow {pinned}: identified from "
                    f"{_found_text(identity)} only",) if missing else ()
        return Verdict((), warnings)
    if identity.candidates:
        which = " or ".join(identity.candidates)
        return Verdict((Problem(
            MANIFESTS_KEY,
            f"holds Kubeflow {which} ({_found_text(identity)}), not {VERSION_KEY} {pinned}",
            f"point {MANIFESTS_KEY} at the {pinned} release, or set {VERSION_KEY} to \"{identity.candidates[-1]}\"",
        ),), ())
    newest = table.newest
    if identity.newer and pinned_known is None and release_key(pinned) > release_key(newest.release):
        unverified = ", ".join(
            f"{name} {version} (newest known: {newest.components.get(name, 'none')})"
            for name, (version, _) in sorted(identity.found.items()) if newest.components.get(name) != version
        )
        return Verdict((), (
            f"Kubeflow {pinned} is newer than every release this program knows ({', '.join(known)}); "
            f"its components could not be verified against the table: {unverified}. "
            "Review the preview's transformation report before deploying.",
        ))
    if identity.newer:
        return Verdict((Problem(
            MANIFESTS_KEY,
            f"holds a Kubeflow release newer than every known one ({_found_text(identity)}), not {VERSION_KEY} {pinned}",
            f"set {VERSION_KEY} to the release the manifests are (newer than {newest.release})",
        ),), ())
    if pinned_known is None and release_key(pinned) <= release_key(newest.release):
        reason = f"{VERSION_KEY} {pinned} is not a release this program knows (known: {', '.join(known)})"
    else:
        reason = f"the components match no known release ({', '.join(known)})"
    closest = min(table.releases, key=lambda r: sum(r.components.get(n) != v for n, (v, _) in identity.found.items()))
    differs = ", ".join(f"{n} {v} (it ships {closest.components.get(n, 'none')})"
                        for n, (v, _) in sorted(identity.found.items()) if closest.components.get(n) != v)
    return Verdict((Problem(
        MANIFESTS_KEY,
        f"{reason}: found {_found_text(identity)}; closest is {closest.release}, which differs in {differs}",
        f"render one release's example/ unchanged and set {VERSION_KEY} to it",
    ),), ())


def identity_export(pinned: str, identity: Identity, verdict: Verdict) -> dict:
    """The evidence, for the `transformReport` export."""
    return {
        "pinned": pinned,
        "identifiedAs": list(identity.candidates),
        "newerThanKnown": identity.newer,
        "components": {name: {"version": version, "evidence": evidence}
                       for name, (version, evidence) in sorted(identity.found.items())},
        "warnings": list(verdict.warnings),
    }
