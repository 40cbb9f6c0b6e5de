"""Kubernetes objects of one Kubeflow profile, as plain dicts (no Pulumi).

A profile's objects are split by when their values are known:

- `static_objects`: everything known at preview: the Namespace itself, what Kubeflow's access management
  (kfam) would create for each contributor, the GPU policy, the quota, the pipelines' artifact repository,
  the serving policies, and (without a data lake) the Profile.
- `role_bound_objects`: with a data lake, the Profile and the pipeline-runner service account, which carry
  the IRSA role's ARN. The ARN of a role that does not exist yet is unknown during a preview; kept in a group
  of their own, it can blank out only that small group, never the namespace's. With EKS Pod Identity they
  name no role, so they join the namespace's group.

Why the Namespace is applied here and not left to the Profile controller: the controller adopts an
existing namespace whose `owner` annotation names the Profile's owner (it then only adds its default
labels, keeping ours). Applying it first means mesh membership, default tolerations and the tolerations
whitelist are in place before any pod of the profile can exist, with no patch racing the controller.
The controller sets `istio-injection: enabled` only on namespaces it creates itself, so a revisioned
mesh (`istio.io/rev`) is joined cleanly, without the injection label that would take precedence.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from manifests.admission import DECLARED_PROFILE_LABEL, POD_ADMISSION_LABEL, POD_ADMISSION_LEVEL

Role = Literal["edit", "view"]

#: The user header Kubeflow's web apps, kfam and the profile controller read (upstream default).
USER_ID_HEADER = "kubeflow-userid"
#: Service accounts a profile's workloads run as: notebooks and (multi-user) pipeline runs use default-editor;
#: pipeline-runner is the runner KFP names, for runs that ask for it.
WORKLOAD_SERVICE_ACCOUNTS = ("default-editor", "pipeline-runner")
#: Knative's queue-proxy ports (http1, h2c): every request to a serverless inference service enters there
#: (knative/serving@knative-v1.16.0 pkg/networking/constants.go:24,27).
QUEUE_PROXY_PORTS = ("8012", "8013")
#: Where Knative's autoscaler scrapes each revision pod's queue-proxy
#: (knative/serving@knative-v1.16.0 pkg/networking/constants.go:38, pkg/autoscaler/metrics/stats_scraper.go:196-199,295).
QUEUE_METRICS_PORT = "9090"
QUEUE_METRICS_PATH = "/metrics"
#: Labels KServe puts on the pods of every InferenceService.
INFERENCE_SERVICE_LABEL = "serving.kserve.io/inferenceservice"
#: KServe labels each component's Knative revision template, hence its pods, `component: <kind>`
#: (kserve/kserve@v0.15.0 pkg/constants/constants.go:321, components/predictor.go:411, transformer.go:124,
#: explainer.go:122; reconcilers/knative/ksvc_reconciler.go:162-177; knative/serving@knative-v1.16.0
#: pkg/reconciler/revision/resources/meta.go:42-55 copies revision labels to pods). An Istio selector takes
#: exact values only, so one policy per component kind.
INFERENCE_COMPONENT_LABEL = "component"
INFERENCE_COMPONENTS = ("predictor", "transformer", "explainer")
QUOTA_NAME = "profile-quota"
#: Where notebook servers (Jupyter, VS Code, RStudio) listen and are routed by the notebook controller.
NOTEBOOK_PORTS = ("8888",)
NOTEBOOK_PATHS = ("/notebook/*",)
# Rank of the roles when one user is a contributor twice (directly and through a group): the stronger wins.
_ROLE_RANK = {"view": 0, "edit": 1}
# kfam replaces every run of characters outside [a-zA-Z0-9] with '-' in binding names.
_UNSAFE = re.compile(r"[^a-zA-Z0-9]+")
_EFFECTS = {"NO_SCHEDULE": "NoSchedule", "NO_EXECUTE": "NoExecute", "PREFER_NO_SCHEDULE": "PreferNoSchedule"}


@dataclass(frozen=True, kw_only=True)
class Taint:
    """A node taint in the EKS API spelling (effect NO_SCHEDULE, ...)."""

    key: str
    value: str = ""
    effect: str = "NO_SCHEDULE"


@dataclass(frozen=True, kw_only=True)
class DataLake:
    """Where a profile's workloads keep their data and pipeline artifacts."""

    bucket: str
    """Resolved bucket name."""
    prefix: str
    """Key prefix, without leading or trailing slash."""
    region: str
    argo_key_format: str
    """Argo's keyFormat below the prefix."""
    kms_key_arn: Optional[str] = None
    """Customer-managed key the bucket encrypts with, if any."""


@dataclass(frozen=True, kw_only=True)
class Contributor:
    """A contributor as configured: a user or a group, with a role."""

    role: Role
    user: Optional[str] = None
    group: Optional[str] = None


@dataclass(frozen=True, kw_only=True)
class ProfileSpec:
    """One profile, with names resolved against the rest of the settings."""

    name: str
    owner: str
    contributors: Mapping[str, Role] = field(default_factory=dict)
    """Users other than the owner and their role, groups already expanded."""
    gpu_taints: tuple[Taint, ...] = ()
    """Taints of the GPU pools the profile may use; empty: no GPU access."""
    gpus: int = 0
    cpu: Optional[str] = None
    memory: Optional[str] = None
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    data_lake: Optional[DataLake] = None


@dataclass(frozen=True, kw_only=True)
class MeshPolicy:
    """Facts of the mesh and the serving stack every profile's policies refer to."""

    revision: Optional[str] = None
    """Istio revision to join; None: the default injection label."""
    pod_security: Optional[str] = None
    """Pod Security level the mesh's data plane needs in profile namespaces (`privileged` for istio-init);
    None leaves the profile controller's labels file to set it."""
    user_id_prefix: str = ""
    trusted_principals: tuple[str, ...]
    """Principals whose kubeflow-userid header is trusted (ingress gateway, pipelines UI)."""
    serving_namespaces: tuple[str, ...]
    """Namespaces whose pods may open connections to inference services."""
    serving_principals: tuple[str, ...]
    """Principals admitted to inference services' queue-proxy ports."""
    identity_header_policy: Optional[Mapping[str, Any]] = None
    """The DENY policy that lets only the gateway and Kubeflow's forwarders send kubeflow-userid
    (manifests/identity.py), built for any namespace; every profile namespace gets it. None: not applied."""
    serving_metrics_principals: tuple[str, ...] = ("cluster.local/ns/knative-serving/sa/controller",)
    """Principals admitted to queue-proxy's metrics (Knative's autoscaler runs as knative-serving/controller)."""
    viewers_read_only: bool = False
    """Keep `view` contributors out of the profile's pods (see contributor_objects)."""
    kubeflow_namespace: str = "kubeflow"
    """Where Kubeflow's platform components run (kubeflow.namespace): the pipelines UI that reads profiles' ConfigMaps."""


def contributor_roles(
    owner: str, contributors: Iterable[Contributor], groups: Mapping[str, Sequence[str]]
) -> dict[str, Role]:
    """Each contributing user once, with the strongest role any entry gives them; the owner is left out
    (the Profile controller makes them admin)."""
    roles: dict[str, Role] = {}
    for contributor in contributors:
        users = [contributor.user] if contributor.user is not None else list(groups.get(contributor.group or "", ()))
        for user in users:
            if user == owner:
                continue
            current = roles.get(user)
            if current is None or _ROLE_RANK[contributor.role] > _ROLE_RANK[current]:
                roles[user] = contributor.role
    return dict(sorted(roles.items()))


#: Prefix of the contributor objects the stack owns, so they never carry the name kfam gives its own.
CONTRIBUTOR_PREFIX = "kubeflow-platform-"


def kfam_binding_name(user: str, role: Role) -> str:
    """The name kfam gives a contributor's RoleBinding and AuthorizationPolicy (user-<email>-clusterrole-<role>:
    kubeflow/kubeflow@v1.10.0 components/access-management/kfam/bindings.go:61-77)."""
    return _UNSAFE.sub("-", f"User-{_UNSAFE.sub('-', user)}-ClusterRole-{role}".lower())


def binding_name(user: str, role: Role) -> str:
    """The name of a stack contributor's RoleBinding and AuthorizationPolicy: kfam's name behind
    `CONTRIBUTOR_PREFIX`.

    One owner per object: the stack owns the contributors of the stack file, kfam (the dashboard's "manage
    contributors") owns the ones added there. kfam creates its objects under its own name, and pulumi-kubernetes
    creates client-side, so a shared name made `pulumi up` fail with AlreadyExists whenever the dashboard had
    added the same contributor first (pulumi/pulumi-kubernetes@v4.32.0 provider/pkg/await/await.go:245-253,
    276-289). With distinct names neither writer ever meets the other's object. The `user` and `role`
    annotations stay, so the dashboard still lists the stack's contributors (kfam lists every RoleBinding
    carrying both, bindings.go:195-231); removing one there fails, because kfam deletes only its own name
    (bindings.go:157-193): it is removed from the stack file.
    """
    return CONTRIBUTOR_PREFIX + kfam_binding_name(user, role)


def contributor_objects(namespace: str, user: str, role: Role, mesh: MeshPolicy) -> list[dict[str, Any]]:
    """What kfam creates when a contributor is added: a RoleBinding to kubeflow-<role> and an
    AuthorizationPolicy admitting the user's kubeflow-userid from the trusted principals.

    kfam writes the same policy for `view` and `edit` (kubeflow/kubeflow@v1.10.0
    components/access-management/kfam/bindings.go:88; kubeflow/kubeflow#6669): a viewer reaches every pod of
    the profile, Jupyter servers included, where code runs as default-editor with the profile's data-lake
    role. With `mesh.viewers_read_only` a viewer's policy leaves out the notebook servers: their port
    (notebook-controller's default 8888) and their gateway path (`/notebook/<ns>/<name>/`), both
    kubeflow/kubeflow@v1.10.0 components/notebook-controller/controllers/notebook_controller.go:50,475.
    """
    name = binding_name(user, role)
    metadata = {"name": name, "namespace": namespace, "annotations": {"user": user, "role": role}}
    rule: dict[str, Any] = {
        "from": [{"source": {"principals": list(mesh.trusted_principals)}}],
        "when": [{"key": f"request.headers[{USER_ID_HEADER}]", "values": [mesh.user_id_prefix + user]}],
    }
    if role == "view" and mesh.viewers_read_only:
        rule["to"] = [{"operation": {"notPorts": list(NOTEBOOK_PORTS), "notPaths": list(NOTEBOOK_PATHS)}}]
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": metadata,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": f"kubeflow-{role}"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
        },
        {
            # kfam writes v1beta1: the same version, so the two writers' policies read alike.
            "apiVersion": "security.istio.io/v1beta1",
            "kind": "AuthorizationPolicy",
            "metadata": _copy(metadata),
            "spec": {"rules": [rule]},
        },
    ]


def default_tolerations(taints: Iterable[Taint]) -> list[dict[str, str]]:
    """Tolerations matching the taints, in the Kubernetes spelling, each once."""
    tolerations: list[dict[str, str]] = []
    for taint in taints:
        toleration = {"key": taint.key, "operator": "Equal", "value": taint.value, "effect": _EFFECTS[taint.effect]}
        if not taint.value:
            # A taint without value is tolerated with Exists; Equal "" would match only an empty value.
            toleration = {"key": taint.key, "operator": "Exists", "effect": _EFFECTS[taint.effect]}
        if toleration not in tolerations:
            tolerations.append(toleration)
    return tolerations


def namespace_object(profile: ProfileSpec, mesh: MeshPolicy) -> dict[str, Any]:
    labels = dict(profile.labels)
    if mesh.revision:
        labels["istio.io/rev"] = mesh.revision
    else:
        labels["istio-injection"] = "enabled"
    if mesh.pod_security:
        labels["pod-security.kubernetes.io/enforce"] = mesh.pod_security
    # Held to baseline by the program's ValidatingAdmissionPolicy whatever the Pod Security label (manifests/admission.py);
    # marked declared, so the self-service policies (which select profile namespaces without the mark) leave it alone.
    labels[POD_ADMISSION_LABEL] = POD_ADMISSION_LEVEL
    labels[DECLARED_PROFILE_LABEL] = "declared"
    annotations = dict(profile.annotations)
    # The Profile controller adopts a namespace only when this names the Profile's owner.
    annotations["owner"] = profile.owner
    # PodTolerationRestriction: the GPU pools' tolerations added to every pod of a GPU profile; any other
    # profile's pods may carry no toleration at all, so they cannot opt onto the GPU nodes.
    if profile.gpu_taints:
        annotations["scheduler.alpha.kubernetes.io/defaultTolerations"] = _compact(default_tolerations(profile.gpu_taints))
    else:
        annotations["scheduler.alpha.kubernetes.io/tolerationsWhitelist"] = "[]"
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": profile.name, "labels": dict(sorted(labels.items())), "annotations": dict(sorted(annotations.items()))},
    }


def quota_object(profile: ProfileSpec) -> dict[str, Any]:
    """The profile's quota. Profiles without GPU access get zero GPUs: the ResourceQuota admission plugin is
    always on (also on EKS, which does not run PodTolerationRestriction), so this gate holds everywhere.

    Not named kf-resource-quota: the Profile controller deletes that one when the Profile has no quota spec."""
    hard = {"requests.nvidia.com/gpu": str(profile.gpus if profile.gpu_taints else 0)}
    if profile.cpu:
        hard["requests.cpu"] = profile.cpu
    if profile.memory:
        hard["requests.memory"] = profile.memory
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": QUOTA_NAME, "namespace": profile.name},
        "spec": {"hard": hard},
    }


def pipeline_root(lake: DataLake) -> str:
    return f"s3://{lake.bucket}/{lake.prefix}"


def kfp_launcher_config_map(namespace: str, lake: DataLake) -> dict[str, Any]:
    """KFP 2.x's launcher reads `kfp-launcher` from the run's namespace: where v2 artifacts go, and how to
    reach S3. `fromEnv` takes the pod's IRSA web identity; the regional endpoint because KFP defaults to
    path-style requests, which the global endpoint redirects for buckets outside us-east-1.

    KFP's own namespace sync creates a `kfp-launcher` only when a cluster-wide defaultPipelineRoot is set;
    the program keeps that empty (manifests.argo), so this one is not fought over, and a profile without a
    data lake gets none: its runs have no pipeline root they could write to (docs/working-kubeflow.md)."""
    providers = {
        "s3": {
            "default": {
                "endpoint": f"s3.{lake.region}.amazonaws.com",
                "region": lake.region,
                "disableSSL": False,
                "credentials": {"fromEnv": True},
            }
        }
    }
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "kfp-launcher", "namespace": namespace},
        "data": {"defaultPipelineRoot": pipeline_root(lake), "providers": json.dumps(providers, sort_keys=True)},
    }


#: The ConfigMap Argo reads a namespace's default artifact repository from (its name is fixed by Argo).
ARTIFACT_REPOSITORIES_CONFIG_MAP = "artifact-repositories"
#: Data key of the repository in `artifact-repositories`: the one the KFP UI reads for a namespace's key
#: format (kubeflow/pipelines@2.5.0 frontend/server/workflow-helper.ts:174-178), and through the annotation
#: Argo's default (argoproj/argo-workflows@v3.5.14 workflow/artifactrepositories/artifactrepositories.go:89-99).
ARTIFACT_REPOSITORY_KEY = "artifact-repositories"
#: The key earlier versions of this program wrote; kept with the same value, because a running workflow
#: resolved its repository to this key and looks it up again.
_PREVIOUS_ARTIFACT_REPOSITORY_KEY = "default-v1"
#: The KFP UI's service account, which reads a namespace's `artifact-repositories` for the archived logs' key.
KFP_UI_SERVICE_ACCOUNT = "ml-pipeline-ui"


def artifact_repository_config_map(namespace: str, lake: DataLake) -> dict[str, Any]:
    """Argo's per-namespace default artifact repository (logs and v1 artifacts of the namespace's workflows),
    under the profile's prefix, with the SDK's credential chain, i.e. the pod's IRSA role."""
    repository = {
        "archiveLogs": True,
        "s3": {
            "bucket": lake.bucket,
            "endpoint": "s3.amazonaws.com",
            "region": lake.region,
            "insecure": False,
            "keyFormat": f"{lake.prefix}/{lake.argo_key_format}",
            "useSDKCreds": True,
        },
    }
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": ARTIFACT_REPOSITORIES_CONFIG_MAP,
            "namespace": namespace,
            "annotations": {"workflows.argoproj.io/default-artifact-repository": ARTIFACT_REPOSITORY_KEY},
        },
        "data": {key: json.dumps(repository, sort_keys=True) for key in (ARTIFACT_REPOSITORY_KEY, _PREVIOUS_ARTIFACT_REPOSITORY_KEY)},
    }


def artifact_repository_reader_objects(namespace: str, kubeflow_namespace: str = "kubeflow") -> list[dict[str, Any]]:
    """Lets the KFP UI read this namespace's `artifact-repositories` (only that ConfigMap): upstream's
    ml-pipeline-ui ClusterRole grants no ConfigMaps, and without the read the UI falls back to the
    cluster-wide key format, which misses the profile's prefix."""
    namespace_of_ui, account = kubeflow_namespace, KFP_UI_SERVICE_ACCOUNT
    name = "ml-pipeline-ui-artifact-repositories"
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": name, "namespace": namespace},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [ARTIFACT_REPOSITORIES_CONFIG_MAP], "verbs": ["get"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace_of_ui}],
        },
    ]


def serving_network_policy(namespace: str, mesh: MeshPolicy) -> dict[str, Any]:
    """Lets the serving system (Knative, KServe, the gateways' namespace) connect to inference services when
    the namespace is otherwise closed by a default-deny NetworkPolicy. It selects only inference-service pods
    (selecting all pods would cut notebooks off from the kubeflow namespace), opens only queue-proxy's serving
    and metrics ports to those namespaces, and keeps same-namespace callers."""
    ports = [{"protocol": "TCP", "port": int(port)} for port in (*QUEUE_PROXY_PORTS, QUEUE_METRICS_PORT)]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "allow-serving-system", "namespace": namespace},
        "spec": {
            "podSelector": {"matchExpressions": [{"key": INFERENCE_SERVICE_LABEL, "operator": "Exists"}]},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": [{"podSelector": {}}]},
                {
                    "from": [
                        {
                            "namespaceSelector": {
                                "matchExpressions": [
                                    {
                                        "key": "kubernetes.io/metadata.name",
                                        "operator": "In",
                                        "values": sorted(set(mesh.serving_namespaces)),
                                    }
                                ]
                            }
                        },
                    ],
                    "ports": ports,
                },
            ],
        },
    }


def serving_authorization_policies(namespace: str, mesh: MeshPolicy) -> list[dict[str, Any]]:
    """Admit Knative's activator (it proxies requests while a service scales from zero) and the cluster-local
    gateway to the queue-proxy ports, and the autoscaler to queue-proxy's metrics, of inference-service pods
    only: notebooks and other workloads stay reachable just by their owner and contributors. Users reach
    models through the ingress gateway under the kfam policies.

    Both proxies forward whoever called them, so any workload of the mesh that can call the activator or the
    cluster-local gateway reaches the profile's models through them: that is Knative's design (the activator
    re-originates the call under its own identity), kept to the inference pods and ports here.
    """
    rules = [
        {
            "from": [{"source": {"principals": list(mesh.serving_principals)}}],
            "to": [{"operation": {"ports": list(QUEUE_PROXY_PORTS)}}],
        }
    ]
    if mesh.serving_metrics_principals:
        rules.append(
            {
                "from": [{"source": {"principals": list(mesh.serving_metrics_principals)}}],
                "to": [{"operation": {"ports": [QUEUE_METRICS_PORT], "methods": ["GET"], "paths": [QUEUE_METRICS_PATH]}}],
            }
        )
    return [
        {
            "apiVersion": "security.istio.io/v1beta1",
            "kind": "AuthorizationPolicy",
            "metadata": {"name": f"allow-serving-system-{component}", "namespace": namespace},
            "spec": {
                "selector": {"matchLabels": {INFERENCE_COMPONENT_LABEL: component}},
                "action": "ALLOW",
                "rules": rules,
            },
        }
        for component in INFERENCE_COMPONENTS
    ]


def identity_header_policy(namespace: str, mesh: MeshPolicy) -> Optional[dict[str, Any]]:
    """The identity-header DENY policy in a profile namespace: only the gateway and Kubeflow's forwarders
    may send kubeflow-userid to the profile's workloads (notebooks get it from the gateway, the pipelines
    UI passes it to the profile's ml-pipeline-ui-artifact).

    One hop more than in `kubeflow`: the serving system relays the gateway's request, header included, to
    an inference service (Knative's activator while it scales from zero, the cluster-local gateway), so
    those principals may send it, on the queue-proxy ports only, where `serving_authorization_policy`
    already admits them.
    """
    template = mesh.identity_header_policy
    if template is None:
        return None
    # A JSON round trip copies the template's plain data as deepcopy would, in C (five times per profile).
    policy = json.loads(json.dumps(template))
    policy["metadata"] = {**policy.get("metadata", {}), "namespace": namespace}
    relays = list(mesh.serving_principals)
    if not relays:
        return policy
    rules = []
    for rule in policy["spec"]["rules"]:
        sources = rule.get("from") or []
        if len(sources) != 1 or set(sources[0].get("source") or {}) != {"notPrincipals"}:
            raise ValueError(f"identity header policy rule {rule!r} is not `from notPrincipals` as manifests/identity.py builds it")
        trusted = sources[0]["source"]["notPrincipals"]
        rules.append({**rule, "from": [{"source": {"notPrincipals": [*trusted, *relays]}}]})
        rules.append({**json.loads(json.dumps(rule)), "from": [{"source": {"principals": relays}}],
                      "to": [{"operation": {"notPorts": list(QUEUE_PROXY_PORTS)}}]})
    policy["spec"]["rules"] = rules
    return policy


#: The namespace-wide ALLOW policy without rules that stays with a profile's retained namespace.
CLOSED_WHEN_REMOVED_POLICY = "kubeflow-closed-when-profile-removed"


def closed_when_removed_policy(namespace: str) -> dict[str, Any]:
    """An ALLOW policy without rules for the whole namespace: it allows nothing, so it changes nothing while the
    profile's own ALLOW policies are there (Istio allows what any ALLOW policy allows), and refuses everything
    once they are gone.

    Why: removing a profile from the stack keeps its namespace (and its notebooks, models, volumes) but deletes
    its policies, the program's by Pulumi and the profile controller's `ns-owner-access-istio` by garbage
    collection; with no ALLOW policy left "If there are no ALLOW policies for the workload, allow the request"
    (https://istio.io/v1.24/docs/reference/config/security/authorization-policy/), so every user and every
    mesh workload would reach them. Registered on its own and retained on delete, it outlives the profile.
    """
    return {
        "apiVersion": "security.istio.io/v1beta1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": CLOSED_WHEN_REMOVED_POLICY, "namespace": namespace},
        "spec": {"action": "ALLOW"},
    }


PIPELINES_ENDPOINT_POD_DEFAULT = "kubeflow-pipelines-endpoint"


def pipelines_endpoint_pod_default(namespace: str, kubeflow_namespace: str) -> dict[str, Any]:
    """The KFP SDK's address for notebooks when Kubeflow is not in `kubeflow`: in a pod, `kfp.Client()` dials
    `ml-pipeline.<namespace argument, default kubeflow>.svc.cluster.local:8888` unless `KF_PIPELINES_ENDPOINT`
    is set (kubeflow/pipelines@sdk-2.16.0 sdk/python/kfp/client/client.py:54, 131, 146, 164, 309; notebook
    images ship kfp 2.11.0, the same lines). A PodDefault a notebook opts into in the spawner, which labels
    the pod `<label>: "true"` for each chosen configuration (kubeflow/kubeflow@v1.10.0
    components/crud-web-apps/jupyter/backend/apps/common/form.py:253-261) and the webhook matches the selector
    against those labels (components/admission-webhook/main.go:76-82)."""
    return {
        "apiVersion": "kubeflow.org/v1alpha1",
        "kind": "PodDefault",
        "metadata": {"name": PIPELINES_ENDPOINT_POD_DEFAULT, "namespace": namespace},
        "spec": {
            "desc": f"Kubeflow Pipelines SDK: ml-pipeline.{kubeflow_namespace} (KF_PIPELINES_ENDPOINT)",
            "selector": {"matchLabels": {PIPELINES_ENDPOINT_POD_DEFAULT: "true"}},
            "env": [{"name": "KF_PIPELINES_ENDPOINT",
                     "value": f"http://ml-pipeline.{kubeflow_namespace}.svc.cluster.local:8888"}],
        },
    }


def namespace_objects(profile: ProfileSpec, mesh: MeshPolicy) -> list[dict[str, Any]]:
    """Every object of the profile known before deployment, in a stable order."""
    objects = [namespace_object(profile, mesh), quota_object(profile)]
    for user, role in profile.contributors.items():
        objects += contributor_objects(profile.name, user, role, mesh)
    if profile.data_lake is not None:
        objects += [
            kfp_launcher_config_map(profile.name, profile.data_lake),
            artifact_repository_config_map(profile.name, profile.data_lake),
            *artifact_repository_reader_objects(profile.name, mesh.kubeflow_namespace),
        ]
    if mesh.kubeflow_namespace != "kubeflow":
        # The SDK's default already names `kubeflow`; elsewhere notebooks need the address.
        objects.append(pipelines_endpoint_pod_default(profile.name, mesh.kubeflow_namespace))
    objects += [serving_network_policy(profile.name, mesh), *serving_authorization_policies(profile.name, mesh)]
    header_policy = identity_header_policy(profile.name, mesh)
    if header_policy is not None:
        objects.append(header_policy)
    return objects


def profile_object(profile: ProfileSpec, role_arn: Optional[str] = None) -> dict[str, Any]:
    """The Profile. With a data lake, the AwsIamForServiceAccount plugin annotates default-editor with the
    role; `annotateOnly` keeps the controller from rewriting the role's trust policy, which this program
    owns (the controller would otherwise need IAM write access and would fight every `pulumi up`)."""
    spec: dict[str, Any] = {"owner": {"kind": "User", "name": profile.owner}}
    if role_arn is not None:
        spec["plugins"] = [{"kind": "AwsIamForServiceAccount", "spec": {"awsIamRole": role_arn, "annotateOnly": True}}]
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "Profile",
        "metadata": {"name": profile.name},
        "spec": spec,
    }


def pipeline_runner_objects(namespace: str, role_arn: Optional[str]) -> list[dict[str, Any]]:
    """The pipeline-runner service account, annotated with the profile's role directly (the plugin annotates
    only default-editor), with the same rights as default-editor so Argo's executor can report results.
    Without a role ARN (EKS Pod Identity: an association names the account) it carries no annotation."""
    metadata: dict[str, Any] = {"name": "pipeline-runner", "namespace": namespace}
    if role_arn is not None:
        metadata["annotations"] = {"eks.amazonaws.com/role-arn": role_arn}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "pipeline-runner", "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "kubeflow-edit"},
            "subjects": [{"kind": "ServiceAccount", "name": "pipeline-runner", "namespace": namespace}],
        },
    ]


def static_objects(profile: ProfileSpec, mesh: MeshPolicy) -> list[dict[str, Any]]:
    """Everything of the profile known before deployment: its namespace's objects and, for a profile without
    a data lake, the Profile itself, ordered after its Namespace inside the same group."""
    objects = namespace_objects(profile, mesh)
    if profile.data_lake is None:
        profile_ = profile_object(profile)
        # yaml/v2 orders Namespaces before namespaced objects, not before a cluster-scoped Profile.
        profile_["metadata"]["annotations"] = {"config.kubernetes.io/depends-on": f"/Namespace/{profile.name}"}
        objects.append(profile_)
    return objects


def role_bound_objects(profile: ProfileSpec, role_arn: Optional[str]) -> list[dict[str, Any]]:
    """What carries the role ARN of a profile with a data lake: the Profile with its plugin and the
    pipeline-runner service account. With no ARN (EKS Pod Identity) neither names the role: the Profile has
    no AwsIamForServiceAccount plugin, whose only effect is the IRSA annotation, and the associations serve
    the role to default-editor and pipeline-runner."""
    if profile.data_lake is None:
        raise ValueError(f"profile {profile.name!r} has no data lake, so no role")
    return [profile_object(profile, role_arn), *pipeline_runner_objects(profile.name, role_arn)]


def manifest(objects: Iterable[dict[str, Any]]) -> str:
    """The objects as one YAML stream of JSON documents (JSON is YAML, and quoting every string keeps
    values like "0" or "true" strings). One string per ConfigGroup: the Python SDK serializes and
    deserializes an `objs` list leaf by leaf, which for thousands of profiles costs more than everything else."""
    return "\n---\n".join(json.dumps(obj, sort_keys=True) for obj in objects) + "\n"


def parse_manifest(text: str) -> list[dict[str, Any]]:
    """The objects of a `manifest` stream."""
    return [json.loads(document) for document in text.split("\n---\n") if document.strip()]


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _copy(metadata: dict[str, Any]) -> dict[str, Any]:
    # Each object gets its own dicts: a consumer editing one must not edit its sibling.
    return {**metadata, "annotations": dict(metadata["annotations"])}
