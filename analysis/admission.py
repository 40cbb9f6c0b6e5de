"""ValidatingAdmissionPolicies of a plan, evaluated offline as the API server would, with a real CEL evaluator.

`evaluate(policy, obj)` runs a policy's `variables` and `validations` with cel-python (the CEL standard; the
policies the program writes use nothing else, see manifests/admission.py) over an object, as
admissionregistration.k8s.io/v1 defines it: the object is `object`, the request `request`, each variable
`variables.<name>`; every validation must be true; one that errors counts as a refusal (`failurePolicy: Fail`).
`bindings_for(objects, namespace_labels)` says which bindings select a namespace.

`injected(pod, data_plane)` is the pod after Istio's injector, in the shapes its template writes
(istio/istio@1.24.6 and @1.28.0 manifests/charts/istio-control/istio-discovery/files/injection-template.yaml),
and `HOSTILE_PODS` the pods a tenant must not start. The preview and the tests use both.

Pure Python; no Pulumi.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import importlib.metadata
import json
import os
import re
import sys
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analysis.trace import label_selector_matches
from manifests.admission import ISTIO_INIT, ISTIO_PROXY, POD_POLICY
from manifests.release import cache_root
from manifests.objects import object_ref, pod_template

PROXY_IMAGE = "registry.example.com/istio/proxyv2:1.24.6"
_PROGRAMS: dict[str, Any] = {}
#: The cel-python release whose parser options `_cel_parser` repeats (celpy/celparser.py, CELParser.__init__).
CEL_PYTHON_VERSION = "0.5.0"


def _cel_parser_cache() -> Path | None:
    """Where lark keeps the CEL grammar's analysis between runs: the user's cache for this project, or None."""
    try:
        directory = cache_root() / "cel"
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    if not os.access(directory, os.W_OK):
        return None
    return directory / f"cel-python-{CEL_PYTHON_VERSION}-lark-{_installed('lark')}.cache"


def _cel_parser() -> None:
    """cel-python's one CEL parser (CELParser.CEL_PARSER), built as cel-python 0.5.0 builds it but with lark's
    grammar cache (lark's `cache` option: the LALR tables are analysed once, then loaded: 0.2 s -> 0.02 s, about a
    tenth of the dev stack's preview). Another cel-python release builds its own, as it would without us. The cache
    is lark's (a pickle, checked against the grammar's and options' hash) in the user's own cache directory, as
    trusted as the project's bytecode."""
    import celpy.celparser
    import lark
    from celpy.celparser import CELParser

    if CELParser.CEL_PARSER is not None:
        return
    cache = _cel_parser_cache() if _installed("cel-python") == CEL_PYTHON_VERSION else None
    if cache is None:
        return
    # cel-python 0.5.0 celpy/celparser.py:107-121: the grammar file beside it and these options; `cache` added.
    CELParser.CEL_PARSER = lark.Lark(
        (Path(celpy.celparser.__file__).parent / "cel.lark").read_text(),
        parser="lalr", start="expr", debug=True, g_regex_flags=re.M,
        lexer_callbacks={"IDENT": CELParser.ambiguous_literals}, propagate_positions=True,
        maybe_placeholders=False, priority="invert", tree_class=lark.Tree, cache=str(cache),
    )


@functools.lru_cache(maxsize=None)
def _environment() -> celpy.Environment:
    # The interpreted runner: cel-python 0.5.0's compiled runner does not short-circuit `||` over an error
    # (`!has(x) || x.y` fails when x is absent), which the API server's CEL does.
    import celpy

    _cel_parser()
    return celpy.Environment()


def _program(expression: str):
    program = _PROGRAMS.get(expression)
    if program is None:
        environment = _environment()
        program = _PROGRAMS[expression] = environment.program(environment.compile(expression))
    return program


def _truth(expression: str, activation: Mapping[str, Any]) -> tuple[bool, str | None]:
    import celpy

    try:
        value = _program(expression).evaluate(dict(activation))
    except Exception as error:  # noqa: BLE001 - celpy raises its own and Python errors alike
        return False, f"evaluation error: {error}"[:300]
    if isinstance(value, celpy.CELEvalError):
        return False, f"evaluation error: {value.args[0] if value.args else value}"[:300]
    return bool(value), None


@dataclass(frozen=True)
class Verdict:
    admitted: bool
    refusals: tuple[str, ...]


def evaluate(policy: Mapping[str, Any], obj: Mapping[str, Any], *, operation: str = "CREATE",
             user: str = "kubernetes-admin", old: Mapping[str, Any] | None = None, sub_resource: str = "",
             first_refusal: bool = False) -> Verdict:
    """`policy`'s verdict on `obj` (matchConditions first: a request they exclude is admitted). `first_refusal`:
    stop at the first validation that refuses, for a caller that reads only whether the pod is admitted (the
    verdict then names that one refusal); the API server evaluates them all to list every message."""
    import celpy
    import celpy.celtypes

    spec = policy.get("spec") or {}
    activation: dict[str, Any] = {
        "object": celpy.json_to_cel(copy.deepcopy(dict(obj))),
        "oldObject": celpy.json_to_cel(copy.deepcopy(dict(old))) if old is not None else None,
        "request": celpy.json_to_cel({"operation": operation, "subResource": sub_resource, "userInfo": {"username": user}}),
    }
    variables: dict[str, Any] = {}
    for variable in spec.get("variables") or []:
        try:
            variables[variable["name"]] = _program(variable["expression"]).evaluate({**activation, "variables": celpy.json_to_cel({})})
        except Exception as error:  # noqa: BLE001
            return Verdict(False, (f"variable {variable['name']}: {error}",))
    activation["variables"] = celpy.celtypes.MapType({celpy.celtypes.StringType(k): v for k, v in variables.items()})
    for condition in spec.get("matchConditions") or []:
        matched, error = _truth(condition["expression"], activation)
        if error:
            return Verdict(False, (f"matchCondition {condition.get('name')}: {error}",))
        if not matched:
            return Verdict(True, ())
    refusals = []
    for validation in spec.get("validations") or []:
        holds, error = _truth(validation["expression"], activation)
        if not holds:
            refusals.append(validation.get("message") or validation["expression"] if error is None else f"{validation.get('message')}: {error}")
            if first_refusal:
                break
    return Verdict(not refusals, tuple(refusals))


_EVALUATOR: list[bytes] = []


def _installed(distribution: str) -> str:
    """The installed version of a distribution (cel-python has no `__version__`), or "" when not found."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return ""


def _evaluator() -> bytes:
    """What a verdict depends on besides the policy and the pod: this module's code (the activation, the
    runner), cel-python's and lark's versions, Python's."""
    if not _EVALUATOR:
        digest = hashlib.sha256(Path(__file__).read_bytes())
        for part in (_installed("cel-python"), _installed("lark"), sys.version):
            digest.update(b"\0" + str(part).encode())
        _EVALUATOR.append(digest.digest())
    return _EVALUATOR[0]


def verdict_key(policy: Mapping[str, Any], obj: Mapping[str, Any], first_refusal: bool = False) -> str:
    """The content key of `evaluate(policy, obj, first_refusal=...)` (a CREATE by the default user): the sha256 of
    the policy's expressions and messages, the object and the evaluator. Equal keys, equal verdicts."""
    spec = policy.get("spec") or {}
    read = [spec.get("variables"), spec.get("matchConditions"), spec.get("validations"), obj, first_refusal]
    digest = hashlib.sha256(_evaluator())
    digest.update(json.dumps(read, sort_keys=True, separators=(",", ":")).encode())
    return digest.hexdigest()


def evaluate_once(policy: Mapping[str, Any], obj: Mapping[str, Any], verdicts: MutableMapping[str, Verdict] | None,
                  first_refusal: bool = False) -> Verdict:
    """`evaluate(policy, obj)`, read from `verdicts` (by `verdict_key`) when an equal policy already judged an equal
    object, and kept there otherwise. None: always evaluated."""
    if verdicts is None:
        return evaluate(policy, obj, first_refusal=first_refusal)
    key = verdict_key(policy, obj, first_refusal)
    verdict = verdicts.get(key)
    if verdict is None:
        verdict = verdicts[key] = evaluate(policy, obj, first_refusal=first_refusal)
    return verdict


def policies(objects: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o.get("kind") == "ValidatingAdmissionPolicy"}


def bindings_for(objects: Iterable[Mapping[str, Any]], namespace_labels: Mapping[str, str]) -> list[Mapping[str, Any]]:
    """The bindings whose namespaceSelector selects a namespace with these labels."""
    found = []
    for obj in objects:
        if obj.get("kind") != "ValidatingAdmissionPolicyBinding":
            continue
        selector = (((obj.get("spec") or {}).get("matchResources") or {}).get("namespaceSelector")) or {}
        if label_selector_matches(selector, namespace_labels):
            found.append(obj)
    return found


def pod_policy_holds(objects: Sequence[Mapping[str, Any]], namespace_labels: Mapping[str, str]) -> Mapping[str, Any] | None:
    """The program's pod policy, when one of its bindings selects the namespace and denies; None otherwise."""
    found = policies(objects)
    for binding in bindings_for(objects, namespace_labels):
        spec = binding.get("spec") or {}
        if spec.get("policyName") == POD_POLICY and "Deny" in (spec.get("validationActions") or []) and POD_POLICY in found:
            return found[POD_POLICY]
    return None


# ------------------------------------------------------------------------------------------ injection

def _istio_init(cni: bool) -> dict[str, Any]:
    # 1.24.6 injection-template.yaml:73-162, 1.28.0 :82-181: istio-validation with the CNI, istio-init without.
    security: dict[str, Any] = {"allowPrivilegeEscalation": False, "privileged": False,
                                "capabilities": {"drop": ["ALL"]}}
    if cni:
        security.update(readOnlyRootFilesystem=True, runAsGroup=1337, runAsUser=1337, runAsNonRoot=True)
    else:
        security["capabilities"]["add"] = ["NET_ADMIN", "NET_RAW"]
        security.update(readOnlyRootFilesystem=False, runAsGroup=0, runAsNonRoot=False, runAsUser=0)
    return {"name": "istio-validation" if cni else ISTIO_INIT, "image": PROXY_IMAGE,
            "args": ["istio-iptables", "-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT", "-i", "*", "-x", "",
                     "-b", "*", "-d", "15090,15021,15020", "--log_output_level=default:info"]
            + (["--run-validation", "--skip-rule-apply"] if cni else []),
            "securityContext": security}


def _istio_proxy(native: bool) -> dict[str, Any]:
    # 1.24.6 injection-template.yaml:167-386 (1.28.0 :187-405), the default branch: no capability, uid 1337.
    proxy = {"name": ISTIO_PROXY, "image": PROXY_IMAGE, "args": ["proxy", "sidecar"],
             "ports": [{"containerPort": 15090, "protocol": "TCP", "name": "http-envoy-prom"}],
             "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "privileged": False,
                                 "readOnlyRootFilesystem": True, "runAsGroup": 1337, "runAsNonRoot": True, "runAsUser": 1337},
             "volumeMounts": [{"name": "istio-envoy", "mountPath": "/etc/istio/proxy"}]}
    if native:
        proxy["restartPolicy"] = "Always"
    return proxy


_ISTIO_VOLUMES = [
    {"name": "workload-socket", "emptyDir": {}}, {"name": "credential-socket", "emptyDir": {}},
    {"name": "workload-certs", "emptyDir": {}}, {"name": "istio-envoy", "emptyDir": {"medium": "Memory"}},
    {"name": "istio-data", "emptyDir": {}},
    {"name": "istio-podinfo", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
    {"name": "istio-token", "projected": {"sources": [{"serviceAccountToken": {"path": "istio-token", "expirationSeconds": 43200, "audience": "istio-ca"}}]}},
    {"name": "istiod-ca-cert", "configMap": {"name": "istio-ca-root-cert"}},
]


def injected(pod: Mapping[str, Any], data_plane: str, native: bool = False) -> dict[str, Any]:
    """`pod` as it reaches the validating admission policies once Istio's injector has run (sidecar data planes);
    ambient injects nothing. A pod that opts out (`sidecar.istio.io/inject: "false"`) is left as it is."""
    result = copy.deepcopy(dict(pod))
    metadata = result.setdefault("metadata", {})
    opted_out = "false" in ((metadata.get("annotations") or {}).get("sidecar.istio.io/inject"),
                            (metadata.get("labels") or {}).get("sidecar.istio.io/inject"))
    if data_plane == "ambient" or opted_out:
        return result
    spec = result.setdefault("spec", {})
    init = [_istio_init(data_plane == "sidecar-cni")] + ([_istio_proxy(True)] if native else [])
    spec["initContainers"] = init + list(spec.get("initContainers") or [])
    if not native:
        spec["containers"] = list(spec.get("containers") or []) + [_istio_proxy(False)]
    spec["volumes"] = list(spec.get("volumes") or []) + copy.deepcopy(_ISTIO_VOLUMES)
    return result


def pod_of(template: Mapping[str, Any], namespace: str, name: str = "pod") -> dict[str, Any]:
    """A Pod from a workload's pod template."""
    metadata = copy.deepcopy(dict(template.get("metadata") or {}))
    metadata.update(name=name, namespace=namespace)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": copy.deepcopy(dict(template.get("spec") or {}))}


def _notebook(namespace: str, **container: Any) -> dict[str, Any]:
    spec = {"name": "notebook", "image": "registry.example.com/kubeflow/jupyter-scipy:v1.10.0", **container}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "notebook-0", "namespace": namespace}, "spec": {"containers": [spec]}}


def _with(pod: dict[str, Any], **spec: Any) -> dict[str, Any]:
    pod["spec"].update(spec)
    return pod


def tenant_pod(namespace: str) -> dict[str, Any]:
    """A notebook as the notebook controller starts it: what a tenant's ordinary pod looks like."""
    return _notebook(namespace, ports=[{"containerPort": 8888, "name": "notebook-port"}],
                     resources={"requests": {"cpu": "500m", "memory": "1Gi"}})


def hostile_pods(namespace: str, data_plane: str) -> dict[str, dict[str, Any]]:
    """Pods a tenant (kubeflow-edit creates pods) must not start, each after the injector ran (the webhook does
    not tell a tenant's pod from Kubeflow's)."""
    def bare(**container: Any) -> dict[str, Any]:
        return _notebook(namespace, **container)

    caps = {"securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}
    pods = {
        "privileged container": bare(securityContext={"privileged": True}),
        "hostPath volume": _with(bare(volumeMounts=[{"name": "root", "mountPath": "/host"}]),
                                 volumes=[{"name": "root", "hostPath": {"path": "/"}}]),
        "hostNetwork": _with(bare(), hostNetwork=True),
        "hostPID": _with(bare(), hostPID=True),
        "hostIPC": _with(bare(), hostIPC=True),
        "hostPort": bare(ports=[{"containerPort": 80, "hostPort": 80}]),
        "SYS_ADMIN added": bare(**caps),
        "NET_ADMIN on the tenant's container": bare(securityContext={"capabilities": {"add": ["NET_ADMIN", "NET_RAW"]}}),
        "unconfined seccomp": bare(securityContext={"seccompProfile": {"type": "Unconfined"}}),
        "unsafe sysctl": _with(bare(), securityContext={"sysctls": [{"name": "kernel.msgmax", "value": "1"}]}),
        "Unmasked /proc": bare(securityContext={"procMount": "Unmasked"}),
        "SELinux spc_t": bare(securityContext={"seLinuxOptions": {"type": "spc_t"}}),
        "AppArmor unconfined": _with(bare(), securityContext={"appArmorProfile": {"type": "Unconfined"}}),
        "Windows hostProcess": bare(securityContext={"windowsOptions": {"hostProcess": True}}),
    }
    fake_init = {"name": ISTIO_INIT, "image": PROXY_IMAGE, "args": ["istio-iptables"],
                 "securityContext": {"capabilities": {"add": ["NET_ADMIN", "NET_RAW", "SYS_ADMIN"]}}}
    pods["an istio-init with SYS_ADMIN besides NET_ADMIN"] = _with(bare(), initContainers=[fake_init])
    pods["an istio-init that is privileged"] = _with(bare(), initContainers=[
        {**fake_init, "securityContext": {"privileged": True, "capabilities": {"add": ["NET_ADMIN"]}}}])
    pods["an istio-init with a command of its own"] = _with(bare(), initContainers=[
        {**fake_init, "command": ["/bin/sh", "-c", "iptables -F"], "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}}])
    pods["an istio-init of another image than the pod's istio-proxy"] = _with(bare(), initContainers=[
        {**fake_init, "image": "registry.example.com/tenant/tools:1", "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}}])
    pods["NET_ADMIN on a regular container named istio-init"] = _notebook(namespace, name=ISTIO_INIT, args=["istio-iptables"],
                                                                         securityContext={"capabilities": {"add": ["NET_ADMIN"]}})
    pods["an istio-proxy that adds NET_ADMIN (interceptionMode TPROXY)"] = _notebook(namespace)
    result = {name: injected(pod, data_plane) for name, pod in pods.items()}
    tproxy = result["an istio-proxy that adds NET_ADMIN (interceptionMode TPROXY)"]
    for container in tproxy["spec"].get("containers") or []:
        if container["name"] == ISTIO_PROXY:
            container["securityContext"]["capabilities"]["add"] = ["NET_ADMIN"]
            container["securityContext"].update(runAsUser=0, runAsNonRoot=False)
    if data_plane == "ambient":
        # No istio-proxy in the pod: give it one shaped like a TPROXY sidecar.
        tproxy["spec"]["containers"].append({**_istio_proxy(False), "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}})
    # An ephemeral container added later (`kubectl debug --profile=sysadmin` sets privileged).
    ephemeral = injected(tenant_pod(namespace), data_plane)
    ephemeral["spec"]["ephemeralContainers"] = [{"name": "debugger", "image": "busybox", "securityContext": {"privileged": True}}]
    result["privileged ephemeral container"] = ephemeral
    return result


# ------------------------------------------------------------------------------------------ over a plan

_CONTAINER_FIELDS = ("name", "image", "command", "args", "restartPolicy", "securityContext", "ports")
_POD_FIELDS = ("hostNetwork", "hostPID", "hostIPC", "securityContext")


def _read_by_policy(pod: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a pod the pod policy reads (manifests/admission.py), the rest left out: the evaluator walks
    less, and the verdict is the same."""
    spec = pod.get("spec") or {}
    slim: dict[str, Any] = {key: spec[key] for key in _POD_FIELDS if key in spec}
    for kind in ("containers", "initContainers", "ephemeralContainers"):
        if kind in spec:
            slim[kind] = [{key: c[key] for key in _CONTAINER_FIELDS if key in c} for c in spec[kind]]
    if "volumes" in spec:
        slim["volumes"] = [{key: v[key] for key in ("name", "hostPath") if key in v} for v in spec["volumes"]]
    metadata = {key: value for key, value in (pod.get("metadata") or {}).items() if key in ("name", "namespace", "annotations")}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": slim}


#: The namespace a profile created at run time gets: the profile controller's labels file, read by the plan.
RUNTIME_PROFILE = "<a profile created at run time>"
_NATIVE = "sidecar.istio.io/nativeSidecar"
_LEVELS_THAT_HOLD = ("baseline", "restricted")


@dataclass(frozen=True)
class PodAdmission:
    """What the pod policy does with a plan's pods: the problems, and figures for the preview's summary."""

    problems: tuple[str, ...]
    namespaces_held: tuple[str, ...]
    pods_admitted: int
    hostile_refused: int


def namespace_labels(objects: Sequence[Mapping[str, Any]], profile_file_labels: Mapping[str, str] | None) -> dict[str, dict[str, str]]:
    """Namespace -> labels, with the namespace a run-time profile gets (the controller's labels file)."""
    found = {o["metadata"]["name"]: dict((o["metadata"].get("labels")) or {}) for o in objects if o.get("kind") == "Namespace"}
    if profile_file_labels is not None:
        found[RUNTIME_PROFILE] = {k: str(v) for k, v in profile_file_labels.items() if v not in ("", None)}
    return found


def pod_admission(objects: Sequence[Mapping[str, Any]], profile_file_labels: Mapping[str, str] | None, data_plane: str,
                  native_sidecars: bool = False, verdicts: MutableMapping[str, Verdict] | None = None) -> PodAdmission:
    """Every profile namespace (declared, or created at run time from the controller's labels file) and every
    namespace labelled `privileged` either enforces Pod Security baseline or restricted by its label, or is held by
    the program's pod policy; every pod the plan runs there passes the
    policy once injected; every hostile pod is refused in a profile namespace. `verdicts`: verdicts by content key
    (`evaluate_once`), such as those of earlier previews; a pod or policy that changed gets a key of its own."""
    problems: list[str] = []
    held: list[str] = []
    labels = namespace_labels(objects, profile_file_labels)
    holds: dict[tuple, Mapping[str, Any] | None] = {}

    def policy_for(found: Mapping[str, str]) -> Mapping[str, Any] | None:
        # Namespaces labelled alike (profiles) are selected alike: each set of labels is looked up once.
        key = tuple(sorted(found.items()))
        if key not in holds:
            holds[key] = pod_policy_holds(objects, found)
        return holds[key]

    for namespace, found in sorted(labels.items()):
        policy = policy_for(found)
        if policy is not None:
            held.append(namespace)
        elif (found.get("pod-security.kubernetes.io/enforce") == "privileged" or namespace == RUNTIME_PROFILE
              or found.get("app.kubernetes.io/part-of") == "kubeflow-profile") \
                and found.get("pod-security.kubernetes.io/enforce") not in _LEVELS_THAT_HOLD:
            # Namespaces labelled privileged, and profile namespaces (where tenants' code runs) whatever their label.
            problems.append(f"namespace {namespace}: Pod Security {found.get('pod-security.kubernetes.io/enforce')!r} and no "
                            f"admission policy holds its pods to baseline (privileged, hostPath and hostNetwork pods would be admitted)")
    admitted = 0
    stored, verdicts = verdicts, {}
    for obj in objects:
        template = pod_template(obj)
        namespace = (obj.get("metadata") or {}).get("namespace")
        if template is None or namespace not in held:
            continue
        annotations = (template.get("metadata") or {}).get("annotations") or {}
        pod = injected(pod_of(template, namespace), data_plane, native_sidecars or annotations.get(_NATIVE) == "true")
        # Pods alike but for names and labels get one evaluation (the policy reads neither).
        key = json.dumps([pod["spec"], pod["metadata"].get("annotations"), sorted(labels[namespace].items())], sort_keys=True)
        verdict = verdicts.get(key)
        if verdict is None:
            verdict = verdicts[key] = evaluate_once(policy_for(labels[namespace]), _read_by_policy(pod), stored)
        if verdict.admitted:
            admitted += 1
        else:
            problems.append(f"{object_ref(obj)}: its pods, once the mesh injected them, are refused by {POD_POLICY}: {'; '.join(verdict.refusals)}")
    refused = 0
    for namespace in [n for n in held if n == RUNTIME_PROFILE or labels[n].get("app.kubernetes.io/part-of") == "kubeflow-profile"][:1]:
        policy = policy_for(labels[namespace])
        ordinary = evaluate_once(policy, injected(tenant_pod(namespace), data_plane, native_sidecars), stored)
        if not ordinary.admitted:
            problems.append(f"namespace {namespace}: an ordinary notebook pod is refused by {POD_POLICY}: {'; '.join(ordinary.refusals)}")
        for name, pod in hostile_pods(namespace, data_plane).items():
            # Only whether each is refused is reported: the first refusal decides it (half of the validations).
            if evaluate_once(policy, pod, stored, first_refusal=True).admitted:
                problems.append(f"namespace {namespace}: {POD_POLICY} admits a hostile pod ({name})")
            else:
                refused += 1
    return PodAdmission(tuple(problems), tuple(held), admitted, refused)
