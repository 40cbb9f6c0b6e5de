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
  stack export (`expected` and `owners`, written by the components; see `OWNERSHIP_EXPORT`).

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

#: The three classes, in the order the table shows them.
CREATED = "created"
PATCHED = "patched"
EXPECTED = "expected"
CLASSES = (CREATED, PATCHED, EXPECTED)

#: Stack export the components write: `{"expected": [{apiVersion, kind, namespace, name, reason}],
#: "owners": [{apiVersion, kind, namespace, name, owner}]}` (owners: who else owns a patched object, or who
#: also writes a created one at run time).
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
    #: Created objects only: left on the cluster when the stack deletes it.
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
        raise NotImplementedError


def classify(plan: Mapping[str, Any]) -> Ownership:
    """The ownership of every object `plan` touches (see the module doc)."""
    raise NotImplementedError


def ownership_table(ownership: Ownership) -> list[str]:
    """The preview's table: a count per class, then one line per object, grouped by class."""
    raise NotImplementedError


def ownership_changes(before: Ownership, after: Ownership) -> list[str]:
    """One line per object whose class differs between two plans (`created -> patched`), or that enters or
    leaves the plan in the patched or expected class."""
    raise NotImplementedError
