"""Profiles that are alike, traced once: the trace's answer for one is the other's with the names swapped.

A trace of a profile's paths reads the objects that decide each hop: the profile's own (its Namespace and every
object in it: kfam's contributor policies, the owner's policy, PeerAuthentications, Sidecars, VirtualServices,
DestinationRules, Services and workloads with their labels and service accounts) and the objects every profile
shares (the gateway, the root namespace's policies, Kubeflow's Services). Two profiles are alike when their own
objects are the same once each profile's names are replaced by placeholders: its namespace, its owner, its
contributors in the order their policies come, and the names the program derives from a contributor's email
(`user-<email>-clusterrole-<role>`, manifests/tenancy.py). The key is computed from the objects, never from the
settings that made them, so an object edited by hand (in the plan, or by a transformation) gives its profile a key
of its own.

A profile is traced on its own (a class of one) when:
- its namespace's name appears in any object outside its own (another namespace's policy naming it, a Sidecar
  importing it, a Gateway host for it): the shared objects would then not be the same for it and a look-alike;
- one of its people (owner or contributor) appears in an object no profile owns (a policy in the root namespace
  naming them, say); a person named in another profile's objects (contributing there) does not decide the hops
  of requests to this profile's namespace;
- the caller asks for it (the profile the matrix's web-app rows are relative to, the profiles whose workloads
  other rows call from).

Each class is traced for its first member; the answer is renamed for every other member. The second member of
every class is also traced in full and compared with its renamed answer: where they differ, every member of the
class is traced on its own, so a renaming that would not hold (a profile's name inside an unrelated word, say)
costs time, never a wrong answer.

`KUBEFLOW_PLATFORM_TRACE_SHARING=0` turns the sharing off (every profile traced in full; the answers are the
same byte for byte, which tests/test_trace_sharing.py asserts).

Pure Python; no Pulumi.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from analysis import trace as t

SHARING_ENV = "KUBEFLOW_PLATFORM_TRACE_SHARING"
#: The separators of kfam's contributor names (manifests/tenancy.py kfam_binding_name).
_UNSAFE = re.compile(r"[^a-zA-Z0-9]+")
_WORD = re.compile(r"[A-Za-z0-9]+")
#: Kinds no hop reads: their schemas and rules are upstream's and never name a profile's objects.
_NOT_READ = frozenset({"CustomResourceDefinition"})


def enabled(share: bool | None = None) -> bool:
    """`share` when given, else the environment (on unless KUBEFLOW_PLATFORM_TRACE_SHARING=0)."""
    if share is not None:
        return share
    return os.environ.get(SHARING_ENV, "1").strip() not in ("0", "false", "no", "off")


def _mangled(email: str) -> str:
    return _UNSAFE.sub("-", email).lower()


@dataclass(frozen=True)
class Identity:
    """A profile's names: its namespace and its people (owner first, then contributors in policy order)."""

    namespace: str
    people: tuple[str, ...]

    def names(self) -> list[str]:
        found = [self.namespace]
        for person in self.people:
            found += [person, _mangled(person)]
        return found


class Renamer:
    """Rewrites one profile's names into another's in strings, and in the traces and callers built of them.

    A name is replaced only where it stands alone (no letter or digit right before or after it)."""

    def __init__(self, source: Identity, target: Identity) -> None:
        pairs: dict[str, str] = {}
        for old, new in zip(source.names(), target.names()):
            if old != new:
                pairs.setdefault(old, new)
        self.pairs = pairs
        self.identity = not pairs
        alternatives = "|".join(re.escape(name) for name in sorted(pairs, key=len, reverse=True))
        self._pattern = re.compile(rf"(?<![A-Za-z0-9])(?:{alternatives})(?![A-Za-z0-9])") if pairs else None
        self._strings: dict[str, str] = {}

    def text(self, value: str) -> str:
        if self._pattern is None:
            return value
        done = self._strings.get(value)
        if done is None:
            done = self._pattern.sub(lambda m: self.pairs[m.group(0)], value)
            self._strings[value] = done
        return done

    def __call__(self, value: Any) -> Any:
        """`value` renamed; parts without a name to change are returned as they are (shared, not copied)."""
        if self.identity:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            items = [(self(k), self(v)) for k, v in value.items()]
            if all(nk is k and nv is v for (nk, nv), (k, v) in zip(items, value.items())):
                return value
            return dict(items)
        if isinstance(value, (list, tuple)):
            items = [self(v) for v in value]
            if all(a is b for a, b in zip(items, value)):
                return value
            return type(value)(items)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            changes = {}
            for f in dataclasses.fields(value):
                old = getattr(value, f.name)
                new = self(old)
                if new is not old:
                    changes[f.name] = new
            return dataclasses.replace(value, **changes) if changes else value
        return value


def _owned(obj: Mapping[str, Any], profiles: Mapping[str, str]) -> str | None:
    """The profile an object belongs to: its namespace's, or the profile a cluster-scoped object is named after."""
    metadata = obj.get("metadata") or {}
    namespace = metadata.get("namespace")
    if namespace:
        return namespace if namespace in profiles else None
    name = metadata.get("name")
    return name if name in profiles else None


def identities(model: t.MeshModel) -> dict[str, Identity]:
    """Every profile's names, read from its own objects (the owner annotation, kfam's contributor policies)."""
    profiles = model.profiles()
    machines = {issuer.machine_user for issuer in model.settings.issuers if issuer.machine_user}
    people: dict[str, list[str]] = {name: [owner] for name, owner in profiles.items()}
    for policy in model.kind("AuthorizationPolicy"):
        namespace = t._ns(policy)
        if namespace not in people:
            continue
        annotations = (policy.get("metadata") or {}).get("annotations") or {}
        user = annotations.get("user")
        if annotations.get("role") in ("edit", "view") and user and user not in machines and user not in people[namespace]:
            people[namespace].append(user)
    return {name: Identity(name, tuple(found)) for name, found in people.items()}


def _mentions(texts: Iterable[str], names: Iterable[str]) -> set[str]:
    """The `names` that stand alone somewhere in `texts`; where several start at one place, only the longest counts
    (a namespace `alice` inside `alice@example.com` is the email, not the namespace)."""
    by_word: dict[str, list[tuple[int, str]]] = {}
    for name in names:
        first = _WORD.search(name)
        if first is not None:
            by_word.setdefault(first.group(0), []).append((first.start(), name))
    for candidates in by_word.values():
        candidates.sort(key=lambda item: -len(item[1]))
    found: set[str] = set()
    for text in texts:
        covered = 0
        for match in _WORD.finditer(text):
            if match.start() < covered:
                continue
            for offset, name in by_word.get(match.group(0), ()):
                at = match.start() - offset
                end = at + len(name)
                if at < 0 or not text.startswith(name, at):
                    continue
                if (at > 0 and text[at - 1].isalnum()) or (end < len(text) and text[end].isalnum()):
                    continue
                found.add(name)
                covered = end
                break
    return found


def classes(model: t.MeshModel, alone: Iterable[str] = ()) -> list[list[str]]:
    """The profiles in classes of alike ones, in profile order (each class's first member is traced for it)."""
    profiles = model.profiles()
    ids = identities(model)
    alone = set(alone)
    own: dict[str, list[str]] = {name: [] for name in profiles}
    shared_texts: list[str] = []
    for obj in model.objects:
        if obj.get("kind") in _NOT_READ:
            continue
        text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        owner = _owned(obj, profiles)
        if owner is None:
            shared_texts.append(text)
        else:
            own[owner].append(text)
    people: dict[str, set[str]] = {}
    for name, identity in ids.items():
        for person in identity.people:
            people.setdefault(person, set()).add(name)
            people.setdefault(_mangled(person), set()).add(name)
    every_name = set(people) | set(profiles)
    # A namespace's name, or one of its people's, in an object no profile owns.
    for name in _mentions(shared_texts, every_name):
        alone |= people.get(name, set()) | ({name} if name in profiles else set())
    # A namespace's name in another profile's objects (a person named there contributes there: it does not count).
    for owner_, texts in own.items():
        alone |= {name for name in _mentions(texts, every_name) if name in profiles and name != owner_}
    grouped: dict[str, list[str]] = {}
    result: list[list[str]] = []
    for name in profiles:
        if name in alone:
            result.append([name])
            continue
        renamer = Renamer(ids[name], _placeholder(ids[name]))
        key = "\n".join(renamer.text(text) for text in own[name])
        if key in grouped:
            grouped[key].append(name)
        else:
            grouped[key] = [name]
            result.append(grouped[key])
    return result


def _placeholder(identity: Identity) -> Identity:
    # A person's email domain stays: which domains may log in or register themselves decides hops.
    return Identity("\x00profile\x00", tuple(f"\x00person{i}\x00@{person.rpartition('@')[2]}"
                                             for i, person in enumerate(identity.people)))


def share(model: t.MeshModel, trace_profile: Callable[[str], list], alone: Iterable[str] = (),
          on: bool | None = None) -> dict[str, list]:
    """`trace_profile(profile)` for every profile, each alike profile's answer renamed from its class's first.

    `trace_profile` returns a list of results (cells, paths) built of strings, lists, dicts and dataclasses; the
    returned mapping holds every profile's, in profile order."""
    profiles = list(model.profiles())
    if not enabled(on) or len(profiles) < 3:
        return {name: trace_profile(name) for name in profiles}
    ids = identities(model)
    answers: dict[str, list] = {}
    plan: dict[str, str] = {}
    for members in classes(model, alone):
        first, rest = members[0], members[1:]
        answers[first] = trace_profile(first)
        if not rest:
            continue
        second = trace_profile(rest[0])
        if Renamer(ids[first], ids[rest[0]])(answers[first]) != second:
            # The renaming does not hold for this class: every member is traced on its own.
            answers[rest[0]] = second
            for name in rest[1:]:
                answers[name] = trace_profile(name)
            continue
        answers[rest[0]] = second
        for name in rest[1:]:
            plan[name] = first
    for name, first in plan.items():
        answers[name] = Renamer(ids[first], ids[name])(answers[first])
    return {name: answers[name] for name in profiles}
