"""Both stacks evaluate as a real `pulumi up` would run them, and their files agree with the schema."""

from __future__ import annotations

import collections
import dataclasses
import gc
import typing

import pulumi
import yaml

import config
from config.loader import keys_of
from tests.conftest import REPO_ROOT, STACKS, run_stack
from tests.upstream import CURRENT_VERSION
from tools import config_reference
from tools.mock_runtime import stack_config


def test_every_stack_evaluates_and_exports_the_url(stack_run):
    host = stack_config(stack_run.stack)["kubeflow-platform:dns"]["host"]
    assert stack_run.exports["url"] == f"https://{host}/"
    assert stack_run.exports["kubeflowVersion"] == CURRENT_VERSION


#: What the teams around the platform read from `pulumi stack output`: renaming one breaks their scripts.
PLATFORM_OUTPUTS = {
    "url", "clusterOidcIssuer", "kubeflowVersion", "imageMirror", "transformReport", "zoneId", "zoneNameServers",
    "dnsRecordNames", "certificateArn", "loadBalancerHostname", "oidcProviderArn", "roleArns", "bucketNames",
    "nodeGroupNames", "autoscalingGroupNames", "karpenterNodePoolNames", "identityMechanism", "authExtensionProvider", "authRedirectUrl", "authObjects", "meshTrace",
    "profiles", "profileSelfService", "policyPackConfig", "ownership",
}


def test_the_stack_exports_what_a_platform_team_reads(stack_run):
    assert set(stack_run.exports) == PLATFORM_OUTPUTS
    assert set(stack_run.exports["roleArns"]) == {"pipelines", "pipelines-readers"}
    assert stack_run.exports["bucketNames"] and (stack_run.exports["nodeGroupNames"] or stack_run.exports["karpenterNodePoolNames"])
    assert stack_run.exports["dnsRecordNames"], "the alias records are registered before the export is read"


def test_a_settings_error_is_reported_by_the_engine_without_a_traceback():
    # The engine prints a RunError's message alone; any other exception comes with a Python traceback.
    assert issubclass(config.SettingsError, pulumi.RunError)


def test_every_resource_uses_an_explicit_provider(stack_run):
    providers = {r.urn: r for r in stack_run.resources if r.type.startswith("pulumi:providers:")}
    assert {r.type for r in providers.values()} == {"pulumi:providers:aws", "pulumi:providers:kubernetes"}
    for resource in stack_run.resources:
        if not resource.custom or resource.type.startswith("pulumi:providers:"):
            continue
        provider_urn = resource.provider.rsplit("::", 1)[0]
        assert provider_urn in providers, f"{resource.type} {resource.name} uses the default provider"
        package = resource.type.split(":")[0]
        assert providers[provider_urn].type == f"pulumi:providers:{package}", resource.urn


def test_the_program_stops_the_collector_for_its_process_and_a_harness_run_gives_it_back():
    # __main__.py disables the cyclic collector and freezes what it built (a short-lived process);
    # a process that runs the program many times, like this test session, must get both back.
    assert gc.isenabled() and gc.get_freeze_count() == 0
    run = run_stack("dev")
    assert run.exports["url"].startswith("https://")
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_urns_are_unique(stack_run):
    # The mock monitor silently accepts duplicates; the engine refuses the whole deployment.
    counts = collections.Counter(r.urn for r in stack_run.resources)
    assert [urn for urn, n in counts.items() if n > 1] == []


def test_the_aws_provider_tags_everything_and_pins_the_account(stack_run):
    provider = next(r for r in stack_run.resources if r.type == "pulumi:providers:aws")
    settings_aws = stack_config(stack_run.stack)["kubeflow-platform:aws"]
    assert provider.inputs["region"] == settings_aws["region"]
    assert yaml.safe_load(provider.inputs["allowedAccountIds"]) == settings_aws["allowedAccountIds"]
    tags = yaml.safe_load(provider.inputs["defaultTags"])["tags"]
    assert tags["managed-by"] == "kubeflow-platform"
    assert tags["environment"] == stack_run.stack


def test_the_kubernetes_provider_gets_tokens_from_aws_eks(stack_run):
    provider = next(r for r in stack_run.resources if r.type == "pulumi:providers:kubernetes")
    kubeconfig = yaml.safe_load(provider.inputs["kubeconfig"])
    cluster_name = stack_config(stack_run.stack)["kubeflow-platform:cluster"]["name"]
    user = kubeconfig["users"][0]["user"]["exec"]
    assert user["command"] == "aws"
    assert user["args"][:4] == ["eks", "get-token", "--cluster-name", cluster_name]
    assert kubeconfig["clusters"][0]["cluster"]["server"].startswith("https://")


def test_a_kubeconfig_context_replaces_the_generated_kubeconfig():
    from tests.conftest import run_stack

    cluster = dict(stack_config("dev")["kubeflow-platform:cluster"], kubeconfigContext="ml-dev-admin")
    run = run_stack("dev", {"cluster": cluster})
    provider = next(r for r in run.resources if r.type == "pulumi:providers:kubernetes")
    assert provider.inputs.get("context") == "ml-dev-admin"
    assert "kubeconfig" not in provider.inputs


def test_pulumi_yaml_builds_its_own_virtualenv_with_pip():
    project = yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())
    assert project["name"] == "kubeflow-platform"
    assert project["runtime"] == {"name": "python", "options": {"toolchain": "pip", "virtualenv": "venv"}}
    assert project["description"]


def test_pulumi_yaml_declares_exactly_the_settings_keys_with_types():
    declared = yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())["config"]
    # Secrets only where every stack needs them (tests/test_pulumi_cli_config.py says which and why).
    expected = set(config.settings_keys()) | {"authClientSecret"}
    assert set(declared) == expected
    hints = typing.get_type_hints(config.Settings)
    for key, field in config.settings_keys().items():
        hint = hints[field.name]
        declaration = declared[key]
        assert declaration.get("description"), key
        if hint is bool:
            assert declaration.get("type") == "boolean", key
        elif dataclasses.is_dataclass(hint):
            # Untyped: config/ is the schema of a structured setting (Pulumi.yaml says why).
            assert "type" not in declaration and declaration["description"].startswith("object:"), key
    for key, description in config.SECRET_KEYS.items():
        if key in declared:
            assert declared[key] == {"type": "string", "secret": True, "description": description}


def test_stack_files_use_only_known_keys_and_the_same_ones():
    known = set(config.settings_keys())
    keys_per_stack = {}
    for stack in STACKS:
        raw = yaml.safe_load((REPO_ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
        keys = {k.split(":", 1)[1] for k in raw}
        assert all(k.startswith("kubeflow-platform:") for k in raw), stack
        assert keys <= known, f"{stack}: unknown keys {sorted(keys - known)}"
        keys_per_stack[stack] = keys
    # Both are stand-alone stacks: only the fleet's stacks (docs/fleet.md) set `fleet`.
    assert keys_per_stack["dev"] == keys_per_stack["prod"] == known - {"fleet"}


def test_every_settings_field_is_documented():
    undocumented = []

    def walk(cls, prefix=""):
        docs = config_reference.field_docs(cls)
        hints = typing.get_type_hints(cls)
        for key, field in keys_of(cls).items():
            if not docs.get(field.name):
                undocumented.append(prefix + key)
            for inner in typing.get_args(hints[field.name]) or (hints[field.name],):
                if dataclasses.is_dataclass(inner):
                    walk(inner, f"{prefix}{key}.")

    walk(config.Settings)
    assert undocumented == []


def test_config_reference_page_is_current():
    page = (REPO_ROOT / "docs" / "configuration.md").read_text()
    assert config_reference.render() in page, "run `make docs` to refresh docs/configuration.md"


def test_readme_links_only_to_pages_that_exist():
    import re

    readme = (REPO_ROOT / "README.md").read_text()
    links = re.findall(r"\]\((docs/[^)#]+)", readme)
    assert len(links) >= 10
    assert [link for link in links if not (REPO_ROOT / link).is_file()] == []
    for page in (REPO_ROOT / "docs").glob("*.md"):
        for target in re.findall(r"\]\(([\w./-]+\.md)", page.read_text()):
            assert (page.parent / target).is_file(), f"{page.name} links to {target}"


def test_prod_differs_from_dev_where_the_environments_must():
    dev, prod = stack_config("dev"), stack_config("prod")
    assert prod["kubeflow-platform:protect"] is True and dev["kubeflow-platform:protect"] is False
    assert prod["kubeflow-platform:artifacts"]["forceDestroy"] is False
    assert dev["kubeflow-platform:artifacts"]["forceDestroy"] is True
    prod_subnets = {s for p in prod["kubeflow-platform:gpu"]["pools"] for s in p["subnetIds"]}
    assert len(prod_subnets) >= 2
    assert all(p["minSize"] == 0 for p in dev["kubeflow-platform:gpu"]["pools"])
