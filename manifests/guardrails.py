"""Guardrail checks: the enterprise's rules, as pure functions over what the program plans to register.

The same functions run in three places: the CrossGuard policy pack (`policy/`), the offline preview and
the tests. They see a generic model, so none of them imports Pulumi:

- `PlannedResource(type, name, props)`: one registration, `props` being its inputs in the engine's
  camelCase spelling (what a policy pack and the mock runtime see);
- Kubernetes objects: extracted from `kubernetes:yaml/v2:ConfigGroup` inputs (`yaml` text of JSON or YAML
  documents, or `objs`) and from individual `kubernetes:*` resources (`kubernetes_objects_of`).

Every check returns violations: one message each, naming the resource or object and the field. An empty
list means the rule holds. `check_plan` runs all of them.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable

import yaml

from manifests.images import PUBLIC_REGISTRIES
from manifests.objects import CONTAINER_LISTS, containers_of, object_ref, pod_template

# libyaml parses the ConfigGroups' ~10 MB of JSON documents about ten times faster than pure Python.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# Pulumi's wire marker for a secret value (`pulumi.runtime.rpc._special_sig_key` and the secret
# signature): a value wrapped like this is encrypted in the state, so it is never a plaintext literal.
_SIG_KEY = "4dabf18193072939515e22adb298388d"
_SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"


@dataclass(frozen=True)
class PlannedResource:
    """One resource the program registers: its type token, name and inputs (camelCase)."""

    type: str
    name: str
    props: Mapping[str, Any]


@dataclass(frozen=True)
class GuardrailParams:
    """What the rules are checked against; the policy pack reads these from its config."""

    #: The approved internal registry (like registry.example.com/kubeflow); every image must be under it.
    mirror: str
    #: `namespace/name` of the one Service allowed to be of type LoadBalancer (the mesh's ingress gateway).
    gateway_service: str = "istio-system/istio-ingressgateway"
    #: The cluster's OIDC issuer URL; IRSA trust policies must name it. None: only internal consistency.
    cluster_oidc_issuer: str | None = None
    #: IAM role names allowed a wildcard (StringLike) service-account subject, each for a written reason.
    wildcard_trust_roles: frozenset[str] = frozenset()
    #: Istio revision the mesh uses (`istio.io/rev`); None: the default `istio-injection: enabled`.
    mesh_revision: str | None = None
    #: Namespaces deliberately outside the mesh (none by default).
    namespaces_outside_mesh: frozenset[str] = frozenset()


def planned_resources(registrations: Iterable[Any]) -> list[PlannedResource]:
    """PlannedResources from recorded registrations (anything with `type`, `name` and `inputs`, like the
    mock runtime's), for the offline preview and the tests."""
    return [PlannedResource(r.type, r.name, r.inputs) for r in registrations]


# ------------------------------------------------------------------------------------- extraction

CONFIG_GROUP = "kubernetes:yaml/v2:ConfigGroup"
#: Kubernetes types that carry no object of their own (providers, groups of other objects).
_NOT_AN_OBJECT = {"kubernetes:yaml/v2:ConfigFile", "kubernetes:yaml:ConfigFile", "kubernetes:yaml:ConfigGroup",
                  "kubernetes:helm.sh/v3:Chart", "kubernetes:helm.sh/v4:Chart", "kubernetes:kustomize/v2:Directory"}


def is_secret(value: Any) -> bool:
    """True for a value that reaches the engine as a Pulumi secret (encrypted in the state)."""
    if isinstance(value, Mapping):
        return value.get(_SIG_KEY) == _SECRET_SIG
    # pulumi_policy hands secrets to policies as its own `Secret` wrapper.
    return type(value).__name__ == "Secret" and hasattr(value, "value")


def unwrap(value: Any) -> Any:
    """The plain value inside a Pulumi secret wrapper (for reading structure, never for reporting)."""
    if isinstance(value, Mapping) and value.get(_SIG_KEY) == _SECRET_SIG:
        return value.get("value")
    if type(value).__name__ == "Secret" and hasattr(value, "value"):
        return value.value
    return value


def kubernetes_objects_of(resources: Iterable[PlannedResource]) -> list[dict]:
    """Every Kubernetes object the resources carry: ConfigGroup documents and individual objects, as
    registered. Messages name them by `Kind namespace/name`, which is unique within a plan."""
    return [obj for obj, _ in objects_by_origin(resources)]


def objects_by_origin(resources: Iterable[PlannedResource]) -> Iterator[tuple[dict, bool]]:
    """(object, whether it is a typed resource of its own rather than a document in manifest text)."""
    for resource in resources:
        if resource.type == CONFIG_GROUP:
            for obj in _config_group_objects(resource):
                yield obj, False
        elif resource.type.startswith("kubernetes:") and resource.type not in _NOT_AN_OBJECT and "::" not in resource.type:
            obj = _as_object(resource)
            if obj is not None:
                yield obj, True


def _config_group_objects(resource: PlannedResource) -> list[dict]:
    objects: list[dict] = []
    texts = unwrap(resource.props.get("yaml"))
    for text in texts if isinstance(texts, list) else [texts]:
        text = unwrap(text)
        if isinstance(text, str) and text.strip():
            # JSON documents are YAML documents, so one loader reads both spellings.
            objects.extend(doc for doc in yaml.load_all(text, Loader=_LOADER) if isinstance(doc, dict))
    for obj in unwrap(resource.props.get("objs")) or []:
        obj = unwrap(obj)
        if isinstance(obj, Mapping):
            objects.append(dict(obj))
    return objects


def _as_object(resource: PlannedResource) -> dict | None:
    # `kubernetes:core/v1:ServicePatch` -> kind Service; the inputs are the object's own fields.
    _, module, kind = resource.type.split(":", 2)
    if kind.endswith("Patch"):
        kind = kind[: -len("Patch")]
    if kind.endswith("List") or kind == "Provider":
        return None
    obj = dict(resource.props)
    obj.setdefault("kind", kind)
    metadata = dict(unwrap(obj.get("metadata")) or {})
    metadata.setdefault("name", resource.name)
    obj["metadata"] = metadata
    return obj


# ------------------------------------------------------------------------------------------ helpers


def _walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted path, value) for every leaf; secrets are leaves, so their contents are never inspected."""
    if is_secret(node):
        yield path, node
    elif isinstance(node, Mapping):
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, f"{path}[{index}]")
    else:
        yield path, node


def _meta(obj: Mapping) -> Mapping:
    return unwrap(obj.get("metadata")) or {}


def _labels(obj: Mapping) -> Mapping:
    return _meta(obj).get("labels") or {}


def _annotations(obj: Mapping) -> Mapping:
    return _meta(obj).get("annotations") or {}


def _ns_name(obj: Mapping) -> str:
    metadata = _meta(obj)
    return f"{metadata.get('namespace') or 'default'}/{metadata.get('name')}"


def _policy_document(value: Any) -> dict | None:
    value = unwrap(value)
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, str):
        try:
            document = json.loads(value)
        except ValueError:
            return None
        return document if isinstance(document, dict) else None
    return None


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


# ------------------------------------------------------------------------------------------- images

# A whole image-like token (between quotes, spaces, `=` or commas) that names a public registry. Matching
# the token, not just the registry, lets `<mirror>/docker.io/...` (a mirror laid out by registry) pass.
_IMAGE_TOKEN = re.compile(r"[\w.:@/-]+")
_PUBLIC_REGISTRY = re.compile(r"(?:^|/)(" + "|".join(re.escape(r) for r in PUBLIC_REGISTRIES) + r")/[\w.-]")
#: ConfigMap keys that are documentation: Knative checksums `_example`, and nothing reads it.
_DOCUMENTATION_KEYS = {"_example"}


def images_from_approved_mirror(obj: Mapping, mirror: str) -> list[str]:
    """Every container image, every `image` field and every public-registry reference in text must be
    under `mirror`. CRDs are skipped: their schemas describe images, they run none."""
    if obj.get("kind") == "CustomResourceDefinition":
        return []
    prefix = mirror.rstrip("/") + "/"
    ref = object_ref(obj)
    violations: list[str] = []
    for path, value in _walk(obj):
        if not isinstance(value, str):
            continue
        if path.startswith("data.") and path.split(".", 2)[1] in _DOCUMENTATION_KEYS:
            continue
        leaf = path.rsplit(".", 1)[-1]
        if leaf == "image" and value and not value.startswith(prefix):
            violations.append(f"{ref}: {path} {value!r} is not from the approved mirror {mirror}")
            continue
        for token in _IMAGE_TOKEN.findall(value):
            # URLs are links (docs, endpoints), not image references.
            if "://" not in token and _PUBLIC_REGISTRY.search(token) and not token.startswith(prefix):
                violations.append(f"{ref}: {path} pulls {token!r} from a public registry, not the approved mirror {mirror}")
    return violations


# ----------------------------------------------------------------------------------------------- S3

BUCKET_TYPES = ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")
ENCRYPTION_TYPES = ("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
                    "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2")
VERSIONING_TYPES = ("aws:s3/bucketVersioning:BucketVersioning", "aws:s3/bucketVersioningV2:BucketVersioningV2")
PUBLIC_ACCESS_BLOCK_TYPE = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
BUCKET_POLICY_TYPE = "aws:s3/bucketPolicy:BucketPolicy"
PUBLIC_ACCESS_FLAGS = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
_SSE_ALGORITHMS = {"AES256", "aws:kms", "aws:kms:dsse"}


def bucket_name(resource: PlannedResource) -> str:
    """The join key of a bucket and its companions: the bucket's name (its id in pulumi-aws 7)."""
    bucket = unwrap(resource.props.get("bucket"))
    return bucket if isinstance(bucket, str) and bucket else resource.name


def bucket_encryption(resource: PlannedResource) -> list[str]:
    rules = _as_list(unwrap(resource.props.get("rules")))
    algorithms = [((unwrap(rule) or {}).get("applyServerSideEncryptionByDefault") or {}).get("sseAlgorithm") for rule in rules]
    if not any(algorithm in _SSE_ALGORITHMS for algorithm in algorithms):
        return [f"{resource.type.rsplit(':', 1)[-1]} {resource.name}: rules[].applyServerSideEncryptionByDefault.sseAlgorithm "
                f"is {algorithms or 'missing'}; set AES256 or aws:kms"]
    return []


def bucket_versioning(resource: PlannedResource) -> list[str]:
    status = (unwrap(resource.props.get("versioningConfiguration")) or {}).get("status")
    if status != "Enabled":
        return [f"BucketVersioning {resource.name}: versioningConfiguration.status is {status!r}, not 'Enabled'"]
    return []


def bucket_public_access_block(resource: PlannedResource) -> list[str]:
    off = [flag for flag in PUBLIC_ACCESS_FLAGS if unwrap(resource.props.get(flag)) is not True]
    if off:
        return [f"BucketPublicAccessBlock {resource.name}: {', '.join(off)} must be true"]
    return []


def bucket_policy_denies_insecure_transport(resource: PlannedResource) -> list[str]:
    """The bucket policy must deny every principal any S3 action when aws:SecureTransport is false."""
    document = _policy_document(resource.props.get("policy"))
    if document is None:
        return [f"BucketPolicy {resource.name}: policy is not a JSON policy document"]
    for statement in _as_list(document.get("Statement")):
        if not isinstance(statement, Mapping) or statement.get("Effect") != "Deny":
            continue
        principal = statement.get("Principal")
        everyone = principal == "*" or (isinstance(principal, Mapping) and _as_list(principal.get("AWS")) == ["*"])
        actions = _as_list(statement.get("Action"))
        condition = (statement.get("Condition") or {}).get("Bool") or {}
        insecure = str(condition.get("aws:SecureTransport", "")).lower() == "false"
        resources = [str(r) for r in _as_list(statement.get("Resource"))]
        covers_objects = any(r.endswith("/*") for r in resources) and any(not r.endswith("/*") for r in resources)
        if everyone and insecure and ("s3:*" in actions or "*" in actions) and covers_objects:
            return []
    return [f"BucketPolicy {resource.name}: policy has no statement denying Principal '*' s3:* on the bucket and "
            "its objects when aws:SecureTransport is false (TLS-only)"]


_COMPANION_CHECKS: list[tuple[str, tuple[str, ...], Callable[[PlannedResource], list[str]]]] = [
    ("server-side encryption (BucketServerSideEncryptionConfiguration)", ENCRYPTION_TYPES, bucket_encryption),
    ("versioning (BucketVersioning)", VERSIONING_TYPES, bucket_versioning),
    ("a public access block (BucketPublicAccessBlock)", (PUBLIC_ACCESS_BLOCK_TYPE,), bucket_public_access_block),
    ("a TLS-only bucket policy (BucketPolicy)", (BUCKET_POLICY_TYPE,), bucket_policy_denies_insecure_transport),
]
COMPANION_TYPES = tuple(t for _, types, _ in _COMPANION_CHECKS for t in types)


def _companions_by_bucket(resources: Sequence[PlannedResource]) -> dict[str, dict[str, list[PlannedResource]]]:
    companions: dict[str, dict[str, list[PlannedResource]]] = {}
    for resource in resources:
        target = unwrap(resource.props.get("bucket"))
        if resource.type in COMPANION_TYPES and isinstance(target, str):
            companions.setdefault(target, {}).setdefault(resource.type, []).append(resource)
    return companions


def s3_bucket_companions_present(resources: Sequence[PlannedResource]) -> list[str]:
    """Stack-level: every bucket has an encryption configuration, versioning, a public access block and
    a bucket policy, joined to it by bucket name (pulumi-aws 7 configures each as its own resource)."""
    companions = _companions_by_bucket(resources)
    violations = []
    for bucket in (r for r in resources if r.type in BUCKET_TYPES):
        name = bucket_name(bucket)
        for what, types, _ in _COMPANION_CHECKS:
            if not any(companions.get(name, {}).get(t) for t in types):
                violations.append(f"Bucket {bucket.name}: no {what} for bucket {name!r}")
    return violations


def s3_buckets_secured(resources: Sequence[PlannedResource]) -> list[str]:
    """Every bucket's companions are present, and each companion (of any bucket) is itself correct."""
    violations = s3_bucket_companions_present(resources)
    for resource in resources:
        for _, types, check in _COMPANION_CHECKS:
            if resource.type in types:
                violations.extend(check(resource))
    return violations


# --------------------------------------------------------------------------------------------- IRSA

ROLE_TYPE = "aws:iam/role:Role"
_WEB_IDENTITY = "sts:AssumeRoleWithWebIdentity"
_WILDCARD = re.compile(r"[*?]")


def _issuer_host(issuer: str) -> str:
    return issuer.removeprefix("https://").rstrip("/")


def irsa_trust_pinned(role_name: str, trust_policy: Any, params: GuardrailParams) -> list[str]:
    """Web-identity trust must pin `<issuer>:sub` to one service account and `<issuer>:aud` to STS, both
    with StringEquals, on this cluster's issuer. A wildcard subject (StringLike) only for allow-listed roles."""
    document = _policy_document(trust_policy)
    where = f"Role {role_name}: assumeRolePolicy"
    if document is None:
        return [f"{where} is not a JSON policy document"]
    violations: list[str] = []
    for index, statement in enumerate(_as_list(document.get("Statement"))):
        if not isinstance(statement, Mapping) or statement.get("Effect") != "Allow":
            continue
        if _WEB_IDENTITY not in _as_list(statement.get("Action")):
            continue
        at = f"{where} Statement[{index}]"
        federated = _as_list((statement.get("Principal") or {}).get("Federated"))
        providers = [str(p).split(":oidc-provider/", 1)[1] for p in federated if ":oidc-provider/" in str(p)]
        if len(providers) != 1:
            violations.append(f"{at}: Principal.Federated {federated} must be exactly one IAM OIDC provider")
            continue
        issuer = providers[0]
        if params.cluster_oidc_issuer and issuer != _issuer_host(params.cluster_oidc_issuer):
            violations.append(f"{at}: Principal.Federated names issuer {issuer!r}, not this cluster's {_issuer_host(params.cluster_oidc_issuer)!r}")
        conditions = statement.get("Condition") or {}
        equals = conditions.get("StringEquals") or {}
        like = conditions.get("StringLike") or {}
        for operator in conditions:
            if operator not in ("StringEquals", "StringLike"):
                violations.append(f"{at}: Condition operator {operator} is not allowed on a web-identity trust (use StringEquals)")
        aud = _as_list(equals.get(f"{issuer}:aud"))
        if aud != ["sts.amazonaws.com"]:
            violations.append(f"{at}: Condition.StringEquals[{issuer}:aud] is {aud or 'missing'}; pin it to ['sts.amazonaws.com']")
        if f"{issuer}:aud" in like:
            violations.append(f"{at}: Condition.StringLike[{issuer}:aud] must not be used; audiences are pinned with StringEquals")
        sub_equals = _as_list(equals.get(f"{issuer}:sub"))
        sub_like = _as_list(like.get(f"{issuer}:sub"))
        allowed_wildcard = role_name in params.wildcard_trust_roles
        if sub_like and not allowed_wildcard:
            violations.append(f"{at}: Condition.StringLike[{issuer}:sub] {sub_like} is a wildcard subject; pin service accounts "
                              f"with StringEquals, or name the role in the wildcard allow-list with a reason")
        if not sub_equals and not sub_like:
            violations.append(f"{at}: Condition.StringEquals[{issuer}:sub] is missing; pin system:serviceaccount:<namespace>:<name>")
        for subject in sub_equals:
            if not str(subject).startswith("system:serviceaccount:") or _WILDCARD.search(str(subject)):
                violations.append(f"{at}: Condition.StringEquals[{issuer}:sub] {subject!r} is not one service account")
        for key in list(equals) + list(like):
            if key.endswith((":sub", ":aud")) and not key.startswith(issuer + ":"):
                violations.append(f"{at}: Condition key {key!r} is for another issuer than Principal.Federated ({issuer})")
    return violations


def irsa_roles_pinned(resource: PlannedResource, params: GuardrailParams) -> list[str]:
    if resource.type != ROLE_TYPE:
        return []
    name = unwrap(resource.props.get("name"))
    return irsa_trust_pinned(name if isinstance(name, str) else resource.name, resource.props.get("assumeRolePolicy"), params)


# ---------------------------------------------------------------------------------------------- GPU

NODE_GROUP_TYPE = "aws:eks/nodeGroup:NodeGroup"
_GPU_INSTANCE = re.compile(r"^(p\d|g\d|gr\d|inf\d|trn\d|dl\d)", re.IGNORECASE)
#: Taint effects that keep pods off a node; PREFER_NO_SCHEDULE only discourages them.
_REPELLING = {"NO_SCHEDULE", "NO_EXECUTE"}


def is_gpu_node_group(props: Mapping[str, Any]) -> bool:
    ami = str(unwrap(props.get("amiType")) or "")
    types = [str(t) for t in _as_list(unwrap(props.get("instanceTypes")))]
    return "NVIDIA" in ami or "GPU" in ami or "NEURON" in ami or any(_GPU_INSTANCE.match(t) for t in types)


def gpu_node_group_tainted_and_labelled(resource: PlannedResource) -> list[str]:
    if resource.type != NODE_GROUP_TYPE or not is_gpu_node_group(resource.props):
        return []
    violations = []
    taints = [unwrap(t) or {} for t in _as_list(unwrap(resource.props.get("taints")))]
    if not any(t.get("key") and t.get("effect") in _REPELLING for t in taints):
        violations.append(f"NodeGroup {resource.name}: taints {taints or '[]'} has no NO_SCHEDULE or NO_EXECUTE taint; "
                          "GPU nodes must repel everything but GPU work")
    if not unwrap(resource.props.get("labels")):
        violations.append(f"NodeGroup {resource.name}: labels are empty; GPU nodes must be labelled for node selectors")
    return violations


# ----------------------------------------------------------------------------- Services and the NLB

SECURITY_GROUPS_ANNOTATION = "service.beta.kubernetes.io/aws-load-balancer-security-groups"
SOURCE_RANGES_ANNOTATION = "service.beta.kubernetes.io/load-balancer-source-ranges"


def only_gateway_is_load_balancer(obj: Mapping, gateway_service: str) -> list[str]:
    if obj.get("kind") != "Service" or (unwrap(obj.get("spec")) or {}).get("type") != "LoadBalancer":
        return []
    if _ns_name(obj) == gateway_service:
        return []
    return [f"{object_ref(obj)}: spec.type is LoadBalancer; only the gateway {gateway_service} may have a load balancer"]


def _is_open(cidr: str) -> bool:
    try:
        return ipaddress.ip_network(cidr.strip(), strict=False).prefixlen == 0
    except ValueError:
        return False


def gateway_load_balancer_restricted(obj: Mapping, gateway_service: str) -> list[str]:
    """The gateway's NLB admits only configured CIDRs (`spec.loadBalancerSourceRanges` or the
    source-ranges annotation) or front-end security groups; never 0.0.0.0/0 or ::/0."""
    if obj.get("kind") != "Service" or _ns_name(obj) != gateway_service:
        return []
    spec = unwrap(obj.get("spec")) or {}
    annotations = _annotations(obj)
    ranges = [str(r) for r in _as_list(spec.get("loadBalancerSourceRanges"))]
    ranges += [r for r in str(annotations.get(SOURCE_RANGES_ANNOTATION) or "").split(",") if r.strip()]
    groups = [g for g in str(annotations.get(SECURITY_GROUPS_ANNOTATION) or "").split(",") if g.strip()]
    ref = object_ref(obj)
    violations = [f"{ref}: source range {r!r} opens the load balancer to the whole internet" for r in ranges if _is_open(r)]
    if not ranges and not groups:
        violations.append(f"{ref}: neither spec.loadBalancerSourceRanges nor the {SECURITY_GROUPS_ANNOTATION} annotation "
                          "restricts who reaches the NLB")
    return violations


# --------------------------------------------------------------------------------------------- mesh

PROFILE_LABELS_CONFIGMAP = "namespace-labels-data"


def namespace_in_mesh(obj: Mapping, params: GuardrailParams) -> list[str]:
    """A Namespace joins the mesh by `istio.io/rev: <revision>` or, without a revision, `istio-injection: enabled`.
    Istio ignores `istio.io/rev` while `istio-injection` is set, so a revision forbids the other label."""
    if obj.get("kind") != "Namespace" or _meta(obj).get("name") in params.namespaces_outside_mesh:
        return []
    labels = _labels(obj)
    ref = object_ref(obj)
    if params.mesh_revision:
        if labels.get("istio.io/rev") != params.mesh_revision:
            return [f"{ref}: metadata.labels[istio.io/rev] is {labels.get('istio.io/rev')!r}, not the mesh revision {params.mesh_revision!r}"]
        if "istio-injection" in labels:
            return [f"{ref}: metadata.labels[istio-injection] is set; Istio then ignores istio.io/rev"]
        return []
    if labels.get("istio-injection") != "enabled":
        return [f"{ref}: metadata.labels[istio-injection] is {labels.get('istio-injection')!r}, not 'enabled' (outside the mesh)"]
    return []


def profile_namespaces_in_mesh(objects: Sequence[Mapping], params: GuardrailParams) -> list[str]:
    """Profile namespaces are created by the profile controller from its namespace-labels ConfigMap, so
    the mesh label must be spelled out there (a revision also needs `istio-injection: ''`, which removes
    the controller's default), unless the plan itself creates the profile's Namespace."""
    profiles = [o for o in objects if o.get("kind") == "Profile" and str(o.get("apiVersion", "")).startswith("kubeflow.org/")]
    controller_labels = [o for o in objects if o.get("kind") == "ConfigMap" and str(_meta(o).get("name", "")).startswith(PROFILE_LABELS_CONFIGMAP)]
    planned_namespaces = {_meta(o).get("name") for o in objects if o.get("kind") == "Namespace"}
    violations: list[str] = []
    for config_map in controller_labels:
        text = ((unwrap(config_map.get("data")) or {}).get("namespace-labels.yaml")) or ""
        try:
            labels = yaml.safe_load(text) or {}
        except yaml.YAMLError:
            labels = {}
        ref = f"{object_ref(config_map)}: data[namespace-labels.yaml]"
        if params.mesh_revision:
            if labels.get("istio.io/rev") != params.mesh_revision or labels.get("istio-injection", None) != "":
                violations.append(f"{ref} must set istio.io/rev: {params.mesh_revision!r} and istio-injection: '' so profile "
                                  f"namespaces join the revisioned mesh (has istio.io/rev={labels.get('istio.io/rev')!r}, "
                                  f"istio-injection={labels.get('istio-injection')!r})")
        elif labels.get("istio-injection") != "enabled":
            violations.append(f"{ref} must set istio-injection: 'enabled' so profile namespaces join the mesh "
                              f"(has {labels.get('istio-injection')!r})")
    if not controller_labels:
        for profile in profiles:
            name = _meta(profile).get("name")
            if name not in planned_namespaces:
                violations.append(f"{object_ref(profile)}: its namespace is created by the profile controller, and no "
                                  f"{PROFILE_LABELS_CONFIGMAP} ConfigMap or Namespace {name} in the plan puts it in the mesh")
    return violations


# -------------------------------------------------------------------------------------- credentials

_AWS_ACCESS_KEY = re.compile(r"(?<![A-Z0-9])(AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])")
#: Key or variable names that hold credentials; their values must come from a Secret reference or a
#: Pulumi secret, never a literal. `*_FILE`/`*_PATH` name where a mounted secret is, not the secret.
_CREDENTIAL_NAME = re.compile(r"(password|passwd|secret[-_]?key|secret[-_]?access[-_]?key|client[-_]?secret|cookie[-_]?secret|api[-_]?key|private[-_]?key|token)$", re.IGNORECASE)
# MYSQL_ALLOW_EMPTY_PASSWORD and the like are switches, not passwords.
_REFERENCE_NAME = re.compile(r"(_file|_path|_ref|_name|_env)$|secretkeyref|allow_empty_password", re.IGNORECASE)


def _is_credential_name(name: str) -> bool:
    return bool(_CREDENTIAL_NAME.search(name)) and not _REFERENCE_NAME.search(name)


def _literal(value: Any) -> bool:
    # Empty strings hold nothing; `$(VAR)` and `{{ }}` are substituted from elsewhere at run time.
    return isinstance(value, str) and value.strip() != "" and not re.fullmatch(r"\$\(\w+\)|\{\{.*\}\}", value.strip())


def no_static_credentials(obj: Mapping, typed_resource: bool = False) -> list[str]:
    """No AWS access key ids anywhere, and no literal values under credential-named env vars,
    ConfigMap keys or Secret keys (a secretKeyRef, a mounted Secret or a Pulumi secret is fine).

    `typed_resource`: the object is a `kubernetes:core/v1:Secret` resource of its own, not a document in
    manifest text. pulumi-kubernetes always stores a Secret resource's data encrypted, and a policy pack
    sees Pulumi secrets unwrapped, so its data is not read as plaintext; its env and keys still are."""
    ref = object_ref(obj)
    violations: list[str] = []
    for path, value in _walk(obj):
        if isinstance(value, str) and _AWS_ACCESS_KEY.search(value):
            violations.append(f"{ref}: {path} holds an AWS access key id ({_AWS_ACCESS_KEY.search(value).group(1)}...)")
    template = pod_template(obj)
    pod_spec = (template or {}).get("spec") if template is not None else (unwrap(obj.get("spec")) if obj.get("kind") == "Pod" else None)
    if isinstance(pod_spec, Mapping):
        for list_name in CONTAINER_LISTS:
            for index, container in enumerate(pod_spec.get(list_name) or []):
                for entry in container.get("env") or []:
                    name = str(entry.get("name", ""))
                    if (_is_credential_name(name) or name in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")) and _literal(entry.get("value")):
                        violations.append(f"{ref}: {list_name}[{index}] ({container.get('name')}) env {name} has a literal value; "
                                          "use valueFrom.secretKeyRef")
    kind = obj.get("kind")
    if kind == "ConfigMap" or (kind == "Secret" and not typed_resource):
        fields = ("data",) if kind == "ConfigMap" else ("stringData", "data")
        for field_name in fields:
            for key, value in (unwrap(obj.get(field_name)) or {}).items():
                if _is_credential_name(str(key)) and _literal(value) and not is_secret(value):
                    violations.append(f"{ref}: {field_name}[{key}] is a literal credential in the manifests; "
                                      "fill it from a Pulumi secret")
    return violations


# ------------------------------------------------------------------------------------------ the plan

#: Policy name -> what it enforces; the policy pack registers one policy per entry.
POLICIES: Mapping[str, str] = {
    "images-from-approved-mirror": "Every image is pulled from the approved internal mirror.",
    "s3-bucket-encrypted": "S3 buckets have default server-side encryption.",
    "s3-bucket-versioned": "S3 buckets keep object versions.",
    "s3-bucket-public-access-blocked": "S3 buckets block all four kinds of public access.",
    "s3-bucket-tls-only": "S3 bucket policies deny requests without TLS.",
    "s3-bucket-companions": "Every S3 bucket has its encryption, versioning, public access block and bucket policy.",
    "irsa-trust-pinned": "IRSA trust policies pin sub and aud with StringEquals on this cluster's issuer.",
    "gpu-node-groups-tainted-and-labelled": "GPU node groups carry a repelling taint and labels.",
    "only-gateway-load-balancer": "No Service of type LoadBalancer except the mesh's ingress gateway.",
    "gateway-nlb-restricted": "The gateway's NLB admits only configured CIDRs or security groups.",
    "namespaces-in-mesh": "Every Kubeflow namespace is in the Istio mesh.",
    "profile-namespaces-in-mesh": "Every profile namespace the profile controller creates is in the Istio mesh.",
    "no-static-credentials": "No static AWS keys or plaintext passwords in manifests, ConfigMaps or env.",
}


def check_resource(resource: PlannedResource, params: GuardrailParams) -> list[str]:
    """The single-resource rules for one AWS resource (Kubernetes objects go through `check_object`)."""
    if resource.type in ENCRYPTION_TYPES:
        return bucket_encryption(resource)
    if resource.type in VERSIONING_TYPES:
        return bucket_versioning(resource)
    if resource.type == PUBLIC_ACCESS_BLOCK_TYPE:
        return bucket_public_access_block(resource)
    if resource.type == BUCKET_POLICY_TYPE:
        return bucket_policy_denies_insecure_transport(resource)
    if resource.type == ROLE_TYPE:
        return irsa_roles_pinned(resource, params)
    if resource.type == NODE_GROUP_TYPE:
        return gpu_node_group_tainted_and_labelled(resource)
    return []


def check_object(obj: Mapping, params: GuardrailParams, typed_resource: bool = False) -> list[str]:
    """The single-object rules for one Kubernetes object."""
    return (images_from_approved_mirror(obj, params.mirror)
            + only_gateway_is_load_balancer(obj, params.gateway_service)
            + gateway_load_balancer_restricted(obj, params.gateway_service)
            + namespace_in_mesh(obj, params)
            + no_static_credentials(obj, typed_resource))


def check_plan(resources: Sequence[PlannedResource], kubernetes_objects: Sequence[Mapping] | None, params: GuardrailParams) -> list[str]:
    """Every guardrail over a whole plan: the resources, the Kubernetes objects they carry, and any
    further objects (like the pure pipeline's output) passed in `kubernetes_objects`."""
    planned = list(objects_by_origin(resources)) + [(dict(obj), False) for obj in kubernetes_objects or []]
    violations: list[str] = []
    for resource in resources:
        violations.extend(check_resource(resource, params))
    violations.extend(s3_bucket_companions_present(resources))
    for obj, typed in planned:
        violations.extend(check_object(obj, params, typed))
    violations.extend(profile_namespaces_in_mesh([obj for obj, _ in planned], params))
    return violations
