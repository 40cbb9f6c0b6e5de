"""Joining the organisation's mesh and central gateway (issue 4, points 2, 3, 5 and 6)."""

from __future__ import annotations

import json

import yaml

from manifests.admission import POD_ADMISSION_LABEL, POD_ADMISSION_LEVEL, POD_POLICY, pod_security_policy
from manifests.images import INJECTED_PROXY_IMAGE
from manifests.objects import Change, TransformResult, api_group, clone, containers_of, object_ref, pod_template
from manifests.options import GatewayOptions, MeshOptions, PodTemplateOptions

INJECT = "sidecar.istio.io/inject"
#: Ambient enrollment of a namespace or pod (istio/istio@1.28.0 cni/README.md:57-59).
DATAPLANE_MODE = "istio.io/dataplane-mode"
#: Per-pod switch between a native and a classic sidecar (istio/istio@1.28.0
#: manifests/charts/istio-control/istio-discovery/files/injection-template.yaml:29; read from 1.24 on).
NATIVE_SIDECAR = "sidecar.istio.io/nativeSidecar"
POD_SECURITY_ENFORCE = "pod-security.kubernetes.io/enforce"
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
    injection label, which Istio would obey instead of `istio.io/rev`. In ambient the injection label is
    removed too (it would inject sidecars) and the namespace is enrolled with `istio.io/dataplane-mode`.
    """
    if mesh.data_plane == "ambient":
        return {DATAPLANE_MODE: "ambient", "istio-injection": ""}
    return {"istio.io/rev": mesh.revision, "istio-injection": ""} if mesh.revision else {"istio-injection": "enabled"}


def namespace_mesh_labels(mesh: MeshOptions) -> tuple[dict[str, str], tuple[str, ...]]:
    """The labels a Namespace joins the mesh by, and the mesh labels it must not carry.

    Istio ignores `istio.io/rev` while `istio-injection` is present; an ambient namespace with
    `istio-injection: enabled` would get sidecars as well (istio/istio@1.28.0
    manifests/charts/istio-control/istio-discovery/templates/mutatingwebhook.yaml:78-151 select namespaces by
    `istio-injection`; cni/README.md:57-59 enrolls ambient pods by `istio.io/dataplane-mode`)."""
    if mesh.data_plane == "ambient":
        return {DATAPLANE_MODE: "ambient"}, ("istio-injection", "istio.io/rev")
    if mesh.revision:
        return {"istio.io/rev": mesh.revision}, ("istio-injection", DATAPLANE_MODE)
    return {"istio-injection": "enabled"}, ("istio.io/rev", DATAPLANE_MODE)


#: What keeps a namespace out of the mesh whatever the injector's selectors: `istio-injection: disabled`
#: matches neither the default nor a revision's webhook (both require the label absent or `enabled`).
OUTSIDE_MESH_LABELS = {"istio-injection": "disabled"}


def label_namespaces(objects: list[dict], mesh: MeshOptions, outside: frozenset[str] = frozenset()) -> TransformResult:
    """Every Namespace joins the mesh (`istio-injection: enabled`, `istio.io/rev` for revisioned meshes,
    `istio.io/dataplane-mode: ambient` in ambient), except those in `outside` (cert-manager's, see
    `namespaces_kept_outside_mesh`); so does every namespace the profile controller creates or adopts
    (its labels file, see above)."""
    result, changes = [], []
    for obj in objects:
        if is_profile_labels_config_map(obj):
            labelled = _label_profile_namespaces(obj, mesh)
            if labelled is not None:
                copy, what = labelled
                changes.append(Change(object_ref(obj), what))
                result.append(copy)
                continue
        if obj.get("kind") != "Namespace":
            result.append(obj)
            continue
        labels = (obj.get("metadata") or {}).get("labels") or {}
        if obj["metadata"].get("name") in outside:
            wanted, dropped = dict(OUTSIDE_MESH_LABELS), ("istio.io/rev", DATAPLANE_MODE)
        else:
            wanted, dropped = namespace_mesh_labels(mesh)
        if all(labels.get(k) == v for k, v in wanted.items()) and not any(key in labels for key in dropped):
            result.append(obj)
            continue
        copy = clone(obj)
        new_labels = copy["metadata"].setdefault("labels", {})
        for key in dropped:
            if new_labels.pop(key, None) is not None:
                changes.append(Change(object_ref(obj), f"removed label {key}"))
        for key, value in wanted.items():
            if labels.get(key) != value:
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


def label_pod_templates(objects: list[dict], options: PodTemplateOptions, mesh: MeshOptions = MeshOptions(),
                        outside: frozenset[str] = frozenset()) -> TransformResult:
    """Organisation labels and annotations, and `sidecar.istio.io/inject: "true"`, on every pod template.

    Upstream puts `sidecar.istio.io/inject: "false"` on some webhooks and controllers, sometimes as a
    label, which Istio reads before the annotation; so the value is set in both places it appears.
    Pods in a namespace kept outside the mesh get `"false"`. In ambient no pod asks for a sidecar: a
    `"true"` label would make the injector's object selector inject one anyway.
    """
    organisation = dict(options.annotations)
    labels = dict(options.labels)
    result, changes = [], []
    for obj in objects:
        template = pod_template(obj)
        if template is None:
            result.append(obj)
            continue
        annotations = dict(organisation)
        if (obj.get("metadata") or {}).get("namespace") in outside:
            annotations[INJECT] = "false"
        elif mesh.sidecars:
            annotations.setdefault(INJECT, "true")
        copy = clone(obj)
        metadata = pod_template(copy).setdefault("metadata", {})
        ref = object_ref(obj)
        current_labels = metadata.setdefault("labels", {})
        current_annotations = metadata.setdefault("annotations", {})
        opted_out = "false" in (current_labels.get(INJECT), current_annotations.get(INJECT))
        if not mesh.sidecars and INJECT not in annotations:
            for place, current in (("annotation", current_annotations), ("label", current_labels)):
                if current.get(INJECT) == "true":
                    del current[INJECT]
                    changes.append(Change(ref, f"removed pod {place} {INJECT}: 'true' (ambient: no sidecar)"))
        for key, value in annotations.items():
            if key == INJECT and opted_out and value == "true" and options.keep_upstream_injection_opt_outs:
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


# ------------------------------------------------------------------------------- the mesh's data plane

#: cert-manager's own images: upstream keeps its namespace out of the mesh (no injection label on it in any
#: release), and the program follows: its webhook is called by the API server, its controller talks only to
#: the API server and the issuers, and nothing in the mesh calls it.
CERT_MANAGER_IMAGES = ("cert-manager-controller", "cert-manager-webhook", "cert-manager-cainjector")


def namespaces_kept_outside_mesh(objects: list[dict]) -> frozenset[str]:
    """Namespaces whose workloads run cert-manager, found by their images, not by the namespace's name."""
    found = set()
    for obj in objects:
        template = pod_template(obj)
        if template is None:
            continue
        images = [str(c.get("image", "")) for c in containers_of(template.get("spec") or {})]
        if any(image.rsplit("/", 1)[-1].split(":")[0].split("@")[0] in CERT_MANAGER_IMAGES for image in images):
            namespace = (obj.get("metadata") or {}).get("namespace")
            if namespace:
                found.add(namespace)
    return frozenset(found)


#: Why a namespace's Pod Security level is what it is, by data plane (the transform report says it per namespace).
PRIVILEGED_REASON = ("mesh.dataPlane sidecar-init: the injected istio-init container adds NET_ADMIN and NET_RAW and "
                     "runs as root, which Pod Security baseline and restricted refuse with no exception per container; "
                     f"the ValidatingAdmissionPolicy {POD_POLICY} enforces baseline there instead, NET_ADMIN and NET_RAW "
                     "admitted on istio-init alone")
POLICY_REASON = (f"profile namespaces are held to Pod Security baseline by the ValidatingAdmissionPolicy {POD_POLICY} "
                 "too, whatever their own label says")
SECCOMP_REASON = ("mesh.dataPlane sidecar-cni: restricted kept; the injected istio-proxy and istio-validation carry no "
                  "seccompProfile unless the mesh sets global.proxy.seccompProfile, so the pod sets RuntimeDefault for them")


def set_pod_security(objects: list[dict], mesh: MeshOptions, outside: frozenset[str] = frozenset()) -> TransformResult:
    """Pod Security levels the data plane can meet, and the admission policy that holds pods to baseline where
    the level's label cannot.

    - `sidecar-init`: istio-init adds NET_ADMIN and NET_RAW and runs as root
      (istio/istio@1.28.0 manifests/charts/istio-control/istio-discovery/files/injection-template.yaml:156-172),
      and Pod Security judges the pod after injection: baseline allows no added capability outside its list,
      restricted no root user either, and neither has an exception per container
      (kubernetes/pod-security-admission@v0.30.0 policy/check_capabilities_baseline.go:31-37, policy/check_runAsNonRoot.go).
      So every namespace whose pods get a sidecar, profile namespaces included (the profile controller's labels
      file), can only carry the `privileged` label; the ValidatingAdmissionPolicy of manifests/admission.py,
      bound to them by `kubeflow-platform/pod-admission`, enforces every baseline check instead, with NET_ADMIN
      and NET_RAW admitted on the injected istio-init alone. Namespaces outside the mesh keep theirs.
    - `sidecar-cni`: upstream's levels stay. The CNI node agent sets the traffic rules; the injected
      containers drop ALL and run as 1337, but carry a seccompProfile only if the mesh sets
      global.proxy.seccompProfile (injection-template.yaml:178-181), and restricted wants one on every
      container or on the pod (policy/check_seccompProfile_restricted.go:36-40,69-77): pod templates in restricted namespaces
      that set none at pod level get `RuntimeDefault` there, which their own containers' settings override.
    - `ambient`: no sidecar, no init container in the pod; upstream's levels stay.

    On every data plane the labels file also carries `kubeflow-platform/pod-admission`, so every profile
    namespace, declared or created at run time, is held to baseline by the policy whatever its own label says.
    """
    levels = {
        (obj.get("metadata") or {}).get("name"): ((obj.get("metadata") or {}).get("labels") or {}).get(POD_SECURITY_ENFORCE)
        for obj in objects if obj.get("kind") == "Namespace"
    }
    istio_init = mesh.data_plane == "sidecar-init"
    profile_labels = {POD_ADMISSION_LABEL: POD_ADMISSION_LEVEL, **({POD_SECURITY_ENFORCE: "privileged"} if istio_init else {})}
    result, changes = [], []
    for obj in objects:
        ref = object_ref(obj)
        metadata = obj.get("metadata") or {}
        if is_profile_labels_config_map(obj):
            patched = _profile_labels(obj, profile_labels)
            if patched is not None:
                copy, what = patched
                why = PRIVILEGED_REASON if istio_init else POLICY_REASON
                changes.append(Change(ref, f"data[{PROFILE_LABELS_KEY}] {what} (profile namespaces; {why})"))
                result.append(copy)
                continue
        if istio_init:
            if obj.get("kind") == "Namespace" and metadata.get("name") not in outside and \
                    (levels.get(metadata.get("name")) != "privileged" or POD_ADMISSION_LABEL not in (metadata.get("labels") or {})):
                copy = clone(obj)
                labels = copy["metadata"].setdefault("labels", {})
                labels[POD_SECURITY_ENFORCE] = "privileged"
                labels[POD_ADMISSION_LABEL] = POD_ADMISSION_LEVEL
                changes.append(Change(ref, f"label {POD_SECURITY_ENFORCE}: {levels.get(metadata.get('name'))!r} -> 'privileged', "
                                           f"{POD_ADMISSION_LABEL}: {POD_ADMISSION_LEVEL!r} ({PRIVILEGED_REASON})"))
                result.append(copy)
                continue
        elif mesh.data_plane == "sidecar-cni":
            template = pod_template(obj)
            namespace = metadata.get("namespace")
            if template is not None and namespace not in outside and levels.get(namespace) == "restricted":
                pod_spec = template.get("spec") or {}
                if not ((pod_spec.get("securityContext") or {}).get("seccompProfile")):
                    copy = clone(obj)
                    pod_template(copy).setdefault("spec", {}).setdefault("securityContext", {})["seccompProfile"] = {"type": "RuntimeDefault"}
                    changes.append(Change(ref, f"pod securityContext.seccompProfile: RuntimeDefault ({SECCOMP_REASON})"))
                    result.append(copy)
                    continue
        result.append(obj)
    added = tuple(pod_security_policy(istio_init))
    for policy in added:
        changes.append(Change(object_ref(policy), "added: " + (PRIVILEGED_REASON if istio_init else POLICY_REASON)))
    return TransformResult(result, tuple(changes), added)


def _profile_labels(obj: dict, wanted: dict[str, str]) -> tuple[dict, str] | None:
    labels = yaml.safe_load(obj["data"][PROFILE_LABELS_KEY] or "") or {}
    if not isinstance(labels, dict) or all(labels.get(key) == value for key, value in wanted.items()):
        return None
    copy = clone(obj)
    copy["data"][PROFILE_LABELS_KEY] = yaml.safe_dump({**labels, **wanted}, sort_keys=False, default_flow_style=False)
    what = ", ".join(f"{key}: {labels.get(key)!r} -> {value!r}"
                     for key, value in wanted.items() if labels.get(key) != value)
    return copy, what


def profile_pod_security(mesh: MeshOptions) -> str | None:
    """The Pod Security level a profile namespace needs on this data plane; None: the profile controller's own."""
    return "privileged" if mesh.data_plane == "sidecar-init" else None


def pod_security_levels(objects: list[dict]) -> dict[str, str | None]:
    """Namespace -> the Pod Security level it enforces, `profiles` for the profile controller's labels file."""
    levels: dict[str, str | None] = {}
    for obj in objects:
        if obj.get("kind") == "Namespace":
            levels[obj["metadata"]["name"]] = ((obj["metadata"].get("labels")) or {}).get(POD_SECURITY_ENFORCE)
        elif is_profile_labels_config_map(obj):
            labels = yaml.safe_load(obj["data"][PROFILE_LABELS_KEY] or "") or {}
            if isinstance(labels, dict):
                levels["<profiles>"] = labels.get(POD_SECURITY_ENFORCE)
    return dict(sorted(levels.items()))


# ------------------------------------------------------------------------- webhooks under strict mTLS

WEBHOOK_CONFIGURATION_KINDS = ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")
#: The sidecar leaves these inbound ports alone (upstream's trainer: 9443), so the API server reaches them directly.
EXCLUDE_INBOUND_PORTS = "traffic.sidecar.istio.io/excludeInboundPorts"


def webhook_services(objects: list[dict]) -> set[tuple[str, str, int]]:
    """(namespace, Service, port) of every webhook the API server calls: admission webhooks and CRD conversion."""
    found = set()
    for obj in objects:
        configs: list[dict] = []
        if obj.get("kind") in WEBHOOK_CONFIGURATION_KINDS:
            configs = [(hook or {}).get("clientConfig") or {} for hook in obj.get("webhooks") or []]
        elif obj.get("kind") == "CustomResourceDefinition":
            conversion = (obj.get("spec") or {}).get("conversion") or {}
            if conversion.get("strategy") == "Webhook":
                configs = [((conversion.get("webhook") or {}).get("clientConfig")) or {}]
        for config in configs:
            service = config.get("service") or {}
            if service.get("name") and service.get("namespace"):
                # The API server's default port for a service reference is 443 (admissionregistration/v1).
                found.add((service["namespace"], service["name"], int(service.get("port") or 443)))
    return found


def _selects(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def admit_api_server_to_webhooks(objects: list[dict], mesh: MeshOptions, outside: frozenset[str] = frozenset()) -> TransformResult:
    """Under strict mTLS, each webhook's pod port takes plaintext-or-mTLS (a port-level PERMISSIVE
    PeerAuthentication, as upstream does for Knative's webhooks), so the API server, outside the mesh, can
    call it. Webhooks are found by what calls them (webhook configurations, CRD conversion), their pods by
    the Service's selector, the port by the Service's targetPort. Pods outside the mesh and ports the sidecar
    does not capture are left as they are.

    Istio applies one workload-level PeerAuthentication per pod, the oldest (istio/istio@1.28.0
    pilot/pkg/security/authn/policy_applier.go:398-470), and a port without a mode of its own inherits the
    namespace's or the mesh's: so each workload gets one policy with all its webhook ports, selecting exactly
    its pods, and where upstream already has one for the workload (Knative's) the ports are added to it.
    """
    if mesh.mtls != "strict":
        return TransformResult(objects, ())
    services = {(o["metadata"].get("namespace"), o["metadata"]["name"]): o for o in objects if o.get("kind") == "Service" and o.get("apiVersion") == "v1"}
    workloads = [o for o in objects if pod_template(o) is not None and o.get("kind") not in ("Job", "CronJob")]
    # workload ref -> (workload, ports the API server calls on it, the webhooks calling them)
    wanted: dict[str, tuple[dict, dict[str, str]]] = {}
    changes = []
    for namespace, name, port in sorted(webhook_services(objects)):
        service = services.get((namespace, name))
        if namespace in outside or service is None:
            continue  # kept out of the mesh, excluded with its component (istiod), or served outside the release
        selector = (service.get("spec") or {}).get("selector") or {}
        target = next((p.get("targetPort", p.get("port")) for p in (service.get("spec") or {}).get("ports") or [] if p.get("port") == port), port)
        for workload in workloads:
            template = pod_template(workload)
            if (workload.get("metadata") or {}).get("namespace") != namespace or not _selects(selector, ((template.get("metadata") or {}).get("labels")) or {}):
                continue
            container_port = target
            if isinstance(target, str) and not target.isdigit():
                container_port = next((p.get("containerPort") for c in containers_of(template.get("spec") or {})
                                       for p in c.get("ports") or [] if p.get("name") == target), None)
            if container_port is None:
                changes.append(Change(object_ref(workload), f"webhook {namespace}/{name}:{port}: no container port named {target!r}; left"))
                continue
            annotations = (template.get("metadata") or {}).get("annotations") or {}
            if annotations.get(INJECT) == "false":
                continue
            if str(container_port) in [p.strip() for p in str(annotations.get(EXCLUDE_INBOUND_PORTS, "")).split(",")]:
                changes.append(Change(object_ref(workload), f"webhook port {container_port} is excluded from inbound capture upstream; left"))
                continue
            wanted.setdefault(object_ref(workload), (workload, {}))[1][str(container_port)] = f"{namespace}/{name}:{port}"
    result, opened, added = _open_ports(objects, wanted, "webhooks", "from outside the mesh (mesh.mtls strict)", "the API server calls ")
    changes += opened
    return TransformResult(result, tuple(changes), tuple(added))


# --------------------------------------------------------------------------------------------- Jobs

def let_jobs_complete(objects: list[dict], mesh: MeshOptions) -> TransformResult:
    """A Job's pod completes only when every container exits; a classic sidecar never does. Without native
    sidecars, Jobs and CronJobs are kept out of the mesh; with them, each pod asks for a native sidecar
    (the injector reads the annotation from Istio 1.24 on; before, the mesh's ENABLE_NATIVE_SIDECARS decides)."""
    if not mesh.sidecars:
        return TransformResult(objects, ())
    result, changes = [], []
    for obj in objects:
        template = pod_template(obj)
        annotations = ((template or {}).get("metadata") or {}).get("annotations") or {}
        if obj.get("kind") not in ("Job", "CronJob") or template is None or annotations.get(INJECT) == "false":
            result.append(obj)
            continue
        key, value = (NATIVE_SIDECAR, "true") if mesh.native_sidecars else (INJECT, "false")
        copy = clone(obj)
        pod_template(copy).setdefault("metadata", {}).setdefault("annotations", {})[key] = value
        why = "native sidecar, exits with the Job" if mesh.native_sidecars else "out of the mesh: a classic sidecar never exits, so the Job would never complete (mesh.nativeSidecars false)"
        changes.append(Change(object_ref(obj), f"pod annotation {key}: {value!r} ({why})"))
        result.append(copy)
    return TransformResult(result, tuple(changes))


# ------------------------------------------------------------------------------------------- egress

def egress_service_entries(mesh: MeshOptions, namespace: str) -> TransformResult:
    """Under REGISTRY_ONLY a sidecar forwards only to hosts in its registry, the rest to its BlackHoleCluster
    (istio/istio@1.28.0 pilot/pkg/networking/util/util.go:59, 509-514): one ServiceEntry per outside destination,
    in `namespace`, exported only where its callers run."""
    if mesh.outbound_traffic_policy != "REGISTRY_ONLY":
        return TransformResult([], ())
    added, changes = [], []
    for host in mesh.external_hosts:
        wildcard = any(h.startswith("*") for h in host.hosts)
        name = f"external-{host.purpose}" if sum(h.purpose == host.purpose for h in mesh.external_hosts) == 1 else f"external-{host.purpose}-{host.hosts[0].replace('.', '-')}"[:63].rstrip("-")
        entry = {
            "apiVersion": "networking.istio.io/v1beta1",
            "kind": "ServiceEntry",
            "metadata": {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/part-of": "kubeflow-platform"}},
            "spec": {
                "hosts": list(host.hosts),
                "ports": [{"number": host.port, "name": f"{host.protocol.lower()}-{host.port}", "protocol": host.protocol}],
                "location": "MESH_EXTERNAL",
                # A wildcard host cannot be resolved; TLS is then routed by its SNI. An entry with addresses
                # forwards to the IP the caller dialled (https://istio.io/latest/docs/reference/config/networking/service-entry/).
                "resolution": "NONE" if wildcard or host.addresses else "DNS",
                "exportTo": [("." if target == namespace else target) for target in host.export_to],
            },
        }
        if host.addresses:
            entry["spec"]["addresses"] = list(host.addresses)
        added.append(entry)
        changes.append(Change(object_ref(entry), f"{', '.join(host.hosts)}:{host.port} {host.protocol} for {host.purpose}, exported to {', '.join(host.export_to)} (mesh.outboundTrafficPolicy REGISTRY_ONLY)"))
    return TransformResult([], tuple(changes), tuple(added))


# -------------------------------------------------------------------------------------------- ambient

_L7_SOURCE = ("requestPrincipals", "notRequestPrincipals")
_L7_OPERATION = ("hosts", "notHosts", "methods", "notMethods", "paths", "notPaths")


def l7_attributes(policy: dict) -> list[str]:
    """The HTTP attributes an AuthorizationPolicy matches on (what ztunnel, an L4 proxy, cannot evaluate)."""
    spec = policy.get("spec") or {}
    found = []
    if spec.get("action") == "CUSTOM":
        found.append("action CUSTOM")
    for index, rule in enumerate(spec.get("rules") or []):
        for entry in rule.get("from") or []:
            found += [f"rules[{index}].from.{key}" for key in _L7_SOURCE if (entry.get("source") or {}).get(key)]
        for entry in rule.get("to") or []:
            found += [f"rules[{index}].to.{key}" for key in _L7_OPERATION if (entry.get("operation") or {}).get(key)]
        for condition in rule.get("when") or []:
            if str(condition.get("key", "")).startswith(("request.", "experimental.")):
                found.append(f"rules[{index}].when {condition['key']}")
    return found


def ztunnel_l7_policies(objects: list[dict]) -> list[tuple[str, list[str]]]:
    """AuthorizationPolicies with HTTP rules that ztunnel would enforce: those with no `targetRefs` to a waypoint.

    ztunnel enforces only L4 attributes; a policy it enforces that has L7 rules fails safe (an ALLOW rule that
    needs HTTP never matches, a DENY rule denies): https://istio.io/latest/docs/ambient/usage/l4-policy/."""
    return [(object_ref(o), attributes) for o in objects
            if o.get("kind") == "AuthorizationPolicy" and not (o.get("spec") or {}).get("targetRefs")
            and (attributes := l7_attributes(o))]


# ------------------------------------------------------------------- run-time pods outside the mesh

#: Services that pods created at run time without a sidecar call in plaintext, by (Service name, Service port):
#: under strict mTLS each one's pod port takes plaintext too (port-level PERMISSIVE), nothing else does.
#: - KFP v2 puts `sidecar.istio.io/inject: "false"` on every pod of a run (kubeflow/pipelines@2.16.0
#:   backend/src/apiserver/template/v2_template.go:153, 392); its driver and launcher dial ML Metadata at
#:   `metadata-grpc-service.<kubeflow>:8080` and the API server's gRPC port `ml-pipeline.<kubeflow>:8887`
#:   (backend/src/v2/metadata/env.go:5-19, backend/src/v2/config/env.go:48, 195-199, compiler/argocompiler/container.go:211-213).
#: - Katib labels every suggestion pod `sidecar.istio.io/inject: "false"` (kubeflow/katib@v0.19.0
#:   pkg/controller.v1beta1/util/labels.go:35, consts/const.go:122-126); it and the early-stopping service in it
#:   dial `katib-db-manager.<kubeflow>:6789` over an insecure channel (pkg/earlystopping/v1beta1/medianstop/service.py:150-198),
#:   as does the metrics collector Katib injects into trial pods (pkg/webhook/v1beta1/pod/inject_webhook.go:310),
#:   which are out of the mesh too when the mesh has no native sidecars (`let_runtime_jobs_complete`).
SIDECARLESS_CALLS: tuple[tuple[str, int, str], ...] = (
    ("metadata-grpc-service", 8080, "KFP v2 driver and launcher (sidecar.istio.io/inject: false)"),
    ("ml-pipeline", 8887, "KFP v2 driver and launcher (sidecar.istio.io/inject: false)"),
    ("katib-db-manager", 6789, "Katib suggestion, early stopping and trial metrics collectors (no sidecar)"),
)


def _service_workloads(objects: list[dict], namespace: str, service: dict, port: int) -> list[tuple[dict, int | None]]:
    """The workloads a Service's port reaches, each with the container port it lands on (None: no such named port)."""
    spec = service.get("spec") or {}
    selector = spec.get("selector") or {}
    target = next((p.get("targetPort", p.get("port")) for p in spec.get("ports") or [] if p.get("port") == port), port)
    found = []
    for workload in objects:
        template = pod_template(workload)
        if template is None or workload.get("kind") in ("Job", "CronJob") or (workload.get("metadata") or {}).get("namespace") != namespace:
            continue
        if not _selects(selector, ((template.get("metadata") or {}).get("labels")) or {}):
            continue
        container_port = target
        if isinstance(target, str) and not target.isdigit():
            container_port = next((p.get("containerPort") for c in containers_of(template.get("spec") or {})
                                   for p in c.get("ports") or [] if p.get("name") == target), None)
        found.append((workload, None if container_port is None else int(container_port)))
    return found


def _open_ports(objects: list[dict], wanted: dict[str, tuple[dict, dict[str, str]]], suffix: str,
                why: str, lead: str = "") -> tuple[list[dict], list[Change], list[dict]]:
    """Port-level PERMISSIVE for `wanted` (workload ref -> (workload, port -> what calls it)): added to the one
    workload PeerAuthentication that already selects the workload (Istio applies only the oldest), else a new
    one named `<workload>-<suffix>` selecting exactly its pods."""
    existing: dict[str, int] = {}
    for index, obj in enumerate(objects):
        if obj.get("kind") != "PeerAuthentication":
            continue
        match = (((obj.get("spec") or {}).get("selector")) or {}).get("matchLabels") or {}
        for ref, (workload, _) in wanted.items():
            labels = ((pod_template(workload).get("metadata") or {}).get("labels")) or {}
            if obj["metadata"].get("namespace") == workload["metadata"].get("namespace") and _selects(match, labels):
                existing.setdefault(ref, index)
    result, added, changes = list(objects), [], []
    for ref, (workload, ports) in sorted(wanted.items()):
        because = lead + ", ".join(f"{caller} on {port}" for port, caller in sorted(ports.items())) + f" {why}"
        if ref in existing:
            policy = result[existing[ref]]
            levels = dict(((policy.get("spec") or {}).get("portLevelMtls")) or {})
            missing = {port: caller for port, caller in ports.items() if (levels.get(port) or {}).get("mode") not in ("PERMISSIVE", "DISABLE")}
            if missing:
                copy = clone(policy)
                copy["spec"]["portLevelMtls"] = {**levels, **{port: {"mode": "PERMISSIVE"} for port in sorted(missing)}}
                result[existing[ref]] = copy
                changes.append(Change(object_ref(policy), f"ports {sorted(missing)} of {ref} PERMISSIVE: {because}"))
            continue
        metadata = workload.get("metadata") or {}
        selector = ((workload.get("spec") or {}).get("selector") or {}).get("matchLabels") or \
            ((pod_template(workload).get("metadata") or {}).get("labels")) or {}
        policy = {
            "apiVersion": "security.istio.io/v1beta1",
            "kind": "PeerAuthentication",
            "metadata": {"name": f"{metadata['name']}-{suffix}", "namespace": metadata.get("namespace"),
                         "labels": {"app.kubernetes.io/part-of": "kubeflow-platform"}},
            "spec": {"selector": {"matchLabels": dict(sorted(selector.items()))},
                     "portLevelMtls": {port: {"mode": "PERMISSIVE"} for port in sorted(ports)}},
        }
        added.append(policy)
        changes.append(Change(object_ref(policy), f"ports {sorted(ports)} of {ref} PERMISSIVE: {because}"))
    return result, changes, added


def admit_sidecarless_clients(objects: list[dict], mesh: MeshOptions, outside: frozenset[str] = frozenset()) -> TransformResult:
    """Under strict mTLS, the ports sidecar-less run-time pods call (`SIDECARLESS_CALLS`) also take plaintext.

    A STRICT sidecar's inbound filter chains match only TLS (istio/istio@1.24.6
    pilot/pkg/networking/core/filterchain_options.go:119-148, 186-215), so a plaintext gRPC call from a
    KFP driver or a Katib suggestion is reset. PERMISSIVE on exactly those pod ports of exactly those
    workloads (selector, port-level) keeps the rest STRICT. What it opens: a plaintext caller has no
    principal, so an ALLOW rule naming principals or namespaces never matches it, and a DENY rule on
    `notPrincipals` always does: the identity-header DENY in `kubeflow` still refuses a plaintext
    `kubeflow-userid`; ml-pipeline's own ALLOW admits requests without that header from anyone (as it does
    for any in-mesh caller), and the API server authorizes them itself (bearer token, TokenReview);
    metadata-grpc allows everything upstream; katib-db-manager has no policy. Upstream's NetworkPolicies
    still admit only profile namespaces and `kubeflow` there (and `istio-system` for ml-pipeline).
    """
    if mesh.mtls != "strict" or not mesh.sidecars:
        return TransformResult(objects, ())
    services = {(o["metadata"].get("namespace"), o["metadata"]["name"]): o for o in objects
                if o.get("kind") == "Service" and o.get("apiVersion") == "v1"}
    wanted: dict[str, tuple[dict, dict[str, str]]] = {}
    changes: list[Change] = []
    for name, port, caller in SIDECARLESS_CALLS:
        for (namespace, service_name), service in sorted(services.items(), key=lambda item: str(item[0])):
            if service_name != name or namespace in outside or not any(p.get("port") == port for p in (service.get("spec") or {}).get("ports") or []):
                continue
            for workload, container_port in _service_workloads(objects, namespace, service, port):
                annotations = (pod_template(workload).get("metadata") or {}).get("annotations") or {}
                if annotations.get(INJECT) == "false":
                    continue
                if container_port is None:
                    changes.append(Change(object_ref(workload), f"{namespace}/{name}:{port}: no container port for the Service's targetPort; left"))
                    continue
                wanted.setdefault(object_ref(workload), (workload, {}))[1][str(container_port)] = f"{caller} -> {namespace}/{name}:{port}"
    result, opened, added = _open_ports(objects, wanted, "sidecarless-clients", "in plaintext from pods without a sidecar (mesh.mtls strict)")
    return TransformResult(result, tuple(changes + opened), tuple(added))


# ------------------------------------------------------------------------- run-time Jobs completing

#: Trainer's runtimes: the JobSet template each TrainJob's pods are made from (kubeflow/trainer@v2.1.0
#: pkg/runtime/framework/plugins/jobset/builder.go: the JobSet starts as the runtime's template).
TRAINING_RUNTIME_KINDS = ("ClusterTrainingRuntime", "TrainingRuntime")
#: Katib's trial templates, the Jobs the Katib UI and users' Experiments start trials from.
KATIB_TRIAL_TEMPLATES = "trial-templates"


def _pod_templates_in(node: object) -> list[dict]:
    """Every pod template (`template` with `spec.containers`) inside a manifest fragment."""
    found = []
    if isinstance(node, dict):
        template = node.get("template")
        if isinstance(template, dict) and isinstance((template.get("spec") or {}).get("containers"), list):
            found.append(template)
        for key, value in node.items():
            found += _pod_templates_in(value)
    elif isinstance(node, list):
        for item in node:
            found += _pod_templates_in(item)
    return found


def runtime_job_annotation(mesh: MeshOptions) -> tuple[str, str]:
    """What a run-time Job's pod asks of the injector so that it completes: a native sidecar, or none."""
    return (NATIVE_SIDECAR, "true") if mesh.native_sidecars else (INJECT, "false")


def let_runtime_jobs_complete(objects: list[dict], mesh: MeshOptions) -> TransformResult:
    """The Jobs Kubeflow's controllers start at run time complete: Trainer's runtimes (every TrainJob's pods)
    and Katib's trial templates carry the same annotation `let_jobs_complete` gives the manifests' Jobs.

    A Job's pod completes only when every container has exited; a classic istio-proxy never exits
    (istio/istio@1.24.6 manifests/charts/istio-control/istio-discovery/files/injection-template.yaml:27, 164-167
    makes it a container unless the pod or the mesh asks for a native sidecar), and profile namespaces are
    injected. Users' own TrainingRuntimes and Experiments' trial templates need the same annotation (docs/mesh.md).
    """
    if not mesh.sidecars:
        return TransformResult(objects, ())
    key, value = runtime_job_annotation(mesh)
    why = ("native sidecar, exits with the Job" if mesh.native_sidecars else
           "out of the mesh: a classic sidecar never exits, so the Job would never complete (mesh.nativeSidecars false)")
    result, changes = [], []
    for obj in objects:
        kind = obj.get("kind")
        if kind in TRAINING_RUNTIME_KINDS and api_group(obj) == "trainer.kubeflow.org":
            copy = clone(obj)
            jobs = (((copy.get("spec") or {}).get("template") or {}).get("spec") or {}).get("replicatedJobs") or []
            touched = []
            for job in jobs:
                pod = ((job.get("template") or {}).setdefault("spec", {})).setdefault("template", {})
                annotations = pod.setdefault("metadata", {}).setdefault("annotations", {})
                if annotations.get(INJECT) == "false" or annotations.get(key) == value:
                    continue
                annotations[key] = value
                touched.append(str(job.get("name")))
            if touched:
                changes.append(Change(object_ref(obj), f"replicatedJobs {touched} pod annotation {key}: {value!r} ({why})"))
                result.append(copy)
                continue
        elif kind == "ConfigMap" and (obj.get("metadata") or {}).get("name") == KATIB_TRIAL_TEMPLATES:
            copy = clone(obj)
            touched = []
            for data_key, text in sorted((copy.get("data") or {}).items()):
                try:
                    document = yaml.safe_load(text) if isinstance(text, str) else None
                except yaml.YAMLError:
                    continue  # not a manifest; schema validation and review catch it
                templates = [t for t in _pod_templates_in(document)
                             if ((t.get("metadata") or {}).get("annotations") or {}).get(INJECT) != "false"
                             and ((t.get("metadata") or {}).get("annotations") or {}).get(key) != value]
                if not templates:
                    continue
                for template in templates:
                    template.setdefault("metadata", {}).setdefault("annotations", {})[key] = value
                copy["data"][data_key] = yaml.safe_dump(document, sort_keys=False, default_flow_style=False)
                touched.append(data_key)
            if touched:
                changes.append(Change(object_ref(obj), f"data {touched}: trial pod annotation {key}: {value!r} ({why})"))
                result.append(copy)
                continue
        result.append(obj)
    return TransformResult(result, tuple(changes))


# -------------------------------------------------------------------------- net-istio's gateway probes

#: net-istio's controller, which probes every gateway pod for each Knative Ingress (knative-extensions/net-istio
#: @knative-v1.21.1 pkg/reconciler/ingress/lister.go:63-196): upstream keeps it out of the mesh for that reason
#: (config/500-controller.yaml:31-35); Kubeflow's manifests inject it.
NET_ISTIO_CONTROLLER = ("knative-serving", "net-istio-controller")


def let_net_istio_probe_gateways(objects: list[dict], mesh: MeshOptions) -> TransformResult:
    """Under `REGISTRY_ONLY`, net-istio's controller runs without a sidecar, as upstream net-istio ships it.

    Its probes go to gateway pod IPs with the Ingress's host (`<name>.<namespace>` on the cluster-local gateway),
    which no Service of the mesh carries: a sidecar has no route for them, and under REGISTRY_ONLY its catch-all
    answers 502 on a port with an HTTP listener and drops the connection on any other (istio/istio@1.28.0
    pilot/pkg/networking/core/httproute.go:773-833, listener_builder.go:236-310), such as the cluster-local
    gateway's 8081. A dropped probe is retried for ever, so the Ingress, and every serverless InferenceService,
    never becomes Ready (knative/networking pkg/status/status.go:461-494). Nothing calls the controller (it
    only watches the API server and probes), so leaving the mesh opens nothing.
    """
    if not mesh.sidecars or mesh.outbound_traffic_policy != "REGISTRY_ONLY":
        return TransformResult(objects, ())
    result, changes = [], []
    for obj in objects:
        metadata = obj.get("metadata") or {}
        template = pod_template(obj)
        if obj.get("kind") != "Deployment" or (metadata.get("namespace"), metadata.get("name")) != NET_ISTIO_CONTROLLER or template is None:
            result.append(obj)
            continue
        copy = clone(obj)
        pod = pod_template(copy).setdefault("metadata", {})
        for place in ("labels", "annotations"):
            values = pod.setdefault(place, {})
            if values.get(INJECT) != "false":
                changes.append(Change(object_ref(obj), f"pod {place[:-1]} {INJECT}: {values.get(INJECT)!r} -> 'false' "
                                      "(its gateway probes would meet REGISTRY_ONLY's catch-all in its own sidecar)"))
                values[INJECT] = "false"
        result.append(copy)
    return TransformResult(result, tuple(changes))


# ---------------------------------------------------------------------------- the cluster-local gateway

#: The Service KServe sends every serverless InferenceService call to (kserve/kserve@v0.16.0
#: pkg/controller/v1beta1/inferenceservice/reconcilers/ingress/ingress_reconciler.go:527, 546;
#: pkg/apis/serving/v1beta1/configmap.go:319-320), which net-istio's `knative-local-gateway` Gateway serves on 8081.
KNATIVE_LOCAL_GATEWAY = "knative-local-gateway"
CLUSTER_LOCAL_GATEWAY_ACCOUNT = "cluster-local-gateway-service-account"
#: Istio's gateway injection: a pod asking for the `gateway` template gets the mesh's own proxy, of the mesh's
#: version, in its `istio-proxy` container whose `image: auto` the injector replaces
#: (istio/istio@1.24.6 manifests/charts/gateway/values.yaml:33, templates/_helpers.tpl:27-32,
#: templates/deployment.yaml:64-66; the same at 1.28.0).
GATEWAY_TEMPLATE_ANNOTATION = "inject.istio.io/templates"


def readmitted_cluster_local_gateway_account(upstream: list[dict], excluded: dict[str, str],
                                              mesh: MeshOptions) -> tuple[list[dict], list[Change]]:
    """With `clusterLocalGateway: program`, upstream's ServiceAccount of the cluster-local gateway, which the `istio`
    exclusion removed, is applied again (relabelled as the program's): the gateway the program runs uses it, so the
    principal `tenancy.serving.principals` admits by default stays the same."""
    if mesh.cluster_local_gateway != "program" or not mesh.sidecars:
        return [], []
    service = next((o for o in upstream if o.get("kind") == "Service" and (o.get("metadata") or {}).get("name") == KNATIVE_LOCAL_GATEWAY), None)
    if service is None or object_ref(service) in excluded:
        return [], []
    namespace = (service.get("metadata") or {}).get("namespace") or "istio-system"
    found, changes = [], []
    for obj in upstream:
        metadata = obj.get("metadata") or {}
        if obj.get("kind") == "ServiceAccount" and metadata.get("name") == CLUSTER_LOCAL_GATEWAY_ACCOUNT \
                and metadata.get("namespace") == namespace and object_ref(obj) in excluded:
            copy = clone(obj)
            selector = ((service.get("spec") or {}).get("selector")) or {}
            copy["metadata"]["labels"] = {**dict(sorted(selector.items())), "app.kubernetes.io/part-of": "kubeflow-platform"}
            found.append(copy)
            changes.append(Change(object_ref(obj), f"kept from the {excluded[object_ref(obj)]} exclusion, labels {metadata.get('labels')} -> "
                                  f"{copy['metadata']['labels']}: the cluster-local gateway runs as it (mesh.clusterLocalGateway program)"))
    return found, changes


def provide_cluster_local_gateway(objects: list[dict], mesh: MeshOptions) -> TransformResult:
    """With `kubeflow.mesh.clusterLocalGateway: program`, pods behind `knative-local-gateway`: an injected Istio
    gateway selected by that Service's selector, run as upstream's account (tenancy.serving.principals admits
    it), listening where the Service's ports point. The `istio` exclusion removed upstream's Deployment, which
    pins an Istio proxy image of Kubeflow's bundled version; an injected gateway runs the mesh's own version.
    With `provided` nothing is added: the mesh owner runs the pods, which the run-time trace assumes (docs/mesh.md)."""
    if mesh.cluster_local_gateway != "program" or not mesh.sidecars:
        return TransformResult([], ())
    service = next((o for o in objects if o.get("kind") == "Service" and (o.get("metadata") or {}).get("name") == KNATIVE_LOCAL_GATEWAY), None)
    if service is None:
        return TransformResult([], ())  # no Knative: nothing routes through it
    namespace = service["metadata"].get("namespace") or "istio-system"
    selector = dict(sorted(((service.get("spec") or {}).get("selector") or {}).items()))
    if any((o.get("metadata") or {}).get("namespace") == namespace and pod_template(o) is not None
           and _selects(selector, ((pod_template(o).get("metadata") or {}).get("labels")) or {}) for o in objects):
        return TransformResult([], ())  # the bundled Istio's own gateway is kept (istio not excluded)
    ports = sorted({(int(p["targetPort"]), str(p.get("name") or f"port-{p['targetPort']}")) for p in (service.get("spec") or {}).get("ports") or []
                    if str(p.get("targetPort", "")).isdigit()})
    labels = {**selector, INJECT: "true", **({"istio.io/rev": mesh.revision} if mesh.revision else {})}
    part_of = {"app.kubernetes.io/part-of": "kubeflow-platform"}
    has_account = any(o.get("kind") == "ServiceAccount" and (o.get("metadata") or {}).get("name") == CLUSTER_LOCAL_GATEWAY_ACCOUNT
                      and (o.get("metadata") or {}).get("namespace") == namespace for o in objects)
    account = {"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": CLUSTER_LOCAL_GATEWAY_ACCOUNT, "namespace": namespace, "labels": {**selector, **part_of}}}
    # Named after the Service it serves: upstream's own `cluster-local-gateway` Deployment is excluded with istio.
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": KNATIVE_LOCAL_GATEWAY, "namespace": namespace, "labels": {**selector, **part_of}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": labels, "annotations": {GATEWAY_TEMPLATE_ANNOTATION: "gateway", INJECT: "true"}},
                "spec": {
                    "serviceAccountName": CLUSTER_LOCAL_GATEWAY_ACCOUNT,
                    "securityContext": {"runAsUser": 1337, "runAsGroup": 1337, "runAsNonRoot": True,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "istio-proxy", "image": INJECTED_PROXY_IMAGE,
                        "ports": [{"containerPort": port, "name": name, "protocol": "TCP"} for port, name in ports]
                        + [{"containerPort": 15021, "name": "status-port", "protocol": "TCP"}],
                        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}},
                        # Istio's gateway chart's defaults and the probe its injector would add (istio/istio@1.24.6
                        # manifests/charts/gateway/values.yaml:68-74, istio-discovery/files/gateway-injection-template.yaml:157-164).
                        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "2", "memory": "1Gi"}},
                        "readinessProbe": {"httpGet": {"path": "/healthz/ready", "port": 15021, "scheme": "HTTP"},
                                           "periodSeconds": 15, "timeoutSeconds": 3, "failureThreshold": 4},
                    }],
                },
            },
        },
    }
    change = Change(object_ref(deployment), f"injected Istio gateway (template gateway, image auto) behind {namespace}/{KNATIVE_LOCAL_GATEWAY} "
                    f"on ports {[port for port, _ in ports]}, as {CLUSTER_LOCAL_GATEWAY_ACCOUNT} (mesh.clusterLocalGateway program)")
    return TransformResult([], (change,), (deployment,) if has_account else (account, deployment))
