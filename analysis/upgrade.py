"""What a release change does to a live cluster: the upgrade plan between two plans (`make preview` output).

`make diff` says what changes; this says what `pulumi up` will then do to the cluster and its users' data,
one rule per behaviour, each citing where it is written:

- Pulumi replaces (deletes, then creates, under the same name) an object when a field its Kubernetes
  provider treats as immutable changes (`FORCE_NEW`), with a gap in between: downtime for a workload.
- An object that leaves the plan is deleted, unless its resource is retained on delete; a CRD deleted
  takes every custom resource of its kind, in every namespace; a Namespace takes everything in it.
- A CRD update that drops a version still in `status.storedVersions`, or changes scope, kind, group or
  plural, is refused by the API server: a storage migration (or a new CRD) comes first.
- Objects renamed upstream are a delete and a create; the plan pairs them by kind and what they are.
- A webhook that changes in the same upgrade as what it admits: the order the groups apply in decides.
- Upstream's own manual steps for the pair of releases, kept as data (`manifests/facts/upgrade_steps.yaml`).

Pure Python over plan dicts; no Pulumi, no upstream loading.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from analysis.plan_objects import KubernetesObject, kubernetes_objects
from manifests.images import parse_image

STEPS_FILE = Path(__file__).resolve().parent.parent / "manifests" / "facts" / "upgrade_steps.yaml"

PULUMI_K8S = "pulumi/pulumi-kubernetes@v4.32.0 provider/pkg/provider/diff.go"
#: Fields whose change makes the Kubernetes provider replace the object (group, kind) -> paths.
#: Read in PULUMI_K8S:45-200 (forceNew, deployment, statefulSet, job, roleBinding, podDisruptionBudget).
_SELECTOR = (("spec", "selector"),)
FORCE_NEW: dict[tuple[str, str], tuple[tuple[str, ...], ...]] = {
    ("apps", "Deployment"): _SELECTOR,
    ("apps", "DaemonSet"): _SELECTOR,
    ("apps", "StatefulSet"): (("spec", "podManagementPolicy"), ("spec", "revisionHistoryLimit"), ("spec", "selector"),
                              ("spec", "serviceName"), ("spec", "volumeClaimTemplates")),
    ("batch", "Job"): (("spec", "completions"), ("spec", "parallelism"), ("spec", "selector"), ("spec", "template")),
    ("policy", "PodDisruptionBudget"): (("spec",),),
    ("rbac.authorization.k8s.io", "RoleBinding"): (("roleRef",),),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): (("roleRef",),),
    ("storage.k8s.io", "StorageClass"): (("parameters",), ("provisioner",)),
    ("", "PersistentVolumeClaim"): (("spec", "accessModes"), ("spec", "selector"), ("spec", "storageClassName"),
                                    ("spec", "volumeName")),
    ("", "ResourceQuota"): (("spec", "scopes"),),
    ("", "Secret"): (("type",),),
    ("", "Service"): (("spec", "clusterIP"),),
}
#: Secrets and ConfigMaps are replaced on a data change unless the provider makes them mutable
#: (PULUMI_K8S:28-34; provider options enableSecretMutable / enableConfigMapMutable, off by default).
_DATA = (("data",), ("stringData",), ("binaryData",))
#: What the API server refuses to change in a CRD (kubernetes/apiextensions-apiserver@v0.33.0
#: pkg/apis/apiextensions/validation/validation.go:618-631): scope and kind once established, group and plural.
CRD_IMMUTABLE = (("spec", "scope"), ("spec", "names", "kind"), ("spec", "group"), ("spec", "names", "plural"))
CRD_SOURCE = "kubernetes/apiextensions-apiserver@v0.33.0 pkg/apis/apiextensions/validation/validation.go:618-631"
STORED_VERSIONS_SOURCE = "kubernetes/apiextensions-apiserver@v0.33.0 pkg/apis/apiextensions/validation/validation.go:257-281"
REPLACE_SOURCE = f"{PULUMI_K8S}:45-200; provider/pkg/provider/provider.go:1645-1657"
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}
DATA_KINDS = {"PersistentVolumeClaim", "Namespace", "CustomResourceDefinition"}


@dataclass(frozen=True)
class Finding:
    """One thing the upgrade does that needs attention, with why and where that rule is written."""

    kind: str
    subject: str
    what: str
    source: str


@dataclass
class UpgradePlan:
    source_label: str
    target_label: str
    #: every object change by what pulumi up does: unchanged, updated, replaced, renamed, deleted, retained, added
    counts: Counter = field(default_factory=Counter)
    attention: list[Finding] = field(default_factory=list)
    #: object key -> (what happens, details)
    changes: dict[str, tuple[str, str]] = field(default_factory=dict)
    steps: list[dict] = field(default_factory=list)

    @property
    def needs_attention(self) -> bool:
        return bool(self.attention or any("notApplicable" not in step for step in self.steps))

    def as_json(self) -> dict:
        return {
            "from": self.source_label,
            "to": self.target_label,
            "needsAttention": self.needs_attention,
            "counts": dict(sorted(self.counts.items())),
            "attention": [asdict(f) for f in self.attention],
            "manualSteps": self.steps,
            "changes": {key: {"action": action, "details": details}
                        for key, (action, details) in sorted(self.changes.items())},
        }


# ----------------------------------------------------------------------------------------- objects


def _group(obj: Mapping[str, Any]) -> str:
    api = str(obj.get("apiVersion", ""))
    return api.split("/", 1)[0] if "/" in api else ""


def identity(found: KubernetesObject) -> str:
    """`group/Kind namespace/name`: what Kubernetes calls one object, whatever version serves it."""
    obj = found.obj
    metadata = obj.get("metadata") or {}
    where = f"{metadata['namespace']}/{metadata.get('name')}" if metadata.get("namespace") else str(metadata.get("name"))
    group = _group(obj)
    return f"{group + '/' if group else ''}{obj.get('kind')} {where}" + (" (patch)" if found.patch else "")


def _objects(plan: Mapping[str, Any]) -> dict[str, KubernetesObject]:
    return {identity(found): found for found in kubernetes_objects(plan).objects}


def _retained(plan: Mapping[str, Any]) -> set[str]:
    """URNs of resources deleted without deleting what they manage: retainOnDelete, or a parent's."""
    by_urn = {r["urn"]: r for r in plan["resources"]}

    def retained(urn: str) -> bool:
        resource = by_urn.get(urn)
        while resource is not None:
            if resource.get("options", {}).get("retainOnDelete"):
                return True
            resource = by_urn.get(resource.get("parent", ""))
        return False

    return {urn for urn in by_urn if retained(urn)}


def _mutable_data(plan: Mapping[str, Any]) -> tuple[bool, bool]:
    """(Secrets, ConfigMaps) updated in place by the plan's Kubernetes provider."""
    for resource in plan["resources"]:
        if resource["type"] == "pulumi:providers:kubernetes":
            inputs = resource.get("inputs") or {}
            return (str(inputs.get("enableSecretMutable")).lower() == "true",
                    str(inputs.get("enableConfigMapMutable")).lower() == "true")
    return False, False


def changed_paths(old: Any, new: Any, path: tuple = ()) -> list[tuple]:
    """Paths (keys, list indexes) where two JSON values differ; a list of another length differs as a whole."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        return [p for key in sorted(set(old) | set(new), key=str)
                for p in changed_paths(old.get(key), new.get(key), path + (key,))]
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [p for i, (a, b) in enumerate(zip(old, new)) for p in changed_paths(a, b, path + (i,))]
    return [] if old == new else [path]


def _under(path: tuple, prefixes: Iterable[tuple]) -> tuple | None:
    return next((p for p in prefixes if path[:len(p)] == p), None)


def _replacing_fields(obj: Mapping[str, Any], paths: list[tuple], mutable: tuple[bool, bool]) -> list[str]:
    kind = obj.get("kind")
    prefixes = list(FORCE_NEW.get((_group(obj), str(kind)), ()))
    if kind == "Secret" and (not mutable[0] or obj.get("immutable")):
        prefixes += _DATA
    if kind == "ConfigMap" and (not mutable[1] or obj.get("immutable")):
        prefixes += _DATA
    hits = {_under(p, prefixes) for p in paths}
    return sorted(".".join(map(str, p)) for p in hits if p)


# ------------------------------------------------------------------------------------------ rename


def _role(found: KubernetesObject) -> tuple:
    """What an object is, beyond its name: kind, namespace, its app labels, and the images it runs."""
    obj = found.obj
    metadata = obj.get("metadata") or {}
    labels = metadata.get("labels") or {}
    handle = tuple(sorted((k, v) for k, v in labels.items()
                          if k in ("app", "app.kubernetes.io/name", "app.kubernetes.io/component", "component",
                                   "kustomize.component", "control-plane")))
    images: list[str] = []
    template = (obj.get("spec") or {}).get("template") or {}
    for container in ((template.get("spec") or {}).get("containers") or []):
        parsed = parse_image(str(container.get("image", "")))
        if parsed is not None:
            images.append(parsed.path.rsplit("/", 1)[-1])
    return (obj.get("kind"), metadata.get("namespace"), handle, tuple(sorted(images)))


def _pair_renames(gone: dict[str, KubernetesObject], new: dict[str, KubernetesObject]) -> list[tuple[str, str]]:
    """Deleted and added objects that are the same thing under another name: same kind and namespace, and
    the same app labels or the same container images (a role match needs one of them to be non-empty)."""
    pairs = []
    unmatched = dict(new)
    for old_key, old in sorted(gone.items()):
        role = _role(old)
        if not (role[2] or role[3]):
            continue
        candidates = [key for key, found in sorted(unmatched.items())
                      if _role(found)[:2] == role[:2] and ((role[2] and _role(found)[2] == role[2])
                                                           or (role[3] and _role(found)[3] == role[3]))]
        if len(candidates) == 1:
            pairs.append((old_key, candidates[0]))
            del unmatched[candidates[0]]
    return pairs


# --------------------------------------------------------------------------------------------- CRDs


def _served(crd: Mapping[str, Any]) -> dict[str, dict]:
    return {v.get("name"): v for v in (crd.get("spec") or {}).get("versions") or [] if isinstance(v, Mapping)}


def _crd_findings(key: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Finding]:
    findings = []
    for path in CRD_IMMUTABLE:
        a, b = old, new
        for step in path:
            a, b = (a or {}).get(step), (b or {}).get(step)
        if a != b:
            findings.append(Finding("crd-refused", key, f"{'.'.join(path)} {a!r} -> {b!r}: the API server refuses "
                                    "this change; the CRD must be replaced, which deletes every custom resource "
                                    "of its kind", CRD_SOURCE))
    before, after = _served(old), _served(new)
    old_storage = next((n for n, v in before.items() if v.get("storage")), None)
    new_storage = next((n for n, v in after.items() if v.get("storage")), None)
    dropped = sorted(set(before) - set(after))
    if dropped:
        findings.append(Finding("crd-version-dropped", key, f"versions {', '.join(dropped)} leave spec.versions; "
                                "objects still stored in them must be migrated first (status.storedVersions), or the "
                                "update is refused", STORED_VERSIONS_SOURCE))
    if old_storage != new_storage:
        findings.append(Finding("crd-storage-version", key, f"storage version {old_storage} -> {new_storage}: "
                                "existing objects stay stored as {0} until rewritten (a storage migration) "
                                "before {0} can ever be dropped".format(old_storage), STORED_VERSIONS_SOURCE))
    stopped = sorted(n for n in set(before) & set(after) if before[n].get("served") and not after[n].get("served"))
    if stopped:
        findings.append(Finding("crd-version-unserved", key, f"versions {', '.join(stopped)} are no longer served: "
                                "clients and manifests using them fail", STORED_VERSIONS_SOURCE))
    return findings


# ------------------------------------------------------------------------------------------ webhooks


def _group_order(objects: Mapping[str, KubernetesObject]) -> dict[str, int]:
    """Object key -> position of the resource that applies it, in apply order (its manifests file's)."""
    files = sorted({found.file for found in objects.values()})
    position = {file: index for index, file in enumerate(files)}
    return {key: position[found.file] for key, found in objects.items()}


def _webhook_services(obj: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [((w.get("clientConfig") or {}).get("service") or {}).get("namespace", "") + "/" +
            ((w.get("clientConfig") or {}).get("service") or {}).get("name", "")
            for w in obj.get("webhooks") or [] if isinstance(w, Mapping)]  # type: ignore[misc]


# ----------------------------------------------------------------------------------------------- data

#: ConfigMap keys and env vars that name a database (KFP's pipelineDb/mlmdDb/cacheDb, Katib's
#: KATIB_MYSQL_DB_DATABASE): a different name points the component at another, empty database.
_DATABASE_NAME = re.compile(r"(^|_)(db|database)(_?name)?$|Db$", re.I)
BUCKET_TYPES = ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")


def _database_names(found: KubernetesObject) -> dict[str, str]:
    obj = found.obj
    names: dict[str, str] = {}
    if obj.get("kind") == "ConfigMap":
        names.update({f"data.{k}": str(v) for k, v in (obj.get("data") or {}).items() if _DATABASE_NAME.search(k)})
    template = (obj.get("spec") or {}).get("template") or {}
    for container in (template.get("spec") or {}).get("containers") or []:
        for env in container.get("env") or []:
            if isinstance(env, Mapping) and _DATABASE_NAME.search(str(env.get("name", ""))) and "value" in env:
                names[f"{container.get('name')} env {env['name']}"] = str(env["value"])
    return names


def _data_findings(source: Mapping[str, Any], target: Mapping[str, Any], before: Mapping[str, KubernetesObject],
                   after: Mapping[str, KubernetesObject]) -> list[Finding]:
    findings = []
    for key in sorted(set(before) & set(after)):
        old, new = _database_names(before[key]), _database_names(after[key])
        for field_name in sorted(set(old) & set(new)):
            if old[field_name] != new[field_name]:
                findings.append(Finding("database-renamed", key, f"{field_name}: database {old[field_name]!r} -> "
                                        f"{new[field_name]!r}: the component starts on another database; move the "
                                        "data or keep the old name", "the component's own configuration"))
    buckets = lambda plan: {r["name"]: r for r in plan["resources"] if r["type"] in BUCKET_TYPES}  # noqa: E731
    old_buckets, new_buckets = buckets(source), buckets(target)
    for name in sorted(old_buckets):
        gone = name not in new_buckets
        renamed = not gone and old_buckets[name]["inputs"].get("bucket") != new_buckets[name]["inputs"].get("bucket")
        if gone or renamed:
            protected = old_buckets[name]["options"].get("protect") or old_buckets[name]["options"].get("retainOnDelete")
            findings.append(Finding("bucket", f"{old_buckets[name]['type']} {name}",
                                    ("leaves the stack" if gone else "changes its name (a new bucket)") +
                                    ("; protected or retained, so pulumi up stops or keeps it" if protected else
                                     "; the old bucket and its artifacts are deleted"),
                                    "https://www.pulumi.com/registry/packages/aws/api-docs/s3/bucket/"))
    return findings


# ----------------------------------------------------------------------------------------------- plan


@functools.lru_cache(maxsize=1)
def upgrade_steps(path: Path = STEPS_FILE) -> tuple[dict, ...]:
    return tuple(yaml.safe_load(path.read_text(encoding="utf-8")) or ())


def _release_of(plan: Mapping[str, Any]) -> str | None:
    report = (plan.get("outputs") or {}).get("transformReport")
    if isinstance(report, Mapping):
        return report.get("release")
    version = (plan.get("outputs") or {}).get("kubeflowVersion")
    return version if isinstance(version, str) else None


def _excluded_rules(plan: Mapping[str, Any]) -> set[str]:
    report = (plan.get("outputs") or {}).get("transformReport")
    return set((report or {}).get("exclusions") or {}) if isinstance(report, Mapping) else set()


def _release_key(version: str) -> tuple[int, ...]:
    from manifests.release_identity import release_key

    return release_key(version)


def _steps_between(source: Mapping[str, Any], target: Mapping[str, Any], replaced: set[str]) -> list[dict]:
    before, after = _release_of(source), _release_of(target)
    if not before or not after:
        return []
    low, high = _release_key(before), _release_key(after)
    excluded = _excluded_rules(target)
    found = []
    for step in upgrade_steps():
        crossing = low < _release_key(step["to"]) <= high and _release_key(step["from"]) <= low
        if not crossing:
            continue
        entry = {k: step[k] for k in ("from", "to", "what", "command", "source") if k in step}
        unless = step.get("notWhenExcluded")
        if unless and unless in excluded:
            entry["notApplicable"] = f"the stack excludes {unless}"
        if step.get("doneByReplacing") in replaced:
            entry["notApplicable"] = f"pulumi up replaces {step['doneByReplacing']} itself"
        found.append(entry)
    return found


#: Upstream's namespaces, as plans written before `kubeflow.namespace` existed had them.
DEFAULT_NAMESPACES = {"kubeflow": "kubeflow", "kubeflow-system": "kubeflow-system"}
NAMESPACE_MOVE_SOURCE = ("https://kubernetes.io/docs/concepts/overview/working-with-objects/namespaces/ (objects "
                         "are not moved between namespaces); docs/namespace.md")


def installed_namespaces(plan: Mapping[str, Any]) -> dict[str, str]:
    """Upstream's namespace -> the one the plan installs Kubeflow in (`kubeflow.namespace`, `kubeflow.systemNamespace`)."""
    report = (plan.get("outputs") or {}).get("transformReport")
    chosen = report.get("namespaces") if isinstance(report, Mapping) else None
    return {**DEFAULT_NAMESPACES, **(chosen if isinstance(chosen, Mapping) else {})}


def namespace_move_findings(source: Mapping[str, Any], target: Mapping[str, Any]) -> list[Finding]:
    """A live stack's namespace is chosen once: moving it is a migration no `pulumi up` performs.

    Kubernetes moves no object between namespaces; Pulumi would create everything afresh in the new one and
    delete the old one with what it holds. What would be lost is named from the source plan: the volume claims
    and Secrets in it, the webhooks whose CA bundle cert-manager injects from a Certificate there, and the
    bindings whose subjects are its ServiceAccounts (profiles' RoleBindings the controllers wrote at run time too).
    """
    before, after = installed_namespaces(source), installed_namespaces(target)
    findings = []
    objects = [found.obj for found in _objects(source).values()]
    for upstream, old in sorted(before.items()):
        new = after.get(upstream, old)
        if new == old:
            continue
        key = "kubeflow.namespace" if upstream == "kubeflow" else "kubeflow.systemNamespace"
        held = Counter()
        for obj in objects:
            metadata = obj.get("metadata") if isinstance(obj.get("metadata"), Mapping) else {}
            annotations = metadata.get("annotations") if isinstance(metadata.get("annotations"), Mapping) else {}
            kind = obj.get("kind")
            if metadata.get("namespace") == old and kind in ("PersistentVolumeClaim", "Secret"):
                held[f"{kind}s"] += 1
            if str(annotations.get("cert-manager.io/inject-ca-from", "")).startswith(old + "/"):
                held["CA bundles injected from its Certificates"] += 1
            if any(isinstance(s, Mapping) and s.get("namespace") == old for s in obj.get("subjects") or ()):
                held["bindings of its ServiceAccounts"] += 1
        lost = ", ".join(f"{count} {what}" for what, count in sorted(held.items()))
        findings.append(Finding(
            "namespace-move-refused", f"{key}: {old} -> {new}",
            f"{key} is chosen at install time and cannot change on a live stack: the update would create Kubeflow "
            f"afresh in {new} and delete {old} with what it holds ({lost or 'nothing the plan applies'}; and what "
            f"users and controllers made there at run time: volume claims and Secrets, webhook CA bundles, profiles' "
            f"bindings of its ServiceAccounts). Keep {key}: {old}, or migrate by hand to a new cluster or stack",
            NAMESPACE_MOVE_SOURCE))
    return findings


def plan_upgrade(source: Mapping[str, Any], target: Mapping[str, Any], source_label: str = "from",
                 target_label: str = "to") -> UpgradePlan:
    result = UpgradePlan(source_label, target_label)
    before, after = _objects(source), _objects(target)
    retained = _retained(source)
    mutable = _mutable_data(target)
    order_after = _group_order(after)

    gone = {k: v for k, v in before.items() if k not in after}
    added = {k: v for k, v in after.items() if k not in before}
    renames = _pair_renames(gone, added)
    for old_key, new_key in renames:
        result.counts["renamed"] += 1
        result.changes[old_key] = ("renamed", f"created as {new_key}, then deleted")
        kind = gone[old_key].obj.get("kind")
        if kind in WORKLOAD_KINDS | DATA_KINDS or kind == "Service":
            # The engine creates what is new during the update and deletes what left the program at its end.
            result.attention.append(Finding(
                "renamed", old_key, f"renamed upstream to {new_key.split(' ', 1)[1]}: Pulumi creates the new object, "
                "then deletes this one at the end of the update; both run meanwhile, and what is bound to the old "
                "name (volume claims, endpoints, leases, references from other objects) does not move",
                "pulumi/pulumi@v3.259.0 pkg/resource/deploy/deployment_executor.go:482-486 (deletes after the program ran)"))
        gone.pop(old_key)
        added.pop(new_key)

    for key, found in sorted(gone.items()):
        kind = found.obj.get("kind")
        keep = found.urn in retained
        result.counts["retained" if keep else "deleted"] += 1
        result.changes[key] = ("retained" if keep else "deleted", "left on the cluster, out of Pulumi's state"
                               if keep else "deleted from the cluster")
        if kind == "CustomResourceDefinition":
            plural = ((found.obj.get("spec") or {}).get("names") or {}).get("plural", "?")
            what = (f"leaves the release; retained on the cluster, so every {plural} object stays (remove it by hand "
                    "when its objects are gone)" if keep else
                    f"leaves the release and is DELETED: Kubernetes deletes every {plural} object in every namespace")
            result.attention.append(Finding("crd-removed", key, what,
                                            "https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/"
                                            "custom-resource-definitions/#delete-a-customresourcedefinition"))
        elif kind == "Namespace":
            result.attention.append(Finding("namespace-removed", key,
                                            "leaves the release; retained, with everything in it" if keep else
                                            "leaves the release and is DELETED with every object in it",
                                            "https://kubernetes.io/docs/concepts/overview/working-with-objects/namespaces/"))
        elif kind == "PersistentVolumeClaim" and not keep:
            result.attention.append(Finding("data-deleted", key, "the volume claim is deleted; its data goes with "
                                            "it unless the volume's reclaim policy keeps it",
                                            "https://kubernetes.io/docs/concepts/storage/persistent-volumes/#reclaiming"))
    for key in sorted(added):
        result.counts["added"] += 1
        result.changes[key] = ("added", "created")

    for key in sorted(set(before) & set(after)):
        old, new = before[key].obj, after[key].obj
        if old == new:
            result.counts["unchanged"] += 1
            continue
        paths = changed_paths(old, new)
        if old.get("apiVersion") != new.get("apiVersion"):
            result.attention.append(Finding(
                "api-version", key, f"apiVersion {old.get('apiVersion')} -> {new.get('apiVersion')}: Pulumi names a "
                "ConfigGroup's object by type and version, so this is a new resource and the old one is deleted "
                "after it: check that the deletion does not remove the object both name",
                "pulumi/pulumi-kubernetes@v4.32.0 provider/pkg/provider/yaml/v2/yaml.go:339-351"))
        replacing = _replacing_fields(new, paths, mutable)
        if replacing:
            result.counts["replaced"] += 1
            downtime = ("the workload is down between the delete and the create" if new.get("kind") in WORKLOAD_KINDS
                        else "the object is absent between the delete and the create")
            result.changes[key] = ("replaced", f"{', '.join(replacing)} changed: delete, then create; {downtime}")
            if new.get("kind") in WORKLOAD_KINDS | DATA_KINDS or new.get("kind") == "Service":
                result.attention.append(Finding("replaced", key, result.changes[key][1], REPLACE_SOURCE))
        else:
            result.counts["updated"] += 1
            result.changes[key] = ("updated", f"{len(paths)} fields updated in place")
        if new.get("kind") == "CustomResourceDefinition":
            result.attention.extend(_crd_findings(key, old, new))
        if new.get("kind") in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
            services = _webhook_services(new)
            later = [s for s in services if any(k.endswith(f"Service {s}") and order_after.get(k, -1) >
                                                order_after.get(key, -1) for k in order_after)]
            if later:
                result.attention.append(Finding(
                    "webhook-order", key, f"the webhook changes and is applied before its service {', '.join(later)}: "
                    "objects it admits fail until the service is up", "manifests/groups.py (apply order)"))
    result.attention.extend(_data_findings(source, target, before, after))
    result.attention.extend(namespace_move_findings(source, target))
    # Switching identity.mechanism or a GPU pool's provisioner (analysis.capacity_switch).
    from analysis.capacity_switch import switch_findings

    result.attention.extend(switch_findings(source, target))
    # Promoting a recovery standby or demoting a primary (analysis.fleet_recovery).
    from analysis.fleet_recovery import role_change_findings

    result.attention.extend(role_change_findings(source, target))
    result.steps = _steps_between(source, target, {k for k, (action, _) in result.changes.items() if action == "replaced"})
    result.attention.sort(key=lambda f: (f.kind, f.subject))
    return result


# --------------------------------------------------------------------------------------------- report


def render(plan: UpgradePlan) -> str:
    lines = [f"Upgrade plan: {plan.source_label} -> {plan.target_label}", ""]
    if plan.needs_attention:
        applicable = [s for s in plan.steps if "notApplicable" not in s]
        lines.append(f"Needs attention ({len(plan.attention)} findings, {len(applicable)} manual steps):")
        by_kind: dict[str, list[Finding]] = {}
        for finding in plan.attention:
            by_kind.setdefault(finding.kind, []).append(finding)
        for kind, findings in by_kind.items():
            lines.append(f"  {kind} ({len(findings)}):")
            for finding in findings:
                lines.append(f"    {finding.subject}: {finding.what}")
                lines.append(f"      source: {finding.source}")
        if plan.steps:
            lines.append("  upstream's manual steps for this upgrade:")
            for step in plan.steps:
                note = f" [not applicable: {step['notApplicable']}]" if "notApplicable" in step else ""
                lines.append(f"    {step['from']} -> {step['to']}: {step['what']}{note}")
                if step.get("command"):
                    lines.append(f"      $ {step['command']}")
                lines.append(f"      source: {step['source']}")
    else:
        lines.append("Nothing needs attention.")
    lines += ["", "Everything else, by what pulumi up does to each object:"]
    for action in ("unchanged", "updated", "replaced", "renamed", "added", "retained", "deleted"):
        lines.append(f"  {action:<10} {plan.counts.get(action, 0)}")
    return "\n".join(lines) + "\n"
