"""What the cluster itself refuses at admission: pods in the namespaces where tenants' code runs, and Profiles
that nobody meant to exist. Kubernetes' own ValidatingAdmissionPolicy (admissionregistration.k8s.io/v1, GA in
1.30, the oldest EKS version the program supports), so nothing has to run besides the API server.

Pure Python, no Pulumi: the objects as dicts. `analysis/admission.py` evaluates their CEL offline with a real CEL
evaluator (cel-python), over the pods the release runs once the mesh has injected them, and over hostile pods.

Why a policy and not Pod Security alone: Pod Security admission judges the pod after the mutating webhooks,
so it sees the `istio-init` container Istio injects without its CNI (`mesh.dataPlane: sidecar-init`), which adds
NET_ADMIN and NET_RAW (istio/istio@1.24.6 and @1.28.0 manifests/charts/istio-control/istio-discovery/files/
injection-template.yaml). Baseline refuses any capability outside its default set and has no exception per
container, so such a namespace cannot enforce more than `privileged` by its label. The policy below then takes
over: every baseline check, the same fields and values as Kubernetes' (kubernetes/pod-security-admission@v0.30.0,
the staging copy of kubernetes/kubernetes@v1.30.0 staging/src/k8s.io/pod-security-admission, policy/check_*.go),
and one exception: NET_ADMIN and NET_RAW on an init container shaped exactly as the injector writes istio-init.
Where no istio-init is injected (CNI, ambient) it holds profile namespaces to plain baseline, whatever their
Pod Security label says.

The CEL uses the standard language only (has, all, exists, in, size, startsWith, string concatenation), no
Kubernetes extension library: the offline evaluator implements the standard, and the API server type-checks
and runs the same text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from manifests.identity import _lua_filter, _lua_string

#: Namespace label by which the pod policy's first binding selects namespaces; the program puts it on every
#: namespace whose Pod Security label cannot hold pods to baseline, on the profile controller's labels file
#: (so every profile namespace, declared or created at run time, carries it) and on declared profile namespaces.
POD_ADMISSION_LABEL = "kubeflow-platform/pod-admission"
POD_ADMISSION_LEVEL = "baseline"
#: The label the profile controller's labels file gives every profile namespace (26.03 and later): the second
#: binding, so a profile namespace is held even before the controller has added the program's own label.
PROFILE_NAMESPACE_LABEL = ("app.kubernetes.io/part-of", "kubeflow-profile")
POD_POLICY = "kubeflow-platform-pod-security"
PROFILE_POLICY = "kubeflow-platform-profiles"
PART_OF = {"app.kubernetes.io/part-of": "kubeflow-platform"}

ISTIO_INIT = "istio-init"
ISTIO_PROXY = "istio-proxy"
ISTIO_INIT_CAPABILITIES = ("NET_ADMIN", "NET_RAW")
#: Baseline's default capabilities (kubernetes/pod-security-admission@v0.30.0 policy/check_capabilities_baseline.go:31-37).
BASELINE_CAPABILITIES = ("AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
                         "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT")
#: Baseline's safe sysctls at v0.30.0 (policy/check_sysctls.go:36-50): the oldest supported Kubernetes; 1.32 adds
#: tcp_rmem and tcp_wmem, refused here so one policy means the same on every supported version.
SAFE_SYSCTLS = ("kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies",
                "net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start", "net.ipv4.ip_local_reserved_ports",
                "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
                "net.ipv4.tcp_keepalive_probes")
#: policy/check_seLinuxOptions.go:32-42.
SELINUX_TYPES = ("", "container_t", "container_init_t", "container_kvm_t")
APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"


def _cel_list(values: Iterable[str]) -> str:
    return "[" + ", ".join(f"'{value}'" for value in values) + "]"


_LISTS = ("containers", "initContainers", "ephemeralContainers")


def _each_container(condition: str, lists: Sequence[str] = _LISTS) -> str:
    """`condition` (over `c`) for every container of the listed kinds. One expression per list: containers and
    ephemeral containers are different types to the API server's type checker and cannot be concatenated."""
    parts = []
    for name in lists:
        every = f"object.spec.{name}.all(c, {condition})"
        parts.append(every if name == "containers" else f"(!has(object.spec.{name}) || {every})")
    return " && ".join(parts)


def _unset_or(field: str, allowed: str, path: str = "c.securityContext") -> str:
    """`<path>.<field>` absent (or any object on the way to it), or `allowed` (over `{v}`, the field's value).
    `path` is a container's security context by default, `object.spec.securityContext` for the pod's."""
    guards = [f"!has({path})"]
    parts = field.split(".")
    for i in range(len(parts)):
        guards.append(f"!has({path}.{'.'.join(parts[:i + 1])})")
    return "(" + " || ".join(guards) + " || " + allowed.replace("{v}", f"{path}.{field}") + ")"


def _pod_unset_or(field: str, allowed: str) -> str:
    return _unset_or(field, allowed, path="object.spec.securityContext")


def istio_init_shape() -> str:
    """An init container exactly as the injector writes istio-init (istio/istio@1.24.6 injection-template.yaml:76-162,
    @1.28.0 :85-181): named istio-init, run as the proxy image's entrypoint (`args: [istio-iptables, ...]`, no
    `command`), not a restartable sidecar, with the image of the pod's own istio-proxy (a container, or a native
    sidecar: an init container with `restartPolicy: Always`)."""
    proxy = "p.name == 'istio-proxy' && p.image == c.image"
    return (f"(c.name == '{ISTIO_INIT}' && !has(c.command) && has(c.args) && size(c.args) > 0 && c.args[0] == 'istio-iptables'"
            " && !has(c.restartPolicy) && has(c.image)"
            f" && (object.spec.containers.exists(p, {proxy}) || object.spec.initContainers.exists(p, {proxy}"
            " && has(p.restartPolicy) && p.restartPolicy == 'Always')))")


def capability_rule(istio_init: bool) -> str:
    baseline = _cel_list(BASELINE_CAPABILITIES)
    plain = _unset_or("capabilities.add", f"{{v}}.all(x, x in {baseline})")
    if not istio_init:
        return _each_container(plain)
    extra = _cel_list(ISTIO_INIT_CAPABILITIES)
    init = _unset_or("capabilities.add", f"{{v}}.all(x, x in {baseline} || ({istio_init_shape()} && x in {extra}))")
    return " && ".join([_each_container(plain, ("containers", "ephemeralContainers")), _each_container(init, ("initContainers",))])


def pod_validations(istio_init: bool) -> list[dict[str, str]]:
    """The policy's validations: baseline's checks, in the order of its registry, each with the message the
    API server returns (kubernetes/pod-security-admission@v0.30.0 policy/ file named in each message)."""
    seccomp = "{v} in ['RuntimeDefault', 'Localhost']"
    selinux_type = f"{{v}} in {_cel_list(SELINUX_TYPES)}"
    rules = [
        ("!(has(object.spec.hostNetwork) && object.spec.hostNetwork) && !(has(object.spec.hostPID) && object.spec.hostPID)"
         " && !(has(object.spec.hostIPC) && object.spec.hostIPC)",
         "host namespaces: hostNetwork, hostPID and hostIPC must be unset or false (check_hostNamespaces.go)"),
        (_each_container(_unset_or("privileged", "!{v}")),
         "privileged: no container may set securityContext.privileged (check_privileged.go)"),
        (capability_rule(istio_init),
         "capabilities: only baseline's default set may be added" + (
             "; NET_ADMIN and NET_RAW only on the istio-init container the mesh injects" if istio_init else "")
         + " (check_capabilities_baseline.go)"),
        ("!has(object.spec.volumes) || object.spec.volumes.all(v, !has(v.hostPath))",
         "hostPath volumes are forbidden (check_hostPathVolumes.go)"),
        (_each_container("!has(c.ports) || c.ports.all(p, !has(p.hostPort) || p.hostPort == 0)"),
         "hostPort must be unset or 0 (check_hostPorts.go)"),
        ("(!has(object.metadata.annotations) || object.metadata.annotations.all(k, !k.startsWith('" + APPARMOR_ANNOTATION + "')"
         " || object.metadata.annotations[k] in ['', 'runtime/default'] || object.metadata.annotations[k].startsWith('localhost/')))"
         " && " + _pod_unset_or("appArmorProfile.type", seccomp)
         + " && " + _each_container(_unset_or("appArmorProfile.type", seccomp)),
         "AppArmor: only the runtime default or a localhost profile (check_appArmorProfile.go)"),
        (_pod_unset_or("seLinuxOptions.type", selinux_type) + " && " + _pod_unset_or("seLinuxOptions.user", "{v} == ''")
         + " && " + _pod_unset_or("seLinuxOptions.role", "{v} == ''")
         + " && " + _each_container(_unset_or("seLinuxOptions.type", selinux_type) + " && " + _unset_or("seLinuxOptions.user", "{v} == ''")
                                    + " && " + _unset_or("seLinuxOptions.role", "{v} == ''")),
         "SELinux: type container_t, container_init_t or container_kvm_t, no user or role (check_seLinuxOptions.go)"),
        (_each_container(_unset_or("procMount", "{v} == 'Default'")),
         "procMount must be unset or Default (check_procMount.go)"),
        (_pod_unset_or("seccompProfile.type", seccomp) + " && " + _each_container(_unset_or("seccompProfile.type", seccomp)),
         "seccomp: only RuntimeDefault or Localhost (check_seccompProfile_baseline.go)"),
        (_pod_unset_or("sysctls", f"{{v}}.all(s, s.name in {_cel_list(SAFE_SYSCTLS)})"),
         "sysctls: only baseline's safe set (check_sysctls.go)"),
        (_pod_unset_or("windowsOptions.hostProcess", "!{v}") + " && " + _each_container(_unset_or("windowsOptions.hostProcess", "!{v}")),
         "windowsOptions.hostProcess must be unset or false (check_windowsHostProcess.go)"),
    ]
    return [{"expression": expression, "message": message} for expression, message in rules]


def pod_security_policy(istio_init: bool) -> list[dict[str, Any]]:
    """The pod policy and its two bindings. `istio_init`: the mesh injects istio-init (`sidecar-init`)."""
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": POD_POLICY, "labels": dict(PART_OF)},
        "spec": {
            # An expression that cannot be evaluated refuses the pod rather than letting it through.
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
                # Ephemeral containers arrive through their own subresource (`kubectl debug`).
                "resources": ["pods", "pods/ephemeralcontainers"],
            }]},
            # Updates that leave the spec as it was (labels and annotations, set by controllers) are not judged
            # again, as Pod Security does not judge them; a changed image or an ephemeral container (`kubectl
            # debug`) is.
            "matchConditions": [{"name": "created-or-spec-changed",
                                 "expression": "request.operation == 'CREATE' || request.subResource == 'ephemeralcontainers'"
                                               " || object.spec != oldObject.spec"}],
            "validations": pod_validations(istio_init),
        },
    }
    label_key, label_value = PROFILE_NAMESPACE_LABEL
    bindings = [
        _binding(f"{POD_POLICY}-labelled", POD_POLICY,
                 {"matchExpressions": [{"key": POD_ADMISSION_LABEL, "operator": "Exists"}]}),
        _binding(f"{POD_POLICY}-profiles", POD_POLICY, {"matchLabels": {label_key: label_value}}),
    ]
    return [policy, *bindings]


def _binding(name: str, policy: str, namespace_selector: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name, "labels": dict(PART_OF)},
        "spec": {"policyName": policy, "validationActions": ["Deny"],
                 "matchResources": {"namespaceSelector": dict(namespace_selector)}},
    }


def is_pod_policy_object(obj: Mapping[str, Any]) -> bool:
    return obj.get("kind") in ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding") and \
        (obj.get("metadata") or {}).get("name", "").startswith(POD_POLICY)


# ------------------------------------------------------------------------------------------- Profiles

#: The dashboard's registration endpoint: it creates a Profile named and owned as the request body says, or
#: after the caller's own id (kubeflow/kubeflow@v1.10.0 components/centraldashboard/app/api_workgroup.ts:283-305,
#: mounted at /api/workgroup by app/server.ts:87), whatever REGISTRATION_FLOW says (that flag is read only by the
#: UI, through /api/workgroup/exists, :256-282). Express routes ignore case (its Router's default), so the gateway
#: matches the path ignoring case too.
WORKGROUP_CREATE = "/api/workgroup/create"
REGISTRATION_ROUTE = "kubeflow-platform-profile-registration"
#: Marks the Namespaces the program applies for declared profiles; a profile namespace without it was created
#: at run time (self-service, or upstream's example profile).
DECLARED_PROFILE_LABEL = "kubeflow-platform/profile"
SELF_SERVICE_POD_POLICY = "kubeflow-platform-self-service-pods"
#: kfam's container in the profiles Deployment (kubeflow/kubeflow@v1.10.0 components/profile-controller/config/
#: manager and components/access-management): kfam creates Profiles with the pod's own ServiceAccount
#: (components/access-management/kfam/api_default.go:134-155), so that account is the requester the API server sees.
KFAM_CONTAINER = "kfam"


def kfam_user(objects: Iterable[Mapping[str, Any]]) -> str | None:
    """`system:serviceaccount:<namespace>:<account>` of the pods running kfam, read from the release."""
    for obj in objects:
        if obj.get("kind") != "Deployment":
            continue
        spec = (((obj.get("spec") or {}).get("template") or {}).get("spec")) or {}
        if any(c.get("name") == KFAM_CONTAINER for c in spec.get("containers") or []):
            account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
            return f"system:serviceaccount:{(obj.get('metadata') or {}).get('namespace', 'kubeflow')}:{account}"
    return None


def registration_route(*, gateway: str, namespace: str, hosts: Sequence[str], export_to: Sequence[str],
                       user_header: str, user_id_prefix: str = "", self_service_domains: Sequence[str] = ()) -> dict[str, Any]:
    """The gateway route that answers the dashboard's profile creation with 403 itself: for every caller, or
    with self-service for callers whose id is not an email of its domains. A route of its own before the
    dashboard's catch-all (Istio orders catch-all routes last: istio/istio@1.24.6
    pilot/pkg/networking/core/route/route.go:1619-1632), answered by Envoy (directResponse, route.go:500-501, 805)."""
    match: dict[str, Any] = {"uri": {"prefix": WORKGROUP_CREATE}, "ignoreUriCase": True, "method": {"exact": "POST"}}
    reason = "profiles are declared by the platform team (tenancy.profiles); self-service is off"
    if self_service_domains:
        domains = "|".join(re.escape(domain) for domain in self_service_domains)
        match["withoutHeaders"] = {user_header: {"regex": f"{re.escape(user_id_prefix)}[^@,\\s]+@({domains})"}}
        reason = "self-service profiles are open to users of " + ", ".join(self_service_domains) + " only"
    return {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "VirtualService",
        "metadata": {"name": REGISTRATION_ROUTE, "namespace": namespace, "labels": dict(PART_OF)},
        "spec": {
            "gateways": [gateway],
            "hosts": list(hosts),
            "exportTo": list(export_to),
            "http": [{"name": "profile-registration", "match": [match],
                      "directResponse": {"status": 403, "body": {"string": reason}}}],
        },
    }


#: The largest request body of known length the registration filter waits for. The dashboard's own request is
#: under 200 bytes; buffering no more than this keeps far under Envoy's connection buffer limit (1 MiB by default,
#: less where a mesh lowers it), beyond which Envoy 1.40 stalls the Lua filter's `body()` instead of answering.
REGISTRATION_MAX_BODY = 16384
#: Name of the gateway's Lua filter that rewrites the dashboard's profile creation with self-service on.
REGISTRATION_BODY_FILTER_NAME = "kubeflow-platform.self-service-registration"


def registration_body_filter(*, user_header: str, user_id_prefix: str, name_prefix: str,
                             email_domains: Sequence[str]) -> dict[str, Any]:
    """The gateway filter that makes the dashboard's profile creation create the caller's own profile.

    The dashboard names and owns the Profile as the request body says (`namespace`, `user`) and kfam creates it
    with its own account, so the API server cannot tell whose request it was. This Lua filter runs right after
    the identity filter (the user header is then the gateway's, never the client's): for a POST whose path,
    lower-cased, starts with the create path (a superset of what the dashboard's case-blind router sends to its
    create handler), it replaces the body with `{"namespace": "<namePrefix><local part>", "user": "<email>"}`,
    `content-type: application/json` (the only type the dashboard's JSON parser reads) and no content-encoding.
    A body of known length up to REGISTRATION_MAX_BODY is awaited whole (`body(true)`) and replaced, a longer one
    is answered 413 unread; a body of unknown length (chunked) is never buffered: its first chunk becomes the
    replacement, later ones are emptied in passing (`bodyChunks()`, `setBytes`). A caller without exactly one user
    header, or whose email is not of the domains or whose profile name would not be a DNS label, is answered 403
    (the admission policy would refuse that Profile anyway). Envoy's Lua API: envoyproxy/envoy
    docs/root/configuration/http/http_filters/lua_filter.rst (`body()`, `bodyChunks()`, `respond()`, buffer
    `setBytes()`), held against the pinned Envoy by tests/test_profile_registration.py.
    """
    code = (
        "-- kubeflow-platform: the dashboard's profile creation creates the caller's own profile, nothing else.\n"
        f"local CREATE_PATH = {_lua_string(WORKGROUP_CREATE)}\n"
        f"local USER_HEADER = {_lua_string(user_header)}\n"
        f"local USER_ID_PREFIX = {_lua_string(user_id_prefix)}\n"
        f"local NAME_PREFIX = {_lua_string(name_prefix)}\n"
        f"local MAX_BODY = {REGISTRATION_MAX_BODY}\n"
        "local DOMAINS = {" + ", ".join(f"[{_lua_string(d)}] = true" for d in email_domains) + "}\n"
        + """
local function refuse(handle, why)
  handle:respond({[":status"] = "403", ["content-type"] = "text/plain"}, why)
end

function envoy_on_request(handle)
  local headers = handle:headers()
  if headers:get(":method") ~= "POST" then
    return
  end
  local path = string.lower(headers:get(":path") or "")
  if string.sub(path, 1, #CREATE_PATH) ~= CREATE_PATH then
    return
  end
  local ids = {}
  for name, value in pairs(headers) do
    if name == USER_HEADER then
      ids[#ids + 1] = value
    end
  end
  if #ids ~= 1 or string.sub(ids[1], 1, #USER_ID_PREFIX) ~= USER_ID_PREFIX then
    refuse(handle, "self-service profiles: no single identity for this request")
    return
  end
  local email = string.sub(ids[1], #USER_ID_PREFIX + 1)
  local at = string.find(email, "@", 1, true)
  if at == nil or string.find(email, "@", at + 1, true) ~= nil or not DOMAINS[string.sub(email, at + 1)] then
    refuse(handle, "self-service profiles are open to users of the configured email domains only")
    return
  end
  local name = NAME_PREFIX .. string.sub(email, 1, at - 1)
  if #name > 63 or string.find(name, "^[a-z0-9][-a-z0-9]*$") == nil or string.sub(name, -1) == "-" then
    refuse(handle, "self-service profiles: '" .. name .. "' is not a valid profile name; ask the platform team to declare your profile")
    return
  end
  local replacement = '{"namespace":"' .. name .. '","user":"' .. email .. '"}'
  local length = headers:get("content-length")
  if length ~= nil and (tonumber(length) == nil or tonumber(length) > MAX_BODY) then
    handle:respond({[":status"] = "413", ["content-type"] = "text/plain"}, "self-service profiles: the request body is larger than any profile creation")
    return
  end
  headers:replace("content-type", "application/json")
  headers:remove("content-encoding")
  if length ~= nil then
    -- A body of known, small size: wait for all of it (body(true) also wraps an empty one) and replace it.
    handle:body(true):setBytes(replacement)
    headers:replace("content-length", tostring(#replacement))
    return
  end
  -- No length (chunked, or HTTP/2 without content-length): never buffer what the client streams. The first
  -- chunk becomes the replacement and every later one is emptied as it passes, so nothing the client sent
  -- reaches the dashboard however long it goes on.
  local replaced = false
  for chunk in handle:bodyChunks() do
    if replaced then
      chunk:setBytes("")
    else
      chunk:setBytes(replacement)
      replaced = true
    end
  end
  if not replaced then
    -- The request ended with its headers: no body at all. The headers are still ours; give it the body.
    handle:body(true):setBytes(replacement)
    headers:replace("content-length", tostring(#replacement))
  end
end
"""
    )
    return _lua_filter(REGISTRATION_BODY_FILTER_NAME, code)


def profile_policy(kfam: str, *, self_service_domains: Sequence[str] = (), name_prefix: str = "",
                   declared_names: Sequence[str] = (), declared_owners: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The policy on Profiles kfam creates (the dashboard's registration, or anything else that reaches kfam).

    Without self-service every such Profile is refused. With it, a Profile is admitted only when its owner is a
    User of the domains, its name is `<prefix><the owner's local part>` (so each user can have one), neither name
    nor owner is a declared profile's, and it carries no quota or plugins (the template decides those). The API
    server sees kfam's account, not the user (kfam creates the Profile with its own credentials), and the
    dashboard takes name and owner from the request body when given: this policy alone would let a user create
    the profile of another user of the domains. The gateway's registration filter (registration_body_filter)
    replaces that body with the caller's own name and email, so the one profile a user creates is their own.
    """
    rules: list[tuple[str, str]]
    if not self_service_domains:
        rules = [("false", "Profiles are declared in the stack file (tenancy.profiles); self-service profiles are off "
                           "(tenancy.selfService.emailDomains)")]
    else:
        domains = _cel_list(self_service_domains)
        rules = [
            ("has(object.spec.owner) && has(object.spec.owner.kind) && object.spec.owner.kind == 'User' && has(object.spec.owner.name)",
             "a self-service profile is owned by a User"),
            (f"has(object.spec.owner.name) && {domains}.exists(d, '{name_prefix}' + object.spec.owner.name == object.metadata.name + '@' + d)",
             f"a self-service profile is named '{name_prefix}<local part of the owner's email>' and owned by a user of "
             + ", ".join(self_service_domains)),
            ("!has(object.spec.plugins) || size(object.spec.plugins) == 0",
             "a self-service profile carries no plugins"),
            ("!has(object.spec.resourceQuotaSpec) || !has(object.spec.resourceQuotaSpec.hard) || size(object.spec.resourceQuotaSpec.hard) == 0",
             "a self-service profile's quota is the template's (tenancy.selfService.template)"),
            (f"!(object.metadata.name in {_cel_list(declared_names)})", "the name is a declared profile's"),
            (f"!has(object.spec.owner.name) || !(object.spec.owner.name in {_cel_list(declared_owners)})",
             "the owner already owns a declared profile"),
        ]
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": PROFILE_POLICY, "labels": dict(PART_OF)},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{"apiGroups": ["kubeflow.org"], "apiVersions": ["*"],
                                                    "operations": ["CREATE"], "resources": ["profiles"]}]},
            # Profiles the platform team applies (pulumi up) are not judged here: only what kfam creates.
            "matchConditions": [{"name": "created-by-kfam", "expression": f"request.userInfo.username == '{kfam}'"}],
            "validations": [{"expression": expression, "message": message} for expression, message in rules],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": PROFILE_POLICY, "labels": dict(PART_OF)},
        "spec": {"policyName": PROFILE_POLICY, "validationActions": ["Deny"]},
    }
    return [policy, binding]


def self_service_pod_policy(*, gpus: int, gpu_taint_keys: Sequence[str]) -> list[dict[str, Any]]:
    """GPU access of the template, held at admission in profile namespaces created at run time: no pod
    requests more `nvidia.com/gpu` than the template's quota, and without GPU pools no pod tolerates a GPU
    pool's taint (or every taint). The totals are the ResourceQuota's (docs/profiles.md)."""
    gpu = "'nvidia.com/gpu'"
    within = (f"(!has(c.resources) || ((!has(c.resources.limits) || !({gpu} in c.resources.limits) || int(c.resources.limits[{gpu}]) <= {gpus})"
              f" && (!has(c.resources.requests) || !({gpu} in c.resources.requests) || int(c.resources.requests[{gpu}]) <= {gpus})))")
    rules = [(_each_container(within, ("containers", "initContainers")),
              f"a profile created at run time may request at most {gpus} nvidia.com/gpu per container (tenancy.selfService.template.quota.gpus)")]
    if not gpus:
        keys = _cel_list(gpu_taint_keys)
        rules.append((f"!has(object.spec.tolerations) || object.spec.tolerations.all(t, has(t.key) && t.key != '' && !(t.key in {keys}))",
                      "a profile created at run time without GPU pools may not tolerate the GPU nodes' taints (tenancy.selfService.template.gpuPools)"))
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": SELF_SERVICE_POD_POLICY, "labels": dict(PART_OF)},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                                                    "resources": ["pods"]}]},
            "validations": [{"expression": expression, "message": message} for expression, message in rules],
        },
    }
    key, value = PROFILE_NAMESPACE_LABEL
    binding = _binding(SELF_SERVICE_POD_POLICY, SELF_SERVICE_POD_POLICY, {"matchExpressions": [
        {"key": key, "operator": "In", "values": [value]}, {"key": DECLARED_PROFILE_LABEL, "operator": "DoesNotExist"}]})
    return [policy, binding]


# ------------------------------------------------------------------- the template, applied at run time

SELF_SERVICE_TEMPLATE_POLICY = "kubeflow-platform-self-service-template"
#: Kyverno's variable for the namespace a generate rule fires for (https://kyverno.io/docs/policy-types/cluster-policy/generate/).
NAMESPACE_VARIABLE = "{{request.object.metadata.name}}"


def kyverno_template(objects: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A Kyverno ClusterPolicy that creates `objects` (a profile's namespaced objects, built for the namespace
    `NAMESPACE_VARIABLE`) in every profile namespace created at run time, keeps them as written
    (`synchronize`), and covers namespaces that exist before the policy (`generateExisting`); and the
    ClusterRole that lets Kyverno's background controller write those kinds (its aggregation label).

    The API server alone cannot create objects when a namespace appears; Kyverno's generate rules can
    (https://kyverno.io/docs/policy-types/cluster-policy/generate/)."""
    key, value = PROFILE_NAMESPACE_LABEL
    rules = []
    for obj in objects:
        metadata = dict(obj["metadata"])
        data = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
        extra = {k: v for k, v in metadata.items() if k not in ("name", "namespace")}
        if extra:
            data["metadata"] = extra
        rules.append({
            "name": f"{obj['kind'].lower()}-{metadata['name']}"[:63],
            "match": {"any": [{"resources": {"kinds": ["Namespace"], "selector": {"matchLabels": {key: value}}}}]},
            "exclude": {"any": [{"resources": {"kinds": ["Namespace"], "selector": {
                "matchExpressions": [{"key": DECLARED_PROFILE_LABEL, "operator": "Exists"}]}}}]},
            "generate": {"synchronize": True, "apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": metadata["name"],
                         "namespace": NAMESPACE_VARIABLE, "data": data},
        })
    policy = {
        "apiVersion": "kyverno.io/v1",
        "kind": "ClusterPolicy",
        "metadata": {"name": SELF_SERVICE_TEMPLATE_POLICY, "labels": dict(PART_OF)},
        "spec": {"generateExisting": True, "background": True, "rules": rules},
    }
    groups: dict[str, set[str]] = {}
    plural = {"ResourceQuota": "resourcequotas", "NetworkPolicy": "networkpolicies", "AuthorizationPolicy": "authorizationpolicies"}
    for obj in objects:
        group = obj["apiVersion"].rpartition("/")[0]
        groups.setdefault(group, set()).add(plural.get(obj["kind"], obj["kind"].lower() + "s"))
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": SELF_SERVICE_TEMPLATE_POLICY, "labels": {
            **PART_OF, "rbac.kyverno.io/aggregate-to-background-controller": "true"}},
        "rules": [{"apiGroups": [group], "resources": sorted(resources),
                   "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]}
                  for group, resources in sorted(groups.items())],
    }
    return [policy, role]
