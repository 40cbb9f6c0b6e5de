"""The stack file against the estate: where what the stack says differs from what the cluster and account run.

Pure Python over the plan (`make preview`'s plan.json), the estate file (analysis/estate.py) and the values
of the stack's settings by key path (`declared`, built by tools/estate.py). `estate_problems` returns one
line per disagreement, naming the setting, what the stack says and the value the estate holds; `make
preview ESTATE=estate/<stack>.yaml` fails on any.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, Optional

from analysis.karpenter_estate import karpenter_problems
from analysis.fleet_recovery import global_database_problems
from analysis.node_agents import node_agent_problems
from analysis.ownership import classify
from analysis.estate import planned_buckets, planned_objects, planned_records, planned_roles
from analysis.upgrade import installed_namespaces

Declared = Mapping[str, Any]

#: The Argo Workflows controller each Kubeflow release bundles, so KFP's workflows and the ConfigMap the program
#: writes are in the format of that minor (contract `kfp-argo-minor-of-the-release`, manifests/facts/contracts/estate.yaml).
ARGO_BY_RELEASE = {
    "26.03": "v3.7.3",   # kubeflow/manifests@26.03 applications/pipeline/upstream/third-party/argo/base/kustomization.yaml:5
    "1.11.0": "v3.7.3",  # kubeflow/manifests@v1.11.0 applications/pipeline/upstream/third-party/argo/base/kustomization.yaml:5
    "1.10.2": "v3.5.14",  # kubeflow/manifests@v1.10.2 applications/pipeline/upstream/third-party/argo/base/workflow-controller-deployment-patch.yaml:10
    "1.9.1": "v3.4.17",  # kubeflow/manifests@v1.9.1 apps/pipeline/upstream/third-party/argo/base/workflow-controller-deployment-patch.yaml:10
}

#: ENABLE_NATIVE_SIDECARS defaults to false up to Istio 1.26 and to `auto` from 1.27 (istio/istio@1.26.0
#: pilot/pkg/features/experimental.go:179; istio/istio@1.27.0 pilot/pkg/features/pilot.go:307); `auto` makes a
#: pod's sidecar native when its node's kubelet is 1.33 or later (istio/istio@1.28.0 pkg/kube/inject/webhook.go:1235-1260).
NATIVE_SIDECARS_AUTO_FROM = (1, 27)
NATIVE_SIDECARS_AUTO_KUBELET_MINOR = 33

_ENFORCE = "pod-security.kubernetes.io/enforce"


def _minor(version: str) -> Optional[tuple[int, int]]:
    match = re.match(r"^v?(\d+)\.(\d+)", version or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def _show(value: Any) -> str:
    return "unset" if value is None else (str(value).lower() if isinstance(value, bool) else str(value))


# --- Objects, IAM, buckets, records, OIDC -------------------------------------------------------------


def _object_problems(estate: Mapping[str, Any], plan: Mapping[str, Any]) -> Iterator[str]:
    kubernetes = estate["kubernetes"]
    existing = {(o.get("group", ""), o.get("kind"), o.get("namespace") or "", o.get("name")): o
                for o in kubernetes.get("existingObjects") or []}
    namespaces = kubernetes.get("namespaces") or {}
    missing_types = set(kubernetes.get("missingResourceTypes") or [])
    found_keys = []
    for obj in planned_objects(plan):
        if obj.kind == "Namespace" and not obj.group:
            found = obj.name in namespaces
        else:
            found = (obj.group, obj.kind, obj.namespace, obj.name) in existing
        if found:
            found_keys.append((obj.api_version, obj.kind, obj.namespace, obj.name))
        # A patch is applied server-side, which makes a missing object: the stack's own retained patches (a profile's
        # namespace, which the profile controller then adopts, and the policy that closes it) are patched for that;
        # every other patched object is someone else's and must exist.
        if obj.ownership == "expected" or (obj.ownership == "patched" and not obj.retained):
            if found:
                continue
            why = f" (the cluster has no resource type {obj.kind.lower()}{'.' + obj.group if obj.group else ''})" \
                if any(t.startswith(obj.kind.lower() + ".") or t == obj.kind.lower() for t in missing_types) else ""
            yield (f"{obj.ref} does not exist on the cluster{why}; the plan "
                   f"{'patches' if obj.ownership == 'patched' else 'expects'} it ({obj.source}) and never creates it: "
                   "it must exist before `pulumi up`")
    # Created objects that exist: the one classification says why each fails and what to do.
    yield from classify(plan).collisions(found_keys)


def _aws_problems(estate: Mapping[str, Any], plan: Mapping[str, Any], declared: Declared) -> Iterator[str]:
    aws = estate["aws"]
    roles = aws.get("iamRoles") or {}
    for role in planned_roles(plan):
        if roles.get(role):
            yield (f"IAM role {role} already exists ({roles[role]}); the plan creates a role of that name and IAM "
                   "refuses a second one (EntityAlreadyExists): delete or rename the old role, or import it")
    buckets = aws.get("buckets") or {}
    for bucket in planned_buckets(plan):
        state = buckets.get(bucket)
        if state and state != "absent":
            yield (f"artifacts.bucketPrefix: bucket {bucket} {state}; the plan creates it and S3 bucket names are "
                   "global (BucketAlreadyOwnedByYou / BucketAlreadyExists): choose another artifacts.bucketPrefix, or import it")
    existing = {(r.get("name"), r.get("type")) for r in aws.get("dnsRecords") or []}
    for name, type_, resource in planned_records(plan):
        if (name, type_) in existing:
            yield (f"dns.host: Route 53 record {name} {type_} already exists in zone {aws.get('hostedZoneId')}; the plan "
                   f"writes it ({resource}) with allowOverwrite, so `pulumi up` takes it over and `pulumi destroy` "
                   "deletes it: remove it first, or set dns.records: external-dns if external-dns owns it")
    issuer = ((aws.get("cluster") or {}).get("oidcIssuer") or "")
    host_path = re.sub(r"^https://", "", issuer).rstrip("/")
    providers = [arn for arn in aws.get("oidcProviders") or [] if host_path and arn.endswith(f":oidc-provider/{host_path}")]
    creates = any(r["type"] == "aws:iam/openIdConnectProvider:OpenIdConnectProvider" for r in plan["resources"])
    adopted = declared.get("identity.oidcProviderArn")
    if not issuer:
        yield f"cluster.name: the estate has no OIDC issuer for cluster {declared.get('cluster.name')!r} (eks describe-cluster)"
    elif creates and providers:
        yield (f"identity.oidcProviderArn is unset, so the plan creates an IAM OIDC provider for {issuer}, but the account "
               f"has one ({providers[0]}) and IAM allows one per issuer: set identity.oidcProviderArn: {providers[0]}")
    elif adopted and adopted not in (aws.get("oidcProviders") or []):
        found = f"; the account's provider for it is {providers[0]}" if providers else "; the account has none for it"
        yield (f"identity.oidcProviderArn is {adopted}, which the account does not have (cluster issuer {issuer}{found})")
    elif adopted and adopted not in providers:
        yield f"identity.oidcProviderArn is {adopted}, a provider for another issuer than the cluster's {issuer}"


# --- The mesh ----------------------------------------------------------------------------------------


def _istiod(mesh: Mapping[str, Any], revision: str) -> Optional[Mapping[str, Any]]:
    return next((d for d in mesh.get("istiod") or [] if d.get("revision") == revision), None)


def _native_sidecars(istiod: Mapping[str, Any], kubelets: list[str]) -> tuple[Optional[bool], str]:
    value = istiod.get("nativeSidecars")
    version = _minor(str(istiod.get("version") or ""))
    if value is None:
        value = "auto" if version and version >= NATIVE_SIDECARS_AUTO_FROM else "false"
        shown = f"ENABLE_NATIVE_SIDECARS unset ({value} in Istio {istiod.get('version')})"
    else:
        shown = f"ENABLE_NATIVE_SIDECARS={value}"
    if value == "true":
        return True, shown
    if value != "auto":
        return False, shown
    minors = {m[1] for m in (_minor(k) for k in kubelets) if m}
    if minors and all(m >= NATIVE_SIDECARS_AUTO_KUBELET_MINOR for m in minors):
        return True, shown + f", kubelets {', '.join(sorted(kubelets))}"
    if minors and all(m < NATIVE_SIDECARS_AUTO_KUBELET_MINOR for m in minors):
        return False, shown + f", kubelets {', '.join(sorted(kubelets))}"
    return None, shown + f", kubelets {', '.join(sorted(kubelets)) or 'unknown'} (native on 1.33 and later only)"


def _mesh_problems(estate: Mapping[str, Any], plan: Mapping[str, Any], declared: Declared) -> Iterator[str]:
    mesh = estate["mesh"]
    revision = declared.get("kubeflow.mesh.revision") or "default"
    istiod = _istiod(mesh, revision)
    running = ", ".join(f"{d.get('revision')} ({d.get('namespace')}/{d.get('name')}, {d.get('version')})"
                        for d in mesh.get("istiod") or []) or "none"
    if istiod is None:
        yield (f"kubeflow.mesh.revision is {_show(declared.get('kubeflow.mesh.revision'))} but the cluster runs no istiod of "
               f"revision {revision!r}; its istiod revisions: {running}")
        return
    version = _minor(str(istiod.get("version") or ""))
    if version and f"{version[0]}.{version[1]}" != declared.get("kubeflow.mesh.istioVersion"):
        yield (f"kubeflow.mesh.istioVersion is {declared.get('kubeflow.mesh.istioVersion')} but istiod "
               f"{istiod.get('namespace')}/{istiod.get('name')} runs {istiod.get('version')}: set it to \"{version[0]}.{version[1]}\"")
    native, shown = _native_sidecars(istiod, list(mesh.get("kubeletVersions") or []))
    if native is None:
        yield f"kubeflow.mesh.nativeSidecars is {_show(declared.get('kubeflow.mesh.nativeSidecars'))} but the mesh runs {shown}: pods differ by node"
    elif native != bool(declared.get("kubeflow.mesh.nativeSidecars")):
        yield (f"kubeflow.mesh.nativeSidecars is {_show(bool(declared.get('kubeflow.mesh.nativeSidecars')))} but istiod "
               f"{istiod.get('namespace')}/{istiod.get('name')} runs {shown}: set it to {_show(native)}")
    data_plane = declared.get("kubeflow.mesh.dataPlane")
    if data_plane == "ambient":
        actual = "ambient" if mesh.get("ztunnel") else ("sidecar-cni" if mesh.get("cni") else "sidecar-init")
    else:
        actual = "sidecar-cni" if mesh.get("cni") else "sidecar-init"
    if actual != data_plane:
        why = "the Istio CNI node agent (DaemonSet istio-cni-node) runs" if mesh.get("cni") else \
            "no Istio CNI node agent runs (no DaemonSet istio-cni-node), so sidecars get istio-init"
        yield f"kubeflow.mesh.dataPlane is {data_plane} but {why}: set it to {actual}"
    config = (mesh.get("meshConfig") or {}).get(revision)
    if config is None:
        yield (f"kubeflow.mesh.revision {revision!r}: no mesh config ConfigMap (istio or istio-{revision}, key mesh) was "
               "found, so outboundTrafficPolicy and extensionProviders cannot be compared")
    else:
        where = f"ConfigMap {config.get('namespace')}/{config.get('name')}"
        policy = config.get("outboundTrafficPolicy") or "ALLOW_ANY"
        if policy != declared.get("kubeflow.mesh.outboundTrafficPolicy"):
            yield (f"kubeflow.mesh.outboundTrafficPolicy is {declared.get('kubeflow.mesh.outboundTrafficPolicy')} but the "
                   f"mesh config ({where}) has outboundTrafficPolicy.mode {policy}: set it to {policy}")
        provider = ((plan.get("outputs") or {}).get("authExtensionProvider") or {})
        name = provider.get("name") if isinstance(provider, Mapping) else None
        if name and name not in (config.get("extensionProviders") or []):
            known = ", ".join(config.get("extensionProviders") or []) or "none"
            yield (f"auth: the mesh config ({where}) has no extension provider {name!r} (it has: {known}); the gateway's "
                   "CUSTOM policy names it, so every request is denied until the mesh owner adds the stack output "
                   "authExtensionProvider to meshConfig.extensionProviders")
        for key, value in sorted((config.get("defaultExportTo") or {}).items()):
            # istiod honours `.` and `*` of these (istio/istio@1.28.0 pilot/pkg/model/push_context.go:1873-1900, the
            # indexes :1565-1589, :1778-1792, :2099-2106); Kubeflow's Services, routes and rules name no exportTo, so
            # anything but `*` hides them from the gateway's namespace, and the trace, which assumes `*`, would not say.
            if "*" not in value:
                yield (f"the mesh config ({where}) sets {key} {value}: Kubeflow's objects name no exportTo, so the gateway "
                       f"in {declared.get('ingress.namespace') or 'istio-system'} would not see them (404 or 503 where the "
                       "trace, which assumes Istio's default `*`, says reached); ask the mesh owner for `*`")
        trust_domain = config.get("trustDomain") or "cluster.local"
        if trust_domain != declared.get("auth.trustDomain"):
            yield f"auth.trustDomain is {declared.get('auth.trustDomain')} but the mesh config ({where}) has trustDomain {trust_domain}"
    root = (config or {}).get("rootNamespace") or istiod.get("namespace")
    wide = [p for p in mesh.get("peerAuthentications") or [] if p.get("namespace") == root and not p.get("selector")]
    mode = wide[0].get("mode") if wide else None
    actual_mtls = {"STRICT": "strict", "DISABLE": "disable"}.get(str(mode), "permissive")
    if actual_mtls != declared.get("kubeflow.mesh.mtls"):
        source = (f"PeerAuthentication {root}/{wide[0].get('name')} has mode {mode}" if wide
                  else f"no mesh-wide PeerAuthentication in the root namespace {root} (Istio's default, PERMISSIVE)")
        yield f"kubeflow.mesh.mtls is {declared.get('kubeflow.mesh.mtls')} but {source}: set it to {actual_mtls}"
    local = mesh.get("clusterLocalGateway")
    who = declared.get("kubeflow.mesh.clusterLocalGateway", "provided")
    if local is not None:
        selector = ", ".join(f"{k}={v}" for k, v in sorted((local.get("selector") or {}).items()))
        if who == "provided" and not local.get("pods"):
            setting = "kubeflow.mesh.clusterLocalGateway is provided but" if "kubeflow.mesh.clusterLocalGateway" in declared \
                else "the mesh runs no cluster-local gateway:"
            yield (f"{setting} Service {local.get('service')} selects no pods ({selector}): KServe sends every "
                   "InferenceService request through it, so each would answer 503; the mesh owner runs a cluster-local "
                   "gateway with those labels (contract knative-local-gateway-has-pods)")
        elif who == "program" and local.get("pods"):
            yield (f"kubeflow.mesh.clusterLocalGateway is program but the mesh already runs pods with {selector} "
                   f"({', '.join(local['pods'])}): the Service would send to both; set it to provided")


# --- Gateway, Argo, Pod Security ---------------------------------------------------------------------


def _gateway_problems(estate: Mapping[str, Any], declared: Declared) -> Iterator[str]:
    pods = (estate.get("gateway") or {}).get("pods") or []
    selector = ", ".join(f"{k}={v}" for k, v in sorted((declared.get("ingress.selector") or {}).items()))
    if not pods:
        yield f"ingress.selector: no pods on the cluster carry {selector}; the Gateway and the identity filter select them"
        return
    namespace = declared.get("ingress.namespace")
    namespaces = sorted({p["namespace"] for p in pods})
    if namespace not in namespaces:
        yield (f"ingress.namespace is {namespace} but the gateway pods ({selector}) run in {', '.join(namespaces)}: "
               f"set ingress.namespace: {namespaces[0]}")
    account = declared.get("auth.gatewayServiceAccount")
    accounts = sorted({p["serviceAccount"] for p in pods if p["namespace"] in (namespace, *namespaces[:1])})
    trust_domain = declared.get("auth.trustDomain") or "cluster.local"
    if account not in accounts:
        yield (f"auth.gatewayServiceAccount is {account} but the gateway pods run as {', '.join(accounts)}: the identity "
               f"policies would trust {trust_domain}/ns/{namespace}/sa/{account}, a principal no gateway has; set "
               f"auth.gatewayServiceAccount: {accounts[0]}")
    trusted = declared.get("tenancy.trustedPrincipals") or ()
    if trusted:
        actual = {f"{d}/ns/{p['namespace']}/sa/{p['serviceAccount']}" for p in pods for d in (trust_domain, "cluster.local")}
        if not actual & set(trusted):
            yield (f"tenancy.trustedPrincipals names none of the gateway pods' principals "
                   f"({', '.join(sorted(actual))})")


def _argo_key_conflicts(argo: Mapping[str, Any], plan: Mapping[str, Any], declared: Declared) -> Iterator[str]:
    """Keys the program's patch of Argo's ConfigMap sets that another field manager already holds: the patch has
    no force (contract pulumi-kubernetes-patch-conflict-fails-without-force), so `pulumi up` stops there."""
    existing = argo.get("configmapKeys") or {}
    for resource in plan["resources"]:
        if resource["type"] != "kubernetes:core/v1:ConfigMapPatch":
            continue
        inputs = resource["inputs"]
        metadata = inputs.get("metadata") or {}
        if metadata.get("namespace") != declared.get("kubeflow.argo.namespace") or \
                metadata.get("name") != declared.get("kubeflow.argo.configmapName"):
            continue
        ours = (metadata.get("annotations") or {}).get("pulumi.com/patchFieldManager", "")
        for key in sorted(inputs.get("data") or {}):
            others = [m for m in existing.get(key, []) if m != ours]
            if key in existing and (others or not existing[key]):
                held = f" (field manager {', '.join(others)})" if others else ""
                yield (f"kubeflow.argo: ConfigMap {metadata.get('namespace')}/{metadata.get('name')} already sets {key}{held}; "
                       f"the program's patch sets it too, without force, so `pulumi up` stops on the conflict: the Argo "
                       "owner removes the key or hands it over (docs/kubeflow-manifests.md)")


def _argo_problems(estate: Mapping[str, Any], plan: Mapping[str, Any], declared: Declared) -> Iterator[str]:
    if not declared.get("kubeflow.argo.external"):
        return
    argo = estate.get("argo") or {}
    namespace = declared.get("kubeflow.argo.namespace")
    controllers = argo.get("controllers") or []
    if not controllers:
        yield f"kubeflow.argo.namespace is {namespace} but no Argo workflow controller Deployment runs there"
        return
    release = str(declared.get("kubeflow.version"))
    bundled = ARGO_BY_RELEASE.get(release)
    for controller in controllers:
        where = f"{controller.get('namespace')}/{controller.get('name')}"
        if bundled and _minor(str(controller.get("version"))) != _minor(bundled):
            yield (f"kubeflow.version {release} runs pipelines on Argo {bundled} (the controller its release bundles) but "
                   f"the cluster's controller {where} is {controller.get('version') or 'of unknown version'}: use an Argo "
                   f"{bundled.rsplit('.', 1)[0]}.x controller, or the Kubeflow release made for this one")
        if controller.get("namespaced"):
            yield (f"kubeflow.argo.namespace: the controller {where} runs --namespaced, so it never sees the workflows KFP "
                   "creates in profile namespaces; it must watch the whole cluster")
        if controller.get("configmap") != declared.get("kubeflow.argo.configmapName"):
            yield (f"kubeflow.argo.configmapName is {declared.get('kubeflow.argo.configmapName')} but the controller {where} "
                   f"reads --configmap {controller.get('configmap')}: set it to {controller.get('configmap')}")
    yield from _argo_key_conflicts(argo, plan, declared)
    if argo.get("instanceID"):
        yield (f"kubeflow.argo: the controller's ConfigMap sets instanceID {argo['instanceID']!r}, so it only runs workflows "
               "labelled workflows.argoproj.io/controller-instanceid with it, and KFP's carry no such label")


def _pod_security_problems(estate: Mapping[str, Any], plan: Mapping[str, Any], declared: Declared) -> Iterator[str]:
    from analysis.plan_objects import kubernetes_objects

    existing = (estate.get("kubernetes") or {}).get("namespaces") or {}
    for item in kubernetes_objects(plan).objects:
        obj = item.obj
        if obj.get("kind") != "Namespace":
            continue
        metadata = obj.get("metadata") or {}
        labels = metadata.get("labels") or {}
        name = metadata.get("name")
        if name not in existing or _ENFORCE not in labels:
            continue
        actual = existing[name].get(_ENFORCE)
        if actual != labels[_ENFORCE]:
            yield (f"kubeflow.mesh.dataPlane {declared.get('kubeflow.mesh.dataPlane')}: namespace {name} enforces Pod "
                   f"Security {actual or 'nothing (no ' + _ENFORCE + ' label)'} on the cluster, the plan sets "
                   f"{labels[_ENFORCE]} ({item.source})")


#: The label upstream's Namespace `kubeflow` carries, and the moved one keeps (manifests/namespace.py).
PLATFORM_NAMESPACE_LABEL = ("control-plane", "kubeflow")


def namespace_move_problems(namespaces: Mapping[str, Mapping[str, str]], plan: Mapping[str, Any]) -> Iterator[str]:
    """Kubeflow already installed in another namespace than the stack's kubeflow.namespace: a move, refused."""
    chosen = installed_namespaces(plan)
    key, value = PLATFORM_NAMESPACE_LABEL
    # Trainer's and JobSet's namespace carries the same label upstream.
    system = {chosen["kubeflow-system"], "kubeflow-system"}
    installed = sorted(name for name, labels in namespaces.items()
                       if (labels or {}).get(key) == value and name not in system)
    chosen = chosen["kubeflow"]
    if installed and chosen not in installed:
        yield (f"Kubeflow runs in {', '.join(installed)} (labelled {key}: {value}) but kubeflow.namespace is {chosen}: "
               "the namespace is chosen at install time and a live stack cannot move (its volume claims, Secrets, "
               f"webhook CA bundles and bindings stay behind); set kubeflow.namespace: {installed[0]}")


def estate_problems(estate: Mapping[str, Any], plan: Mapping[str, Any], declared: Declared) -> list[str]:
    """Every disagreement between the stack (its plan and settings) and the recorded estate, one line each."""
    problems: list[str] = []
    if estate.get("stack") != plan.get("stack"):
        problems.append(f"the estate was recorded for stack {estate.get('stack')!r}, not {plan.get('stack')!r}")
    for command in estate.get("failed") or []:
        problems.append(f"`{command}` failed when the estate was recorded; record it again where it can run")
    for check in (_object_problems(estate, plan), _aws_problems(estate, plan, declared),
                  _mesh_problems(estate, plan, declared), _gateway_problems(estate, declared),
                  _argo_problems(estate, plan, declared), _pod_security_problems(estate, plan, declared),
                  namespace_move_problems(estate["kubernetes"].get("namespaces") or {}, plan),
                  node_agent_problems(estate, plan),
                  karpenter_problems(estate, plan, str(declared.get("cluster.name"))),
                  global_database_problems(estate, plan)):
        problems += list(check)
    return [f"estate: {line}" for line in problems]


__all__ = ["ARGO_BY_RELEASE", "estate_problems"]
