"""Guardrail checks: the enterprise's rules, as pure functions over what the program plans to register.

The same functions run in three places: the CrossGuard policy pack (`policy/`), the offline preview
(`tools/plan_checks.py`, over plan.json) and the tests. Each place adapts what it has to one generic model,
so none of the checks imports Pulumi:

- `PlannedResource(type, name, props)`: one registration, `props` being its inputs in the engine's
  camelCase spelling; `Secret` stands for a Pulumi secret, `Unknown` for a value known only at deploy time.
- `PlannedObject(obj, typed)`: one Kubernetes object that would be applied: a document of a
  `kubernetes:yaml/v2:ConfigGroup` or a typed `kubernetes:*` resource of its own (`objects_by_origin`).

Every check returns violations: one message each, naming the resource or object and the field. An empty
list means the rule holds. `check_plan` runs all of them; a violation found in something that holds a
value known only at deploy time is *deferred* rather than reported, as CrossGuard does during a preview.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable

import yaml

from manifests.images import INJECTED_PROXY_IMAGE, PUBLIC_REGISTRIES, istio_fills_image
from manifests.mesh import PROFILE_LABELS_CONFIGMAP, PROFILE_LABELS_KEY, is_profile_labels_config_map, profile_namespace_labels
from manifests.objects import CONTAINER_LISTS, POD_TEMPLATE_PATHS, object_ref, objects_from_config_group_inputs, pod_template
from manifests.options import MeshOptions
from manifests.pod_identity import POD_IDENTITY_ACTIONS, POD_IDENTITY_PRINCIPAL, TAG_CLUSTER, TAG_NAMESPACE, TAG_SERVICE_ACCOUNT

class Secret:
    """A value the engine keeps encrypted (a Pulumi secret). Checks never read what is inside."""

    def __init__(self, value: Any = None) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "<secret>"


class Unknown:
    """A value known only at deploy time (a new role's ARN during a preview); equal to nothing a check wants."""

    def __init__(self, path: str = "") -> None:
        self.path = path

    def __repr__(self) -> str:
        return f"<unknown {self.path}>" if self.path else "<unknown>"


@dataclass(frozen=True)
class PlannedResource:
    """One resource the program registers: its type token, name and inputs (camelCase)."""

    type: str
    name: str
    props: Mapping[str, Any]
    urn: str = ""
    #: URNs of the resources this one's inputs come from; joins a bucket's companions to it while the
    #: bucket's id (their `bucket` input) is still unknown.
    depends_on: tuple[str, ...] = ()


@dataclass(frozen=True)
class PlannedObject:
    """One Kubernetes object that would be applied."""

    obj: Mapping[str, Any]
    #: A typed `kubernetes:*` resource of its own rather than a document in a ConfigGroup's text: the
    #: provider stores such a Secret's data encrypted, so that data is not plaintext in the manifests.
    typed: bool = False


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
    #: Namespaces deliberately outside the mesh, each for a written reason (none by default).
    namespaces_outside_mesh: frozenset[str] = frozenset()

    def policy_config(self) -> dict[str, Any]:
        """These parameters as a CrossGuard `--policy-pack-config` document, every policy mandatory."""
        gateway = {"gatewayService": self.gateway_service}
        mesh = {"meshRevision": self.mesh_revision or ""}
        return {
            "all": "mandatory",
            "images-from-approved-mirror": {"mirror": self.mirror},
            "irsa-trust-pinned": {"clusterOidcIssuer": self.cluster_oidc_issuer or "",
                                  "wildcardTrustRoles": sorted(self.wildcard_trust_roles)},
            "only-gateway-load-balancer": dict(gateway),
            "gateway-nlb-restricted": dict(gateway),
            "namespaces-in-mesh": {**mesh, "namespacesOutsideMesh": sorted(self.namespaces_outside_mesh)},
            "profile-namespaces-in-mesh": dict(mesh),
        }

    @classmethod
    def from_policy_config(cls, config: Mapping[str, Any]) -> "GuardrailParams":
        """The parameters a `--policy-pack-config` document (policy name -> its settings) states; what a
        policy's section leaves out takes the default (the pack hands each policy only its own section)."""

        def section(*policies: str) -> Mapping[str, Any]:
            merged: dict[str, Any] = {}
            for policy in policies:
                value = config.get(policy)
                merged.update(value if isinstance(value, Mapping) else {})
            return merged

        images = section("images-from-approved-mirror")
        irsa = section("irsa-trust-pinned")
        gateway = section("only-gateway-load-balancer", "gateway-nlb-restricted")
        mesh = section("profile-namespaces-in-mesh", "namespaces-in-mesh")
        return cls(
            mirror=str(images.get("mirror") or ""),
            gateway_service=str(gateway.get("gatewayService") or cls.gateway_service),
            cluster_oidc_issuer=str(irsa.get("clusterOidcIssuer") or "") or None,
            wildcard_trust_roles=frozenset(irsa.get("wildcardTrustRoles") or ()),
            mesh_revision=str(mesh.get("meshRevision") or "") or None,
            namespaces_outside_mesh=frozenset(mesh.get("namespacesOutsideMesh") or ()),
        )


@dataclass(frozen=True)
class GuardrailReport:
    """What `check_plan` found."""

    #: Broken rules, one message each; the plan must not be deployed.
    violations: list[str]
    #: Would-be violations in resources or objects that hold a value known only at deploy time: neither
    #: passed nor failed yet (`pulumi up` with the policy pack decides them on the real values).
    deferred: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------- extraction

CONFIG_GROUP = "kubernetes:yaml/v2:ConfigGroup"
#: Kubernetes types that carry no object of their own (providers, groups of other objects).
_NOT_AN_OBJECT = {"kubernetes:yaml/v2:ConfigFile", "kubernetes:yaml:ConfigFile", "kubernetes:yaml:ConfigGroup",
                  "kubernetes:helm.sh/v3:Chart", "kubernetes:helm.sh/v4:Chart", "kubernetes:kustomize/v2:Directory"}


def is_secret(value: Any) -> bool:
    """True for a value that reaches the engine as a Pulumi secret (encrypted in the state)."""
    # pulumi_policy hands secrets to policies as its own `Secret` wrapper, of the same shape.
    return isinstance(value, Secret) or (type(value).__name__ == "Secret" and hasattr(value, "value"))


def unwrap(value: Any) -> Any:
    """The plain value inside a secret wrapper (for reading structure, never for reporting)."""
    return value.value if is_secret(value) else value


class _Reads:
    """Whether a check read a value known only at deploy time."""

    unknown = False


def _tracked(value: Any, reads: _Reads) -> Any:
    if isinstance(value, Unknown):
        reads.unknown = True
        return value
    if isinstance(value, Mapping) and not isinstance(value, _TrackedDict):
        return _TrackedDict(value, reads)
    if isinstance(value, list) and not isinstance(value, _TrackedList):
        return _TrackedList(value, reads)
    return value


class _TrackedDict(dict):
    """A mapping that notes every unknown value read from it (or from anything below it)."""

    def __init__(self, source: Mapping, reads: _Reads) -> None:
        super().__init__(source)
        self._reads = reads

    def __getitem__(self, key: Any) -> Any:
        return _tracked(super().__getitem__(key), self._reads)

    def get(self, key: Any, default: Any = None) -> Any:
        return self[key] if key in self else default

    def items(self):  # type: ignore[override]
        return [(key, self[key]) for key in self]

    def values(self):  # type: ignore[override]
        return [self[key] for key in self]


class _TrackedList(list):
    def __init__(self, source: list, reads: _Reads) -> None:
        super().__init__(source)
        self._reads = reads

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [_tracked(value, self._reads) for value in super().__getitem__(index)]
        return _tracked(super().__getitem__(index), self._reads)

    def __iter__(self):  # type: ignore[override]
        return (_tracked(value, self._reads) for value in super().__iter__())


def _decided(check: Callable[[Mapping], list[str]], holder: Mapping, unknowns: bool | None = None) -> tuple[list[str], bool]:
    """(what `check` finds in `holder`, whether that rests on a value known only at deploy time: the check
    read one). Only a holder with unknowns goes through a tracking copy, so the common case costs nothing.
    `unknowns`: `has_unknown(holder)`, when the caller knows it already (one walk per object, not per rule)."""
    if not (has_unknown(holder) if unknowns is None else unknowns):
        return check(holder), False
    reads = _Reads()
    found = check(_TrackedDict(holder, reads))
    return found, bool(found) and reads.unknown


def has_unknown(node: Any) -> bool:
    """True when any value in `node` is known only at deploy time."""
    if isinstance(node, Unknown):
        return True
    node = unwrap(node)
    if isinstance(node, Mapping):
        return any(has_unknown(value) for value in node.values())
    if isinstance(node, list):
        return any(has_unknown(value) for value in node)
    return False


def objects_by_origin(resources: Iterable[PlannedResource]) -> Iterator[PlannedObject]:
    """Every Kubernetes object the resources carry: ConfigGroup documents and individual objects."""
    for resource in resources:
        if resource.type == CONFIG_GROUP:
            for obj in _config_group_objects(resource):
                yield PlannedObject(obj)
        elif resource.type.startswith("kubernetes:") and resource.type not in _NOT_AN_OBJECT and "::" not in resource.type:
            obj = _as_object(resource)
            if obj is not None:
                yield PlannedObject(obj, typed=True)


def _config_group_objects(resource: PlannedResource) -> list[dict]:
    texts = unwrap(resource.props.get("yaml"))
    objs = unwrap(resource.props.get("objs"))
    inputs = [{"yaml": unwrap(text)} for text in (texts if isinstance(texts, list) else [texts]) if isinstance(unwrap(text), str)]
    if isinstance(objs, list):
        inputs.append({"objs": [unwrap(obj) for obj in objs]})
    return [dict(obj) for each in inputs for obj in objects_from_config_group_inputs(each) if isinstance(obj, Mapping)]


def _as_object(resource: PlannedResource) -> dict | None:
    # `kubernetes:core/v1:ServicePatch` -> kind Service; the inputs are the object's own fields.
    _, module, kind = resource.type.split(":", 2)
    if kind.endswith("Patch"):
        kind = kind[: -len("Patch")]
    if kind.endswith("List") or kind == "Provider":
        return None
    obj = dict(resource.props)
    obj.setdefault("kind", kind)
    metadata = dict(_mapping(obj.get("metadata")))
    metadata.setdefault("name", resource.name)
    obj["metadata"] = metadata
    return obj


# ------------------------------------------------------------------------------------- reading values


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


class _NotPlain(Exception):
    """An object holds something besides dicts, lists and plain scalars."""


_PLAIN_SCALARS = (int, float, bool, type(None))


def _walk_path(trail: list[tuple[bool, Any]]) -> str:
    """The dotted path `_walk` gives the node at the end of `trail` ((is a list index, key or index) per step)."""
    path = ""
    for index, key in trail:
        path = f"{path}[{key}]" if index else f"{path}.{key}" if path else str(key)
    return path


def _suspect_strings(obj: Any) -> list[tuple[str, str]] | None:
    """Of a plain object's string leaves, those the text rules could flag, as `_walk` gives them (dotted path,
    value, in its order): a string under a key ending in `image`, or one that names a public registry or holds
    an AWS access key id somewhere (`_SUSPECT`). Every other string passes `images_from_approved_mirror` and the
    key check of `no_static_credentials` whatever it is, so their findings over these leaves are their findings
    over the whole walk. None when `obj` holds anything besides dicts, lists, strings, numbers, booleans and
    None (a secret, a value known only at deploy time, another kind of mapping): such an object takes the full
    walk. One pass without building a path per node: paths are a fifth of a walk's cost and few leaves need one."""
    found: list[tuple[str, str]] = []
    trail: list[tuple[bool, Any]] = []
    suspect = _SUSPECT.search

    def visit(node: Any) -> None:
        if type(node) is dict:
            steps: Iterable[tuple[Any, Any]] = node.items()
            index = False
        else:
            steps = enumerate(node)
            index = True
        for key, value in steps:
            kind = type(value)
            if kind is str:
                # `_SUSPECT` needs a `/` or a key id's prefix: most strings are passed without the regex.
                if (("/" in value or "AKIA" in value or "ASIA" in value) and suspect(value)) or (
                        not index and str(key).endswith("image")):
                    trail.append((index, key))
                    found.append((_walk_path(trail), value))
                    trail.pop()
            elif kind is dict or kind is list:
                trail.append((index, key))
                visit(value)
                trail.pop()
            elif kind not in _PLAIN_SCALARS:
                raise _NotPlain

    if type(obj) is not dict:
        return None
    try:
        visit(obj)
    except _NotPlain:
        return None
    return found


def _mapping(value: Any) -> Mapping:
    """`value` if it is a mapping; {} for a missing, unknown or malformed one (checks read, never raise)."""
    value = unwrap(value)
    return value if isinstance(value, Mapping) else {}


def _meta(obj: Mapping) -> Mapping:
    return _mapping(obj.get("metadata"))


def _labels(obj: Mapping) -> Mapping:
    return _mapping(_meta(obj).get("labels"))


def _annotations(obj: Mapping) -> Mapping:
    return _mapping(_meta(obj).get("annotations"))


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
#: What a string must hold for `_PUBLIC_REGISTRY` to match one of its tokens or `_AWS_ACCESS_KEY` to match it: the
#: same patterns without their anchors and lookarounds, so every string either matches finds this.
_SUSPECT = re.compile("(?:AKIA|ASIA)[A-Z0-9]{16}|(?:" + "|".join(re.escape(r) for r in PUBLIC_REGISTRIES) + r")/[\w.-]")


def images_from_approved_mirror(obj: Mapping, mirror: str, leaves: Iterable[tuple[str, Any]] | None = None) -> list[str]:
    """Every container image, every `image` field and every public-registry reference in text must be
    under `mirror`. CRDs are skipped: their schemas describe images, they run none. `leaves`: the (path, value)
    pairs to read instead of the whole walk (`_suspect_strings`, which finds every one that matters)."""
    if obj.get("kind") == "CustomResourceDefinition":
        return []
    prefix = mirror.rstrip("/") + "/"
    ref = object_ref(obj)
    violations: list[str] = []
    for path, value in _walk(obj) if leaves is None else leaves:
        if not isinstance(value, str):
            continue
        if path.startswith("data.") and path.split(".", 2)[1] in _DOCUMENTATION_KEYS:
            continue
        leaf = path.rsplit(".", 1)[-1]
        if leaf == "image" and value == INJECTED_PROXY_IMAGE and istio_fills_image(obj):
            continue  # Istio's injector sets the mesh's own proxy image there
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
    algorithms = [_mapping(_mapping(rule).get("applyServerSideEncryptionByDefault")).get("sseAlgorithm") for rule in rules]
    if not any(algorithm in _SSE_ALGORITHMS for algorithm in algorithms):
        return [f"{resource.type.rsplit(':', 1)[-1]} {resource.name}: rules[].applyServerSideEncryptionByDefault.sseAlgorithm "
                f"is {algorithms or 'missing'}; set AES256 or aws:kms"]
    return []


def bucket_versioning(resource: PlannedResource) -> list[str]:
    status = _mapping(resource.props.get("versioningConfiguration")).get("status")
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
    if isinstance(unwrap(resource.props.get("policy")), Unknown):
        return [f"BucketPolicy {resource.name}: policy is known only after deploy"]
    if document is None:
        return [f"BucketPolicy {resource.name}: policy is not a JSON policy document"]
    for statement in _as_list(document.get("Statement")):
        if not isinstance(statement, Mapping) or statement.get("Effect") != "Deny":
            continue
        principal = statement.get("Principal")
        everyone = principal == "*" or (isinstance(principal, Mapping) and _as_list(principal.get("AWS")) == ["*"])
        actions = _as_list(statement.get("Action"))
        condition = _mapping(_mapping(statement.get("Condition")).get("Bool"))
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


def _companions_by_bucket(resources: Sequence[PlannedResource]) -> tuple[dict[str, dict[str, list[PlannedResource]]], list[PlannedResource]]:
    """Companions by the name of their bucket, and those whose bucket cannot be told before deploy."""
    buckets_by_urn = {r.urn: bucket_name(r) for r in resources if r.type in BUCKET_TYPES and r.urn}
    companions: dict[str, dict[str, list[PlannedResource]]] = {}
    unjoined: list[PlannedResource] = []
    for resource in resources:
        if resource.type not in COMPANION_TYPES:
            continue
        target = unwrap(resource.props.get("bucket"))
        if not isinstance(target, str):
            # A new bucket's id is unknown during a preview; the companion's inputs depend on that bucket.
            targets = {buckets_by_urn[urn] for urn in resource.depends_on if urn in buckets_by_urn}
            if len(targets) != 1:
                unjoined.append(resource)
                continue
            target = targets.pop()
        companions.setdefault(target, {}).setdefault(resource.type, []).append(resource)
    return companions, unjoined


def s3_bucket_companions_present(resources: Sequence[PlannedResource]) -> GuardrailReport:
    """Stack-level: every bucket has an encryption configuration, versioning, a public access block and
    a bucket policy, joined to it by bucket name (pulumi-aws 7 configures each as its own resource).
    A missing companion is deferred while some companion's bucket cannot be told before deploy."""
    companions, unjoined = _companions_by_bucket(resources)
    missing = []
    for bucket in (r for r in resources if r.type in BUCKET_TYPES):
        name = bucket_name(bucket)
        for what, types, _ in _COMPANION_CHECKS:
            if not any(companions.get(name, {}).get(t) for t in types):
                missing.append(f"Bucket {bucket.name}: no {what} for bucket {name!r}")
    return GuardrailReport([], missing) if unjoined else GuardrailReport(missing)


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
    if isinstance(unwrap(trust_policy), Unknown):
        return [f"{where} is known only after deploy"]
    if document is None:
        return [f"{where} is not a JSON policy document"]
    violations: list[str] = []
    for index, statement in enumerate(_as_list(document.get("Statement"))):
        if not isinstance(statement, Mapping) or statement.get("Effect") != "Allow":
            continue
        if POD_IDENTITY_PRINCIPAL in _as_list(_mapping(statement.get("Principal")).get("Service")):
            violations += pod_identity_trust_pinned(f"{where} Statement[{index}]", statement)
            continue
        if _WEB_IDENTITY not in _as_list(statement.get("Action")):
            continue
        at = f"{where} Statement[{index}]"
        federated = _as_list(_mapping(statement.get("Principal")).get("Federated"))
        providers = [str(p).split(":oidc-provider/", 1)[1] for p in federated if ":oidc-provider/" in str(p)]
        if len(providers) != 1:
            violations.append(f"{at}: Principal.Federated {federated} must be exactly one IAM OIDC provider")
            continue
        issuer = providers[0]
        if params.cluster_oidc_issuer and issuer != _issuer_host(params.cluster_oidc_issuer):
            violations.append(f"{at}: Principal.Federated names issuer {issuer!r}, not this cluster's {_issuer_host(params.cluster_oidc_issuer)!r}")
        conditions = _mapping(statement.get("Condition"))
        equals = _mapping(conditions.get("StringEquals"))
        like = _mapping(conditions.get("StringLike"))
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


def pod_identity_trust_pinned(at: str, statement: Mapping[str, Any]) -> list[str]:
    """EKS Pod Identity trust: the service principal serves every cluster of the account, so the statement must
    pin the session tags with StringEquals: one cluster, one namespace, named service accounts
    (docs.aws.amazon.com/eks/latest/userguide/pod-id-role.html)."""
    violations = []
    actions = sorted(str(a) for a in _as_list(statement.get("Action")))
    if actions != sorted(POD_IDENTITY_ACTIONS):
        violations.append(f"{at}: Action {actions} must be exactly {sorted(POD_IDENTITY_ACTIONS)} for {POD_IDENTITY_PRINCIPAL}")
    conditions = _mapping(statement.get("Condition"))
    for operator in conditions:
        if operator != "StringEquals":
            violations.append(f"{at}: Condition operator {operator} is not allowed on a Pod Identity trust (use StringEquals)")
    equals = _mapping(conditions.get("StringEquals"))
    for tag, single in ((TAG_CLUSTER, True), (TAG_NAMESPACE, True), (TAG_SERVICE_ACCOUNT, False)):
        values = [str(v) for v in _as_list(equals.get(f"aws:RequestTag/{tag}"))]
        if not values or any(_WILDCARD.search(v) for v in values) or (single and len(values) != 1):
            violations.append(f"{at}: Condition.StringEquals[aws:RequestTag/{tag}] is {values or 'missing'}; "
                              f"pin it to {'one value' if single else 'the service accounts'}")
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


#: Karpenter's NodePool as the Kubernetes provider registers it (a custom resource).
NODE_POOL_TYPE = "kubernetes:karpenter.sh/v1:NodePool"


def gpu_node_pool_tainted_and_labelled(resource: PlannedResource) -> list[str]:
    """The Karpenter counterpart of a GPU node group's rule: a NodePool that asks for GPU instances taints and
    labels its nodes."""
    template = _mapping(_mapping(unwrap(resource.props.get("spec"))).get("template"))
    spec = _mapping(template.get("spec"))
    requirements = [_mapping(r) for r in _as_list(spec.get("requirements"))]
    gpu = any(str(r.get("key", "")).startswith("karpenter.k8s.aws/instance-gpu") for r in requirements) or any(
        _GPU_INSTANCE.match(str(v)) for r in requirements if r.get("key") == "node.kubernetes.io/instance-type"
        for v in _as_list(r.get("values")))
    if not gpu:
        return []
    violations = []
    taints = [_mapping(t) for t in _as_list(spec.get("taints"))]
    if not any(t.get("key") and t.get("effect") in ("NoSchedule", "NoExecute") for t in taints):
        violations.append(f"NodePool {resource.name}: taints {taints or '[]'} has no NoSchedule or NoExecute taint; "
                          "GPU nodes must repel everything but GPU work")
    if not _mapping(template.get("metadata")).get("labels"):
        violations.append(f"NodePool {resource.name}: template labels are empty; GPU nodes must be labelled for node selectors")
    return violations


def gpu_node_group_tainted_and_labelled(resource: PlannedResource) -> list[str]:
    if resource.type == NODE_POOL_TYPE:
        return gpu_node_pool_tainted_and_labelled(resource)
    if resource.type != NODE_GROUP_TYPE or not is_gpu_node_group(resource.props):
        return []
    violations = []
    taints = [_mapping(t) for t in _as_list(unwrap(resource.props.get("taints")))]
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
    if obj.get("kind") != "Service" or _mapping(obj.get("spec")).get("type") != "LoadBalancer":
        return []
    if _ns_name(obj) == gateway_service:
        return []
    return [f"{object_ref(obj)}: spec.type is LoadBalancer; only the gateway {gateway_service} may have a load balancer"]


def _is_open(cidr: str) -> bool:
    try:
        return ipaddress.ip_network(cidr.strip(), strict=False).prefixlen == 0
    except ValueError:
        return False


def whole_address_spaces(ranges: Iterable[str]) -> list[str]:
    """`0.0.0.0/0` and/or `::/0` when the valid `ranges`, together, cover every address of that family:
    `0.0.0.0/1` and `128.0.0.0/1` admit the whole internet as surely as `0.0.0.0/0` does. Judged on the
    address space (ipaddress.collapse_addresses merges adjacent and nested ranges), not on the strings."""
    families: dict[int, list] = {4: [], 6: []}
    for cidr in ranges:
        try:
            network = ipaddress.ip_network(str(cidr).strip(), strict=False)
        except ValueError:
            continue
        families[network.version].append(network)
    return [str(whole) for networks in families.values() if networks
            for whole in ipaddress.collapse_addresses(networks) if whole.prefixlen == 0]


def _open_ranges(ref: str, ranges: list[str]) -> list[str]:
    violations = [f"{ref}: source range {r!r} opens the load balancer to the whole internet" for r in ranges if _is_open(r)]
    if not violations:
        violations = [f"{ref}: source ranges {', '.join(ranges)} together cover {whole}, the whole internet"
                      for whole in whole_address_spaces(ranges)]
    return violations


def gateway_load_balancer_restricted(obj: Mapping, gateway_service: str) -> list[str]:
    """The gateway's NLB admits only configured CIDRs (`spec.loadBalancerSourceRanges` or the
    source-ranges annotation) or front-end security groups; never 0.0.0.0/0 or ::/0, alone or in pieces."""
    if obj.get("kind") != "Service" or _ns_name(obj) != gateway_service:
        return []
    ref = object_ref(obj)
    ranges = [str(r) for r in _as_list(_mapping(obj.get("spec")).get("loadBalancerSourceRanges"))]
    violations = _open_ranges(ref, ranges)
    if violations:
        # Decided by the spec alone; the annotations (which also carry deploy-time values) cannot undo it.
        return violations
    annotations = _annotations(obj)
    ranges += [r for r in str(annotations.get(SOURCE_RANGES_ANNOTATION) or "").split(",") if r.strip()]
    groups = [g for g in str(annotations.get(SECURITY_GROUPS_ANNOTATION) or "").split(",") if g.strip()]
    violations = _open_ranges(ref, ranges)
    if not ranges and not groups:
        violations.append(f"{ref}: neither spec.loadBalancerSourceRanges nor the {SECURITY_GROUPS_ANNOTATION} annotation "
                          "restricts who reaches the NLB")
    return violations


# --------------------------------------------------------------------------------------------- mesh

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
    """Profile namespaces are created or adopted by the profile controller, which labels them from its
    labels file (see `manifests.mesh.profile_namespace_labels` for the controller's rules), so the file
    must carry the mesh labels, unless the plan itself creates every profile's Namespace."""
    profiles = [o for o in objects if o.get("kind") == "Profile" and str(o.get("apiVersion", "")).startswith("kubeflow.org/")]
    controller_labels = [o for o in objects if is_profile_labels_config_map(o)]
    planned_namespaces = {_meta(o).get("name") for o in objects if o.get("kind") == "Namespace"}
    wanted = profile_namespace_labels(MeshOptions(revision=params.mesh_revision))
    violations: list[str] = []
    for config_map in controller_labels:
        text = _mapping(config_map.get("data")).get(PROFILE_LABELS_KEY) or ""
        try:
            labels = yaml.safe_load(text) or {}
        except yaml.YAMLError:
            labels = {}
        labels = labels if isinstance(labels, Mapping) else {}
        if any(labels.get(key) != value for key, value in wanted.items()):
            has = ", ".join(f"{key}={labels.get(key)!r}" for key in wanted)
            need = ", ".join(f"{key}: {value!r}" for key, value in wanted.items())
            violations.append(f"{object_ref(config_map)}: data[{PROFILE_LABELS_KEY}] must set {need} so the namespaces the "
                              f"profile controller creates or adopts join the mesh (has {has})")
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


def no_static_credentials(obj: Mapping, typed_resource: bool = False, leaves: Iterable[tuple[str, Any]] | None = None) -> list[str]:
    """No AWS access key ids anywhere, and no literal values under credential-named env vars,
    ConfigMap keys or Secret keys (a secretKeyRef, a mounted Secret or a Pulumi secret is fine).

    `typed_resource`: the object is a `kubernetes:core/v1:Secret` resource of its own, not a document in
    manifest text. pulumi-kubernetes always stores a Secret resource's data encrypted, and a policy pack
    sees Pulumi secrets unwrapped, so its data is not read as plaintext; its env and keys still are.
    `leaves`: the (path, value) pairs to search for key ids instead of the whole walk (`_suspect_strings`)."""
    ref = object_ref(obj)
    violations: list[str] = []
    for path, value in _walk(obj) if leaves is None else leaves:
        if isinstance(value, str) and _AWS_ACCESS_KEY.search(value):
            violations.append(f"{ref}: {path} holds an AWS access key id ({_AWS_ACCESS_KEY.search(value).group(1)}...)")
    template = pod_template(obj)
    pod_spec = _mapping(template.get("spec") if template is not None else obj.get("spec") if obj.get("kind") == "Pod" else None)
    for list_name in CONTAINER_LISTS:
        for index, container in enumerate(_mapping(c) for c in _as_list(unwrap(pod_spec.get(list_name)))):
            for entry in (_mapping(e) for e in _as_list(unwrap(container.get("env")))):
                name = str(entry.get("name", ""))
                if (_is_credential_name(name) or name in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")) and _literal(entry.get("value")):
                    violations.append(f"{ref}: {list_name}[{index}] ({container.get('name')}) env {name} has a literal value; "
                                      "use valueFrom.secretKeyRef")
    kind = obj.get("kind")
    if kind == "ConfigMap" or (kind == "Secret" and not typed_resource):
        fields = ("data",) if kind == "ConfigMap" else ("stringData", "data")
        for field_name in fields:
            for key, value in _mapping(obj.get(field_name)).items():
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
    "no-anonymous-bindings": "No RoleBinding or ClusterRoleBinding grants anything to unauthenticated callers.",
    "no-host-access-workloads": "No workload runs privileged or with the node's network, processes or files.",
}


#: Who a request without credentials is to the API server: the user `system:anonymous` in the group
#: `system:unauthenticated` (https://kubernetes.io/docs/reference/access-authn-authz/authentication/#anonymous-requests).
ANONYMOUS_SUBJECTS = (("User", "system:anonymous"), ("Group", "system:unauthenticated"))
BINDING_KINDS = ("RoleBinding", "ClusterRoleBinding")


def no_anonymous_bindings(obj: Mapping) -> list[str]:
    """A binding to the anonymous user or the unauthenticated group hands its role to anyone who reaches the API
    server (EKS's public endpoint included). `system:authenticated` is left to review: upstream binds read-only
    roles to it (Kubeflow Trainer's cluster runtimes, KFP's public pipelines)."""
    if obj.get("kind") not in BINDING_KINDS:
        return []
    found = []
    for index, subject in enumerate(_as_list(obj.get("subjects"))):
        subject = _mapping(subject)
        if (subject.get("kind"), subject.get("name")) in ANONYMOUS_SUBJECTS:
            role = _mapping(obj.get("roleRef")).get("name")
            found.append(f"{object_ref(obj)}: subjects[{index}] {subject.get('name')} is bound to {role!r}: anyone who reaches"
                         " the API server without credentials gets that role")
    return found


#: Pod fields that put a container on the node itself (Pod Security's baseline standard refuses each:
#: https://kubernetes.io/docs/concepts/security/pod-security-standards/#baseline).
HOST_NAMESPACE_FIELDS = ("hostNetwork", "hostPID", "hostIPC")


def no_host_access(obj: Mapping) -> list[str]:
    """A privileged container, a hostPath volume or a host namespace reaches the node: every other pod's
    volumes and service-account tokens there, and the node's IAM role through IMDS."""
    template = pod_template(obj)
    if template is None:
        return []
    spec = _mapping(template.get("spec"))
    ref = object_ref(obj)
    at = ".".join((*POD_TEMPLATE_PATHS[obj["kind"]], "spec"))
    found = [f"{ref}: {at}.{name} is true" for name in HOST_NAMESPACE_FIELDS if spec.get(name) is True]
    for index, volume in enumerate(_as_list(spec.get("volumes"))):
        if "hostPath" in _mapping(volume):
            found.append(f"{ref}: {at}.volumes[{index}] ({_mapping(volume).get('name')}) is a hostPath volume")
    for kind in CONTAINER_LISTS:
        for index, container in enumerate(_as_list(spec.get(kind))):
            context = _mapping(_mapping(container).get("securityContext"))
            if context.get("privileged") is True:
                found.append(f"{ref}: {at}.{kind}[{index}] ({_mapping(container).get('name')}) is privileged")
    return found


def images_mirrored(planned: PlannedObject, params: GuardrailParams) -> list[str]:
    if not params.mirror:
        return ["no approved mirror is configured, so no image can be shown to come from it "
                "(set kubeflow.images.mirror, or `mirror` for images-from-approved-mirror in --policy-pack-config)"]
    return images_from_approved_mirror(planned.obj, params.mirror)


#: policy -> (the resource types it applies to, its check): the rules over one AWS resource.
RESOURCE_RULES: Mapping[str, tuple[tuple[str, ...], Callable[[PlannedResource, GuardrailParams], list[str]]]] = {
    "s3-bucket-encrypted": (ENCRYPTION_TYPES, lambda r, p: bucket_encryption(r)),
    "s3-bucket-versioned": (VERSIONING_TYPES, lambda r, p: bucket_versioning(r)),
    "s3-bucket-public-access-blocked": ((PUBLIC_ACCESS_BLOCK_TYPE,), lambda r, p: bucket_public_access_block(r)),
    "s3-bucket-tls-only": ((BUCKET_POLICY_TYPE,), lambda r, p: bucket_policy_denies_insecure_transport(r)),
    "irsa-trust-pinned": ((ROLE_TYPE,), irsa_roles_pinned),
    "gpu-node-groups-tainted-and-labelled": ((NODE_GROUP_TYPE, NODE_POOL_TYPE), lambda r, p: gpu_node_group_tainted_and_labelled(r)),
}

#: policy -> its check: the rules over one Kubernetes object.
OBJECT_RULES: Mapping[str, Callable[[PlannedObject, GuardrailParams], list[str]]] = {
    "images-from-approved-mirror": images_mirrored,
    "only-gateway-load-balancer": lambda o, p: only_gateway_is_load_balancer(o.obj, p.gateway_service),
    "gateway-nlb-restricted": lambda o, p: gateway_load_balancer_restricted(o.obj, p.gateway_service),
    "namespaces-in-mesh": lambda o, p: namespace_in_mesh(o.obj, p),
    "no-static-credentials": lambda o, p: no_static_credentials(o.obj, o.typed),
    "no-anonymous-bindings": lambda o, p: no_anonymous_bindings(o.obj),
    "no-host-access-workloads": lambda o, p: no_host_access(o.obj),
}

#: The object rules that read every string of an object, given only the strings that can matter
#: (`_suspect_strings`) when the object is plain: the same findings as over the whole walk.
_STRING_RULES: Mapping[str, Callable[[PlannedObject, GuardrailParams, list[tuple[str, str]]], list[str]]] = {
    "images-from-approved-mirror": lambda o, p, leaves: images_from_approved_mirror(o.obj, p.mirror, leaves),
    "no-static-credentials": lambda o, p, leaves: no_static_credentials(o.obj, o.typed, leaves),
}

#: The rules over the whole plan: "s3-bucket-companions" and "profile-namespaces-in-mesh".
STACK_RULES = ("s3-bucket-companions", "profile-namespaces-in-mesh")

if set(RESOURCE_RULES) | set(OBJECT_RULES) | set(STACK_RULES) != set(POLICIES):
    raise RuntimeError("every policy needs exactly one rule, and every rule a policy")


def violation(policy: str, message: str) -> str:
    """A violation as the offline preview and the tests print it: the policy's name, then its message."""
    return f"[{policy}] {message}"


def check_plan(resources: Sequence[PlannedResource], params: GuardrailParams,
               objects: Sequence[PlannedObject] | None = None,
               reuse: Callable[[PlannedObject, Callable[[PlannedObject], list[str] | None]], list[str] | None] | None = None,
               ) -> GuardrailReport:
    """Every guardrail over a whole plan: the resources and the Kubernetes objects they apply (`objects`;
    None: those the resources carry, `objects_by_origin`). Each message starts with its policy's name.
    A violation a rule finds after reading a value known only at deploy time is deferred, not reported.
    `reuse`: for a caller that keeps what the object rules found in a plain object between runs, called with each
    object and the function that checks a plain one (its violations; None: not plain), returning what it returns."""
    planned = list(objects_by_origin(resources)) if objects is None else list(objects)
    violations: list[str] = []
    deferred: list[str] = []

    def sort(policy: str, found: tuple[list[str], bool]) -> None:
        messages, rests_on_unknowns = found
        (deferred if rests_on_unknowns else violations).extend(violation(policy, message) for message in messages)

    if not params.mirror:
        sort("images-from-approved-mirror", (images_mirrored(PlannedObject({}), params), False))
    for resource in resources:
        for policy, (types, rule) in RESOURCE_RULES.items():
            if resource.type in types:
                sort(policy, _decided(lambda props: rule(PlannedResource(resource.type, resource.name, props, resource.urn,
                                                                          resource.depends_on), params), resource.props))
    companions = s3_bucket_companions_present(resources)
    violations.extend(violation("s3-bucket-companions", message) for message in companions.violations)
    deferred.extend(violation("s3-bucket-companions", message) for message in companions.deferred)

    def plain(each: PlannedObject) -> list[str] | None:
        leaves = _suspect_strings(each.obj)
        if leaves is None:
            return None
        # A plain object (every ConfigGroup document) holds no value known only at deploy time: nothing to defer, no
        # tracking copy, and one pass over it for the rules that read all of its strings.
        messages: list[str] = []
        for policy, object_rule in OBJECT_RULES.items():
            if policy != "images-from-approved-mirror" or params.mirror:
                string_rule = _STRING_RULES.get(policy)
                found = object_rule(each, params) if string_rule is None else string_rule(each, params, leaves)
                messages.extend(violation(policy, message) for message in found)
        return messages

    for each in planned:
        found = plain(each) if reuse is None else reuse(each, plain)
        if found is not None:
            violations.extend(found)
            continue
        unknowns = has_unknown(each.obj)
        for policy, object_rule in OBJECT_RULES.items():
            if policy != "images-from-approved-mirror" or params.mirror:
                sort(policy, _decided(lambda obj: object_rule(PlannedObject(obj, each.typed), params), each.obj, unknowns))
    violations.extend(violation("profile-namespaces-in-mesh", message)
                      for message in profile_namespaces_in_mesh([p.obj for p in planned], params))
    return GuardrailReport(violations, deferred)
