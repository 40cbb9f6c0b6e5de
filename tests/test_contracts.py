"""The upstream facts table (manifests/facts/contracts/) holds for what both stacks emit, release by release.

Each contract names what a consumer reads and where its source says so; these tests hold the emitted
objects to the structural checks, make sure a contract held by a test points at a test that exists, and
that every unsettled fact is written down for the user in docs/working-kubeflow.md.
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Mapping
from pathlib import Path

import pytest

import config
from config.loader import camel
from manifests.contracts import (
    FACTS_DIR, Contract, ContractTableError, contract_problems, load_contracts,
)
from manifests.objects import objects_from_config_group_inputs
from tests.conftest import STACKS
from tests.test_kubeflow import run_release
from tests.upstream import SUPPORTED_VERSIONS
from tools.mock_runtime import ProgramRun, stack_config

REPO_ROOT = Path(__file__).resolve().parent.parent
#: Every release the program supports; each contract says, for each, where its source is or why it does not apply.
SUPPORTED_RELEASES = SUPPORTED_VERSIONS
CONFIG_GROUP = "kubernetes:yaml/v2:ConfigGroup"

CONTRACTS = load_contracts()


def emitted_objects(run: ProgramRun) -> list[dict]:
    """Every Kubernetes object the run registers: ConfigGroups' objects, then resources registered one by
    one (their type token's kind, so patches read as `ServiceAccountPatch`)."""
    objects: list[dict] = []
    for registration in run.resources:
        if registration.type == CONFIG_GROUP:
            objects.extend(objects_from_config_group_inputs(registration.inputs))
        elif registration.type.startswith("kubernetes:") and not registration.type.startswith("pulumi:providers"):
            _, api, kind = registration.type.split(":")
            group_version = api.replace("core/", "") if api.startswith("core/") else api
            objects.append({"apiVersion": group_version, "kind": kind, **registration.inputs})
    return objects


def _as_config(value):
    """Loaded settings back in the stack file's spelling (camelCase keys), defaults included."""
    if dataclasses.is_dataclass(value):
        return {camel(f.name): _as_config(getattr(value, f.name)) for f in dataclasses.fields(value)
                if not f.metadata.get("internal")}
    if isinstance(value, Mapping):
        return {key: _as_config(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return [_as_config(item) for item in value]
    return value


def flat_settings(stack: str) -> dict[str, object]:
    """The stack's settings by dotted path (`kubeflow.database.host`), for `${...}` in the checks; a key the
    stack file leaves out has its default (`auth.trustDomain`)."""
    flat: dict[str, object] = {}

    def walk(node, path):
        flat[path] = node
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{path}.{key}")

    raw = {key.split(":", 1)[1]: value for key, value in stack_config(stack).items()}
    loaded = config.parse(raw, config.Secrets(), set(config.SECRET_KEYS), stack)
    for key, value in _as_config(loaded).items():
        walk(value, key)
    for key, value in raw.items():
        walk(value, key)
    return flat


_OBJECTS: dict[tuple[str, str], list[dict]] = {}


def objects_of(stack: str, release: str) -> list[dict]:
    if (stack, release) not in _OBJECTS:
        _OBJECTS[(stack, release)] = emitted_objects(run_release(stack, release))
    return _OBJECTS[(stack, release)]


@pytest.mark.parametrize("release", SUPPORTED_RELEASES)
@pytest.mark.parametrize("stack", STACKS)
def test_emitted_objects_hold_every_upstream_contract(stack, release):
    objects = objects_of(stack, release)
    values = flat_settings(stack)
    problems = [
        problem
        for contract in CONTRACTS
        if contract.applies_to(release)
        for problem in contract_problems(contract, objects, values)
    ]
    assert problems == []


def test_every_contract_names_its_source_for_every_supported_release():
    missing = [f"{c.file}: {c.id} says nothing of {release}" for c in CONTRACTS for release in SUPPORTED_RELEASES
               if release not in c.sources]
    assert missing == []


def _test_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


def test_contracts_held_by_tests_name_tests_that_exist():
    dangling = []
    for contract in CONTRACTS:
        if contract.held_by is None:
            continue
        file, name = contract.held_by.split("::")
        path = REPO_ROOT / file
        if not path.is_file() or name not in _test_names(path):
            dangling.append(f"{contract.id}: {contract.held_by}")
    assert dangling == []


def test_unsettled_contracts_are_written_down_for_the_user():
    page = (REPO_ROOT / "docs" / "working-kubeflow.md").read_text(encoding="utf-8")
    unsettled = [c.id for c in CONTRACTS if c.unsettled is not None]
    assert [id_ for id_ in unsettled if f"`{id_}`" not in page] == []


# ---------------------------------------------------------------------------- the checks themselves


def _contract(check: dict) -> Contract:
    return Contract(id="x", consumer="c", reads="env X", why="w", sources={"1": "a/b@1 f.go:1"}, check=check)


DEPLOYMENT = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "katib-db-manager", "namespace": "kubeflow", "labels": {"app": "katib"}},
    "spec": {"template": {"spec": {"containers": [{
        "name": "katib-db-manager", "args": ["--flag=1", "--other", "two"],
        "env": [{"name": "DB_HOST", "value": "db.example.com"}],
    }]}}},
}


def test_an_env_check_fails_on_the_name_the_consumer_does_not_read():
    wrong = _contract({"env": {"select": {"kind": "Deployment", "name": "katib-db-manager"},
                               "name": "KATIB_MYSQL_DB_HOST"}})
    assert contract_problems(wrong, [DEPLOYMENT]) != []
    right = _contract({"env": {"select": {"kind": "Deployment", "labels": {"app": "katib"}}, "name": "DB_HOST",
                               "equals": "${kubeflow.database.host}"}})
    assert contract_problems(right, [DEPLOYMENT], {"kubeflow.database.host": "db.example.com"}) == []
    assert contract_problems(right, [DEPLOYMENT], {"kubeflow.database.host": "other"}) != []
    assert "does not set" in contract_problems(right, [DEPLOYMENT], {})[0]


def test_a_data_check_key_may_name_a_setting():
    configmap = {"kind": "ConfigMap", "metadata": {"name": "config-domain"}, "data": {"serving.example.com": ""}}
    contract = _contract({"data": {"select": {"kind": "ConfigMap"}, "key": "${dns.servingDomain}", "equals": ""}})
    assert contract_problems(contract, [configmap], {"dns.servingDomain": "serving.example.com"}) == []
    assert contract_problems(contract, [configmap], {"dns.servingDomain": "example.com"}) != []
    assert "does not set" in contract_problems(contract, [configmap], {})[0]


def test_a_check_that_selects_nothing_fails():
    contract = _contract({"env": {"select": {"kind": "Deployment", "name": "gone"}, "name": "DB_HOST"}})
    assert "no emitted object" in contract_problems(contract, [DEPLOYMENT])[0]


def test_arg_checks_read_both_flag_spellings():
    spec = {"select": {"kind": "Deployment"}, "container": "katib-db-manager"}
    assert contract_problems(_contract({"arg": {**spec, "flag": "--flag", "equals": "1"}}), [DEPLOYMENT]) == []
    assert contract_problems(_contract({"arg": {**spec, "flag": "--other", "equals": "two"}}), [DEPLOYMENT]) == []
    assert contract_problems(_contract({"arg": {**spec, "flag": "--other", "equals": "three"}}), [DEPLOYMENT]) != []
    assert contract_problems(_contract({"arg": {**spec, "flag": "--missing"}}), [DEPLOYMENT]) != []


def test_path_checks_read_lists_and_values():
    service = {"kind": "VirtualService", "metadata": {"name": "v"}, "spec": {"exportTo": [".", "istio-system"]}}
    select = {"kind": "VirtualService"}
    assert contract_problems(_contract({"path": {"select": select, "path": "spec.exportTo",
                                                 "contains": "istio-system"}}), [service]) == []
    assert contract_problems(_contract({"path": {"select": select, "path": "spec.exportTo",
                                                 "contains": "kubeflow"}}), [service]) != []


def test_a_malformed_table_is_refused_with_every_problem(tmp_path):
    (tmp_path / "bad.yaml").write_text(
        "- id: a\n  consumer: c\n  reads: envvar X\n  why: w\n  sources: {'1.10.2': 'from memory'}\n"
        "  check: {env: {select: {kind: Deployment}, name: X}}\n  held_by: tests/x.py::test_y\n"
        "- id: a\n  consumer: c\n  reads: env X\n  why: w\n  sources: {'1.10.2': 'n/a: gone'}\n  unsettled: check it\n"
    )
    with pytest.raises(ContractTableError) as refused:
        load_contracts(tmp_path)
    message = str(refused.value)
    for expected in ("reads must start", "from memory", "exactly one of", "already used"):
        assert expected in message


SERVICE_ACCOUNT = {"kind": "ServiceAccount", "metadata": {
    "name": "ml-pipeline", "namespace": "kubeflow",
    "annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::111111111111:role/kubeflow-platform-x"}}}
ROLE_CHECK = {"annotation": {"select": {"kind": "ServiceAccount", "name": "ml-pipeline"},
                             "key": "eks.amazonaws.com/role-arn", "contains": ":role/"}}


def test_a_contract_with_when_is_held_only_under_the_settings_it_names():
    irsa_only = dataclasses.replace(_contract(ROLE_CHECK), when={"identity.mechanism": ("irsa",)})
    bare = {**SERVICE_ACCOUNT, "metadata": {"name": "ml-pipeline", "namespace": "kubeflow"}}
    assert contract_problems(irsa_only, [bare], {"identity.mechanism": "irsa"}) != []
    assert contract_problems(irsa_only, [bare], {"identity.mechanism": "podIdentity"}) == []
    assert contract_problems(irsa_only, [SERVICE_ACCOUNT], {"identity.mechanism": "irsa"}) == []


def test_a_when_naming_a_setting_the_stack_lacks_is_a_problem_not_a_pass():
    misspelt = dataclasses.replace(_contract(ROLE_CHECK), when={"identity.mechansim": ("irsa",)})
    problems = contract_problems(misspelt, [SERVICE_ACCOUNT], {"identity.mechanism": "irsa"})
    assert len(problems) == 1 and "identity.mechansim" in problems[0]


def test_an_absent_check_fails_where_the_annotation_is_left():
    gone = _contract({"annotation": {"select": {"kind": "ServiceAccount"}, "key": "eks.amazonaws.com/role-arn",
                                     "absent": True}})
    assert contract_problems(gone, [SERVICE_ACCOUNT]) != []
    bare = {**SERVICE_ACCOUNT, "metadata": {"name": "ml-pipeline", "namespace": "kubeflow"}}
    assert contract_problems(gone, [bare]) == []


def test_a_malformed_when_or_absent_is_refused_naming_the_fix(tmp_path):
    head = "- id: {id}\n  consumer: c\n  reads: env X\n  why: w\n  sources: {{'1.10.2': 'n/a: gone'}}\n"
    (tmp_path / "bad.yaml").write_text(
        head.format(id="a") + "  unsettled: check it\n  when: irsa\n"
        + head.format(id="b") + "  unsettled: check it\n  when: {mechanism: irsa}\n"
        + head.format(id="c") + "  unsettled: check it\n  when: {identity.mechanism: [{x: 1}]}\n"
        + head.format(id="d") + "  check: {env: {select: {kind: Deployment}, name: X, absent: true}}\n"
        + head.format(id="e") + "  check: {annotation: {select: {kind: Pod}, key: k, absent: true, equals: v}}\n"
    )
    with pytest.raises(ContractTableError) as refused:
        load_contracts(tmp_path)
    message = str(refused.value)
    assert "bad.yaml[0]: when must map setting paths to values, e.g. `when: {identity.mechanism: irsa}`" in message
    assert "bad.yaml[1]: when key 'mechanism' must be a setting's dotted path" in message
    assert "bad.yaml[2]: when['identity.mechanism'] must be a scalar or a non-empty list of scalars" in message
    assert "bad.yaml[3]: check.env.absent may only be `true`, on an annotation or path check" in message
    assert "bad.yaml[4]: check.annotation.absent goes without equals or contains" in message


def test_every_when_names_a_setting_both_stacks_have():
    settings = {stack: flat_settings(stack) for stack in STACKS}
    unknown = [f"{c.id}: {path}" for c in CONTRACTS for path in c.when
               for stack in STACKS if path not in settings[stack]]
    assert unknown == []


def test_the_shipped_table_loads():
    assert load_contracts(FACTS_DIR) and all(isinstance(c, Contract) for c in CONTRACTS)
