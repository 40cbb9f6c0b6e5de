"""Kubeflow in the namespace the enterprise chooses (`kubeflow.namespace`, `kubeflow.systemNamespace`).

Upstream fixes the names `kubeflow` and `kubeflow-system` everywhere; nothing upstream makes them
configurable. `move_namespaces` rewrites every place a release names them, by field path and by the
shape of the reference, never by replacing the word:

- the namespace of every namespaced object, and the Namespace itself (its labels kept: KServe's pod
  mutator skips namespaces labelled `control-plane`);
- namespace fields: RBAC `subjects[].namespace`, webhook and CRD-conversion `clientConfig.service.namespace`,
  `APIService.spec.service.namespace`;
- `cert-manager.io/inject-ca-from: <namespace>/<certificate>`;
- in any string (env, args, ConfigMap data, routes, policies, certificates): Service DNS names
  (`<service>.<ns>`, `<service>.<ns>.svc[.cluster.local]`), mesh principals (`<td>/ns/<ns>/sa/<account>`),
  Kubernetes usernames (`system:serviceaccount:<ns>:<account>`), gateway references (`<ns>/<gateway>` for the
  gateways the release defines), Knative's `gateway.<ns>.<gateway>` key, Istio Sidecar hosts `<ns>/*`, and
  flags whose name ends in `namespace` (`--webhook-svc-namespace=<ns>`);
- code defaults are met by env the manifests set, which the rewrite reaches (`KFP_UI_PRINCIPAL`,
  `ISTIO_GATEWAY`) or which follows the pod (`POD_NAMESPACE`, `KATIB_CORE_NAMESPACE` from fieldRefs):
  `manifests/facts/contracts/namespace.yaml` holds each, with its source.

`default_namespace_references` is the check that follows it: every reference to a default namespace left
in a list of objects, outside a short allow-list of places where the word is not a namespace.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping
from typing import Any

from manifests.objects import Change, TransformResult, object_ref

DEFAULT_NAMESPACE = "kubeflow"
DEFAULT_SYSTEM_NAMESPACE = "kubeflow-system"


def _patterns(old: str, new: str, gateways: frozenset[str]) -> list[tuple[re.Pattern[str], str]]:
    o = re.escape(old)
    edge = r"(?![-a-z0-9])"
    start = r"(?<![-a-z0-9./])"
    gateway_names = "|".join(sorted(re.escape(g) for g in gateways)) or "(?!)"
    return [
        # Service DNS names: `ml-pipeline.kubeflow`, `x.kubeflow.svc`, `x.kubeflow.svc.cluster.local`; not `kubeflow.org`.
        (re.compile(rf"(?<=[a-z0-9]\.){o}(?=\.svc\b|:\d|{edge}(?!\.))"), new),
        # Mesh principals and Kubernetes usernames of service accounts.
        (re.compile(rf"(?<=/ns/){o}(?=/sa/)"), new),
        (re.compile(rf"(?<=system:serviceaccount:){o}(?=:)"), new),
        (re.compile(rf"(?<=system:serviceaccounts:){o}{edge}"), new),
        # Gateway references `<ns>/<gateway>` and Knative's `gateway.<ns>.<gateway>` key; Sidecar hosts `<ns>/*`.
        (re.compile(rf"{start}{o}(?=/(?:{gateway_names}){edge})"), new),
        (re.compile(rf"(?<=^gateway\.){o}(?=\.(?:{gateway_names})$)"), new),
        (re.compile(rf"^{o}(?=/\*$)"), new),
        # Flags naming a namespace: `--leader-election-lock-namespace=kubeflow`.
        (re.compile(rf"(?<=namespace=){o}$"), new),
    ]


def _gateways(objects: list[dict], namespace: str) -> frozenset[str]:
    """The Gateways in `namespace`, and upstream's `kubeflow-gateway`: the program excludes that one before this
    step (the enterprise's gateway replaces it), yet controllers' config still names it until later steps route it."""
    return frozenset(obj["metadata"]["name"] for obj in objects
                     if obj.get("kind") == "Gateway" and (obj.get("metadata") or {}).get("namespace") == namespace) | {"kubeflow-gateway"}


def _rewrite_strings(value: Any, patterns: list[tuple[re.Pattern[str], str]],
                     path: str, changes: list[str]) -> Any:
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            new_key = _rewrite_string(key, patterns) if isinstance(key, str) else key
            if new_key != key:
                changes.append(f"{path}.{key} (key)")
            out[new_key] = _rewrite_strings(item, patterns, f"{path}.{key}", changes)
        return out
    if isinstance(value, list):
        return [_rewrite_strings(item, patterns, f"{path}[{i}]", changes) for i, item in enumerate(value)]
    if isinstance(value, str):
        rewritten = _rewrite_string(value, patterns)
        if rewritten != value:
            changes.append(path)
        return rewritten
    return value


def _rewrite_string(text: str, patterns: list[tuple[re.Pattern[str], str]]) -> str:
    for pattern, new in patterns:
        text = pattern.sub(new, text)
    return text


def _move_one(obj: dict, old: str, new: str, patterns: list[tuple[re.Pattern[str], str]]) -> list[str]:
    """Rewrite `obj` in place from `old` to `new`; the paths changed."""
    changed: list[str] = []
    metadata = obj.setdefault("metadata", {})
    if metadata.get("namespace") == old:
        metadata["namespace"] = new
        changed.append("metadata.namespace")
    if obj.get("kind") == "Namespace" and obj.get("apiVersion") == "v1" and metadata.get("name") == old:
        metadata["name"] = new
        changed.append("metadata.name")
        labels = metadata.get("labels") or {}
        if labels.get("kubernetes.io/metadata.name") == old:
            labels["kubernetes.io/metadata.name"] = new
    for i, subject in enumerate(obj.get("subjects") or []):
        if isinstance(subject, dict) and subject.get("namespace") == old:
            subject["namespace"] = new
            changed.append(f"subjects[{i}].namespace")
    for i, webhook in enumerate(obj.get("webhooks") or []):
        service = ((webhook or {}).get("clientConfig") or {}).get("service") or {}
        if service.get("namespace") == old:
            service["namespace"] = new
            changed.append(f"webhooks[{i}].clientConfig.service.namespace")
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    conversion = (((spec.get("conversion") or {}).get("webhook") or {}).get("clientConfig") or {}).get("service") or {}
    if conversion.get("namespace") == old:
        conversion["namespace"] = new
        changed.append("spec.conversion.webhook.clientConfig.service.namespace")
    if obj.get("kind") == "APIService" and (spec.get("service") or {}).get("namespace") == old:
        spec["service"]["namespace"] = new
        changed.append("spec.service.namespace")
    annotations = metadata.get("annotations") or {}
    inject = annotations.get("cert-manager.io/inject-ca-from")
    if isinstance(inject, str) and inject.startswith(old + "/"):
        annotations["cert-manager.io/inject-ca-from"] = new + inject[len(old):]
        changed.append("metadata.annotations[cert-manager.io/inject-ca-from]")
    for field in ("spec", "data", "stringData", "webhooks", "rules"):
        if field in obj:
            obj[field] = _rewrite_strings(obj[field], patterns, field, changed)
    return changed


def move_namespaces(objects: list[dict], moves: Mapping[str, str]) -> TransformResult:
    """The release's objects with each namespace in `moves` (default -> chosen) replaced wherever it is named.

    An empty or identity `moves` returns the objects unchanged (the same dicts)."""
    moves = {old: new for old, new in moves.items() if old != new}
    if not moves:
        return TransformResult(objects, ())
    plans = [(old, new, _patterns(old, new, _gateways(objects, old))) for old, new in moves.items()]
    out: list[dict] = []
    changes: list[Change] = []
    for obj in objects:
        ref = object_ref(obj)
        moved = copy.deepcopy(obj)
        changed: list[str] = []
        for old, new, patterns in plans:
            changed += [f"{path} {old} -> {new}" for path in _move_one(moved, old, new, patterns)]
        if changed:
            out.append(moved)
            changes.append(Change(ref, "; ".join(changed[:6]) + (f"; and {len(changed) - 6} more" if len(changed) > 6 else "")))
        else:
            out.append(obj)
    return TransformResult(out, tuple(changes))


def principal_in(principal: str, namespace: str) -> str:
    """A mesh principal of upstream's `kubeflow` namespace (`<td>/ns/kubeflow/sa/<account>`) in `namespace`."""
    return principal.replace(f"/ns/{DEFAULT_NAMESPACE}/sa/", f"/ns/{namespace}/sa/", 1)


# --- The check ---------------------------------------------------------------------------------------

#: Where the word is not a namespace, and why (the allow-list of `default_namespace_references`).
ALLOWED = {
    "API groups": r"\.kubeflow\.org\b|\bkubeflow\.org\b",
    "labels and selectors (`app.kubernetes.io/part-of: kubeflow`, `control-plane: kubeflow`: KServe's pod mutator "
    "skips namespaces labelled control-plane, and Kubeflow's selectors match these values)": None,
    "CRD categories (`kubectl get kubeflow`)": None,
    "image names (`ghcr.io/kubeflow/...`, `docker.io/kubeflow/...`): registries' paths": r"(?<![-a-z0-9./])[a-z0-9-]+(\.[a-z0-9-]+)+(:\d+)?/kubeflow(/[-a-z0-9_.]+)+",
    "URLs of the project (`github.com/kubeflow/...`, `www.kubeflow.org`)": r"https?://[^\s\"']*",
    "the stack's own DNS names (`kubeflow.example.com`, dns.host): hosts, not Services": r"(?<![-a-z0-9.])kubeflow(\.(?!svc\b)[a-z0-9-]+){2,}",
    "file paths (`/var/run/secrets/kubeflow/tokens`, KFP's projected token mount)": r"(?<![-a-z0-9.])/(var|etc|tmp|opt|usr|home)(/[a-z0-9_.-]+)*/kubeflow(?=/)",
    "the dashboard's icon names (`kubeflow:pipeline-centered`)": r"(?<=\"icon\": \")kubeflow:[a-z][-a-z]*",
}

_ALLOWED_TEXT = re.compile("|".join(p for p in ALLOWED.values() if p))
_ALLOWED_PATHS = re.compile(r"(^|\.)(labels|matchLabels|selector|categories|shortNames|image)(\.|\[|$)|^metadata\.annotations")


def _blank(match: re.Match[str]) -> str:
    return " " * len(match.group(0))


def _references(text: str, namespace: str) -> list[str]:
    """Each token of `text` that is `namespace` as a whole name (not `kubeflow-edit`, `kubeflow.org`, images, URLs)."""
    cleaned = _ALLOWED_TEXT.sub(_blank, text)
    return re.findall(rf"(?<![-a-z0-9_]){re.escape(namespace)}(?![-a-z0-9_])", cleaned)


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str):
                yield f"{path}.{key}" if path else key, key
            yield from _strings(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _strings(item, f"{path}[{i}]")
    elif isinstance(value, str):
        yield path, value


def default_namespace_references(objects: list[dict], defaults: tuple[str, ...]) -> list[str]:
    """`<object> <field path>: <value>` for each reference to a namespace in `defaults` left in `objects`."""
    found = []
    for obj in objects:
        ref = object_ref(obj)
        for path, text in _strings(obj, ""):
            if _ALLOWED_PATHS.search(path) and not path.endswith("inject-ca-from"):
                continue
            for namespace in defaults:
                if _references(text, namespace):
                    shown = text if len(text) <= 80 else _excerpt(text, namespace)
                    found.append(f"{ref} {path}: {shown!r}")
                    break
    return found


def _excerpt(text: str, namespace: str) -> str:
    match = re.search(rf"(?<![-a-z0-9_]){re.escape(namespace)}(?![-a-z0-9_])", _ALLOWED_TEXT.sub(_blank, text))
    at = match.start() if match else 0
    return "..." + text[max(0, at - 35):at + 35] + "..."
