"""Who owns each object the plan touches: created, patched or expected. One classification, computed once.

Pure Python over a plan (what `make preview` writes as plan.json). Every Kubernetes object the plan touches
is in exactly one class:

- `created`: the stack creates it and owns it; `pulumi destroy` deletes it (unless retained on delete, which
  the row says). A created object must not exist before the first `pulumi up`: pulumi-kubernetes 4.34.2
  refuses to create an object that exists (contract `pulumi-kubernetes-create-refuses-an-existing-object`).
- `patched`: someone else's object (the mesh owner's gateway Service, the enterprise Argo's ConfigMap and
  service account); the stack sets only its own fields with server-side apply under its own field manager,
  and never deletes the object.
- `expected`: must exist for the stack to work, and is never written: namespaces the stack writes into but
  does not create, CRDs of kinds it applies but does not ship, and what a component declares it relies on
  (the mesh config's extension provider). These come from the plan's objects and from the `ownership`
  stack export (`expected`, `owners`, `cowriters`, written by components/ownership.py; see `OWNERSHIP_EXPORT`).

Entry points:

- `classify(plan) -> Ownership`: the rows (`OwnedObject`), sorted by class then key, and the problems (an
  object created twice, created and patched, or created where a component says someone else owns it).
- `Ownership.created_keys()`: `(apiVersion, kind, namespace, name)` of every created object. **The estate
  check calls this**: any of those that already exists on the cluster makes the first `pulumi up` fail, so
  the estate file's existing objects are matched against it (`Ownership.collisions(existing)` does the match
  and says, per object, why it fails and what to do).
- `ownership_table(ownership) -> list[str]`: the preview's table; `ownership_changes(a, b)`: the diff's
  lines for objects that moved between classes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from analysis.plan_objects import KubernetesObject, KubernetesObjects, kubernetes_objects

#: The three classes, in the order the table shows them.
CREATED = "created"
PATCHED = "patched"
EXPECTED = "expected"
CLASSES = (CREATED, PATCHED, EXPECTED)

#: Stack export the components write: `{"expected": [{apiVersion, kind, namespace, name, reason}],
#: "owners": [{apiVersion, kind, namespace, name, owner}], "cowriters": [{apiVersion, kind, namespace, name,
#: owner}]}`. owners: whose an object the stack only patches is (creating one of them is a problem);
#: cowriters: who else writes an object the stack creates or patches at run time (a reason, never a problem).
OWNERSHIP_EXPORT = "ownership"

#: `(apiVersion, kind, namespace, name)`; namespace is "" for cluster-scoped objects.
ObjectKey = tuple[str, str, str, str]


@dataclass(frozen=True)
class OwnedObject:
    """One row of the ownership table."""

    api_version: str
    kind: str
    #: "" for a cluster-scoped object.
    namespace: str
    name: str
    #: `created`, `patched` or `expected`.
    ownership: str
    #: Who else owns or writes it and why it is in this class (one line).
    reason: str
    #: The resource that writes it (`ConfigGroup kubeflow-core`, `ConfigMapPatch kubeflow-argo-configmap`);
    #: "" for an expected object.
    source: str = ""
    #: Left on the cluster when the stack deletes it. A retained patch is one of the stack's own objects applied
    #: server-side (a profile's namespace, the policy that closes it), created by the apply when absent.
    retained: bool = False

    @property
    def key(self) -> ObjectKey:
        return (self.api_version, self.kind, self.namespace, self.name)

    @property
    def ref(self) -> str:
        """`apiVersion kind namespace/name`, as the diff names objects."""
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.api_version} {self.kind} {where}"


@dataclass(frozen=True)
class Ownership:
    rows: tuple[OwnedObject, ...]
    #: Contradictions found while classifying (each names the object and the fix).
    problems: tuple[str, ...] = ()
    by_key: Mapping[ObjectKey, OwnedObject] = field(default_factory=dict, compare=False, repr=False)

    def of_class(self, ownership: str) -> list[OwnedObject]:
        return [row for row in self.rows if row.ownership == ownership]

    def created_keys(self) -> set[ObjectKey]:
        """Every object the first `pulumi up` creates: none of them may exist on the cluster before it."""
        return {row.key for row in self.rows if row.ownership == CREATED}

    def collisions(self, existing: Iterable[ObjectKey]) -> list[str]:
        """For objects found on the cluster (the estate file): one line per created object that already
        exists, saying that `pulumi up` would fail on it and how to resolve it."""
        found = set(existing)
        lines = []
        for row in self.rows:
            if row.ownership == CREATED and row.key in found:
                lines.append(
                    f"{row.ref} already exists on the cluster and this stack creates it ({row.source}): the first "
                    "`pulumi up` fails with AlreadyExists (pulumi-kubernetes creates client-side). Delete it first if "
                    "it is a leftover of this stack, or `pulumi import` it, or make the program patch it.")
        return lines


#: API groups Kubernetes serves itself; any other group is served by a CRD, which must exist.
BUILTIN_GROUPS = frozenset({
    "", "admissionregistration.k8s.io", "apiextensions.k8s.io", "apiregistration.k8s.io", "apps", "authentication.k8s.io",
    "authorization.k8s.io", "autoscaling", "batch", "certificates.k8s.io", "coordination.k8s.io", "discovery.k8s.io",
    "events.k8s.io", "flowcontrol.apiserver.k8s.io", "networking.k8s.io", "node.k8s.io", "policy",
    "rbac.authorization.k8s.io", "resource.k8s.io", "scheduling.k8s.io", "storage.k8s.io",
})

_CRD = "CustomResourceDefinition"


def _key_of(obj: Mapping[str, Any]) -> ObjectKey:
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), Mapping) else {}
    return (str(obj.get("apiVersion", "")), str(obj.get("kind", "")), str(metadata.get("namespace") or ""),
            str(metadata.get("name", "")))


def _entry_key(entry: Mapping[str, Any]) -> ObjectKey:
    return (str(entry.get("apiVersion", "")), str(entry.get("kind", "")), str(entry.get("namespace") or ""),
            str(entry.get("name", "")))


def _plural(kind: str) -> str:
    # What `kubebuilder`/`controller-gen` and most CRDs use: lower-case kind, `y` -> `ies`, `s` -> `ses`.
    lower = kind.lower()
    if lower.endswith("y") and not lower.endswith(("ay", "ey", "oy", "uy")):
        return lower[:-1] + "ies"
    if lower.endswith("s"):
        return lower + "es"
    return lower + "s"


def _declarations(plan: Mapping[str, Any]) -> tuple[list[Mapping[str, Any]], ...]:
    exported = (plan.get("outputs") or {}).get(OWNERSHIP_EXPORT)
    if not isinstance(exported, Mapping):
        return [], [], []
    expected = [e for e in exported.get("expected") or [] if isinstance(e, Mapping)]
    owners = [e for e in exported.get("owners") or [] if isinstance(e, Mapping)]
    cowriters = [e for e in exported.get("cowriters") or [] if isinstance(e, Mapping)]
    return expected, owners, cowriters


def _retained(plan: Mapping[str, Any]) -> set[str]:
    """URNs of resources retained on delete (a ConfigGroup's objects share its URN here: its children inherit
    the option)."""
    return {r["urn"] for r in plan.get("resources") or []
            if (r.get("options") or {}).get("retainOnDelete")}


def _created_reason(obj: KubernetesObject, writers: Mapping[ObjectKey, str], namespace_reasons: Mapping[str, str]) -> str:
    key = _key_of(obj.obj)
    if key in writers:
        return writers[key]
    annotations = (obj.obj.get("metadata") or {}).get("annotations") or {}
    if obj.obj.get("kind") in ("RoleBinding", "AuthorizationPolicy") and "user" in annotations and "role" in annotations:
        return ("a contributor of the stack file; kfam lists it in the dashboard, and the dashboard's own binding "
                "for the same user has kfam's name, so neither writer touches the other's")
    namespace = key[2]
    if namespace in namespace_reasons:
        return f"the stack's own object, in namespace {namespace}, which it does not create ({namespace_reasons[namespace]})"
    return "the stack's own object"


def classify(plan: Mapping[str, Any], found: KubernetesObjects | None = None) -> Ownership:
    """The ownership of every object `plan` touches (see the module doc); `found`: the plan's `kubernetes_objects`,
    if the caller has them (it only reads them)."""
    if found is None:
        found = kubernetes_objects(plan)
    declared_expected, declared_owners, declared_cowriters = _declarations(plan)
    owners = {_entry_key(e): str(e.get("owner") or "") for e in declared_owners}
    cowriters = {_entry_key(e): str(e.get("owner") or "") for e in declared_cowriters}
    writers = {**cowriters, **owners}
    retained = _retained(plan)
    problems: list[str] = []

    created: dict[ObjectKey, KubernetesObject] = {}
    patched: dict[ObjectKey, KubernetesObject] = {}
    for obj in found.objects:
        key = _key_of(obj.obj)
        target = patched if obj.patch else created
        if key in target and target[key].source != obj.source:
            problems.append(f"{obj.key} is {'patched' if obj.patch else 'created'} by both {target[key].source} and "
                            f"{obj.source}: one writer per object")
        target.setdefault(key, obj)
    for key in sorted(set(created) & set(patched)):
        problems.append(f"{created[key].key} is created by {created[key].source} and patched by {patched[key].source}: "
                        "a created object is the stack's; patch only someone else's")
    for key in sorted(set(created) & set(owners)):
        problems.append(f"{created[key].key} is created by {created[key].source}, but it belongs to {owners[key]}: "
                        "`pulumi up` fails where it already exists and `pulumi destroy` would delete it; patch it instead")

    # Expected: what components declare, then namespaces written into and CRDs of kinds applied that the plan
    # neither creates nor patches.
    expected: dict[ObjectKey, str] = {}
    for entry in declared_expected:
        key = _entry_key(entry)
        if key in created:
            problems.append(f"{created[key].key} is created by {created[key].source}, but a component declares it "
                            f"expected ({entry.get('reason')}): never write what must already exist")
            continue
        expected.setdefault(key, str(entry.get("reason") or "declared by a component"))
    written = {**patched, **created}
    namespaces = {key[3] for key in written if key[1] == "Namespace" and key[0] == "v1"}
    namespace_reasons: dict[str, str] = {}
    for key, obj in sorted(written.items()):
        namespace = key[2]
        if namespace and namespace not in namespaces:
            declared = expected.get(("v1", "Namespace", "", namespace))
            reason = declared or "objects of this stack are written in it; no resource of this stack creates it"
            expected.setdefault(("v1", "Namespace", "", namespace), reason)
            namespace_reasons.setdefault(namespace, reason)
    served: set[tuple[str, str]] = set()
    for key, obj in written.items():
        if key[1] == _CRD:
            spec = obj.obj.get("spec") or {}
            served.add((str(spec.get("group", "")), str((spec.get("names") or {}).get("kind", ""))))
    for key in sorted(written):
        group = key[0].rsplit("/", 1)[0] if "/" in key[0] else ""
        if group in BUILTIN_GROUPS or (group, key[1]) in served:
            continue
        crd = ("apiextensions.k8s.io/v1", _CRD, "", f"{_plural(key[1])}.{group}")
        expected.setdefault(crd, f"serves {key[1]} ({key[0]}), which this stack applies; no resource of this stack "
                                 "creates that CRD")

    rows: list[OwnedObject] = []
    for key, obj in created.items():
        rows.append(OwnedObject(*key, ownership=CREATED, reason=_created_reason(obj, writers, namespace_reasons),
                                source=obj.source, retained=obj.urn in retained))
    for key, obj in patched.items():
        rows.append(OwnedObject(*key, ownership=PATCHED, source=obj.source, retained=obj.urn in retained,
                                reason=writers.get(key) or "someone else's object: server-side apply of the stack's fields only"))
    for key, reason in expected.items():
        if key in created or key in patched:
            continue
        rows.append(OwnedObject(*key, ownership=EXPECTED, reason=reason))
    rows.sort(key=lambda r: (CLASSES.index(r.ownership), r.namespace, r.kind, r.name, r.api_version))
    return Ownership(tuple(rows), tuple(problems), {row.key: row for row in rows})


def ownership_rows(ownership: Ownership) -> list[dict[str, Any]]:
    """The rows as plan.json records them (`ownership` key)."""
    return [{"apiVersion": r.api_version, "kind": r.kind, "namespace": r.namespace, "name": r.name,
             "class": r.ownership, "reason": r.reason, "source": r.source, "retained": r.retained} for r in ownership.rows]


def ownership_table(ownership: Ownership) -> list[str]:
    """The preview's table: a count per class, then one line per object, grouped by class. The created objects
    of the stack's own namespaces are counted per namespace, not listed (hundreds of upstream objects)."""
    counts = ", ".join(f"{len(ownership.of_class(c))} {c}" for c in CLASSES)
    lines = [f"Ownership: {counts}"]
    foreign = {r.name for r in ownership.rows if r.kind == "Namespace" and r.ownership == EXPECTED}
    for ownership_class in CLASSES:
        rows = ownership.of_class(ownership_class)
        if not rows:
            continue
        lines.append(f"  {ownership_class}:")
        summarised: dict[str, int] = {}
        for row in rows:
            if ownership_class == CREATED and row.namespace not in foreign and row.reason == "the stack's own object":
                where = row.namespace or "(cluster-scoped)"
                summarised[where] = summarised.get(where, 0) + 1
                continue
            retained = " [retained on delete]" if row.retained else ""
            by = f" by {row.source}" if row.source else ""
            lines.append(f"    {row.ref}{by}{retained}: {row.reason}")
        if summarised:
            lines.append("    the stack's own objects: " + ", ".join(f"{where} {count}" for where, count in sorted(summarised.items())))
    for problem in ownership.problems:
        lines.append(f"  problem: {problem}")
    return lines


def ownership_changes(before: Ownership, after: Ownership) -> list[str]:
    """One line per object whose class differs between two plans (`created -> patched`), or that enters or
    leaves the plan in the patched or expected class."""
    lines: list[str] = []
    for key in sorted(set(before.by_key) | set(after.by_key)):
        old, new = before.by_key.get(key), after.by_key.get(key)
        if old is not None and new is not None:
            if old.ownership != new.ownership:
                lines.append(f"{new.ref}: {old.ownership} -> {new.ownership} ({new.reason})")
        elif new is not None and new.ownership != CREATED:
            lines.append(f"{new.ref}: (absent) -> {new.ownership} ({new.reason})")
        elif old is not None and old.ownership != CREATED:
            lines.append(f"{old.ref}: {old.ownership} -> (absent)")
    return lines
