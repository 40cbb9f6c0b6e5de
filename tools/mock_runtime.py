"""Runs `__main__.py` for a stack under Pulumi's mock runtime: no credentials, no cloud calls.

Used by the tests and by the offline preview. It does what the mock runtime does not do by itself:
applies the `Pulumi.yaml` defaults and the stack file's config, answers the data-source invokes the
program makes (EKS cluster, caller identity, hosted zone, ...) with values shaped like AWS's, and
records every registration with its parent, provider, options and dependencies.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import runpy
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pulumi
import yaml

from analysis.plan_objects import KNOWN_AFTER_DEPLOY, SECRET
from manifests import yaml_loader
from pulumi.runtime import known_types
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import resource as pulumi_resource
from pulumi.runtime import rpc
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime.config import set_all_config
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

REPO_ROOT = Path(__file__).resolve().parent.parent
PROJECT = "kubeflow-platform"
#: What the mocks answer for the caller's account when the stack pins none.
DEFAULT_ACCOUNT = "123456789012"
# The stack files are read on every run; libyaml's loader gives the same values ten times faster.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# Canonical hosted zone ids of Network Load Balancers per region (Elastic Load Balancing endpoints
# and quotas, "Network Load Balancers" column); ALB/Classic ids differ and alias records to an NLB
# with them fail.
NLB_HOSTED_ZONE_IDS = {
    "us-east-1": "Z26RNL4JYFTOTI",
    "us-east-2": "ZLMOA37VPKANP",
    "us-west-1": "Z24FKFUX50B4VW",
    "us-west-2": "Z18D5FSROUN65G",
    "eu-west-1": "Z2IFOLAFXWLO4F",
    "eu-central-1": "Z3F0SRJ5LGBH90",
}


def stack_config(stack: str, root: Path = REPO_ROOT) -> dict[str, Any]:
    """The config a real `pulumi up` would see: Pulumi.yaml defaults overlaid by the stack file."""
    project = yaml.load((root / "Pulumi.yaml").read_text(), Loader=_YAML_LOADER)
    values: dict[str, Any] = {}
    for key, declaration in (project.get("config") or {}).items():
        if isinstance(declaration, Mapping) and "default" in declaration:
            values[f"{PROJECT}:{key}"] = declaration["default"]
    stack_file = root / f"Pulumi.{stack}.yaml"
    if not stack_file.is_file():
        raise FileNotFoundError(f"no stack file {stack_file.name}; stacks here: {', '.join(known_stacks(root))}")
    values.update(_stack_values(stack_file))
    return values


class StackFileError(pulumi.RunError):
    """The stack file itself cannot be read as Pulumi stack configuration (reported without a traceback)."""


#: How large a stack file's values may grow once YAML aliases are followed, in characters of their text. The
#: stacks here are some 10,000; a value of Pulumi config may be 262,144. Aliases share one Python object, so
#: a handful of lines can stand for billions of values that only the JSON the engine hands the program spells
#: out (a "billion laughs" stack file exhausted memory that way).
MAX_STACK_FILE_EXPANDED = 4 * 1024 * 1024


def expanded_size(value: Any, limit: int) -> int:
    """Characters `value` spells out with every shared (aliased) collection written in full; stops past `limit`.

    Counted once per distinct object and multiplied by how often it is referenced, so the walk is linear in
    the document however far the aliases would expand.
    """
    sizes: dict[int, int] = {}

    def size_of(item: Any, depth: int) -> int:
        if isinstance(item, (dict, list, tuple)):
            known = sizes.get(id(item))
            if known is not None:
                return known
            if depth > 200:  # the loader bounds nesting; a guard, not a limit anyone meets
                return limit + 1
            total = 2
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            for child in children:
                total += 1 + size_of(child, depth + 1)
                if total > limit:
                    break
            sizes[id(item)] = total
            return total
        return len(item) if isinstance(item, (str, bytes)) else len(repr(item))

    return size_of(value, 0)


def _stack_values(stack_file: Path) -> dict[str, Any]:
    """The `config:` mapping of a stack file, read with the manifests' loader: a key written twice or
    nesting past its limit is refused with the line, where PyYAML would keep the last key silently or
    crash in libyaml."""
    def refuse(where: str, message: str) -> StackFileError:
        return StackFileError(f"{where}: {message} (fix the stack file; `pulumi config set` writes valid entries)")

    try:
        documents = yaml_loader.load_all(stack_file.read_bytes())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{stack_file.name}:{mark.line + 1}:{mark.column + 1}" if mark else stack_file.name
        raise refuse(where, getattr(error, "problem", None) or str(error)) from None
    except OSError as error:
        raise refuse(stack_file.name, f"cannot read: {error.strerror}") from None
    except ValueError as error:  # a number longer than Python converts (4,300 digits)
        raise refuse(stack_file.name, str(error)) from None
    size = expanded_size(documents, MAX_STACK_FILE_EXPANDED)
    if size > MAX_STACK_FILE_EXPANDED:
        raise refuse(
            stack_file.name,
            f"its values expand to more than {MAX_STACK_FILE_EXPANDED:,} characters once YAML aliases (`*name`) are"
            " followed; write the values out, or remove the aliases",
        )
    document = (documents or [None])[0] or {}
    if len(documents) > 1 or not isinstance(document, Mapping):
        raise refuse(stack_file.name, "expected one mapping with a `config:` key")
    config = document.get("config") or {}
    if not isinstance(config, Mapping) or not all(isinstance(key, str) for key in config):
        raise refuse(f"{stack_file.name} config", "expected a mapping of `<project>:<key>: value` entries")
    return dict(config)


def stack_reference_outputs(name: str, build: Path = REPO_ROOT / "build") -> tuple[dict[str, Any], list[str]]:
    """What `pulumi.StackReference(name)` reads offline: the outputs of the referenced stack's saved preview,
    `build/<stack>/plan.json` (`<organization>/<project>/<stack>` or a bare stack name), and the names of its
    secret outputs. The outputs the preview knows only after deploy, and the secrets (the plan never holds their
    values), are left out: a real reference reads the deployed stack, where they have values, but a single unknown
    value would make the whole `outputs` unknown to the SDK here, and with it every output read through it."""
    stack = name.rsplit("/", 1)[-1]
    plan_file = build / stack / "plan.json"
    if not plan_file.is_file():
        raise StackReferenceError(
            f"stack reference {name!r}: no saved preview of stack {stack!r} ({plan_file.relative_to(build.parent)} is "
            f"missing); preview it first: make preview STACK={stack}")
    try:
        outputs = json.loads(plan_file.read_text()).get("outputs") or {}
    except (ValueError, AttributeError) as error:
        raise StackReferenceError(f"stack reference {name!r}: {plan_file} is not a saved plan ({error}); "
                                  f"preview it again: make preview STACK={stack}") from None
    secret = sorted(key for key, value in outputs.items() if value == SECRET)
    return {key: value for key, value in outputs.items()
            if value not in (KNOWN_AFTER_DEPLOY, SECRET) and KNOWN_AFTER_DEPLOY not in json.dumps(value)}, secret


def is_encrypted(value: Any) -> bool:
    """A stack file value as `pulumi config set --secret` writes it: `{secure: <ciphertext>}`."""
    return isinstance(value, Mapping) and set(value) == {"secure"} and isinstance(value["secure"], str)


def known_stacks(root: Path = REPO_ROOT) -> list[str]:
    return sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in root.glob("Pulumi.*.yaml"))


def _as_config_text(value: Any) -> str:
    # The engine hands structured values to the program as JSON text and scalars as strings.
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


@dataclass(slots=True)
class Registration:
    """One registration as the program made it: one copy of its data (at 10,000 profiles the records are a large
    share of the preview's memory)."""

    urn: str
    type: str
    name: str
    parent: str
    provider: str
    custom: bool
    inputs: dict[str, Any]
    #: The mocks' answer, the same dict the SDK's mock monitor keeps for the resource.
    outputs: dict[str, Any]
    protect: bool
    retain_on_delete: bool
    delete_before_replace: bool
    ignore_changes: list[str]
    replace_on_changes: list[str]
    dependencies: list[str]
    #: Paths of the inputs that are Pulumi secrets, in the spelling of the serialized inputs.
    secret_paths: list[str] = field(default_factory=list)


@dataclass
class ProgramRun:
    stack: str
    resources: list[Registration]
    invokes: list[tuple[str, dict[str, Any]]]
    exports: dict[str, Any] = field(default_factory=dict)
    secret_exports: set[str] = field(default_factory=set)
    #: Exports whose value is known only after deploy (preview runs); their `exports` value is None.
    unknown_exports: set[str] = field(default_factory=set)
    #: Stack references the run resolved, and the saved plan each was read from (None: none yet, no outputs).
    stack_references: list[tuple[str, Optional[Path]]] = field(default_factory=list)
    #: Values the run gave secret outputs of referenced stacks (tools.mock_runtime.referenced_secret).
    referenced_secrets: list[str] = field(default_factory=list)

    def of_type(self, type_: str) -> list[Registration]:
        return [r for r in self.resources if r.type == type_]

    def named(self, type_: str, name: str) -> Registration:
        matches = [r for r in self.resources if r.type == type_ and r.name == name]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} resources of type {type_} named {name}")
        return matches[0]


def _holds_secret(inputs: Mapping[str, Any]) -> bool:
    """Whether deserialized inputs hold a Pulumi secret anywhere: deserializing pushes a nested secret's secretness up
    to the top-level property that holds it (pulumi/pulumi@v3.272.0 sdk/python/lib/pulumi/runtime/rpc.py
    `deserialize_property`), so the top level tells. Only then are the serialized inputs walked for the secrets' paths:
    kept instead, a registration's serialized inputs hold its protobuf arena, some 9 KB a registration."""
    return any(rpc.is_rpc_secret(value) for value in inputs.values())


def _secret_paths(struct: Any, prefix: str = "") -> list[str]:
    """Paths of values that are Pulumi secrets in a serialized protobuf Struct."""
    found: list[str] = []
    from google.protobuf import struct_pb2

    if isinstance(struct, struct_pb2.Struct):
        fields = struct.fields
        sig = fields.get(rpc._special_sig_key)
        if sig is not None and sig.string_value == rpc._special_secret_sig:
            return [prefix or "."]
        for key, value in fields.items():
            found += _secret_paths(value, f"{prefix}.{key}" if prefix else key)
    elif isinstance(struct, struct_pb2.Value):
        kind = struct.WhichOneof("kind")
        if kind == "struct_value":
            found += _secret_paths(struct.struct_value, prefix)
        elif kind == "list_value":
            for i, item in enumerate(struct.list_value.values):
                found += _secret_paths(item, f"{prefix}[{i}]")
    return found


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """The SDK's mock monitor, also keeping each registration's parent, options and secrets."""

    def __init__(self, mocks: "PlatformMocks") -> None:
        super().__init__(mocks)
        self.mocks: PlatformMocks = mocks
        self.registrations: list[Registration] = []

    def RegisterResource(self, request):  # noqa: N802 (gRPC method name)
        if request.type == "pulumi:pulumi:Stack":
            return super().RegisterResource(request)
        response = self._register(request)
        registered = self.resources[response.urn]
        inputs = self.mocks.last_inputs
        self.registrations.append(
            Registration(
                urn=response.urn,
                type=request.type,
                name=request.name,
                parent=request.parent,
                provider=request.provider,
                custom=request.custom,
                # The SDK's monitor has just deserialized them for the mocks: deserializing thousands of
                # objects a second time would double the cost of a large program under test.
                inputs=inputs,
                outputs=registered.state,
                protect=bool(request.protect),
                retain_on_delete=bool(request.retainOnDelete),
                delete_before_replace=bool(request.deleteBeforeReplace),
                ignore_changes=list(request.ignoreChanges),
                replace_on_changes=list(request.replaceOnChanges),
                dependencies=sorted(request.dependencies),
                secret_paths=_secret_paths(request.object) if _holds_secret(inputs) else [],
            )
        )
        return response

    def _register(self, request):
        """The SDK's MockMonitor.RegisterResource (pulumi/pulumi@v3.272.0 sdk/python/lib/pulumi/runtime/mocks.py:308-334),
        the mocks' answer sent back as `_plain_struct` makes it where it holds only plain values (every answer of these
        mocks): the SDK's serializer awaits a coroutine per value, a tenth of a large program's evaluation, for the
        same Struct (tests/test_preview_scale.py compares them for every registration of both stacks)."""
        urn = self.make_urn(request.parent, request.type, request.name)
        pulumi_mocks._ensure_event_loop()  # deserializing a resource reference needs one on this thread
        inputs = rpc.deserialize_properties(request.object)
        resource_id, state = self.mocks.new_resource(pulumi_mocks.MockResourceArgs(
            typ=request.type, name=request.name, inputs=inputs, provider=request.provider, resource_id=request.importId,
            custom=request.custom or False, transforms=pulumi_mocks._resolve_callbacks(request.transforms)))
        struct = _plain_struct(state)
        if struct is None:
            struct = _sync_await(rpc.serialize_properties(state, {}))
        self.resources[urn] = pulumi_mocks.MockMonitor.ResourceRegistration(urn, resource_id, state)
        return pulumi_mocks.resource_pb2.RegisterResourceResponse(urn=urn, id=resource_id, object=struct)


class _NotPlain(Exception):
    pass


def _plain(value: Any) -> Any:
    """`value` as the SDK serializes a plain value: itself, an unknown as the engine's UNKNOWN string."""
    kind = type(value)
    if kind is str or kind is bool or kind is int or kind is float or value is None:
        return value
    if kind is dict:
        if not all(type(key) is str for key in value):
            raise _NotPlain
        return {key: _plain(item) for key, item in value.items()}
    if kind is list:
        return [_plain(item) for item in value]
    if known_types.is_unknown(value):
        return rpc.UNKNOWN
    raise _NotPlain


def _plain_struct(state: Mapping[str, Any]):
    """`state` as the SDK's `serialize_properties(state, {})` gives it (a top-level None left out, an unknown as the
    UNKNOWN string, every other value as it is: pulumi/pulumi@v3.272.0 sdk/python/lib/pulumi/runtime/rpc.py:243,
    469-470, 724-821), for a state of plain values and unknowns only; None otherwise."""
    from google.protobuf import struct_pb2

    if type(state) is not dict:
        return None
    try:
        plain = _plain(state)
    except _NotPlain:
        return None
    struct = struct_pb2.Struct()
    for key, value in plain.items():
        if value is not None:
            struct[key] = value
    return struct


class StackReferenceError(pulumi.RunError):
    """A stack reference the offline run cannot resolve; the message names the stack and what to run first."""


#: What a saved plan shows in place of a secret (tools/plan.py writes it).
_PLAN_SECRET = SECRET


def referenced_secret(stack: str, output: str) -> str:
    """What a secret output of a referenced stack reads as offline: its saved preview masks the value, and a value of
    its own shows where it went (the run's plan is checked for it in clear like the run's own secrets)."""
    return f"stack-reference-secret-{stack}-{output}"


class PlatformMocks(pulumi.runtime.Mocks):
    """Answers invokes like AWS would for the stack's account, region and cluster."""

    def __init__(self, config: Mapping[str, Any], preview: bool = False, *, root: Path = REPO_ROOT,
                 plans_dir: Optional[Path] = None) -> None:
        self.preview = preview
        self.root = root
        #: Where saved previews are read from for stack references: <plans_dir>/<stack>/plan.json.
        self.plans_dir = plans_dir if plans_dir is not None else root / "build"
        #: The values secret outputs of referenced stacks were given (referenced_secret), to be found if leaked.
        self.referenced_secrets: list[str] = []
        fleet = config.get(f"{PROJECT}:fleet")
        self.fleet_role = fleet.get("role") if isinstance(fleet, Mapping) else None
        #: Every stack reference resolved: (fully qualified name, the saved plan read, or None when there was none).
        self.stack_references: list[tuple[str, Optional[Path]]] = []
        # Whatever the stack file holds: the program's settings check reports wrong values, the mocks
        # only need something to answer with until it does.
        def text(area: str, key: str, default: str) -> str:
            values = config.get(f"{PROJECT}:{area}")
            value = values.get(key) if isinstance(values, Mapping) else None
            return value if isinstance(value, str) else default

        aws = config.get(f"{PROJECT}:aws")
        accounts = aws.get("allowedAccountIds") if isinstance(aws, Mapping) else None
        self.region = text("aws", "region", "us-east-1")
        self.account = accounts[0] if isinstance(accounts, list) and accounts and isinstance(accounts[0], str) else DEFAULT_ACCOUNT
        self.cluster_name = text("cluster", "name", "cluster")
        self.zone_name = text("dns", "zoneName", "example.com")
        self.invokes: list[tuple[str, dict[str, Any]]] = []
        # The SDK calls the monitor from several threads; each registration runs within one of them.
        self._registering = threading.local()

    @property
    def last_inputs(self) -> dict[str, Any]:
        """Inputs of the resource this thread is registering, as the SDK's mock monitor deserialized them."""
        return self._registering.inputs

    def _digest(self, *parts: str, length: int = 32) -> str:
        return hashlib.sha256("/".join(parts).encode()).hexdigest()[:length].upper()

    @property
    def issuer(self) -> str:
        return f"https://oidc.eks.{self.region}.amazonaws.com/id/{self._digest(self.cluster_name)}"

    def call(self, args: pulumi.runtime.MockCallArgs):
        self.invokes.append((args.token, dict(args.args)))
        token = args.token
        if token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {
                "accountId": self.account,
                "arn": f"arn:aws:sts::{self.account}:assumed-role/platform-deployer/session",
                "userId": "AROAEXAMPLE:session",
                "id": self.account,
            }
        if token == "aws:index/getRegion:getRegion":
            return {"name": self.region, "region": self.region, "id": self.region,
                    "endpoint": f"ec2.{self.region}.amazonaws.com", "description": self.region}
        if token == "aws:index/getPartition:getPartition":
            return {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws"}
        if token == "aws:eks/getCluster:getCluster":
            name = args.args.get("name", self.cluster_name)
            return {
                "id": name,
                "name": name,
                "arn": f"arn:aws:eks:{self.region}:{self.account}:cluster/{name}",
                "endpoint": f"https://{self._digest(name)}.gr7.{self.region}.eks.amazonaws.com",
                "certificateAuthorities": [{"data": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1PQ0sKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo="}],
                "identities": [{"oidcs": [{"issuer": self.issuer}]}],
                "roleArn": f"arn:aws:iam::{self.account}:role/{name}-cluster",
                "version": "1.31",
                "platformVersion": "eks.20",
                "status": "ACTIVE",
                "vpcConfig": {
                    "vpcId": f"vpc-{self._digest(name, 'vpc', length=17).lower()}",
                    "clusterSecurityGroupId": f"sg-{self._digest(name, 'sg', length=17).lower()}",
                    "subnetIds": [],
                    "securityGroupIds": [],
                    "endpointPrivateAccess": True,
                    "endpointPublicAccess": True,
                    "publicAccessCidrs": ["0.0.0.0/0"],
                },
                "kubernetesNetworkConfigs": [{"serviceIpv4Cidr": "172.20.0.0/16", "ipFamily": "ipv4"}],
                "tags": {},
            }
        if token == "aws:route53/getZone:getZone":
            name = (args.args.get("name") or self.zone_name).rstrip(".")
            return {
                "id": f"Z{self._digest(name, length=20)}",
                "zoneId": f"Z{self._digest(name, length=20)}",
                "name": name + ".",
                "privateZone": bool(args.args.get("privateZone", False)),
                "nameServers": [f"ns-{i}.awsdns-{i:02d}.org" for i in (1, 2)],
                "arn": f"arn:aws:route53:::hostedzone/Z{self._digest(name, length=20)}",
            }
        if token == "aws:lb/getHostedZoneId:getHostedZoneId":
            region = args.args.get("region") or self.region
            kind = args.args.get("loadBalancerType", "application")
            zone = NLB_HOSTED_ZONE_IDS.get(region, "ZNLBMOCKZONE") if kind == "network" else "ZALBMOCKZONE"
            return {"id": zone}
        if token == "aws:eks/getAddon:getAddon":
            # An installed add-on, as the Pod Identity agent is on the clusters the stacks describe.
            name = args.args.get("addonName", "")
            return {"id": f"{args.args.get('clusterName', self.cluster_name)}:{name}", "addonName": name,
                    "clusterName": args.args.get("clusterName", self.cluster_name), "addonVersion": "v1.3.8-eksbuild.2",
                    "arn": f"arn:aws:eks:{self.region}:{self.account}:addon/{self.cluster_name}/{name}/mock"}
        if token == "aws:iam/getOpenidConnectProvider:getOpenidConnectProvider":
            return {"arn": args.args.get("arn"), "url": self.issuer.removeprefix("https://"), "clientIdLists": ["sts.amazonaws.com"]}
        return {}

    def existing_service(self, namespace: str, name: str) -> dict[str, Any]:
        """What a read of an existing Service returns: the mesh's gateway as a cluster with the AWS Load
        Balancer Controller (its webhook sets the class on new LoadBalancer Services) has it."""
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": namespace, "annotations": {}},
            "spec": {
                "type": "LoadBalancer",
                "loadBalancerClass": "service.k8s.aws/nlb",
                "selector": {"istio": "ingressgateway"},
                "ports": [{"name": "http2", "port": 80, "protocol": "TCP", "targetPort": 8080},
                          {"name": "https", "port": 443, "protocol": "TCP", "targetPort": 8443}],
            },
            "status": {"loadBalancer": {"ingress": [{"hostname": f"k8s-{name[:20]}-{self._digest(namespace, name, length=10).lower()}.elb.{self.region}.amazonaws.com"}]}},
        }

    def stack_reference(self, name: str) -> tuple[str, dict[str, Any]]:
        """A StackReference's state, from the referenced stack's saved preview (its plan.json outputs).

        A secret output reads as `referenced_secret(stack, output)`, still marked secret; an output the saved preview could not know reads as its marker, so what is built from it shows so.
        A regional stack's reference to its global stack, with no saved preview of it, reads as a stack with no
        outputs: the global stack's first `pulumi up` follows the regions' (docs/fleet.md). Any other reference
        without a saved preview fails, naming the stack to preview first.
        """
        parts = name.split("/")
        if len(parts) != 3 or parts[1] != PROJECT:
            raise StackReferenceError(f"stack reference {name!r}: expected <organization>/{PROJECT}/<stack>")
        stack = parts[2]
        plan_file = self.plans_dir / stack / "plan.json"
        if not (self.root / f"Pulumi.{stack}.yaml").is_file():
            raise StackReferenceError(f"stack reference {name!r}: this project has no stack {stack!r} "
                                      f"(no Pulumi.{stack}.yaml; stacks here: {', '.join(known_stacks(self.root))})")
        if not plan_file.is_file():
            if self.fleet_role == "regional":
                self.stack_references.append((name, None))
                return name, {"name": name, "outputs": {}, "secretOutputNames": []}
            raise StackReferenceError(
                f"stack reference {name!r}: no saved preview of stack {stack!r} ({_shown(plan_file, self.root)}); "
                f"preview it first: make preview STACK={stack}")
        try:
            saved = json.loads(plan_file.read_text())
        except (OSError, ValueError) as error:
            raise StackReferenceError(f"stack reference {name!r}: cannot read {plan_file}: {error}") from None
        outputs = saved.get("outputs") if isinstance(saved, Mapping) else None
        if not isinstance(outputs, Mapping):
            raise StackReferenceError(f"stack reference {name!r}: {plan_file} holds no outputs; preview {stack!r} again")
        secret_names = sorted(key for key, value in outputs.items() if value == _PLAN_SECRET)
        values = {key: referenced_secret(stack, key) if key in secret_names else value for key, value in outputs.items()}
        self.referenced_secrets += [values[key] for key in secret_names]
        self.stack_references.append((name, plan_file))
        return name, {"name": name, "outputs": values, "secretOutputNames": secret_names}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        self._registering.inputs = args.inputs
        name = args.name
        typ = args.typ
        if typ == "pulumi:pulumi:StackReference":
            return self.stack_reference(str(args.inputs.get("name") or args.resource_id))
        if typ == "kubernetes:yaml/v2:ConfigGroup":
            # The provider's Construct answers with the registered children, never an echo of the objects
            # (echoing thousands of objects back makes the SDK rebuild each as Outputs, which real runs never do).
            return f"{name}-id", {"resources": []}
        outputs = dict(args.inputs)
        resource_id = args.resource_id or f"{name}-id"
        if typ == "kubernetes:core/v1:Service" and args.resource_id and not args.inputs:
            namespace, _, service = args.resource_id.rpartition("/")
            return args.resource_id, self.existing_service(namespace or "default", service)
        if typ.startswith("aws:"):
            service = typ.split(":")[1].split("/")[0]
            if service == "index":
                service = typ.split(":")[2].lower()
            resource_name = outputs.get("name") or outputs.get("bucket") or name
            outputs.setdefault("arn", f"arn:aws:{service}:{self.region}:{self.account}:{resource_name}")
        if typ == "aws:s3/bucket:Bucket" or typ == "aws:s3/bucketV2:BucketV2":
            bucket = outputs.get("bucket", name)
            outputs["arn"] = f"arn:aws:s3:::{bucket}"
            outputs.setdefault("bucketRegionalDomainName", f"{bucket}.s3.{self.region}.amazonaws.com")
            resource_id = bucket
        elif typ == "aws:iam/role:Role":
            role = outputs.get("name", name)
            outputs["arn"] = f"arn:aws:iam::{self.account}:role/{role}"
            resource_id = role
        elif typ == "aws:iam/policy:Policy":
            outputs["arn"] = f"arn:aws:iam::{self.account}:policy/{outputs.get('name', name)}"
        elif typ == "aws:iam/openIdConnectProvider:OpenIdConnectProvider":
            url = str(outputs.get("url", self.issuer)).removeprefix("https://")
            outputs["arn"] = f"arn:aws:iam::{self.account}:oidc-provider/{url}"
        elif typ == "aws:acm/certificate:Certificate":
            cert_id = self._digest(name, length=32).lower()
            outputs["arn"] = f"arn:aws:acm:{self.region}:{self.account}:certificate/{cert_id[:8]}-{cert_id[8:12]}-{cert_id[12:16]}-{cert_id[16:20]}-{cert_id[20:32]}"
            names = [outputs.get("domainName")] + list(outputs.get("subjectAlternativeNames") or [])
            options = []
            for domain in [n for n in names if n]:
                base = domain[2:] if domain.startswith("*.") else domain
                options.append({
                    "domainName": domain,
                    "resourceRecordName": f"_{self._digest(base, length=32).lower()}.{base}.",
                    "resourceRecordType": "CNAME",
                    "resourceRecordValue": f"_{self._digest(base, 'v', length=32).lower()}.acm-validations.aws.",
                })
            outputs["domainValidationOptions"] = options
        elif typ == "aws:ec2/launchTemplate:LaunchTemplate":
            outputs.setdefault("latestVersion", 1)
        elif typ == "aws:route53/record:Record":
            outputs.setdefault("fqdn", str(outputs.get("name", name)).rstrip("."))
        elif typ == "aws:acm/certificateValidation:CertificateValidation":
            resource_id = str(outputs.get("certificateArn", resource_id))
        elif typ == "aws:route53/zone:Zone":
            zone = str(outputs.get("name", name)).rstrip(".")
            outputs["zoneId"] = f"Z{self._digest(zone, length=20)}"
            outputs["nameServers"] = [f"ns-{i}.awsdns-{i:02d}.net" for i in (11, 12, 13, 14)]
            resource_id = outputs["zoneId"]
        elif typ == "aws:eks/nodeGroup:NodeGroup":
            group = outputs.get("nodeGroupName", name)
            outputs["arn"] = f"arn:aws:eks:{self.region}:{self.account}:nodegroup/{outputs.get('clusterName')}/{group}/{self._digest(group, length=8).lower()}"
            outputs["resources"] = [{"autoscalingGroups": [{"name": f"eks-{group}-{self._digest(group, 'asg', length=8).lower()}"}], "remoteAccessSecurityGroupId": ""}]
            outputs["status"] = "ACTIVE"
        elif typ.startswith("kubernetes:core/v1:Service"):
            status = {"loadBalancer": {"ingress": [{"hostname": f"k8s-{name[:20]}-{self._digest(name, length=10).lower()}.elb.{self.region}.amazonaws.com"}]}}
            outputs.setdefault("status", status)
        if self.preview:
            return self._as_planned(args, resource_id, outputs)
        return resource_id, outputs

    @staticmethod
    def _as_planned(args: pulumi.runtime.MockResourceArgs, resource_id: str, outputs: dict[str, Any]):
        """What a real `pulumi preview` of a create knows: the inputs, nothing the provider computes.

        The made-up ARNs, ids and load balancer names above help tests that follow values through, but in
        a preview they would pass for real values: a new resource's id and every output the provider
        computes stay unknown until deploy, and so does everything the program derives from them.
        """
        planned = {key: value if key in args.inputs else rpc.UNKNOWN for key, value in outputs.items()}
        # An id the program asked to import is known; a new resource's id is not (empty means unknown).
        return (args.resource_id or ""), planned


def _shown(path: Path, root: Path) -> str:
    """`path` relative to the program's directory when below it: messages do not depend on where the clone lives."""
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def check_stack_references(config: Mapping[str, Any], root: Path, plans_dir: Path) -> None:
    """Raises StackReferenceError for the first stack a fleet's stack references that this project lacks or (from a
    global stack) that has no saved preview under `plans_dir`; the message names the stack and what to run first."""
    fleet = config.get(f"{PROJECT}:fleet")
    if not isinstance(fleet, Mapping) or fleet.get("role") not in ("global", "regional"):
        return
    if fleet.get("role") == "regional":
        referenced = [fleet.get("global")]
    else:
        referenced = [region.get("stack") for region in fleet.get("regions") or [] if isinstance(region, Mapping)]
    referenced = [stack for stack in referenced if isinstance(stack, str)]  # the settings check names the others
    for stack in referenced:
        if not (root / f"Pulumi.{stack}.yaml").is_file():
            raise StackReferenceError(f"stack reference {fleet.get('organization')}/{PROJECT}/{stack}: this project has "
                                      f"no stack {stack!r} (no Pulumi.{stack}.yaml; stacks here: {', '.join(known_stacks(root))})")
    for stack in referenced:
        name = f"{fleet.get('organization')}/{PROJECT}/{stack}"
        if fleet.get("role") == "global" and not (plans_dir / stack / "plan.json").is_file():
            raise StackReferenceError(f"stack reference {name!r}: no saved preview of stack {stack!r} "
                                      f"({_shown(plans_dir / stack / 'plan.json', root)}); preview it first: make preview STACK={stack}")


def install_mocks(config: Mapping[str, Any], *, stack: str, preview: bool = False,
                  project: str = PROJECT, root: Path = REPO_ROOT,
                  plans_dir: Optional[Path] = None) -> tuple["PlatformMocks", RecordingMonitor]:
    """A clean mock runtime for one program run: new mocks and monitor, no root stack, nothing pending."""
    # Outputs still pending from a run that failed inside an apply would finish during the next run and
    # report that run's error there; the SDK's own @pulumi.runtime.test clears them the same way.
    pulumi_settings.SETTINGS.outputs.clear()
    mocks = PlatformMocks(config, preview=preview, root=root, plans_dir=plans_dir)
    monitor = RecordingMonitor(mocks)
    # A fresh root stack per run: the SDK keeps the previous run's root otherwise.
    pulumi.runtime.settings.ROOT.set(None)
    pulumi_mocks.set_mocks(mocks, project=project, stack=stack, preview=preview, monitor=monitor)
    # As the engine tells the program: where Pulumi.yaml is (a tenancy stack reads its platform's file beside it).
    pulumi_settings.SETTINGS.root_directory = str(root)
    return mocks, monitor


def release_mocks() -> None:
    """Lets go of what the mock runtime keeps of the last run: the SDK's monitor holds every registration's record and
    the mocks' answers until the next run installs new mocks. A caller still holding the run's `ProgramRun` keeps its
    records; one done with them (the preview, once the plan is built) frees them for what it does next."""
    monitor = pulumi_settings.SETTINGS.monitor
    if isinstance(monitor, RecordingMonitor):
        monitor.registrations = []
        monitor.resources = {}


#: The empty stack trace a registration carries offline (see _without_source_positions).
_NO_STACK_TRACE = pulumi_resource.source_pb2.StackTrace() if hasattr(pulumi_resource, "source_pb2") else None


@contextlib.contextmanager
def _without_source_positions():
    """Registrations without the caller's stack trace, for this run only.

    For every resource the SDK walks the Python stack (`traceback.extract_stack`, reading each frame's source
    line) and turns every frame into a file URI, so that the engine can point its messages at the program's
    source (pulumi/pulumi@v3.272.0 sdk/python/lib/pulumi/runtime/resource.py `_get_stack_trace`, called by
    `register_resource` and `read_resource`). The mock monitor never reads it, and it was a fifth of the
    program's evaluation at 1,000 profiles. The real engine still gets it: this runs only under the mocks, and an
    SDK without the function is left alone."""
    original = getattr(pulumi_resource, "_get_stack_trace", None)
    if original is None or _NO_STACK_TRACE is None:
        yield
        return
    pulumi_resource._get_stack_trace = lambda: _NO_STACK_TRACE
    try:
        yield
    finally:
        pulumi_resource._get_stack_trace = original


def _contains_unknowns(value: Any) -> bool:
    """The SDK's `rpc.contains_unknowns`: whether `value`, or a value in its dicts and lists, is unknown."""
    seen: set[int] = set()
    pending = [value]
    while pending:
        item = pending.pop()
        if known_types.is_unknown(item):
            return True
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


@contextlib.contextmanager
def _unknowns_found_without_cycles():
    """The SDK's check for unknown values, answered the same way without leaving garbage, for this run only.

    The SDK asks it of every Output's value it resolves (`_OutputData`, `apply`, `future`), some 200 times per profile,
    and its recursive inner function refers to itself through its closure (pulumi/pulumi@v3.272.0
    sdk/python/lib/pulumi/runtime/rpc.py `contains_unknowns`): each call leaves a cycle (the function, its cell, its
    annotations) that only the cyclic collector frees, which the program turns off (__main__.py): some 1,200 objects and
    100 KB per profile, a gigabyte at 10,000 profiles, held until the run ended. The module attribute is what every caller
    reads (rpc's own, `pulumi.output.contains_unknowns`, invokes), so they all get this one; the real engine's runs are
    left as they are."""
    original = getattr(rpc, "contains_unknowns", None)
    if original is None:
        yield
        return
    rpc.contains_unknowns = _contains_unknowns
    try:
        yield
    finally:
        rpc.contains_unknowns = original


def run_program(
    stack: str,
    *,
    config_overrides: Optional[Mapping[str, Any]] = None,
    secrets: Optional[Mapping[str, str]] = None,
    preview: bool = False,
    root: Path = REPO_ROOT,
    plans_dir: Optional[Path] = None,
) -> ProgramRun:
    """Runs `__main__.py` for `stack` under mocks and returns what it registered and exported.

    `config_overrides` replaces top-level keys (`kubeflow-platform:<key>` or `<key>`), `secrets` sets
    secret keys the way `pulumi config set --secret` would (marked secret, so `get_secret` wraps them).
    Stack references resolve from the saved previews under `plans_dir` (default `<root>/build`).
    """
    config = stack_config(stack, root)
    for key, value in (config_overrides or {}).items():
        full = key if ":" in key else f"{PROJECT}:{key}"
        if value is None:
            config.pop(full, None)
        else:
            config[full] = value
    # A reference that cannot resolve is reported before the program runs (inside it, the SDK would also print the
    # error once per output waiting on the reference).
    check_stack_references(config, root, plans_dir if plans_dir is not None else root / "build")
    # As the engine does: a `{secure: ...}` value reaches the program as a secret (here its ciphertext, as
    # nothing can decrypt it offline), a value written in clear as plain config.
    secret_keys = [key for key, value in config.items() if is_encrypted(value)]
    for key in secret_keys:
        config[key] = config[key]["secure"]
    for key, value in (secrets or {}).items():
        full = key if ":" in key else f"{PROJECT}:{key}"
        if full in config and full not in secret_keys:
            continue  # written in clear in the stack file: the program must see it so, and refuse it
        config[full] = value
        secret_keys.append(full)
    set_all_config({k: _as_config_text(v) for k, v in config.items()}, secret_keys)

    mocks, monitor = install_mocks(config, stack=stack, preview=preview, root=root, plans_dir=plans_dir)

    def program() -> None:
        runpy.run_path(str(root / "__main__.py"), run_name="__main__")

    run = ProgramRun(stack=stack, resources=monitor.registrations, invokes=mocks.invokes,
                     stack_references=mocks.stack_references, referenced_secrets=mocks.referenced_secrets)
    # __main__.py turns the cyclic collector off and freezes what it built, for its own short-lived
    # process; the tests run it many times in one process, so the collector's state is put back.
    collecting, frozen = gc.isenabled(), gc.get_freeze_count()
    try:
        with _without_source_positions(), _unknowns_found_without_cycles():
            _sync_await(run_pulumi_func(program))
    except Exception as error:
        # Callers (tests, the preview) can still see what was registered before the failure.
        error.program_run = run  # type: ignore[attr-defined]
        raise
    finally:
        if collecting:
            gc.enable()
        if not frozen:
            gc.unfreeze()
    root_stack = pulumi.runtime.settings.get_root_resource()
    outputs = getattr(root_stack, "outputs", {}) or {}
    for key, value in outputs.items():
        output = pulumi.Output.from_input(value)
        resolved = _sync_await(output.future())
        if _sync_await(output.is_secret()):
            run.secret_exports.add(key)
        if not _sync_await(output.is_known()):
            run.unknown_exports.add(key)
        run.exports[key] = resolved
    return run
