"""Through a real Envoy built from each stack's own gateway objects: which bearer tokens get past the login.

The gateway is the chain istiod builds on the ingress gateway from what the stack registers, in Istio's
order: the strip filter, the CUSTOM policy (an RBAC shadow filter marking the requests ext_authz must see,
then ext_authz with a stand-in auth proxy), jwt_authn from the RequestAuthentications, the DENY policy as an
RBAC filter (translated as istiod 1.24.6 does, see envoy_harness.rbac_filter), the identity filter, router.
Every object comes from the stack file through the same code the Auth component uses, so what is proven
here is what `pulumi up` applies. Test keys stand in for each issuer's JWKS.

A request reaching the echo server answers 200 with the headers Kubeflow would see; the DENY policy
answers 403; the auth proxy 401 (login).
"""

from __future__ import annotations

from dataclasses import dataclass

from pathlib import Path
from typing import Iterator

import pytest

import config
from components.auth import AuthArgs, _on_kubeflow_hosts
from manifests import auth_proxy
from manifests.identity import (
    GITHUB_ACTIONS_ISSUER,
    http_filter_config,
    request_authentications,
    strip_client_identity_filter_config,
)
from tests.identity.envoy_harness import (
    EnvoyGateway,
    EnvoyMissing,
    LoopbackServer,
    custom_policy_filters,
    envoy_binary,
    gateway_bootstrap,
    jwt_authn_filter,
    rbac_filter,
    send,
    signed_jwt,
    start_echo_upstream,
    start_fake_auth_proxy,
)
from tools.mock_runtime import stack_config

CLUSTER_ISSUER = "https://oidc.eks.us-west-2.amazonaws.com/id/0123456789ABCDEF0123456789ABCDEF"
CLI_ISSUER = "https://login.example.com/oauth2/cli"
SESSION = ("cookie", "session=alice")


def _stack_settings(stack: str) -> config.Settings:
    prefix = f"{config.PROJECT}:"
    raw = {
        key[len(prefix):]: value
        for key, value in stack_config(stack).items()
        if key.startswith(prefix) and key[len(prefix):] not in config.SECRET_KEYS
    }
    return config.parse(raw, config.Secrets(), set(config.SECRET_KEYS), stack)


@dataclass(frozen=True)
class Stack:
    """One stack's gateway objects, as the Auth component builds them, and what its tokens must carry."""

    name: str
    settings: config.Settings
    args: AuthArgs

    @property
    def host(self) -> str:
        return self.settings.dns.hosts[0]

    @property
    def github_audience(self) -> str:
        return next(i.audiences[0] for i in self.settings.auth.extra_issuers if i.issuer == GITHUB_ACTIONS_ISSUER)

    @property
    def machine_user(self) -> str:
        return next(i.machine_identity.user for i in self.settings.auth.extra_issuers if i.machine_identity)


def _stack(name: str) -> Stack:
    settings = _stack_settings(name)
    # No in-mesh forwarders: these tests hold the gateway, which the identity-header policy does not concern.
    return Stack(name, settings, AuthArgs.from_settings(settings, CLUSTER_ISSUER, ()))


@dataclass(frozen=True)
class Gateway:
    port: int
    stack: Stack


TEST_KEYS = {
    CLI_ISSUER: b"cli-issuer-test-key-0123456789abcdef",
    GITHUB_ACTIONS_ISSUER: b"github-test-key-0123456789abcdef0123",
    CLUSTER_ISSUER: b"cluster-test-key-0123456789abcdef",
}


def _gateway_chain(stack: Stack, auth_proxy_port: int) -> list[dict]:
    args, hosts = stack.args, stack.settings.dns.hosts
    custom = _on_kubeflow_hosts(auth_proxy.ext_authz_policy(args.proxy), hosts)
    deny = _on_kubeflow_hosts(auth_proxy.require_verified_token_policy(args.proxy), hosts)
    authentications = request_authentications(
        args.identity, args.service_account_issuer, None, args.service_account_audiences
    )
    return [
        strip_client_identity_filter_config(args.identity),
        *custom_policy_filters([custom], auth_proxy_port),
        jwt_authn_filter(authentications, TEST_KEYS),
        rbac_filter([deny]),
        http_filter_config(args.identity),
    ]


@pytest.fixture(scope="module")
def echo_upstream() -> Iterator[LoopbackServer]:
    try:
        envoy_binary()
    except EnvoyMissing as missing:
        pytest.fail(str(missing), pytrace=False)
    server = start_echo_upstream()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def auth_proxy_server() -> Iterator[LoopbackServer]:
    server = start_fake_auth_proxy()
    yield server
    server.stop()


@pytest.fixture(scope="module", params=["dev", "prod"])
def gateway(request, echo_upstream, auth_proxy_server, tmp_path_factory) -> Iterator[Gateway]:
    stack = _stack(request.param)
    bootstrap = gateway_bootstrap(_gateway_chain(stack, auth_proxy_server.port), echo_upstream.port, auth_proxy_server.port)
    with EnvoyGateway(bootstrap, Path(tmp_path_factory.mktemp(f"{stack.name}-gateway"))) as running:
        yield Gateway(running.port, stack)


@pytest.fixture(scope="module")
def gateway_before_the_fix(echo_upstream, auth_proxy_server, tmp_path_factory) -> Iterator[Gateway]:
    """The control: the dev gateway whose DENY policy keeps only its first rule (no verified token), as before."""
    stack = _stack("dev")
    chain = _gateway_chain(stack, auth_proxy_server.port)
    deny = _on_kubeflow_hosts(auth_proxy.require_verified_token_policy(stack.args.proxy), stack.settings.dns.hosts)
    deny["spec"]["rules"] = deny["spec"]["rules"][:1]
    chain[4] = rbac_filter([deny])
    bootstrap = gateway_bootstrap(chain, echo_upstream.port, auth_proxy_server.port)
    with EnvoyGateway(bootstrap, Path(tmp_path_factory.mktemp("dev-gateway-old"))) as running:
        yield Gateway(running.port, stack)


def _token(issuer: str, **claims) -> tuple[str, str]:
    return ("authorization", f"Bearer {signed_jwt({'iss': issuer, **claims}, TEST_KEYS[issuer])}")


def _github(gateway: Gateway, **claims) -> tuple[str, str]:
    # The claims GitHub puts into a workflow's token; the workflow picks the audience with core.getIDToken(audience)
    # (https://docs.github.com/en/actions/reference/security/oidc).
    defaults = {
        "aud": gateway.stack.github_audience,
        "sub": "repo:example-org/ml-pipelines:ref:refs/heads/main",
        "repository": "example-org/ml-pipelines",
        "repository_owner": "example-org",
        "event_name": "push",
    }
    return _token(GITHUB_ACTIONS_ISSUER, **{**defaults, **claims})


def _cli(**claims) -> tuple[str, str]:
    defaults = {"aud": "kubeflow-cli", "sub": "00u1", "email": "alice@example.com", "email_verified": True}
    return _token(CLI_ISSUER, **{k: v for k, v in {**defaults, **claims}.items() if v is not None})


def _get(gateway: Gateway, *headers, path: str = "/pipeline/apis/v2beta1/runs"):
    return send(gateway.port, list(headers), path=path, host=gateway.stack.host)


# --- the legitimate callers still get in --------------------------------------------------------------


def test_browser_session_still_logs_in(gateway):
    delivered = _get(gateway, SESSION, path="/")
    assert delivered.status == 200
    assert delivered.values("kubeflow-userid") == ["alice@corp.example"]


def test_request_without_session_or_token_goes_to_the_login(gateway):
    assert _get(gateway, path="/").status == 401


def test_the_configured_repository_acts_as_its_machine_identity(gateway):
    delivered = _get(gateway, _github(gateway), ("kubeflow-userid", "alice@example.com"))
    assert delivered.status == 200
    assert delivered.values("kubeflow-userid") == [gateway.stack.machine_user]
    assert delivered.values("kubeflow-groups") == []


def test_cli_user_token_names_its_user(gateway):
    delivered = _get(gateway, _cli(email="Alice@example.com", groups="ml-vision"))
    assert delivered.status == 200
    assert delivered.values("kubeflow-userid") == ["alice@example.com"]
    assert delivered.values("kubeflow-groups") == ["ml-vision"]


def test_array_groups_claim_arrives_as_a_plain_comma_list(gateway):
    delivered = _get(gateway, _cli(groups=["ml-vision", "reviewers"]))
    assert delivered.status == 200
    assert delivered.values("kubeflow-groups") == ["ml-vision,reviewers"]


def test_cli_token_without_email_verified_claim_is_accepted(gateway):
    # As oauth2-proxy on the browser path: only a present, false email_verified refuses.
    assert _get(gateway, _cli(email_verified=None)).status == 200


def test_service_account_token_reaches_the_pipelines_api(gateway):
    token = _token(CLUSTER_ISSUER, aud="pipelines.kubeflow.org", sub="system:serviceaccount:alice:default-editor")
    delivered = _get(gateway, token)
    assert delivered.status == 200
    assert delivered.values("kubeflow-userid") == []


# --- tokens that name nobody let in are refused -------------------------------------------------------


@pytest.mark.parametrize(
    "claims",
    [
        {"repository": "evil-org/evil-repo", "repository_owner": "evil-org", "sub": "repo:evil-org/evil-repo:ref:refs/heads/main"},
        {"repository": "example-org/other-repo", "sub": "repo:example-org/other-repo:ref:refs/heads/main"},
        {"repository": "random-user/ml-pipelines", "repository_owner": "random-user", "event_name": "pull_request"},
        {"repository": ["example-org/ml-pipelines", "x"], "repository_owner": "evil-org"},
    ],
    ids=["another-org", "another-repo-same-org", "fork", "owner-mismatch"],
)
def test_another_repositorys_github_token_is_refused(gateway, claims):
    for path in ("/ml_metadata/ml_metadata.MetadataStoreService/GetArtifacts", "/pipeline/apis/v2beta1/runs", "/"):
        assert _get(gateway, _github(gateway, **claims), path=path).status == 403, path


def test_github_token_without_the_repository_claims_is_refused(gateway):
    token = _token(GITHUB_ACTIONS_ISSUER, aud=gateway.stack.github_audience, sub="repo:example-org/ml-pipelines:ref:refs/heads/main")
    assert _get(gateway, token).status == 403


def test_another_repositorys_token_got_through_before_the_fix(gateway_before_the_fix):
    # The control: with only the old rule (deny unverified tokens) a stranger's workflow gets in, here even as the
    # machine user; without the new rules the tests above would fail.
    delivered = _get(gateway_before_the_fix, _github(gateway_before_the_fix, repository="evil-org/evil-repo", repository_owner="evil-org"))
    assert delivered.status == 200
    assert delivered.values("kubeflow-userid") == [gateway_before_the_fix.stack.machine_user]


def test_github_token_for_another_audience_is_refused(gateway):
    assert _get(gateway, _github(gateway, aud="sts.amazonaws.com")).status in (401, 403)


def test_cli_token_without_a_user_claim_is_refused(gateway):
    # An application's client-credentials token of the same issuer: verified, but no one.
    assert _get(gateway, _cli(email=None, email_verified=None), path="/").status == 403


def test_cli_token_from_a_foreign_email_domain_is_refused(gateway):
    assert _get(gateway, _cli(email="mallory@gmail.com"), path="/").status == 403
    assert _get(gateway, _cli(email="mallory@evil-example.com"), path="/").status == 403


def test_cli_token_with_a_capitalised_email_domain_is_refused(gateway):
    # Istio matches the domain suffix case-sensitively where oauth2-proxy lower-cases first: refused, not let in.
    assert _get(gateway, _cli(email="alice@Example.com"), path="/").status == 403


@pytest.mark.parametrize("verified", [False, "false", "no"])
def test_cli_token_with_unverified_email_is_refused(gateway, verified):
    assert _get(gateway, _cli(email_verified=verified), path="/").status == 403


def test_client_cannot_forge_the_verified_email_header(gateway):
    delivered = _get(gateway, _cli(email_verified=False), ("x-kubeflow-jwt-email-verified", "true"), path="/")
    assert delivered.status == 403


def test_cli_token_for_another_audience_is_refused(gateway):
    assert _get(gateway, _cli(aud="another-app")).status in (401, 403)


def test_service_account_token_is_refused_outside_the_pipelines_api(gateway):
    token = _token(CLUSTER_ISSUER, aud="pipelines.kubeflow.org", sub="system:serviceaccount:alice:default-editor")
    for path in ("/ml_metadata/ml_metadata.MetadataStoreService/GetArtifacts", "/", "/jupyter/", "/kfam/"):
        assert _get(gateway, token, path=path).status == 403, path


def test_service_account_token_for_another_audience_is_refused(gateway):
    token = _token(CLUSTER_ISSUER, aud="sts.amazonaws.com", sub="system:serviceaccount:alice:default-editor")
    assert _get(gateway, token).status in (401, 403)


def test_token_of_an_unknown_issuer_is_refused(gateway):
    # Istio lets such a token through jwt_authn as if there were none and the first DENY rule refuses it (403);
    # the harness's jwt_authn refuses it itself (401). Either way it never reaches a backend.
    token = ("authorization", f"Bearer {signed_jwt({'iss': 'https://evil.example', 'aud': gateway.stack.github_audience}, b'k' * 32)}")
    assert _get(gateway, token, path="/").status in (401, 403)


def test_every_issuer_of_the_stacks_has_its_admission_rules():
    for stack in ("dev", "prod"):
        settings = _stack_settings(stack)
        rules = auth_proxy.require_verified_token_policy(AuthArgs.from_settings(settings, CLUSTER_ISSUER, ()).proxy)["spec"]["rules"]
        claims = {
            condition["key"]
            for rule in rules
            for condition in rule.get("when", [])
            if condition["key"].startswith("request.auth.claims")
        }
        assert {"request.auth.claims[repository_owner]", "request.auth.claims[repository]", "request.auth.claims[email]"} <= claims, stack

