"""The pods Kubeflow's controllers create at run time, traced through the mesh as callers and destinations.

The gateway matrix (analysis/trace_matrix.py) follows people and machine tokens to Kubeflow's web apps. The work
itself runs in pods that exist only at run time: a pipeline run's driver, launcher and Argo executor, a Katib
experiment's suggestion, early-stopping service and trials, a TrainJob's pods, a serverless InferenceService's
predictor behind the cluster-local gateway and Knative's activator. Each is built here with the labels,
annotations, service account and ports its controller gives it (the facts and their sources are the contracts
in manifests/facts/contracts/runtime-workloads.yaml), then every call it makes is traced with the same hop rules
as the matrix (analysis/trace.py), and every Job it runs is judged on whether it can complete:

- a pod without a sidecar calls in plaintext: a STRICT PeerAuthentication on the destination port resets it;
- a pod with a sidecar calls an outside host through its sidecar: under `REGISTRY_ONLY` only hosts a visible
  ServiceEntry names leave the mesh, the rest go to the BlackHoleCluster (istio/istio@1.28.0
  pilot/pkg/networking/util/util.go:59, 509-514);
- net-istio probes the gateway pods of the predictor's Ingress straight by pod IP: 404, 503 and dropped
  connections keep the Ingress waiting, any other answer marks it ready (`net_istio_probes`);
- a Job's pod completes only when every container has exited: a classic sidecar never does, a native one
  (the pod's `sidecar.istio.io/nativeSidecar: "true"`, or the mesh's `nativeSidecars`) exits with it.

The mesh's shape comes from the plan's `transformReport.mesh` (dataPlane, mtls, outboundTrafficPolicy,
nativeSidecars, clusterLocalGateway): change one there and the paths are judged under the new shape.

Pure Python over plain dicts; no Pulumi.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import yaml

from analysis import policies as authz
from analysis import trace as t
from manifests.recovery import HELD

INJECT = "sidecar.istio.io/inject"
NATIVE_SIDECAR = "sidecar.istio.io/nativeSidecar"
MARKER = {"kubeflow-platform/trace-runtime": "true"}

#: What each scenario is called in the table and the preview's problems.
KFP, KATIB, TRAINER, KSERVE, NOTEBOOK = ("KFP v2 run", "Katib experiment with early stopping", "TrainJob",
                                         "serverless InferenceService", "notebook")
SCENARIOS = (KFP, KATIB, TRAINER, KSERVE, NOTEBOOK)

#: kubeflow/pipelines@2.16.0: every pod of a v2 run is annotated out of the mesh unless the pipeline says otherwise
#: (backend/src/apiserver/template/v2_template.go:153, 392) and labelled as a v2 component
#: (backend/src/v2/compiler/argocompiler/argo.go:145-151); it runs as the pipeline runner account
#: (argo.go:157, the API server's DEFAULTPIPELINERUNNERSERVICEACCOUNT).
KFP_POD_LABELS = {"pipelines.kubeflow.org/v2_component": "true"}
KFP_POD_ANNOTATIONS = {"pipelines.kubeflow.org/v2_component": "true", INJECT: "false"}
#: The driver and the launcher dial ML Metadata and the API server's gRPC port in the API server's namespace
#: (backend/src/v2/metadata/env.go:5-19; backend/src/v2/config/env.go:48, 195-199; apiserver/common/const.go:76-81;
#: compiler/argocompiler/container.go:211-213; cmd/driver/main.go:207-211; cmd/launcher-v2/main.go:43-46).
KFP_CALLS = (("metadata-grpc-service", 8080), ("ml-pipeline", 8887))
#: kubeflow/katib@v0.19.0: a suggestion pod carries the label `sidecar.istio.io/inject: "false"`
#: (pkg/controller.v1beta1/util/labels.go:27-37, consts/const.go:66-73, 122-126); its Service serves the
#: suggestion API on 6789 and the early-stopping API on 6788 (consts/const.go:82-89, suggestion/composer/composer.go:150-171);
#: with early stopping it runs as a ServiceAccount of its own (composer.go:135-139); Deployment, Service and account are
#: all named `<suggestion>-<algorithm>` (util/suggestion.go:27-34, 47-49).
KATIB_SUGGESTION_PORT, KATIB_EARLY_STOPPING_PORT = 6789, 6788
#: Katib's DB manager, which suggestions, early stopping and trial metrics collectors call (consts/const.go:164-169;
#: pkg/earlystopping/v1beta1/medianstop/service.py:150-198; pkg/webhook/v1beta1/pod/inject_webhook.go:310).
KATIB_DB_MANAGER = ("katib-db-manager", 6789)
TRACE_EXPERIMENT, TRACE_ALGORITHM = "trace-experiment", "random"
#: The predictor's pods carry KServe's `component: predictor` and InferenceService labels (kserve/kserve@v0.16.0
#: pkg/constants/constants.go:54, 367) and Knative's queue-proxy on 8012 (HTTP/1), 8013 (HTTP/2), 9090 (metrics) in
#: front of the model server (knative/serving@knative-v1.21.1 pkg/networking/constants.go:24, 27, 38).
TRACE_ISVC = "trace-isvc"
#: kubeflow/trainer@v2.1.0: a torch TrainJob's nodes rendezvous at `<trainjob>-node-0-0.<trainjob>:29500`, the JobSet's
#: headless Service named after the TrainJob (pkg/runtime/framework/plugins/torch/torch.go:150-157, 184-185;
#: plugins/jobset/jobset.go:217-226; pkg/constants/constants.go:56).
TRACE_TRAINJOB, TORCH_RENDEZVOUS_PORT, TORCH_RUNTIME = "trace-trainjob", 29500, "torch-distributed"
QUEUE_PROXY_PORTS = {"http": 8012, "http2": 8013, "queue-metrics": 9090}
#: The EKS Pod Identity agent's IPv4 address (docs.aws.amazon.com/eks/latest/userguide/pod-id-agent-setup.html).
POD_IDENTITY_AGENT_ADDRESS = "169.254.170.23"


@dataclass(frozen=True)
class RuntimeMesh:
    """The mesh's shape as the plan records it (transformReport.mesh)."""

    mtls: str = "permissive"
    outbound_traffic_policy: str = "ALLOW_ANY"
    native_sidecars: bool = False
    cluster_local_gateway: str = "program"
    #: identity.mechanism podIdentity (the plan's `identityMechanism` output): AWS-calling pods ask the node's agent.
    pod_identity: bool = False

    @classmethod
    def from_plan(cls, plan: Mapping[str, Any]) -> "RuntimeMesh":
        mesh = ((plan.get("outputs") or {}).get("transformReport") or {}).get("mesh") or {}
        return cls(mtls=str(mesh.get("mtls") or "permissive").lower(),
                   outbound_traffic_policy=str(mesh.get("outboundTrafficPolicy") or "ALLOW_ANY"),
                   native_sidecars=bool(mesh.get("nativeSidecars", False)),
                   cluster_local_gateway=str(mesh.get("clusterLocalGateway") or "program"),
                   pod_identity=(plan.get("outputs") or {}).get("identityMechanism") == "podIdentity")


@dataclass(frozen=True)
class Pod:
    """A run-time pod: who it is to the mesh."""

    role: str
    namespace: str
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    service_account: str = "default"

    def workload(self) -> t.Workload:
        obj = {"kind": "Pod", "metadata": {"name": self.role, "namespace": self.namespace, "annotations": dict(MARKER)}}
        return t.Workload(obj, self.namespace, dict(self.labels), dict(self.annotations), self.service_account, [])

    def caller(self, headers: Mapping[str, str] | None = None) -> t.Caller:
        return t.workload(self.namespace, self.service_account, self.labels, headers, self.role, self.annotations)


@dataclass(frozen=True)
class RuntimePath:
    scenario: str
    label: str
    trace: t.Trace
    #: Why the destination runs no pod in this stack (`standby`: a recovery standby holds the store writers,
    #: manifests.recovery); such a path is shown as held, neither working nor failing.
    held: str = ""

    @property
    def ok(self) -> bool:
        return self.trace.reached and not self.held

    def problem(self) -> str | None:
        if self.ok or self.held:
            return None
        hop = self.trace.refused_at
        where = f" at {hop.step} ({hop.decided_by}: {hop.why})" if hop else ""
        return f"{self.scenario}: {self.label} fails{where}"


# ------------------------------------------------------------------------------------------- the pods


def _profile(model: t.MeshModel) -> str | None:
    profiles = model.profiles()
    return next(iter(profiles), None)


def _template_of(text: str) -> Mapping[str, Any]:
    """The first pod template's metadata in a manifest held as text (Katib's trial templates)."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError:
        return {}
    stack = [document]
    while stack:
        node = stack.pop(0)
        if isinstance(node, dict):
            template = node.get("template")
            if isinstance(template, dict) and isinstance((template.get("spec") or {}).get("containers"), list):
                return template.get("metadata") or {}
            stack += list(node.values())
        elif isinstance(node, list):
            stack += node
    return {}


def kfp_pod(model: t.MeshModel, profile: str, role: str) -> Pod:
    account = model.config_value("DEFAULTPIPELINERUNNERSERVICEACCOUNT") or "pipeline-runner"
    return Pod(role, profile, KFP_POD_LABELS, KFP_POD_ANNOTATIONS, account)


def katib_suggestion_pod(profile: str) -> Pod:
    name = f"{TRACE_EXPERIMENT}-{TRACE_ALGORITHM}"
    labels = {"katib.kubeflow.org/deployment": name, "katib.kubeflow.org/experiment": TRACE_EXPERIMENT,
              "katib.kubeflow.org/suggestion": TRACE_EXPERIMENT, INJECT: "false"}
    return Pod("Katib suggestion and early stopping", profile, labels, {}, name)


def katib_trial_pods(model: t.MeshModel, profile: str) -> list[Pod]:
    """A trial pod per trial template the plan ships (Katib's `trial-templates`), as Katib starts them."""
    config = next((c for c in model.kind("ConfigMap") if t._name(c) == "trial-templates"), None)
    pods = []
    for key, text in sorted(((config or {}).get("data") or {}).items()):
        metadata = _template_of(text) if isinstance(text, str) else {}
        labels = {**(metadata.get("labels") or {}), "katib.kubeflow.org/experiment": TRACE_EXPERIMENT,
                  "katib.kubeflow.org/trial": f"{TRACE_EXPERIMENT}-trial"}
        pods.append(Pod(f"Katib trial ({key}) with its metrics collector", profile, labels, dict(metadata.get("annotations") or {})))
    return pods


def trainer_pods(model: t.MeshModel, profile: str) -> list[Pod]:
    """A pod per replicated Job of every ClusterTrainingRuntime in the plan, as a TrainJob in `profile` gets them."""
    pods = []
    for runtime in model.kind("ClusterTrainingRuntime") + model.kind("TrainingRuntime"):
        for job in ((((runtime.get("spec") or {}).get("template") or {}).get("spec") or {}).get("replicatedJobs") or []):
            metadata = (((job.get("template") or {}).get("spec") or {}).get("template") or {}).get("metadata") or {}
            labels = {**(metadata.get("labels") or {}), "jobset.sigs.k8s.io/replicatedjob-name": str(job.get("name"))}
            pods.append(Pod(f"TrainJob on {t._name(runtime)}: {job.get('name')}", profile, labels,
                            dict(metadata.get("annotations") or {})))
    return pods


def predictor_pod(profile: str) -> Pod:
    labels = {"component": "predictor", "serving.kserve.io/inferenceservice": TRACE_ISVC,
              "serving.knative.dev/service": f"{TRACE_ISVC}-predictor",
              "serving.knative.dev/revision": f"{TRACE_ISVC}-predictor-00001", "app": f"{TRACE_ISVC}-predictor-00001"}
    return Pod("InferenceService predictor (queue-proxy)", profile, labels, {}, "default")


def _plan_pod(model: t.MeshModel, namespace: str, name: str, kind: str = "Deployment") -> Pod | None:
    obj = next((o for o in model.kind(kind) if t._ns(o) == namespace and t._name(o) == name), None)
    if obj is None:
        return None
    template = (obj.get("spec") or {}).get("template") or {}
    metadata, spec = template.get("metadata") or {}, template.get("spec") or {}
    return Pod(f"{kind} {namespace}/{name}", namespace, dict(metadata.get("labels") or {}), dict(metadata.get("annotations") or {}),
               str(spec.get("serviceAccountName") or "default"))


def _cached(model: t.MeshModel, key: str, compute):
    # Read once per model: runtime_objects asks for every profile.
    cache = model.__dict__.setdefault("_runtime_trace_cache", {})
    if key not in cache:
        cache[key] = compute(model)
    return cache[key]


def _serving_domain(model: t.MeshModel) -> str | None:
    return _cached(model, "serving_domain", _read_serving_domain)


def _ingress_gateway(model: t.MeshModel) -> str:
    return _cached(model, "ingress_gateway", _read_ingress_gateway)


def _read_serving_domain(model: t.MeshModel) -> str | None:
    config = next((c for c in model.kind("ConfigMap") if t._name(c) == "config-domain" and t._ns(c) == "knative-serving"), None)
    return next((key for key in ((config or {}).get("data") or {}) if key != "_example"), None)


def _read_ingress_gateway(model: t.MeshModel) -> str:
    config = next((c for c in model.kind("ConfigMap") if t._name(c) == "inferenceservice-config"), None)
    try:
        return str(json.loads(((config or {}).get("data") or {}).get("ingress") or "{}").get("ingressGateway") or "kubeflow/kubeflow-gateway")
    except ValueError:
        return "kubeflow/kubeflow-gateway"


def runtime_objects(model: t.MeshModel, mesh: RuntimeMesh, profile: str | None = None) -> list[dict[str, Any]]:
    """The destinations that exist only at run time in `profile` (the first by default), as their controllers make
    them (marked `(run time)`)."""
    profile = profile or _profile(model)
    if profile is None:
        return []
    added: list[dict[str, Any]] = []

    def serve(pod: Pod, name: str, ports: Mapping[str, int], selector: Mapping[str, str], kind: str = "Deployment",
              service_ports: Mapping[str, tuple[int, int]] | None = None, namespace: str | None = None) -> None:
        namespace = namespace or pod.namespace
        added.append({"apiVersion": "apps/v1", "kind": kind,
                      "metadata": {"name": name, "namespace": namespace, "annotations": dict(MARKER)},
                      "spec": {"selector": {"matchLabels": dict(selector)}, "template": {
                          "metadata": {"labels": dict(pod.labels), "annotations": dict(pod.annotations)},
                          "spec": {"serviceAccountName": pod.service_account, "containers": [{"name": name, "ports": [
                              {"name": port_name, "containerPort": port} for port_name, port in ports.items()]}]}}}})
        added.append({"apiVersion": "v1", "kind": "Service",
                      "metadata": {"name": name, "namespace": namespace, "annotations": dict(MARKER)},
                      "spec": {"selector": dict(selector), "ports": [
                          {"name": port_name, "port": port, "targetPort": target}
                          for port_name, (port, target) in (service_ports or {n: (p, p) for n, p in ports.items()}).items()]}})

    # Katib's suggestion Deployment and Service (suggestion/composer/composer.go:90-171).
    suggestion = katib_suggestion_pod(profile)
    serve(suggestion, f"{TRACE_EXPERIMENT}-{TRACE_ALGORITHM}",
          {"suggestion-api": KATIB_SUGGESTION_PORT, "earlystop-api": KATIB_EARLY_STOPPING_PORT},
          {k: v for k, v in suggestion.labels.items() if k != INJECT})
    # The predictor's revision: Knative's private Service in front of queue-proxy.
    predictor = predictor_pod(profile)
    serve(predictor, f"{TRACE_ISVC}-predictor-00001", QUEUE_PROXY_PORTS,
          {"serving.knative.dev/revision": f"{TRACE_ISVC}-predictor-00001"},
          service_ports={"http": (80, 8012), "http2": (81, 8013), "http-metrics": (9090, 9090)})
    # A torch TrainJob's first node behind the JobSet's headless Service.
    node = next((p for p in trainer_pods(model, profile) if p.role == f"TrainJob on {TORCH_RUNTIME}: node"), None)
    if node is not None:
        selector = {"jobset.sigs.k8s.io/jobset-name": TRACE_TRAINJOB}
        serve(Pod(node.role, profile, {**node.labels, **selector}, node.annotations), f"{TRACE_TRAINJOB}-node-0-0",
              {"rendezvous": TORCH_RENDEZVOUS_PORT}, selector)
        added[-1]["metadata"]["name"] = TRACE_TRAINJOB
    # The mesh owner's cluster-local gateway, expected rather than applied.
    local = next((s for s in model.kind("Service") if t._name(s) == "knative-local-gateway"), None)
    if local is not None and mesh.cluster_local_gateway == "provided":
        selector = dict((local.get("spec") or {}).get("selector") or {})
        pod = Pod("cluster-local gateway (expected)", t._ns(local), {**selector, INJECT: "true"}, {},
                  "cluster-local-gateway-service-account")
        added.append({"apiVersion": "apps/v1", "kind": "Deployment",
                      "metadata": {"name": "cluster-local-gateway", "namespace": t._ns(local),
                                   "annotations": {**MARKER, "kubeflow-platform/expected": "mesh owner"}},
                      "spec": {"selector": {"matchLabels": selector}, "template": {
                          "metadata": {"labels": dict(pod.labels)},
                          "spec": {"serviceAccountName": pod.service_account, "containers": [{"name": "istio-proxy", "ports": [
                              {"containerPort": int(p["targetPort"])} for p in (local.get("spec") or {}).get("ports") or []
                              if str(p.get("targetPort", "")).isdigit()]}]}}}})
    # KServe's VirtualService for the InferenceService's external host (ingress_reconciler.go:527, 546): on the
    # central gateway, to knative-local-gateway with the predictor's cluster-local host (no exportTo).
    domain = _serving_domain(model)
    if domain and local is not None:
        added.append({"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
                      "metadata": {"name": TRACE_ISVC, "namespace": profile, "annotations": dict(MARKER)},
                      "spec": {"hosts": [f"{TRACE_ISVC}-{profile}.{domain}"], "gateways": [_ingress_gateway(model)],
                               "http": [{"headers": {"request": {"set": {"Host": f"{TRACE_ISVC}-predictor.{profile}.svc.cluster.local"}}},
                                         "route": [{"destination": {"host": f"knative-local-gateway.{t._ns(local)}.svc.cluster.local",
                                                                    "port": {"number": 80}}}]}]}})
    return added


# ------------------------------------------------------------------------------------------- the calls


def model_client(model: t.MeshModel, profile: str) -> tuple[t.Caller, str]:
    """Who calls the profile's model from outside: its owner with a bearer token of the first extra issuer that
    names people (`userClaim`), as the serving hosts sit behind the login and the token policy unless
    `auth.openModelEndpoints` takes them out (a browser session is a cookie of the Kubeflow host, not of the
    serving domain). A plan without such an issuer is traced with an anonymous client, which the login refuses
    unless the endpoints are open."""
    owner = model.profiles()[profile]
    issuer = next((i for i in model.settings.issuers if i.user_claim and not i.machine_user), None)
    if issuer is None:
        return t.anonymous(), "client"
    audience = next((str(rule["audiences"][0]) for policy in model.kind("RequestAuthentication")
                     for rule in (policy.get("spec") or {}).get("jwtRules") or []
                     if rule.get("issuer") == issuer.issuer and rule.get("audiences")), "trace")
    payload = {"iss": issuer.issuer, "aud": audience, "sub": "trace-model-client", issuer.user_claim: owner,
               "email_verified": True}
    return t.token_caller(f"{owner} (token of {issuer.issuer})", payload), f"client {owner} with a token of {issuer.issuer}"


def _call(model: t.MeshModel, caller: Pod, host: str, port: int, path: str = "/", method: str = "POST",
          headers: Mapping[str, str] | None = None) -> t.Trace:
    """One in-mesh call, traced as the base trace traces any pod of the plan: a caller without a sidecar sends
    plaintext (no principal)."""
    return t.trace_request(model, f"http://{host}:{port}{path}", caller.caller(headers), method)


def _host_matches(pattern: str, host: str) -> bool:
    return host == pattern or (pattern.startswith("*.") and host.endswith(pattern[1:]))


def egress(model: t.MeshModel, mesh: RuntimeMesh, caller: Pod, host: str, port: int = 443) -> t.Trace:
    """A call to a host outside the mesh: through the caller's sidecar, the mesh's outbound policy decides."""
    trace = t.Trace(f"https://{host}:{port}/", caller.caller())
    sidecar, why = t.caller_has_sidecar(model, trace.caller)
    if not sidecar:
        trace.add("sidecar", caller.role, "-", "info", f"no sidecar ({why}): the pod's traffic leaves without the mesh")
    elif mesh.outbound_traffic_policy != "REGISTRY_ONLY":
        trace.add("egress", caller.role, "-", "pass", f"outboundTrafficPolicy {mesh.outbound_traffic_policy}: unknown hosts pass through")
    else:
        # An entry with addresses is matched by the IP dialled (an IP "host"), its hosts by name.
        entry = next((e for e in model.kind("ServiceEntry")
                      if any(_host_matches(h, host) for h in [*((e.get("spec") or {}).get("hosts") or []),
                                                              *((e.get("spec") or {}).get("addresses") or [])])
                      and any(int(p.get("number", 0)) == port for p in (e.get("spec") or {}).get("ports") or [])
                      and _exported_to(e, caller.namespace)), None)
        if entry is None:
            return trace.refuse("egress", caller.role, "-", f"REGISTRY_ONLY and no ServiceEntry visible in {caller.namespace} "
                                f"names {host}:{port}: BlackHoleCluster (502)", 502)
        trace.add("egress", caller.role, t.ref(entry), "pass", f"ServiceEntry names {host}:{port}")
    trace.reached, trace.backend, trace.status = True, f"{host}:{port}", 200
    trace.add("backend", host, "-", "pass", "outside the mesh")
    return trace


def _exported_to(entry: Mapping[str, Any], namespace: str) -> bool:
    export = (entry.get("spec") or {}).get("exportTo") or ["*"]
    return "*" in export or namespace in export or ("." in export and t._ns(entry) == namespace)


def completes(model: t.MeshModel, mesh: RuntimeMesh, pod: Pod) -> t.Trace:
    """Whether a Job's pod can complete: no sidecar, or a native one (istio/istio@1.24.6
    manifests/charts/istio-control/istio-discovery/files/injection-template.yaml:27, 164-167)."""
    trace = t.Trace(f"job://{pod.namespace}/{pod.role}", pod.caller())
    sidecar, why = t.caller_has_sidecar(model, trace.caller)
    native = pod.annotations.get(NATIVE_SIDECAR)
    if sidecar and native != "true" and not (mesh.native_sidecars and native != "false"):
        return trace.refuse("completion", pod.role, "-", f"a classic istio-proxy is injected ({why}; the mesh has no native "
                            "sidecars and the pod asks for none): it never exits, so the Job never completes", None)
    trace.add("completion", pod.role, "-", "pass", "native sidecar: exits with the pod" if sidecar else f"no sidecar ({why})")
    trace.reached, trace.backend, trace.status = True, "completed", 0
    return trace


def _registry_host(model: t.MeshModel) -> str | None:
    """The registry of the serving runtimes' images, which Knative's controller resolves to digests."""
    for runtime in model.kind("ClusterServingRuntime"):
        for container in (runtime.get("spec") or {}).get("containers") or []:
            image = str(container.get("image") or "")
            first = image.split("/", 1)[0]
            if "/" in image and ("." in first or ":" in first):
                return first
            if image:
                return "index.docker.io"  # Docker Hub's registry for short names (go-containerregistry's default)
    return None


# ------------------------------------------------------------------------------------- Knative's probes

#: What net-istio's prober sends to each gateway pod (knative/networking, the version net-istio pins:
#: pkg/status/status.go:397-407, pkg/http/header/header.go:28, 41-44, 103, pkg/http/constants.go:22).
NET_ISTIO_PROBE_HEADERS = {"K-Network-Probe": "probe", "K-Network-Hash": "override", "User-Agent": "Knative-Ingress-Probe"}
#: The activator's probe of a revision's queue-proxy (knative/serving@knative-v1.21.1
#: pkg/activator/net/revision_backends.go:174-196): `GET /healthz`, `K-Network-Probe: queue`, 200 with body `queue`.
ACTIVATOR_PROBE_HEADERS = {"K-Network-Probe": "queue", "User-Agent": "Knative-Activator-Probe"}
#: Statuses on which net-istio's prober retries (the Ingress waits); any other answer abandons the probe and the
#: Ingress is marked ready, best effort (status.go:461-494). A connection error is retried too.
PROBE_RETRIED = (404, 503)
#: net-istio's defaults when config-istio names no gateway (knative-extensions/net-istio@knative-v1.21.1
#: pkg/reconciler/ingress/config/istio.go:63-80, 309-316).
DEFAULT_GATEWAYS = {"external": ["knative-serving/knative-ingress-gateway"], "local": ["knative-serving/knative-local-gateway"]}


def knative_gateways(model: t.MeshModel) -> dict[str, list[str]]:
    """The external and local gateways (`namespace/name`) net-istio programs, from config-istio as
    NewIstioFromConfigMap reads it (istio.go:166-315): the new format (`external-gateways`, `local-gateways`, YAML
    lists) or the old one (`gateway.<ns>.<name>`, `local-gateway.<ns>.<name>` keys), the defaults for what neither
    names. Only the selector-less (default) gateways are kept: the ones a Service without labels of its own gets."""
    config = next((c for c in model.kind("ConfigMap") if t._name(c) == "config-istio" and t._ns(c) == "knative-serving"), None)
    data = {k: v for k, v in ((config or {}).get("data") or {}).items() if k != "_example"}
    found: dict[str, list[str]] = {"external": [], "local": []}
    if "external-gateways" in data or "local-gateways" in data:
        for kind, key in (("external", "external-gateways"), ("local", "local-gateways")):
            try:
                entries = yaml.safe_load(data.get(key) or "[]") or []
            except yaml.YAMLError:
                entries = []
            found[kind] = [f"{e.get('namespace')}/{e.get('name')}" for e in entries
                           if isinstance(e, dict) and not e.get("labelSelector")]
    else:
        for key in sorted(data):
            for kind, prefix in (("local", "local-gateway."), ("external", "gateway.")):
                if key.startswith(prefix) and key.count(".") >= 2:
                    namespace, name = key[len(prefix):].split(".", 1)
                    found[kind].append(f"{namespace}/{name}")
                    break
    return {kind: gateways or list(DEFAULT_GATEWAYS[kind]) for kind, gateways in found.items()}


def predictor_hosts(model: t.MeshModel, profile: str) -> dict[str, str | None]:
    """The host net-istio probes a gateway with for the predictor's Knative Service, per visibility: the first of
    the Ingress's hosts of that visibility (lister.go:96-101). KServe gives the Knative Service the
    InferenceService's labels and no visibility of its own (kserve/kserve@v0.16.0
    pkg/controller/v1beta1/inferenceservice/reconcilers/knative/ksvc_reconciler.go:166-203), so the route is
    external: `domain-template` of config-network on the serving domain, and cluster-local (`<name>.<namespace>`
    first of the cluster-local names)."""
    name = f"{TRACE_ISVC}-predictor"
    network = next((c for c in model.kind("ConfigMap") if t._name(c) == "config-network" and t._ns(c) == "knative-serving"), None)
    template = str(((network or {}).get("data") or {}).get("domain-template") or "{{.Name}}.{{.Namespace}}.{{.Domain}}")
    domain = _serving_domain(model)
    external = None
    if domain:
        external = template.replace("{{.Name}}", name).replace("{{.Namespace}}", profile).replace("{{.Domain}}", domain)
        if "{{" in external:
            external = None  # a template beyond name, namespace and domain: not rendered here
    return {"external": external, "local": f"{name}.{profile}"}


def _http_listener_on(model: t.MeshModel, port: int) -> Mapping[str, Any] | None:
    """A Service whose port `port` is HTTP by its name or appProtocol (istio/istio@1.28.0
    pkg/config/protocol/instance.go): a sidecar then has an HTTP listener on 0.0.0.0:<port>, whose route
    configuration ends in the catch-all virtual host."""
    for service in model.kind("Service"):
        for entry in (service.get("spec") or {}).get("ports") or []:
            protocol = str(entry.get("appProtocol") or str(entry.get("name") or "").split("-", 1)[0]).lower()
            if entry.get("port") == port and protocol in ("http", "http2", "grpc", "grpc-web"):
                return service
    return None


def _pod_ip_leg(model: t.MeshModel, mesh: RuntimeMesh, trace: t.Trace, caller: Pod, pod_port: int) -> str:
    """The caller's leg of a call to a pod IP with a Host no Service of the mesh carries: `sent`, or the status
    the caller's own sidecar answers (`502`), or `reset`. A sidecar has no route for that Host: its catch-all
    virtual host sends it on through the PassthroughCluster under ALLOW_ANY and answers 502 (`block_all`) under
    REGISTRY_ONLY; with no HTTP listener on the port, REGISTRY_ONLY's BlackHoleCluster drops the connection
    (istio/istio@1.28.0 pilot/pkg/networking/core/httproute.go:773-833, listener_builder.go:236-310)."""
    sidecar, why = t.caller_has_sidecar(model, trace.caller)
    where = f"pod {caller.namespace}"
    if not sidecar:
        trace.add("caller", where, "-", "info", f"{caller.role} has no sidecar ({why}): plaintext straight to the pod")
        return "sent"
    if mesh.outbound_traffic_policy != "REGISTRY_ONLY":
        trace.add("caller", f"sidecar {caller.namespace}", "-", "pass", f"{caller.role} has a sidecar ({why}); no route for "
                  f"the probe's Host, outboundTrafficPolicy {mesh.outbound_traffic_policy}: PassthroughCluster, plaintext to the pod")
        return "sent"
    listener = _http_listener_on(model, pod_port)
    if listener is not None:
        trace.add("caller", f"sidecar {caller.namespace}", t.ref(listener), "info", f"{caller.role} has a sidecar ({why}); "
                  f"REGISTRY_ONLY and an HTTP listener on {pod_port}: the catch-all block_all answers 502")
        return "502"
    trace.refuse("caller", f"sidecar {caller.namespace}", "-", f"{caller.role} has a sidecar ({why}); REGISTRY_ONLY and no "
                 f"HTTP listener on port {pod_port}: BlackHoleCluster drops the connection", None)
    return "reset"


def _probe_verdict(trace: t.Trace, status: int | None, how: str) -> t.Trace:
    """net-istio's verdict on what the probe got back (status.go:461-494)."""
    if status is None or status in PROBE_RETRIED:
        got = "a connection error" if status is None else f"{status}"
        if trace.refused_at is None:
            trace.add("verdict", "net-istio", "-", "refused", f"{got}: retried forever, the Ingress never becomes Ready")
        trace.reached, trace.status = False, status
        return trace
    verdict = "probed: the Ingress is Ready" if status == 200 else \
        f"{status} abandons the probe: the Ingress is marked Ready unprobed (best effort)"
    trace.add("verdict", "net-istio", "-", "pass", f"{how}; {verdict}")
    trace.reached, trace.backend, trace.status = True, f"Ingress ready ({status})", status
    return trace


def _probe_target(model: t.MeshModel, gateway: Mapping[str, Any], server_port: int) -> tuple[str, int]:
    """Whether net-istio finds a probe target in the plan (lister.go:120-196: the first Service whose labels
    carry the Gateway's selector, its port numbered like the server, that port's endpoints), and the pod port
    the probe goes to (the Service's targetPort, else the server's port as the gateway pods listen on it)."""
    selector = (gateway.get("spec") or {}).get("selector") or {}
    labelled = [s for s in model.kind("Service") if selector and t.labels_subset(selector, (s.get("metadata") or {}).get("labels") or {})]
    selecting = [s for s in model.kind("Service") if selector and t.labels_subset((s.get("spec") or {}).get("selector"), selector)]
    for service in labelled + selecting:
        entry = next((p for p in (service.get("spec") or {}).get("ports") or [] if p.get("port") == server_port), None)
        target = (entry or {}).get("targetPort", server_port)
        if entry is not None and service in labelled:
            return f"{t.ref(service)} is labelled {t._format_labels(selector)} and has port {server_port}: probed", \
                int(target) if str(target).isdigit() else server_port
        if entry is not None:
            return (f"no Service in the plan is labelled {t._format_labels(selector)}: net-istio probes only if the "
                    f"mesh's one is; traced as it would go"), int(target) if str(target).isdigit() else server_port
    return (f"no Service in the plan is labelled {t._format_labels(selector)} with port {server_port}: net-istio probes "
            "only if the mesh's one is; traced as it would go"), server_port


def net_istio_probes(model: t.MeshModel, mesh: RuntimeMesh, profile: str) -> list[tuple[str, t.Trace]]:
    """net-istio's readiness probes of the predictor's Ingress: for each gateway that serves one of its
    visibilities, each HTTP(S) server (lister.go:63-106, 140-171), from the net-istio controller to a gateway pod,
    `GET /healthz` with the probe's headers and the Ingress's host. Traced as if net-istio finds the target
    (the mesh owner's gateway Service may carry the selector), the first hop saying whether the plan shows one."""
    controller = _plan_pod(model, "knative-serving", "net-istio-controller")
    if controller is None:
        return []
    hosts = predictor_hosts(model, profile)
    found = []
    for visibility, names in sorted(knative_gateways(model).items()):
        host = hosts[visibility]
        for qualified in names:
            namespace, _, name = qualified.partition("/")
            gateway = next((g for g in model.kind("Gateway") if t._ns(g) == namespace and t._name(g) == name), None)
            label = f"net-istio probe -> {qualified} pods ({visibility} host {host})"
            if gateway is None:
                trace = t.Trace(f"http://{host}/healthz", controller.caller(NET_ISTIO_PROBE_HEADERS))
                found.append((label, trace.refuse("Gateway", "net-istio", "-", f"no Gateway {qualified} in the plan: "
                                                  "net-istio fails to list its probe targets and the Ingress never becomes Ready", None)))
                continue
            if host is None:
                continue
            seen = set()
            for server in (gateway.get("spec") or {}).get("servers") or []:
                port = server.get("port") or {}
                protocol = str(port.get("protocol") or "").upper()
                tls = server.get("tls") or {}
                if protocol in ("HTTP", "HTTP2") and tls.get("httpsRedirect") or protocol == "HTTPS" and tls.get("mode") == "MUTUAL" \
                        or protocol not in ("HTTP", "HTTP2", "HTTPS") or (protocol, port.get("number")) in seen:
                    continue
                seen.add((protocol, port.get("number")))
                scheme = "https" if protocol == "HTTPS" else "http"
                number = int(port.get("number") or 0)
                url = f"{scheme}://{host}{'' if number == {'http': 80, 'https': 443}[scheme] else f':{number}'}/healthz"
                trace = t.Trace(url, controller.caller(NET_ISTIO_PROBE_HEADERS))
                found_target, pod_port = _probe_target(model, gateway, number)
                trace.add("targets", "net-istio", t.ref(gateway), "info", found_target)
                found.append((f"{label} :{pod_port}", _gateway_probe(model, mesh, trace, controller, gateway, url, pod_port)))
    return found


def _gateway_probe(model: t.MeshModel, mesh: RuntimeMesh, trace: t.Trace, controller: Pod, gateway: Mapping[str, Any],
                   url: str, pod_port: int) -> t.Trace:
    leg = _pod_ip_leg(model, mesh, trace, controller, pod_port)
    if leg == "reset":
        return _probe_verdict(trace, None, "")
    if leg == "502":
        return _probe_verdict(trace, 502, "the caller's sidecar answers")
    selector = (gateway.get("spec") or {}).get("selector") or {}
    if t.labels_subset(selector, model.settings.gateway_labels):
        # The central gateway judges the probe as any request without credentials (its login, its policies).
        try:
            judged = t.trace_request(model, url, t.anonymous(NET_ISTIO_PROBE_HEADERS))
        except t.TraceError:
            return _probe_verdict(trace, None, "")
        trace.hops += judged.hops
        return _probe_verdict(trace, judged.status if judged.status is not None else (200 if judged.reached else None),
                              "the central gateway answers")
    namespaces = sorted({t._ns(w) for kind in t.WORKLOAD_KINDS for w in model.kind(kind)})
    pods = [w for namespace in namespaces for w in t.workloads(model, namespace) if t.labels_subset(selector, w.labels)]
    if not selector or not pods:
        trace.add("targets", "net-istio", t.ref(gateway), "pass", "no gateway pods in the plan: no endpoints, so no probe "
                  "target; the Ingress is marked Ready unprobed")
        trace.reached, trace.backend, trace.status = True, "Ingress ready (unprobed)", None
        return trace
    pod = pods[0]
    # A gateway's listener takes the server's protocol whatever PeerAuthentication says (PeerAuthentication shapes a
    # sidecar's inbound listeners only); its own AuthorizationPolicies judge the probe, then Knative's VirtualService
    # routes it as the `cluster-local gateway -> ...` rows trace.
    request = authz.Request(None, pod_port, {k.lower(): v for k, v in NET_ISTIO_PROBE_HEADERS.items()},
                              model.settings.trust_domain, "GET", "/healthz", url.split("/")[2].split(":")[0])
    if not t.authorize(model, trace, pod.ref, pod.namespace, pod.labels, request):
        return _probe_verdict(trace, trace.status or 403, f"{pod.ref} refuses it")
    trace.add("gateway", pod.ref, pod.ref, "pass", f"plaintext HTTP on the server's port {pod_port}; routed by Knative's "
              "VirtualService for the Ingress (the revision's own rows trace that leg)")
    return _probe_verdict(trace, 200, "the gateway routes it")


def paths(model: t.MeshModel, mesh: RuntimeMesh, profile: str | None = None) -> list[RuntimePath]:
    """Every run-time path of the four workloads (and a notebook's SDK call) in `profile` (the first by default), traced."""
    profile = profile or _profile(model)
    if profile is None:
        return []
    found: list[RuntimePath] = []
    held = held_services(model)

    def add(scenario: str, label: str, trace: t.Trace) -> None:
        target = re.search(r"-> (?:\S+ )?([a-z0-9-]+)\.([a-z0-9-]+):\d+", label)
        why = held.get((target.group(2), target.group(1)), "") if target else ""
        found.append(RuntimePath(scenario, label, trace, held=why))

    kubeflow = next((t._ns(s) for s in model.kind("Service") if t._name(s) == "ml-pipeline"), "kubeflow")
    if any(t._name(s) == "ml-pipeline" for s in model.kind("Service")):
        for role in ("driver", "launcher"):
            pod = kfp_pod(model, profile, f"KFP v2 {role} ({profile})")
            for name, port in KFP_CALLS:
                add(KFP, f"{role} -> {name}.{kubeflow}:{port}", _call(model, pod, f"{name}.{kubeflow}", port))
        executor = kfp_pod(model, profile, f"Argo executor/wait ({profile})")
        s3 = next((h for e in model.kind("ServiceEntry") for h in (e.get("spec") or {}).get("hosts") or [] if h.startswith("s3.")), None)
        if s3:
            add(KFP, f"Argo executor -> {s3}", egress(model, mesh, executor, s3))
        api_server = _plan_pod(model, kubeflow, "ml-pipeline")
        if mesh.pod_identity and api_server is not None:
            # Its SDK's credentials come from the node's Pod Identity agent, through its sidecar
            # (docs.aws.amazon.com/eks/latest/userguide/pod-id-agent-setup.html).
            add(KFP, f"API server -> Pod Identity agent {POD_IDENTITY_AGENT_ADDRESS}:80",
                egress(model, mesh, api_server, POD_IDENTITY_AGENT_ADDRESS, 80))
    db_name, db_port = KATIB_DB_MANAGER
    if any(t._name(s) == db_name for s in model.kind("Service")):
        katib_ns = next(t._ns(s) for s in model.kind("Service") if t._name(s) == db_name)
        suggestion = katib_suggestion_pod(profile)
        controller = _plan_pod(model, katib_ns, "katib-controller")
        service = f"{TRACE_EXPERIMENT}-{TRACE_ALGORITHM}.{profile}"
        if controller is not None:
            add(KATIB, f"katib-controller -> suggestion {service}:{KATIB_SUGGESTION_PORT}",
                _call(model, controller, service, KATIB_SUGGESTION_PORT))
        add(KATIB, f"suggestion -> {db_name}.{katib_ns}:{db_port}", _call(model, suggestion, f"{db_name}.{katib_ns}", db_port))
        add(KATIB, f"early stopping -> {db_name}.{katib_ns}:{db_port}", _call(model, suggestion, f"{db_name}.{katib_ns}", db_port))
        for trial in katib_trial_pods(model, profile):
            add(KATIB, f"{trial.role} -> {db_name}.{katib_ns}:{db_port}", _call(model, trial, f"{db_name}.{katib_ns}", db_port))
            add(KATIB, f"{trial.role} -> early stopping {service}:{KATIB_EARLY_STOPPING_PORT}",
                _call(model, trial, service, KATIB_EARLY_STOPPING_PORT))
            add(KATIB, f"{trial.role} completes", completes(model, mesh, trial))
    for pod in trainer_pods(model, profile):
        add(TRAINER, f"{pod.role} completes", completes(model, mesh, pod))
        if pod.role == f"TrainJob on {TORCH_RUNTIME}: node":
            caller = Pod(pod.role, profile, {**pod.labels, "jobset.sigs.k8s.io/jobset-name": TRACE_TRAINJOB}, pod.annotations)
            add(TRAINER, f"{pod.role} -> rendezvous {TRACE_TRAINJOB}.{profile}:{TORCH_RENDEZVOUS_PORT}",
                _call(model, caller, f"{TRACE_TRAINJOB}.{profile}", TORCH_RENDEZVOUS_PORT))
    local = next((s for s in model.kind("Service") if t._name(s) == "knative-local-gateway"), None)
    domain = _serving_domain(model)
    if local is not None and domain:
        url = f"https://{TRACE_ISVC}-{profile}.{domain}/v1/models/{TRACE_ISVC}:predict"
        client, who = model_client(model, profile)
        add(KSERVE, f"{who} -> {url} (central gateway -> knative-local-gateway)", t.trace_request(model, url, client, "POST"))
        gateway = next((Pod("cluster-local gateway", t._ns(w), dict(((w.get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels") or {}),
                            {}, str((((w.get("spec") or {}).get("template") or {}).get("spec") or {}).get("serviceAccountName") or "default"))
                        for w in model.kind("Deployment") if t._ns(w) == t._ns(local)
                        and t.labels_subset((local.get("spec") or {}).get("selector"), ((w.get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels") or {})),
                       None)
        private = f"{TRACE_ISVC}-predictor-00001.{profile}"
        if gateway is not None:
            add(KSERVE, "cluster-local gateway -> activator-service.knative-serving:80", _call(model, gateway, "activator-service.knative-serving", 80))
            add(KSERVE, f"cluster-local gateway -> predictor {private}:80", _call(model, gateway, private, 80))
        activator = _plan_pod(model, "knative-serving", "activator")
        if activator is not None:
            add(KSERVE, f"activator -> predictor {private}:80", _call(model, activator, private, 80))
        autoscaler = _plan_pod(model, "knative-serving", "autoscaler")
        if autoscaler is not None:
            add(KSERVE, f"autoscaler -> predictor {private}:9090/metrics",
                _call(model, autoscaler, private, 9090, "/metrics", "GET"))
        if activator is not None:
            add(KSERVE, f"activator -> queue-proxy probe {private}:80 (8012) /healthz",
                _call(model, activator, private, 80, "/healthz", "GET", ACTIVATOR_PROBE_HEADERS))
        for label, trace in net_istio_probes(model, mesh, profile):
            add(KSERVE, label, trace)
        controller = _plan_pod(model, "knative-serving", "controller")
        registry = _registry_host(model)
        if controller is not None and registry:
            add(KSERVE, f"Knative controller -> {registry} (tag to digest)", egress(model, mesh, controller, registry))
    notebook = next((o for o in model.kind("StatefulSet") if t._name(o) == t.TRACE_NOTEBOOK and t._ns(o) == profile), None)
    if notebook is not None and any(t._name(s) == "ml-pipeline" for s in model.kind("Service")):
        pod = _plan_pod(model, profile, t.TRACE_NOTEBOOK, "StatefulSet")
        add(NOTEBOOK, f"notebook -> ml-pipeline.{kubeflow}:8888 (KFP SDK)", _call(model, pod, f"ml-pipeline.{kubeflow}", 8888, "/apis/v2beta1/runs", "GET"))
    return found


def held_services(model: t.MeshModel) -> dict[tuple[str, str], str]:
    """(namespace, name) of each Service whose every backing Deployment the plan holds at 0 replicas, and why."""
    held = {(t._ns(d), t._name(d)): ((d.get("metadata") or {}).get("annotations") or {}).get(HELD, "")
            for d in model.kind("Deployment") if HELD in ((d.get("metadata") or {}).get("annotations") or {})}
    if not held:
        return {}
    found = {}
    for service in model.kind("Service"):
        selector = (service.get("spec") or {}).get("selector")
        if not selector:
            continue
        backing = [d for d in model.kind("Deployment") if t._ns(d) == t._ns(service) and t.labels_subset(
            selector, (((d.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {})]
        if backing and all((t._ns(d), t._name(d)) in held for d in backing):
            found[(t._ns(service), t._name(service))] = held[(t._ns(backing[0]), t._name(backing[0]))]
    return found


def labelled_profile_namespaces(model: t.MeshModel) -> list[Mapping[str, Any]]:
    """The plan's objects with each profile namespace labelled as the profile controller labels it at run time:
    every label of its labels file (`namespace-labels.yaml`) that the namespace lacks is added, an empty value
    removes the key (kubeflow/kubeflow@v1.10.0 components/profile-controller/controllers/profile_controller.go:754-773).
    Kubeflow's NetworkPolicies admit profile namespaces by one of those labels (`app.kubernetes.io/part-of:
    kubeflow-profile`)."""
    text = next((c["data"]["namespace-labels.yaml"] for c in model.kind("ConfigMap")
                 if isinstance((c.get("data") or {}).get("namespace-labels.yaml"), str)), None)
    try:
        wanted = yaml.safe_load(text) if text else {}
    except yaml.YAMLError:
        wanted = {}
    if not isinstance(wanted, dict) or not wanted:
        return list(model.objects)
    profiles = set(model.profiles())
    result = []
    for obj in model.objects:
        if obj.get("kind") == "Namespace" and t._name(obj) in profiles:
            labels = dict((obj.get("metadata") or {}).get("labels") or {})
            for key, value in wanted.items():
                if value in ("", None):
                    labels.pop(str(key), None)
                else:
                    labels.setdefault(str(key), str(value))
            obj = {**obj, "metadata": {**(obj.get("metadata") or {}), "labels": labels}}
        result.append(obj)
    return result


def model_from_plan(plan: Mapping[str, Any], base: t.MeshModel | None = None) -> tuple[t.MeshModel, RuntimeMesh]:
    """The trace's model of the plan with the run-time objects added (the profile controller's namespace labels,
    the gateway trace's run-time objects, and the pods and Services above, in every profile), and the mesh's shape.
    `base`: the gateway trace's model of the same plan, when the caller has it already."""
    base = base or t.model_from_plan(plan)
    # What alike profiles are found by (analysis/trace_sharing.py), read once for the objects both models share.
    handed_on = {key: base.__dict__.setdefault(key, empty) for key, empty in (("_trace_sharing_readings", [None, {}]),)}
    base = t.MeshModel(labelled_profile_namespaces(base), base.settings)
    mesh = RuntimeMesh.from_plan(plan)
    added: list[dict[str, Any]] = []
    seen: set[tuple[str, str, str]] = set()
    for profile in base.profiles():
        for obj in runtime_objects(base, mesh, profile):
            # What is not the profile's own (the mesh owner's cluster-local gateway) is added once.
            key = (str(obj.get("kind")), t._ns(obj), t._name(obj))
            if key not in seen:
                seen.add(key)
                added.append(obj)
    model = t.MeshModel(base.objects + added, base.settings)
    model.__dict__.update(handed_on)
    return model, mesh


def every_profile(model: t.MeshModel, mesh: RuntimeMesh, *, share: bool | None = None,
                  verdicts: bool = False) -> Mapping[str, list[RuntimePath]]:
    """The run-time paths of every profile, alike profiles traced once (analysis/trace_sharing.py). `verdicts`: each
    path's trace kept as its verdict (Trace.verdict), all that render_every_profile and problems_of_every_profile
    read; the hops of every profile's paths are half a gigabyte at 10,000 profiles."""
    from analysis import trace_sharing

    first = _profile(model)
    return trace_sharing.share(model, lambda profile: paths(model, mesh, profile), alone=[first] if first else [], on=share,
                               keep=_verdicts if verdicts else None)


def _verdicts(found: list[RuntimePath]) -> list[RuntimePath]:
    return [replace(path, trace=path.trace.verdict()) for path in found]


def problems_of_every_profile(found: Mapping[str, Sequence[RuntimePath]]) -> list[str]:
    """The first profile's problems as `problems` words them, then every other profile's, each naming its profile."""
    from analysis import trace_sharing

    first = next(iter(found), None)
    return [problem if profile == first else f"in profile {profile}: {problem}"
            for profile, problems_ in trace_sharing.each(found, problems).items() for problem in problems_]


def render_every_profile(found: Mapping[str, Sequence[RuntimePath]]) -> str:
    """The first profile's table, then the other profiles: how many paths each, and those that fail."""
    from analysis import trace_sharing

    first = next(iter(found), None)
    text = render_table(found[first] if first else [])
    others = [profile for profile in found if profile != first]
    if not others:
        return text
    failing = trace_sharing.each(found, problems)
    bad = {profile: failing[profile] for profile in others if failing[profile]}
    lines = [f"  every other profile ({len(others)}): {sum(trace_sharing.size(found, p) for p in others)} paths traced; "
             + (f"{sum(len(p) for p in bad.values())} fail, in {', '.join(bad)}" if bad else "every one works")]
    return text + "\n".join(lines) + "\n"


def problems(found: Sequence[RuntimePath]) -> list[str]:
    return [p for p in (path.problem() for path in found) if p]


def render_table(found: Sequence[RuntimePath]) -> str:
    if not found:
        return "Run-time paths: no profile in the plan, nothing to trace\n"
    width = max(len(p.label) for p in found)
    lines = ["Run-time paths (pods Kubeflow's controllers create, in the first profile):"]
    for scenario in SCENARIOS:
        rows = [p for p in found if p.scenario == scenario]
        if not rows:
            continue
        lines.append(f"  {scenario}")
        for path in rows:
            hop = path.trace.refused_at
            verdict = f"held: {path.held}" if path.held else "ok" if path.ok else f"!refused@{hop.step if hop else '?'}"
            lines.append(f"    {path.label:<{width}}  " + verdict)
    bad = problems(found)
    held = sum(1 for p in found if p.held)
    lines.append(f"    {len(found)} paths; " + (f"{len(bad)} fail" if bad else "every one works" if not held else
                                                 f"the others work; {held} held (their destination is held at 0 replicas)"))
    return "\n".join(lines) + "\n"
