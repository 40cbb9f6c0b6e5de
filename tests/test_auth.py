"""The Auth component in both stacks: every object it registers, read back from the mock runtime."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest

from manifests.identity import (
    IDENTITY_HEADERS_FILTER_NAME,
    JWT_EMAIL_VERIFIED_HEADER,
    STRIP_CLIENT_IDENTITY_FILTER_NAME,
)
from manifests import auth_proxy
from manifests.release import released_auth_proxy_image
from manifests.validate import validate_objects
from pulumi.runtime import rpc
from tests.conftest import MARKER_SECRETS, run_stack
from tests.identity.istio_crd_schemas import schema_errors
from tests.upstream import CURRENT_VERSION, upstream_objects
from tools.mock_runtime import PlatformMocks, ProgramRun, stack_config

COMPONENT = "kubeflow-platform:auth:Auth"


def _settings(run: ProgramRun, area: str) -> dict:
    return stack_config(run.stack)[f"kubeflow-platform:{area}"]


def _auth(run: ProgramRun):
    (component,) = run.of_type(COMPONENT)
    return component


def _children(run: ProgramRun) -> list:
    return [r for r in run.resources if r.parent == _auth(run).urn]


def _object(registration) -> dict:
    """The Kubernetes object a registration stands for, as the API server would receive it."""
    return {key: value for key, value in registration.inputs.items() if not key.startswith("__")}


def _objects(run: ProgramRun, kind: str) -> list[dict]:
    return [_object(r) for r in _children(run) if r.type.rsplit(":", 1)[-1] == kind]


def _one(run: ProgramRun, kind: str, name: str | None = None) -> dict:
    matches = [o for o in _objects(run, kind) if name is None or o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{len(matches)} {kind} named {name}"
    return matches[0]


def _lua(envoy_filter: dict, filter_name: str) -> str:
    for patch in envoy_filter["spec"]["configPatches"]:
        value = patch["patch"]["value"]
        if value["name"] == filter_name:
            return value["typed_config"]["default_source_code"]["inline_string"]
    raise KeyError(filter_name)


def _gateway_selector(run: ProgramRun) -> dict:
    return _settings(run, "ingress").get("selector", {"istio": "ingressgateway"})


# --- shape of the component -------------------------------------------------------------------------


def test_auth_children_are_named_after_the_component_and_on_the_cluster_provider(stack_run):
    auth = _auth(stack_run)
    children = _children(stack_run)
    assert len(children) >= 12
    for child in children:
        assert child.name.startswith(f"{auth.name}-"), child.name
        assert child.provider.split("::")[-2].startswith("k8s-"), child.urn


# --- gateway: identity headers, issuers, authorization -------------------------------------------------


def test_identity_envoy_filter_selects_the_configured_gateway_workload(stack_run):
    envoy_filter = _one(stack_run, "EnvoyFilter")
    ingress = _settings(stack_run, "ingress")
    assert envoy_filter["metadata"]["namespace"] == ingress["namespace"]
    assert envoy_filter["spec"]["workloadSelector"]["labels"] == _gateway_selector(stack_run)
    auth = _settings(stack_run, "auth")
    strip = _lua(envoy_filter, STRIP_CLIENT_IDENTITY_FILTER_NAME)
    for header in ("kubeflow-userid", "kubeflow-groups", auth["userSourceHeader"], auth["groupsSourceHeader"]):
        assert f'["{header}"] = true' in strip
    assert "LOWERCASE_USER = true" in _lua(envoy_filter, IDENTITY_HEADERS_FILTER_NAME)


def test_every_extra_issuer_and_the_cluster_issuer_get_a_request_authentication(stack_run):
    authentications = _objects(stack_run, "RequestAuthentication")
    rules = {o["spec"]["jwtRules"][0]["issuer"]: o["spec"]["jwtRules"][0] for o in authentications}
    configured = _settings(stack_run, "auth")["extraIssuers"]
    cluster_issuer = PlatformMocks(stack_config(stack_run.stack)).issuer
    assert set(rules) == {issuer["issuer"] for issuer in configured} | {cluster_issuer}
    assert stack_run.exports["clusterOidcIssuer"] == cluster_issuer
    assert rules[cluster_issuer]["audiences"] == ["pipelines.kubeflow.org"]
    assert "outputClaimToHeaders" not in rules[cluster_issuer]
    for issuer in configured:
        rule = rules[issuer["issuer"]]
        assert rule["audiences"] == issuer["audiences"]
        claims = {output["claim"]: output["header"] for output in rule.get("outputClaimToHeaders", [])}
        # User and groups are read from the verified payload by the identity filter; only email_verified, which
        # the token policy checks, goes to a header.
        if issuer.get("userClaim"):
            assert claims == {"email_verified": JWT_EMAIL_VERIFIED_HEADER}
        else:
            assert claims == {}, "an issuer without userClaim must not name a Kubeflow user"
    for obj in authentications:
        assert obj["spec"]["selector"]["matchLabels"] == _gateway_selector(stack_run)


def test_an_unknown_cluster_issuer_blanks_out_only_its_own_object():
    # In a preview before the cluster lookup resolves, the issuer is unknown; every other object must still
    # be shown in full, so the unknown is confined to the service-account RequestAuthentication's spec.
    import asyncio

    import pulumi
    from pulumi.runtime.stack import run_pulumi_func
    from pulumi.runtime.sync_await import _sync_await

    import config
    from components.auth import Auth, AuthArgs
    from tools.mock_runtime import install_mocks

    raw = {key.split(":", 1)[1]: value for key, value in stack_config("dev").items()}
    settings = config.parse(raw, config.Secrets(), set(MARKER_SECRETS), "dev")
    _, monitor = install_mocks(stack_config("dev"), stack="dev", preview=True)

    def program() -> None:
        loop = asyncio.get_event_loop()
        value, known = loop.create_future(), loop.create_future()
        value.set_result(None)
        known.set_result(False)
        unknown_issuer = pulumi.Output(set(), value, known)
        base = AuthArgs.from_settings(settings, unknown_issuer, ())
        secret = pulumi.Output.secret("x")
        Auth("auth", dataclasses.replace(base, client_secret=secret, cookie_secret=secret))

    _sync_await(run_pulumi_func(program))
    specs = {r.name: r.inputs.get("spec") for r in monitor.registrations if r.type.startswith("kubernetes:") and "istio.io" in r.type}
    from pulumi.output import Unknown

    assert isinstance(specs.pop("auth-service-account-jwt"), Unknown)
    assert len(specs) >= 6
    assert all(isinstance(spec, dict) and rpc.UNKNOWN not in json.dumps(spec) for spec in specs.values())


def test_ext_authz_policy_names_the_exported_provider_and_covers_kubeflow_and_model_hosts(stack_run):
    policy = _one(stack_run, "AuthorizationPolicy", "kubeflow-auth-proxy")
    provider = stack_run.exports["authExtensionProvider"]
    assert policy["spec"]["action"] == "CUSTOM"
    assert policy["spec"]["provider"] == {"name": provider["name"]}
    assert policy["spec"]["selector"]["matchLabels"] == _gateway_selector(stack_run)
    dns = _settings(stack_run, "dns")
    hosts = [dns["host"], *dns.get("extraHosts", [])]
    (rule,) = policy["spec"]["rules"]
    operation = rule["to"][0]["operation"]
    # The model endpoints too (auth.openModelEndpoints is false in both stacks): a wildcard is a suffix match,
    # listed once (the gateway refuses a port on it).
    serving = [f"*.{dns['servingDomain']}"] if dns.get("servingDomain") else []
    assert operation["hosts"] == [spelling for host in hosts for spelling in (host, f"{host}:*")] + serving
    assert operation["notPaths"] == ["/oauth2/*"]
    assert rule["when"] == [{"key": "request.headers[authorization]", "notValues": ["*"]}]


def test_requests_that_skip_login_with_a_token_must_present_a_verified_one(stack_run):
    policy = _one(stack_run, "AuthorizationPolicy", "kubeflow-require-verified-token")
    first, *others = policy["spec"]["rules"]
    assert policy["spec"]["action"] == "DENY"
    assert first["from"] == [{"source": {"notRequestPrincipals": ["*"]}}]
    assert first["when"] == [{"key": "request.headers[authorization]", "values": ["*"]}]
    for rule in policy["spec"]["rules"]:
        assert _settings(stack_run, "dns")["host"] in rule["to"][0]["operation"]["hosts"]


def test_every_extra_issuers_tokens_are_held_to_its_required_claims(stack_run):
    rules = _one(stack_run, "AuthorizationPolicy", "kubeflow-require-verified-token")["spec"]["rules"]
    for issuer in _settings(stack_run, "auth")["extraIssuers"]:
        mine = [rule for rule in rules if rule["from"] == [{"source": {"requestPrincipals": [f"{issuer['issuer']}/*"]}}]]
        refused = {condition["key"]: condition.get("notValues") for rule in mine for condition in rule["when"]}
        for claim, values in (issuer.get("requiredClaims") or {}).items():
            assert refused[f"request.auth.claims[{claim}]"] == values
        if issuer.get("userClaim"):
            domains = _settings(stack_run, "auth")["emailDomains"]
            assert refused[f"request.auth.claims[{issuer['userClaim']}]"] == [f"*@{d}" for d in domains]


def test_only_the_gateway_may_send_the_identity_header_into_kubeflow(stack_run):
    policy = _one(stack_run, "AuthorizationPolicy", "kubeflow-identity-header-from-gateway-only")
    assert policy["metadata"]["namespace"] == "kubeflow"
    assert policy["spec"]["action"] == "DENY"
    headers = {rule["when"][0]["key"] for rule in policy["spec"]["rules"]}
    assert headers == {f"request.headers[{h}]" for h in ("kubeflow-userid", "kubeflow_userid", "kubeflow-groups", "kubeflow_groups")}
    principals = policy["spec"]["rules"][0]["from"][0]["source"]["notPrincipals"]
    assert "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account" in principals


def test_extension_provider_export_matches_the_proxy_service_and_copies_the_source_headers(stack_run):
    provider = stack_run.exports["authExtensionProvider"]["envoyExtAuthzHttp"]
    service = _one(stack_run, "Service")
    namespace = service["metadata"]["namespace"]
    assert provider["service"] == f"{service['metadata']['name']}.{namespace}.svc.cluster.local"
    assert provider["port"] in [port["port"] for port in service["spec"]["ports"]]
    auth = _settings(stack_run, "auth")
    assert {auth["userSourceHeader"], auth["groupsSourceHeader"]} <= set(provider["headersToUpstreamOnAllow"])
    assert "kubeflow-userid" not in provider["headersToUpstreamOnAllow"]
    assert "cookie" in provider["includeRequestHeadersInCheck"]


def test_generated_istio_objects_validate_against_upstream_crds(stack_run):
    istio_kinds = {"EnvoyFilter", "RequestAuthentication", "AuthorizationPolicy", "VirtualService"}
    objects = [_object(r) for r in _children(stack_run) if r.type.rsplit(":", 1)[-1] in istio_kinds]
    assert {o["kind"] for o in objects} == istio_kinds
    problems = {f"{o['kind']}/{o['metadata']['name']}": schema_errors(o, CURRENT_VERSION) for o in objects}
    assert {ref: errors for ref, errors in problems.items() if errors} == {}


def test_generated_kubernetes_objects_validate_strictly(stack_run):
    builtin = [r for r in _children(stack_run) if r.type.split(":")[1].split("/")[0] in ("core", "apps")]
    objects = [_unwrap_secrets(_object(r)) for r in builtin]
    assert {o["kind"] for o in objects} >= {"Namespace", "ServiceAccount", "Secret", "ConfigMap", "Deployment", "Service"}
    assert [str(problem) for problem in validate_objects(objects)] == []


# --- the SSO proxy ---------------------------------------------------------------------------------------


def test_oauth2_proxy_logs_in_at_the_enterprise_issuer_without_dex(stack_run):
    auth = _settings(stack_run, "auth")
    config_text = _one(stack_run, "ConfigMap")["data"]["oauth2_proxy.cfg"]
    host = _settings(stack_run, "dns")["host"]
    assert f'oidc_issuer_url = "{auth["issuerUrl"]}"' in config_text
    assert f'client_id = "{auth["clientId"]}"' in config_text
    assert f'redirect_url = "https://{host}/oauth2/callback"' in config_text
    assert stack_run.exports["authRedirectUrl"] == f"https://{host}/oauth2/callback"
    assert "set_xauthrequest = true" in config_text
    assert "dex" not in config_text.lower()
    # The secrets reach the pods through the environment only, never through a ConfigMap.
    assert "client_secret" not in config_text and "cookie_secret" not in config_text


def test_oauth2_proxy_reads_both_secrets_from_the_secret_it_is_given(stack_run):
    deployment = _one(stack_run, "Deployment")
    secret = _one(stack_run, "Secret")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    references = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
    assert set(references) == {"OAUTH2_PROXY_CLIENT_SECRET", "OAUTH2_PROXY_COOKIE_SECRET"}
    keys = set(_unwrap_secrets(secret)["stringData"])
    for reference in references.values():
        assert reference["name"] == secret["metadata"]["name"]
        assert reference["key"] in keys
    assert secret["metadata"]["namespace"] == deployment["metadata"]["namespace"]


def test_proxy_image_is_pulled_through_the_internal_mirror(stack_run):
    (container,) = _one(stack_run, "Deployment")["spec"]["template"]["spec"]["containers"]
    mirror = _settings(stack_run, "kubeflow")["images"]["mirror"]
    # The version the pinned release's own oauth2-proxy runs (v7.14.3 in 26.03), the program's being its stand-in.
    assert container["image"] == f"{mirror}/{released_auth_proxy_image(upstream_objects(CURRENT_VERSION))}"
    assert container["image"].endswith("/quay.io/oauth2-proxy/oauth2-proxy:v7.14.3")


@pytest.mark.parametrize("version,tag", [("26.03", "v7.14.3"), ("1.11.0", "v7.13.0"), ("1.10.2", "v7.7.1")])
def test_the_proxy_follows_the_oauth2_proxy_version_each_release_pins(version, tag):
    assert released_auth_proxy_image(upstream_objects(version)) == f"quay.io/oauth2-proxy/oauth2-proxy:{tag}"


def test_proxy_namespace_joins_the_mesh_like_kubeflow(stack_run):
    labels = _one(stack_run, "Namespace")["metadata"]["labels"]
    revision = _settings(stack_run, "kubeflow")["mesh"].get("revision")
    if revision:
        assert labels.get("istio.io/rev") == revision and "istio-injection" not in labels
    else:
        assert labels.get("istio-injection") == "enabled" and "istio.io/rev" not in labels


def test_proxy_route_binds_to_the_central_gateway(stack_run):
    route = next(o for o in _objects(stack_run, "VirtualService") if o["metadata"]["name"] != auth_proxy.EXTRA_HOST_REDIRECTS)
    ingress = _settings(stack_run, "ingress")
    # ingress.gatewayNamespace follows kubeflow.namespace when the stack leaves it out.
    namespace = ingress.get("gatewayNamespace", _settings(stack_run, "kubeflow").get("namespace", "kubeflow"))
    assert route["spec"]["gateways"] == [f"{namespace}/{ingress['gatewayName']}"]
    assert route["spec"]["http"][0]["match"] == [{"uri": {"prefix": "/oauth2/"}}]


# --- secrets -------------------------------------------------------------------------------------------


def _unwrap_secrets(node):
    if isinstance(node, dict):
        if node.get(rpc._special_sig_key) == rpc._special_secret_sig:
            return _unwrap_secrets(node["value"])
        return {key: _unwrap_secrets(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_unwrap_secrets(item) for item in node]
    return node


def _clear_text(node) -> str:
    """Everything in `node` that is not wrapped as a Pulumi secret, as text."""
    if isinstance(node, dict):
        if node.get(rpc._special_sig_key) == rpc._special_secret_sig:
            return ""
        return " ".join(f"{key} {_clear_text(value)}" for key, value in node.items())
    if isinstance(node, list):
        return " ".join(_clear_text(item) for item in node)
    return str(node)


def test_client_and_cookie_secret_stay_secret(stack_run):
    secret = next(r for r in _children(stack_run) if r.type == "kubernetes:core/v1:Secret")
    assert secret.secret_paths == ["stringData"]
    values = _unwrap_secrets(secret.inputs)["stringData"]
    assert values == {"client-secret": MARKER_SECRETS["authClientSecret"], "cookie-secret": MARKER_SECRETS["authCookieSecret"]}
    for registration in stack_run.resources:
        clear = _clear_text(registration.inputs) + _clear_text(registration.outputs)
        for marker in MARKER_SECRETS.values():
            assert marker not in clear, f"{marker} in clear in {registration.urn}"
    exported = json.dumps(stack_run.exports, default=str)
    assert not any(marker in exported for marker in MARKER_SECRETS.values())


# --- authservice for old releases ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def authservice_run() -> ProgramRun:
    auth = copy.deepcopy(stack_config("dev")["kubeflow-platform:auth"])
    auth["proxy"] = "authservice"
    kubeflow = copy.deepcopy(stack_config("dev")["kubeflow-platform:kubeflow"])
    kubeflow["exclude"] = ["istio", "argo", "dex", "authservice"]
    secrets = {k: v for k, v in MARKER_SECRETS.items() if k != "authCookieSecret"}
    from tests.upstream import manifests_path

    kubeflow["manifests"] = str(manifests_path(CURRENT_VERSION))
    return run_stack("dev", {"auth": auth, "kubeflow": kubeflow}, secrets=secrets)


def test_authservice_gets_the_equivalent_configuration(authservice_run):
    statefulset = _one(authservice_run, "StatefulSet")
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    auth = _settings(authservice_run, "auth")
    host = _settings(authservice_run, "dns")["host"]
    assert env["OIDC_PROVIDER"] == auth["issuerUrl"]
    assert env["CLIENT_ID"] == auth["clientId"]
    assert env["USERID_HEADER"] == auth["userSourceHeader"]
    assert env["GROUPS_HEADER"] == auth["groupsSourceHeader"]
    assert env["USERID_PREFIX"] == "", "the gateway applies the prefix, once"
    assert env["REDIRECT_URL"] == f"https://{host}/authservice/oidc/callback"
    assert env["CLIENT_SECRET"]["secretKeyRef"]["key"] == "client-secret"
    provider = authservice_run.exports["authExtensionProvider"]["envoyExtAuthzHttp"]
    assert provider["service"] == "authservice.authservice.svc.cluster.local" and provider["port"] == 8080
    assert set(_unwrap_secrets(_one(authservice_run, "Secret"))["stringData"]) == {"client-secret"}
    assert _objects(authservice_run, "Deployment") == []


def test_authservice_objects_validate(authservice_run):
    objects = [_unwrap_secrets(_object(r)) for r in _children(authservice_run)]
    istio = [o for o in objects if "istio.io" in o["apiVersion"]]
    assert {f"{o['kind']}/{o['metadata']['name']}": schema_errors(o, CURRENT_VERSION) for o in istio if schema_errors(o, CURRENT_VERSION)} == {}
    builtin = [o for o in objects if "istio.io" not in o["apiVersion"]]
    assert [str(problem) for problem in validate_objects(builtin)] == []


# --- what tenancy uses ------------------------------------------------------------------------------------


def test_tenancy_gets_the_same_policy_for_each_profile_namespace():
    import config
    from components.auth import identity_header_policy
    from manifests.identity import header_forwarders
    from tests.upstream import upstream_objects

    settings = config.parse(
        {key.split(":", 1)[1]: value for key, value in stack_config("dev").items()},
        config.Secrets(),
        set(MARKER_SECRETS),
        "dev",
    )
    options = settings.identity_options()
    forwarders = header_forwarders(upstream_objects(CURRENT_VERSION), options.trust_domain)
    policy = identity_header_policy(options, "alice", forwarders)
    assert policy["metadata"] == {"name": "kubeflow-identity-header-from-gateway-only", "namespace": "alice"}
    assert schema_errors(policy, CURRENT_VERSION) == []
    custom = dataclasses.replace(settings.auth, trust_domain="corp.example").identity_options()
    custom_domain = identity_header_policy(custom, "alice", header_forwarders(upstream_objects(CURRENT_VERSION), "corp.example"))
    principals = custom_domain["spec"]["rules"][0]["from"][0]["source"]["notPrincipals"]
    assert all(principal.startswith("corp.example/") for principal in principals)
    assert forwarders == (
        "cluster.local/ns/kubeflow/sa/ml-pipeline-ui",
        "cluster.local/ns/kubeflow/sa/centraldashboard",
        "cluster.local/ns/kubeflow/sa/metadata-envoy",
    )


def test_stack_files_exclude_the_upstream_proxy_auth_replaces():
    for stack in ("dev", "prod"):
        config_values = stack_config(stack)
        assert config_values["kubeflow-platform:auth"]["proxy"] in config_values["kubeflow-platform:kubeflow"]["exclude"]
