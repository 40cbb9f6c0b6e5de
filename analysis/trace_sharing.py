"""Profiles that are alike, traced once: the trace's answer for one is the other's with the names swapped.

A trace of a profile's paths reads the objects that decide each hop: the profile's own (its Namespace and every
object in it: kfam's contributor policies, the owner's policy, PeerAuthentications, Sidecars, VirtualServices,
DestinationRules, Services and workloads with their labels and service accounts) and the objects every profile
shares (the gateway, the root namespace's policies, Kubeflow's Services). Two profiles are alike when their own
objects are the same once each profile's names are replaced by placeholders: its namespace, its owner, its
contributors in the order their policies come, and the names the program derives from a contributor's email
(`user-<email>-clusterrole-<role>`, manifests/tenancy.py); and their people's email domains are the same (which
domains may log in or register themselves decides hops). The key is computed from the objects, never from the
settings that made them, so an object edited by hand (in the plan, or by a transformation) gives its profile a key
of its own.

A profile is traced on its own (a class of one) when:
- its namespace's name appears in any object outside its own (another namespace's policy naming it, a Sidecar
  importing it, a Gateway host for it): the shared objects would then not be the same for it and a look-alike
  (a profile whose objects name another profile's namespace is alone too);
- one of its people (owner or contributor) appears in an object no profile owns (a policy in the root namespace
  naming them, say); a person named in another profile's objects (contributing there) does not decide the hops
  of requests to this profile's namespace;
- the caller asks for it (the profile the matrix's web-app rows are relative to, the profiles whose workloads
  other rows call from).

Each class is traced for its first member; the answer is renamed for every other member. The second member of
every class is also traced in full and compared with its renamed answer: where they differ, every member of the
class is traced on its own, so a renaming that would not hold (a profile's name inside an unrelated word, say)
costs time, never a wrong answer. A renamed answer is built when first read; what the preview reads of every
profile's run-time paths (their problems, their count) is read from the class's first's, its strings renamed
(`each`, held on the second member the same way).

`KUBEFLOW_PLATFORM_TRACE_SHARING=0` turns the sharing off (every profile traced in full; the answers are the
same byte for byte, which tests/test_trace_sharing.py asserts).

Pure Python; no Pulumi.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from analysis import trace as t

SHARING_ENV = "KUBEFLOW_PLATFORM_TRACE_SHARING"
#: The separators of kfam's contributor names (manifests/tenancy.py kfam_binding_name).
_UNSAFE = re.compile(r"[^a-zA-Z0-9]+")
_WORD = re.compile(r"[A-Za-z0-9]+")
#: An object's text for the keys: sorted keys, no spaces (one encoder for every object).
_canonical = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode
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


class Renaming:
    """Where a profile's names stand in strings (no letter or digit right before or after them), found once per
    string: renaming it to any other profile is then joining parts."""

    def __init__(self, source: Identity) -> None:
        names = source.names()
        self.index: dict[str, int] = {}
        for position, name in enumerate(names):
            self.index.setdefault(name, position)
        alternatives = "|".join(re.escape(name) for name in sorted(self.index, key=len, reverse=True))
        self.pattern = re.compile(rf"(?<![A-Za-z0-9])({alternatives})(?![A-Za-z0-9])")
        self._templates: dict[str, tuple | None] = {}
        self._formats: dict[str, str | None] = {}

    def template(self, value: str) -> tuple | None:
        """`value` as literal parts and name positions; None when no name stands in it."""
        try:
            return self._templates[value]
        except KeyError:
            parts = self.pattern.split(value)
            found = None if len(parts) == 1 else tuple(part if i % 2 == 0 else self.index[part] for i, part in enumerate(parts))
            self._templates[value] = found
            return found

    def format_string(self, value: str) -> str | None:
        """`value` as a `str.format` string whose fields are the name positions (`{0}` the namespace...); None when no
        name stands in it. Filled in by `str.format`, a renaming costs one call per string."""
        try:
            return self._formats[value]
        except KeyError:
            template = self.template(value)
            found = None if template is None else "".join(
                part.replace("{", "{{").replace("}", "}}") if isinstance(part, str) else f"{{{part}}}" for part in template)
            self._formats[value] = found
            return found

    def substitute(self, value: str, target: Identity) -> str:
        """`value` renamed once (no template kept: for large one-off texts)."""
        names = target.names()
        return self.pattern.sub(lambda match: names[self.index[match.group(1)]], value)


#: Field names of the dataclasses renamed (Cell, Trace, Hop, Caller, PathRow, RuntimePath).
_FIELDS: dict[type, tuple[str, ...]] = {}


class Renamer:
    """Rewrites one profile's names into another's in strings, and in the traces and callers built of them.
    Parts without a name to change are returned as they are (shared, not copied)."""

    def __init__(self, source: Identity, target: Identity, renaming: Renaming | None = None) -> None:
        self.targets = target.names()
        self.identity = source.names() == self.targets
        self.renaming = renaming or Renaming(source)

    def text(self, value: str) -> str:
        template = self.renaming.template(value)
        if template is None:
            return value
        targets = self.targets
        return "".join(part if isinstance(part, str) else targets[part] for part in template)

    def __call__(self, value: Any) -> Any:
        return value if self.identity else self._renamed(value)

    def _renamed(self, value: Any) -> Any:
        kind = type(value)
        if kind is str:
            return self.text(value)
        if kind is dict:
            items = [(self._renamed(k), self._renamed(v)) for k, v in value.items()]
            if all(nk is k and nv is v for (nk, nv), (k, v) in zip(items, value.items())):
                return value
            return dict(items)
        if kind is list or kind is tuple:
            items = [self._renamed(v) for v in value]
            if all(a is b for a, b in zip(items, value)):
                return value
            return kind(items)
        fields = _fields(kind, value)
        if not fields:
            return value
        state = value.__dict__
        changed = {}
        for name in fields:
            old = state[name]
            new = self._renamed(old)
            if new is not old:
                changed[name] = new
        if not changed:
            return value
        # A copy with the renamed fields (frozen dataclasses included: nothing they compute on creation).
        copy = object.__new__(kind)
        copy.__dict__.update(state)
        copy.__dict__.update(changed)
        return copy


def _fields(kind: type, value: Any) -> tuple[str, ...]:
    fields = _FIELDS.get(kind)
    if fields is None:
        fields = _FIELDS[kind] = tuple(f.name for f in dataclasses.fields(kind)) \
            if dataclasses.is_dataclass(kind) and hasattr(value, "__dict__") else ()
    return fields


def compiled(renaming: Renaming, value: Any) -> Any:
    """Where `value` (an answer built of strings, dicts, lists, tuples and dataclasses) holds the source profile's
    names, found once: `rewrite` then builds the answer for any other profile visiting only the parts that hold a
    name (None: no name anywhere in it). The same answer as `Renamer`, part for part: a part without a name is
    the source's own object, shared. A string's recipe is its spelling with the names as format fields, written
    out where it stands (most parts that hold a name are strings)."""
    kind = type(value)
    if kind is str:
        return renaming.format_string(value)
    if kind is dict:
        parts = [(key, compiled(renaming, key), item, compiled(renaming, item)) for key, item in value.items()]
        return (1, parts) if any(rk is not None or ri is not None for _, rk, _, ri in parts) else None
    if kind is list or kind is tuple:
        parts = [(item, compiled(renaming, item)) for item in value]
        return (2, kind, parts) if any(recipe is not None for _, recipe in parts) else None
    fields = _fields(kind, value)
    if not fields:
        return None
    state = value.__dict__
    changed = [(name, recipe) for name in fields if (recipe := compiled(renaming, state[name])) is not None]
    if not changed:
        return None
    return (3, kind, state, [(name, recipe) for name, recipe in changed if type(recipe) is str],
            [(name, recipe) for name, recipe in changed if type(recipe) is not str])


def rewrite(recipe: Any, value: Any, targets: list[str]) -> Any:
    """`value` with the names `compiled` found replaced by `targets` (a profile's names, Identity.names)."""
    if recipe is None:
        return value
    if type(recipe) is str:
        return recipe.format(*targets)
    tag = recipe[0]
    if tag == 1:
        return {(key if rk is None else rk.format(*targets) if type(rk) is str else rewrite(rk, key, targets)):
                (item if ri is None else ri.format(*targets) if type(ri) is str else rewrite(ri, item, targets))
                for key, rk, item, ri in recipe[1]}
    if tag == 2:
        return recipe[1](item if sub is None else sub.format(*targets) if type(sub) is str else rewrite(sub, item, targets)
                         for item, sub in recipe[2])
    _, kind, state, strings, nested = recipe
    # A copy with the renamed fields (frozen dataclasses included: nothing they compute on creation).
    copy = object.__new__(kind)
    fields = copy.__dict__
    fields.update(state)
    for name, spelling in strings:
        fields[name] = spelling.format(*targets)
    for name, sub in nested:
        fields[name] = rewrite(sub, state[name], targets)
    return copy


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


def _by_first_word(names: Iterable[str]) -> dict[str, list[tuple[int, str]]]:
    by_word: dict[str, list[tuple[int, str]]] = {}
    for name in names:
        first = _WORD.search(name)
        if first is not None:
            by_word.setdefault(first.group(0), []).append((first.start(), name))
    for candidates in by_word.values():
        candidates.sort(key=lambda item: -len(item[1]))
    return by_word


def _spans(text: str, by_word: Mapping[str, list[tuple[int, str]]]) -> list[tuple[int, int, str]]:
    """(start, end, name) of every name (`by_word`: by its first word) standing alone in `text`, left to right; where
    several start at one place only the longest counts (a namespace `alice` in `alice@example.com` is the email)."""
    words = by_word.keys() & set(_WORD.findall(text))
    if not words:
        return []
    spans: list[tuple[int, int, str]] = []
    for word in words:
        for _offset, name in by_word[word]:
            at = text.find(name)
            while at >= 0:
                end = at + len(name)
                if not ((at > 0 and text[at - 1].isalnum()) or (end < len(text) and text[end].isalnum())):
                    spans.append((at, -len(name), name))
                at = text.find(name, at + 1)
    found: list[tuple[int, int, str]] = []
    covered = 0
    for at, negative_length, name in sorted(spans):
        if at >= covered:
            covered = at - negative_length
            found.append((at, covered, name))
    return found


#: Where a model keeps what `classes` read of each object ([the names looked for, id -> (the object, its owner's names,
#: what was read)]); runtime_trace.model_from_plan hands it on to the run-time model, which shares most objects.
OBJECT_READINGS = "_trace_sharing_readings"


def _reading(text: str, every_name: Mapping[str, list[tuple[int, str]]], profiles: Mapping[str, str],
             places: Mapping[str, int] | None) -> tuple:
    """What `classes` needs of one object's text: for an object no profile owns (`places` None), the names standing in
    it; for a profile's own, a digest of the text with its owner's names replaced by their `places` in the owner's
    identity, and the other profiles' namespaces standing in it. The text itself is not kept (at 10,000 profiles,
    200 MB)."""
    spans = _spans(text, every_name)
    if places is None:
        return tuple(name for _at, _end, name in spans)
    parts: list[str] = []
    others: list[str] = []
    last = 0
    for at, end, found in spans:
        if found in places:
            parts += [text[last:at], f"\x00{places[found]}\x00"]
            last = end
        elif found in profiles:
            others.append(found)
    parts.append(text[last:])
    digest = hashlib.blake2b("".join(parts).encode("utf-8", "surrogatepass"), digest_size=20).digest()
    return digest, tuple(others)


def classes(model: t.MeshModel, alone: Iterable[str] = ()) -> list[list[str]]:
    """The profiles in classes of alike ones, in profile order (each class's first member is traced for it)."""
    profiles = model.profiles()
    ids = identities(model)
    alone = set(alone)
    people: dict[str, set[str]] = {}
    for name, identity in ids.items():
        for person in identity.people:
            people.setdefault(person, set()).add(name)
            people.setdefault(_mangled(person), set()).add(name)
    every_name = _by_first_word(set(people) | set(profiles))
    own_names = {name: tuple(ids[name].names()) for name in profiles}
    # Where each name of a profile's identity stands in it (the first place of a name that repeats).
    own_places = {name: {found: index for index, found in reversed(list(enumerate(names_)))}
                  for name, names_ in own_names.items()}
    # What was read of each object, kept on the model while the names looked for are the same: the run-time model
    # shares most objects with the gateway trace's (runtime_trace.model_from_plan hands the readings on).
    names = frozenset(people) | frozenset(profiles)
    memo = model.__dict__.setdefault(OBJECT_READINGS, [None, {}])
    if memo[0] != names:
        memo[:] = [names, {}]
    readings: dict[int, tuple[Mapping[str, Any], tuple[str, ...] | None, tuple]] = memo[1]
    digests: dict[str, list[bytes]] = {name: [] for name in profiles}
    for obj in model.objects:
        if obj.get("kind") in _NOT_READ:
            continue
        owner = _owned(obj, profiles)
        owner_names = own_names[owner] if owner is not None else None
        known = readings.get(id(obj))
        if known is not None and known[0] is obj and known[1] == owner_names:
            reading = known[2]
        else:
            reading = _reading(_canonical(obj), every_name, profiles, own_places[owner] if owner is not None else None)
            readings[id(obj)] = (obj, owner_names, reading)
        if owner is None:
            # A namespace's name, or one of its people's, in an object no profile owns.
            for name in reading:
                alone |= people.get(name, set()) | ({name} if name in profiles else set())
        else:
            digest, others = reading
            digests[owner].append(digest)
            # A namespace of another profile named in a profile's own objects makes both alone (a person named there
            # contributes there: that does not count).
            for other in others:
                alone |= {owner, other}
    # Names that coincide (two emails with one kfam name, say) would not rename back and forth.
    alone |= {name for name, identity in ids.items() if len(set(identity.names())) != len(identity.names())}
    keys: dict[str, bytes] = {}
    for name in profiles:
        # The key: the profile's own objects with its names replaced by their places in its identity (their digests,
        # in order), and its people's email domains (which domains may log in or register themselves decides hops).
        domains = "|".join(person.rpartition("@")[2] for person in ids[name].people)
        keys[name] = domains.encode("utf-8", "surrogatepass") + b"\n" + b"".join(digests[name])
    grouped: dict[bytes, list[str]] = {}
    result: list[list[str]] = []
    for name in profiles:
        if name in alone:
            result.append([name])
        elif keys[name] in grouped:
            grouped[keys[name]].append(name)
        else:
            grouped[keys[name]] = [name]
            result.append(grouped[keys[name]])
    return result


def share(model: t.MeshModel, trace_profile: Callable[[str], list], alone: Iterable[str] = (),
          on: bool | None = None, keep: Callable[[list], list] | None = None) -> Mapping[str, list]:
    """`trace_profile(profile)` for every profile, each alike profile's answer renamed from its class's first.

    `trace_profile` returns a list of results (cells, paths) built of strings, lists, dicts and dataclasses; the
    returned mapping holds every profile's, in profile order (a renamed answer is built when first read: `each`
    reads what a caller needs of every profile without building them). `keep`: what of an answer is kept (the whole
    answer by default), taken of each answer as soon as it is made, the class's first before it is renamed: what is
    left out is never renamed nor held for thousands of profiles. It must pick parts by what no renaming changes (a
    hop's outcome, not its wording), so that keeping then renaming is renaming then keeping."""
    profiles = list(model.profiles())
    kept = keep or (lambda answer: answer)
    if not enabled(on) or len(profiles) < 3:
        return {name: kept(trace_profile(name)) for name in profiles}
    ids = identities(model)
    answers: dict[str, list] = {}
    plan: dict[str, str] = {}
    checked: dict[str, str] = {}
    renamings: dict[str, Renaming] = {}
    for members in classes(model, alone):
        first, rest = members[0], members[1:]
        answer = trace_profile(first)
        if not rest:
            answers[first] = kept(answer)
            continue
        second = trace_profile(rest[0])
        renamings[first] = Renaming(ids[first])
        # The whole answers compared: whether the renaming holds is not a question of what is kept.
        holds = Renamer(ids[first], ids[rest[0]], renamings[first])(answer) == second
        answers[first], answers[rest[0]] = kept(answer), kept(second)
        if not holds:
            # The renaming does not hold for this class: every member is traced on its own.
            for name in rest[1:]:
                answers[name] = kept(trace_profile(name))
            continue
        checked[first] = rest[0]
        for name in rest[1:]:
            plan[name] = first
    return SharedAnswers(profiles, answers, plan, checked, ids, renamings)


class SharedAnswers(Mapping[str, list]):
    """Every profile's answer, in profile order: those traced as they were; every other member's renamed from its
    class's first when first read (its answer's parts that hold a name found once per class: `compiled`), then kept."""

    def __init__(self, order: list[str], answers: dict[str, list], renamed: dict[str, str], checked: dict[str, str],
                 ids: Mapping[str, Identity], renamings: Mapping[str, Renaming]) -> None:
        self._order = order
        self._answers = answers
        #: Member -> its class's first, for the members not traced; class's first -> its second (traced and compared).
        self._renamed = renamed
        self._checked = checked
        self._ids = ids
        self._renamings = renamings
        self._recipes: dict[str, Any] = {}

    def __getitem__(self, name: str) -> list:
        if name in self._answers:
            return self._answers[name]
        first = self._renamed[name]
        targets = self._ids[name].names()
        if targets == self._ids[first].names():
            answer = self._answers[first]
        else:
            if first not in self._recipes:
                self._recipes[first] = compiled(self._renamings[first], self._answers[first])
            answer = rewrite(self._recipes[first], self._answers[first], targets)
        self._answers[name] = answer
        return answer

    def __iter__(self) -> Iterator[str]:
        return iter(self._order)

    def __len__(self) -> int:
        return len(self._order)

    def each(self, read: Callable[[list], list[str]]) -> dict[str, list[str]]:
        """`read(answer)` for every profile, in profile order. A member not yet built gets its class's first's strings
        renamed, the strings `read` builds from an answer's joined by what is neither a letter nor a digit (so a name
        stands in them as in the answer): held on each class's second member, traced in full, and where they differ
        every member's answer is built and read."""
        found: dict[str, list[str]] = {}
        spellings: dict[str, list[tuple[str, str | None]] | None] = {}
        for name in self._order:
            first = self._renamed.get(name)
            if first is None or name in self._answers:
                found[name] = read(self[name])
                continue
            if first not in spellings:
                strings = read(self._answers[first])
                second = self._checked[first]
                renamer = Renamer(self._ids[first], self._ids[second], self._renamings[first])
                holds = [renamer.text(text) for text in strings] == read(self._answers[second])
                spellings[first] = [(text, self._renamings[first].format_string(text)) for text in strings] \
                    if holds else None
            spelled = spellings[first]
            if spelled is None:
                found[name] = read(self[name])
                continue
            targets = self._ids[name].names()
            found[name] = [text if spelling is None else spelling.format(*targets) for text, spelling in spelled]
        return found

    def size(self, name: str) -> int:
        """How many results `name`'s answer holds (a renamed answer holds as many as its class's first's)."""
        return len(self._answers[name] if name in self._answers else self._answers[self._renamed[name]])


def each(found: Mapping[str, list], read: Callable[[list], list[str]]) -> dict[str, list[str]]:
    """`read(answer)` for every profile of `share`'s answers (see SharedAnswers.each), or of a plain mapping."""
    if isinstance(found, SharedAnswers):
        return found.each(read)
    return {name: read(answer) for name, answer in found.items()}


def size(found: Mapping[str, list], name: str) -> int:
    return found.size(name) if isinstance(found, SharedAnswers) else len(found[name])
