"""Joining the organisation's mesh and central gateway (issue 4, points 2, 3, 5 and 6)."""

from __future__ import annotations

import json

import yaml

from manifests.objects import Change, TransformResult, api_group, clone, containers_of, object_ref, pod_template
from manifests.options import GatewayOptions, MeshOptions, PodTemplateOptions

INJECT = "sidecar.istio.io/inject"
EXCLUDE_OUTBOUND_PORTS = "traffic.sidecar.istio.io/excludeOutboundPorts"
#: The profile controller's ConfigMap (kustomize adds a hash suffix; `profiles-namespace-labels-data` after
#: the dashboard repository's renames) and its one key, by which it is found.
PROFILE_LABELS_CONFIGMAP = "namespace-labels-data"
PROFILE_LABELS_KEY = "namespace-labels.yaml"


def profile_namespace_labels(mesh: MeshOptions) -> dict[str, str]:
    """What the profile controller's labels file must say for profile namespaces to join the mesh.

    The controller (1.9, 1.10) creates a profile's namespace with `istio-injection: enabled`, then applies
    the file: a label is added only where its key is missing, and a key with an empty value is removed.
    A namespace it adopts (one that exists with the owner's annotation) gets only the file's labels. So
    the file names the mesh label for adopted namespaces, and for a revisioned mesh also removes the
    injection label, which Istio would obey instead of `istio.io/rev`.
    """
    return {"istio.io/rev": mesh.revision, "istio-injection": ""} if mesh.revision else {"istio-injection": "enabled"}


def label_namespaces(objects: list[dict], mesh: MeshOptions) -> TransformResult:
    """Every Namespace joins the mesh: `istio-injection: enabled`, or `istio.io/rev` for revisioned meshes;
    so does every namespace the profile controller creates or adopts (its labels file, see above).

    Istio ignores `istio.io/rev` while `istio-injection` is present, so each form drops the other.
    """
    wanted = {"istio.io/rev": mesh.revision} if mesh.revision else {"istio-injection": "enabled"}
    dropped = "istio-injection" if mesh.revision else "istio.io/rev"
    result, changes = [], []
    for obj in objects:
        if is_profile_labels_config_map(obj):
            labelled = _label_profile_namespaces(obj, mesh)
            if labelled is not None:
                copy, what = labelled
                changes.append(Change(object_ref(obj), what))
                result.append(copy)
                continue
        labels = (obj.get("metadata") or {}).get("labels") or {}
        if obj.get("kind") != "Namespace" or (all(labels.get(k) == v for k, v in wanted.items()) and dropped not in labels):
            result.append(obj)
            continue
        copy = clone(obj)
        new_labels = copy["metadata"].setdefault("labels", {})
        if new_labels.pop(dropped, None) is not None:
            changes.append(Change(object_ref(obj), f"removed label {dropped}"))
        for key, value in wanted.items():
            changes.append(Change(object_ref(obj), f"label {key}: {labels.get(key)!r} -> {value!r}"))
            new_labels[key] = value
        result.append(copy)
    return TransformResult(result, tuple(changes))


def is_profile_labels_config_map(obj: dict) -> bool:
    """The profile controller's labels file, whatever the release names its ConfigMap."""
    # By the file the controller reads, not by name: the dashboard repository's manifests rename the
    # ConfigMap `profiles-namespace-labels-data` (kubeflow/manifests master after 26.03).
    return obj.get("kind") == "ConfigMap" and PROFILE_LABELS_KEY in (obj.get("data") or {})


def _label_profile_namespaces(obj: dict, mesh: MeshOptions) -> tuple[dict, str] | None:
    text = obj["data"][PROFILE_LABELS_KEY] or ""
    labels = yaml.safe_load(text) or {}
    if not isinstance(labels, dict):
        # Not the map of labels the controller reads; left for schema validation and review to catch.
        return None
    wanted = profile_namespace_labels(mesh)
    if all(labels.get(key) == value for key, value in wanted.items()):
        return None
    new_labels = {**labels, **wanted}
    copy = clone(obj)
    # Upstream's comments go: they document the defaults this file no longer has.
    copy["data"][PROFILE_LABELS_KEY] = yaml.safe_dump(new_labels, sort_keys=False, default_flow_style=False)
    what = ", ".join(f"{key}: {labels.get(key)!r} -> {value!r}" for key, value in wanted.items() if labels.get(key) != value)
    return copy, f"data[{PROFILE_LABELS_KEY}] {what} (profile namespaces join the mesh)"


def label_pod_templates(objects: list[dict], options: PodTemplateOptions) -> TransformResult:
    """Organisation labels and annotations, and `sidecar.istio.io/inject: "true"`, on every pod template.

    Upstream puts `sidecar.istio.io/inject: "false"` on some webhooks and controllers, sometimes as a
    label, which Istio reads before the annotation; so the value is set in both places it appears.
    """
    annotations = dict(options.annotations)
    annotations.setdefault(INJECT, "true")
    labels = dict(options.labels)
    result, changes = [], []
    for obj in objects:
        template = pod_template(obj)
        if template is None:
            result.append(obj)
            continue
        copy = clone(obj)
        metadata = pod_template(copy).setdefault("metadata", {})
        ref = object_ref(obj)
        current_labels = metadata.setdefault("labels", {})
        current_annotations = metadata.setdefault("annotations", {})
        opted_out = "false" in (current_labels.get(INJECT), current_annotations.get(INJECT))
        for key, value in annotations.items():
            if key == INJECT and opted_out and options.keep_upstream_injection_opt_outs:
                changes.append(Change(ref, f"kept upstream {INJECT}: false"))
                continue
            if current_annotations.get(key) != value:
                changes.append(Change(ref, f"pod annotation {key}: {current_annotations.get(key)!r} -> {value!r}"))
                current_annotations[key] = value
            if key == INJECT and key in current_labels and current_labels[key] != value:
                changes.append(Change(ref, f"pod label {key}: {current_labels[key]!r} -> {value!r}"))
                current_labels[key] = value
        for key, value in labels.items():
            if current_labels.get(key) != value:
                changes.append(Change(ref, f"pod label {key}: {current_labels.get(key)!r} -> {value!r}"))
                current_labels[key] = value
        result.append(copy)
    return TransformResult(result, tuple(changes))


def route_virtual_services(objects: list[dict], gateway: GatewayOptions) -> TransformResult:
    """Every VirtualService bound to a gateway moves to the central one, on the configured hosts.

    `mesh` entries stay (they route mesh-internal traffic); a VirtualService with only `mesh` is left
    alone. The controllers that create VirtualServices at run time (notebooks, tensorboards, KServe) read
    the gateway from their ConfigMaps, which are pointed at the central gateway too.

    `exportTo` is the route's own namespace and the gateway pods' namespace, nothing else: a gateway proxy
    looks routes up under its own namespace (istio/istio@1.24.6 pilot/pkg/networking/core/gateway.go:420,
    pilot/pkg/model/push_context.go:1065-1074), and `.` alone indexes a route under the route's namespace
    only (push_context.go:1766-1775), which hid every Kubeflow route from the gateway. Listing the two
    namespaces keeps the routes out of every other namespace's sidecars, whatever the mesh's
    `defaultVirtualServiceExportTo` (analysis/routes.py models this). Istio 1.28.0, which Kubeflow 1.11.0
    and 26.03 ship, does the same (gateway.go:420, push_context.go:1107-1116, 1805-1814).
    """
    result, changes = [], []
    for obj in objects:
        if obj.get("kind") == "VirtualService" and api_group(obj) == "networking.istio.io":
            spec = obj.get("spec") or {}
            gateways = spec.get("gateways") or []
            if gateways and any(entry != "mesh" for entry in gateways):
                copy = clone(obj)
                new_spec = copy["spec"]
                new_spec["gateways"] = [gateway.gateway] + (["mesh"] if "mesh" in gateways else [])
                new_spec["hosts"] = list(gateway.hosts)
                new_spec["exportTo"] = gateway_route_export_to(obj, gateway.pods_namespace)
                changes.append(Change(object_ref(obj), f"gateways {gateways} -> {new_spec['gateways']}, hosts {spec.get('hosts')} -> {list(gateway.hosts)}, exportTo {spec.get('exportTo')} -> {new_spec['exportTo']}"))
                result.append(copy)
                continue
        if obj.get("kind") == "ConfigMap":
            patched = _point_controller_config_at_gateway(obj, gateway)
            if patched is not None:
                copy, what = patched
                changes.extend(Change(object_ref(obj), entry) for entry in what)
                result.append(copy)
                continue
        result.append(obj)
    return TransformResult(result, tuple(changes))


def gateway_route_export_to(route: dict, pods_namespace: str) -> list[str]:
    """`exportTo` of a gateway-bound VirtualService: its own namespace (`.`) and the gateway pods' namespace.

    The pods' namespace is named only when it differs: Istio indexes `.` and the route's own namespace
    alike, so naming both would index the route twice (push_context.go:1766-1775; 1.28.0: 1805-1814).
    """
    namespace = (route.get("metadata") or {}).get("namespace")
    return ["."] if pods_namespace == namespace else [".", pods_namespace]


def _point_controller_config_at_gateway(obj: dict, gateway: GatewayOptions) -> tuple[dict, list[str]] | None:
    data = obj.get("data") or {}
    what: list[str] = []
    new_data = dict(data)
    # notebook-controller-config and tensorboard-controller-config (names carry a kustomize hash suffix)
    if "ISTIO_GATEWAY" in data and data["ISTIO_GATEWAY"] != gateway.gateway:
        new_data["ISTIO_GATEWAY"] = gateway.gateway
        what.append(f"data.ISTIO_GATEWAY: {data['ISTIO_GATEWAY']!r} -> {gateway.gateway!r}")
    if "ISTIO_HOST" in data and gateway.hosts and data["ISTIO_HOST"] != gateway.hosts[0]:
        new_data["ISTIO_HOST"] = gateway.hosts[0]
        what.append(f"data.ISTIO_HOST: {data['ISTIO_HOST']!r} -> {gateway.hosts[0]!r}")
    # KServe's inferenceservice-config: `ingress` is JSON naming the gateway for InferenceService routes
    if obj.get("metadata", {}).get("name") == "inferenceservice-config" and isinstance(data.get("ingress"), str):
        try:
            ingress = json.loads(data["ingress"])
        except ValueError:
            ingress = None
        if isinstance(ingress, dict) and ingress.get("ingressGateway") not in (None, gateway.gateway):
            what.append(f"data.ingress.ingressGateway: {ingress['ingressGateway']!r} -> {gateway.gateway!r}")
            ingress["ingressGateway"] = gateway.gateway
            new_data["ingress"] = json.dumps(ingress, indent=2, sort_keys=True)
    if not what:
        return None
    copy = clone(obj)
    copy["data"] = new_data
    return copy, what


# ------------------------------------------------------------------------------ the gateway's principal

#: The principal upstream's policies and the profile controller's defaults give the ingress gateway; Istio
#: reads any trust domain here as the mesh's own when it is `cluster.local`
#: (istio/istio@1.24.6 and @1.28.0 pilot/pkg/security/trustdomain/bundle.go:68-73), so the account and namespace are what matter.
UPSTREAM_GATEWAY_PRINCIPAL = "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"
#: The profile controller and kfam read the gateway's principal from this key of `profiles-config`
#: (kubeflow/kubeflow@v1.10.0 components/profile-controller/controllers/profile_controller.go:424-426,
#: components/access-management/kfam/bindings.go:80-82); both write it into every profile's policies.
GATEWAY_PRINCIPAL_KEY = "ISTIO_INGRESS_GATEWAY_PRINCIPAL"


def _names_upstream_gateway(principal: object) -> bool:
    _, _, path = str(principal).partition("/")
    return path == UPSTREAM_GATEWAY_PRINCIPAL.partition("/")[2]


def trust_gateway_principal(objects: list[dict], gateway: GatewayOptions) -> TransformResult:
    """Every upstream object that names the ingress gateway's principal names the configured gateway's.

    Upstream's web apps (central dashboard, pipelines UI, the Jupyter, Katib, KServe, Tensorboards and
    Volumes UIs) ALLOW only the gateway's principal, and the profile controller and kfam copy it from
    `profiles-config` into every profile's policies: a gateway running under another service account,
    namespace or trust domain would be refused everywhere. Policies are found by the principal they name
    (any trust domain), not by name, so a release that adds one is covered.
    """
    wanted = gateway.pods_principal
    result, changes = [], []
    for obj in objects:
        kind = obj.get("kind")
        if kind == "AuthorizationPolicy" and api_group(obj) == "security.istio.io":
            copy, what = _with_gateway_principal(obj, wanted)
            if what:
                changes.extend(Change(object_ref(obj), entry) for entry in what)
                result.append(copy)
                continue
        elif kind == "ConfigMap" and GATEWAY_PRINCIPAL_KEY in (obj.get("data") or {}):
            current = obj["data"][GATEWAY_PRINCIPAL_KEY]
            if current != wanted:
                copy = clone(obj)
                copy["data"][GATEWAY_PRINCIPAL_KEY] = wanted
                changes.append(Change(object_ref(obj), f"data.{GATEWAY_PRINCIPAL_KEY}: {current!r} -> {wanted!r}"))
                result.append(copy)
                continue
        result.append(obj)
    return TransformResult(result, tuple(changes))


def _with_gateway_principal(policy: dict, wanted: str) -> tuple[dict, list[str]]:
    copy = clone(policy)
    what: list[str] = []
    for index, rule in enumerate((copy.get("spec") or {}).get("rules") or []):
        for entry in rule.get("from") or []:
            source = entry.get("source") or {}
            for field in ("principals", "notPrincipals"):
                names = source.get(field)
                if not isinstance(names, list) or not any(_names_upstream_gateway(n) and n != wanted for n in names):
                    continue
                source[field] = list(dict.fromkeys(wanted if _names_upstream_gateway(n) else n for n in names))
                what.append(f"rules[{index}] source.{field}: {names} -> {source[field]}")
    return copy, what


# ------------------------------------------------------------------------- metadata-envoy's identity

#: The ServiceAccount metadata-envoy runs as here; upstream leaves it on its namespace's `default`
#: (kubeflow/pipelines@2.5.0 manifests/kustomize/base/metadata/base/metadata-envoy-deployment.yaml:17-18).
METADATA_ENVOY_SERVICE_ACCOUNT = "metadata-envoy"
METADATA_ENVOY_DEPLOYMENT = "metadata-envoy-deployment"


def give_metadata_envoy_its_own_account(objects: list[dict]) -> TransformResult:
    """metadata-envoy runs as a ServiceAccount of its own, so the identity-header policy can trust it alone.

    It is the pipelines UI's gRPC-web proxy to ML Metadata (`/ml_metadata`) and forwards every request
    header to metadata-grpc, the gateway's `kubeflow-userid` included (its route to `metadata-grpc-service`
    removes no header: kubeflow/pipelines@2.5.0 third_party/metadata_envoy/envoy.yaml:22-33, 53-71). As
    `default` it could be trusted with that header only by trusting every workload left on `default`.
    """
    result, changes, added = [], [], []
    for obj in objects:
        metadata = obj.get("metadata") or {}
        template = pod_template(obj)
        if obj.get("kind") != "Deployment" or metadata.get("name") != METADATA_ENVOY_DEPLOYMENT or template is None:
            result.append(obj)
            continue
        spec = template.get("spec") or {}
        current = spec.get("serviceAccountName") or spec.get("serviceAccount")
        if current not in (None, "default"):
            result.append(obj)
            continue
        copy = clone(obj)
        pod_spec = pod_template(copy).setdefault("spec", {})
        pod_spec.pop("serviceAccount", None)
        pod_spec["serviceAccountName"] = METADATA_ENVOY_SERVICE_ACCOUNT
        changes.append(Change(object_ref(obj), f"serviceAccountName {current!r} -> {METADATA_ENVOY_SERVICE_ACCOUNT!r} (trusted to forward kubeflow-userid to metadata-grpc)"))
        result.append(copy)
        account_metadata: dict = {"name": METADATA_ENVOY_SERVICE_ACCOUNT}
        if metadata.get("namespace"):
            account_metadata["namespace"] = metadata["namespace"]
        if metadata.get("labels"):
            account_metadata["labels"] = dict(metadata["labels"])
        added.append({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": account_metadata})
    return TransformResult(result, tuple(changes), tuple(added))


# ------------------------------------------------------------------------------------- sidecar fixes

#: The auth services that call the identity provider over HTTPS: oidc-authservice (a StatefulSet in
#: releases up to 1.7) and oauth2-proxy (a Deployment since 1.8).
AUTH_SERVICE_NAMES = frozenset({"authservice", "oauth2-proxy"})


def fix_sidecar_conflicts(objects: list[dict]) -> TransformResult:
    """The field reports' fixes for workloads that break once they get a sidecar.

    - The auth service must reach the IdP over 443 without the sidecar's mTLS interception, so port 443
      is excluded from outbound capture.
    - metadata-envoy is itself Envoy; beside the sidecar's Envoy both bind the shared-memory domain
      socket with base id 0 ("unable to bind domain socket with id=0"), so it starts with `--base-id 1`.
    """
    result, changes = [], []
    for obj in objects:
        name = (obj.get("metadata") or {}).get("name", "")
        template = pod_template(obj)
        if template is None:
            result.append(obj)
            continue
        if name in AUTH_SERVICE_NAMES:
            annotations = (template.get("metadata") or {}).get("annotations") or {}
            if annotations.get(EXCLUDE_OUTBOUND_PORTS) != "443":
                copy = clone(obj)
                pod_template(copy).setdefault("metadata", {}).setdefault("annotations", {})[EXCLUDE_OUTBOUND_PORTS] = _with_port(annotations.get(EXCLUDE_OUTBOUND_PORTS), "443")
                changes.append(Change(object_ref(obj), f"pod annotation {EXCLUDE_OUTBOUND_PORTS}: 443 so it can reach the identity provider"))
                result.append(copy)
                continue
        if name.startswith("metadata-envoy"):
            copy = clone(obj)
            what = _add_base_id(pod_template(copy).get("spec") or {})
            if what:
                changes.append(Change(object_ref(obj), what))
                result.append(copy)
                continue
        result.append(obj)
    return TransformResult(result, tuple(changes))


def _with_port(existing: str | None, port: str) -> str:
    ports = [p.strip() for p in (existing or "").split(",") if p.strip()]
    return ",".join(ports + ([port] if port not in ports else []))


def _add_base_id(pod_spec: dict) -> str | None:
    for container in containers_of(pod_spec):
        image = container.get("image", "")
        if "envoy" not in image and "envoy" not in container.get("name", ""):
            continue
        command, args = container.get("command") or [], container.get("args") or []
        if any(str(item).startswith("--base-id") for item in command + args):
            return None
        if args or command:
            container["args"] = list(args) + ["--base-id", "1"]
        else:
            # KFP's metadata-envoy image is ENTRYPOINT ["/usr/local/bin/envoy", "-c"], CMD ["/etc/envoy.yaml"]
            # up to 2.5 (kubeflow/pipelines@2.5.0 third_party/metadata_envoy/Dockerfile:20-27); args replace CMD,
            # so they repeat the config path before the flag. From 2.15 the image has no CMD and the Deployment
            # passes the mounted ConfigMap's path as args (2.16.0 metadata-envoy-deployment.yaml:25), the branch above.
            container["args"] = ["/etc/envoy.yaml", "--base-id", "1"]
        return f"container {container.get('name')} args {container['args']} (Envoy base id 1 beside the sidecar)"
    return None
