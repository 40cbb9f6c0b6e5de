"""Through a real Envoy built from the stacks' gateway objects: model endpoints (`*.<servingDomain>`) are behind
the login and the token policy by default, as upstream 26.03 keeps them, and open only with
`auth.openModelEndpoints: true`."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterator

import pytest

from components.auth import AuthArgs, _on_kubeflow_hosts
from manifests import auth_proxy
from manifests.identity import http_filter_config, request_authentications, strip_client_identity_filter_config
from tests.identity.envoy_harness import (
    EnvoyGateway,
    custom_policy_filters,
    gateway_bootstrap,
    jwt_authn_filter,
    rbac_filter,
    send,
)
from tests.identity.test_token_admission_envoy import (  # noqa: F401 - fixtures
    CLUSTER_ISSUER,
    SESSION,
    TEST_KEYS,
    Stack,
    _cli,
    _stack,
    auth_proxy_server,
    echo_upstream,
)


def _chain(stack: Stack, auth_proxy_port: int) -> list[dict]:
    args = stack.args
    hosts = args.policy_hosts
    custom = _on_kubeflow_hosts(auth_proxy.ext_authz_policy(args.proxy), hosts)
    deny = _on_kubeflow_hosts(auth_proxy.require_verified_token_policy(args.proxy), hosts)
    authentications = request_authentications(args.identity, args.service_account_issuer, None, args.service_account_audiences)
    return [
        strip_client_identity_filter_config(args.identity),
        *custom_policy_filters([custom], auth_proxy_port),
        jwt_authn_filter(authentications, TEST_KEYS),
        rbac_filter([deny]),
        http_filter_config(args.identity),
    ]


def _open(stack: Stack) -> Stack:
    settings = dataclasses.replace(stack.settings, auth=dataclasses.replace(stack.settings.auth, open_model_endpoints=True))
    return Stack(stack.name, settings, AuthArgs.from_settings(settings, CLUSTER_ISSUER, ()))


@pytest.fixture(scope="module", params=["dev-default", "dev-open"])
def gateway(request, echo_upstream, auth_proxy_server, tmp_path_factory) -> Iterator[tuple[int, Stack]]:
    stack = _stack("dev") if request.param == "dev-default" else _open(_stack("dev"))
    bootstrap = gateway_bootstrap(_chain(stack, auth_proxy_server.port), echo_upstream.port, auth_proxy_server.port)
    with EnvoyGateway(bootstrap, Path(tmp_path_factory.mktemp(request.param))) as running:
        yield running.port, stack


def _model_host(stack: Stack) -> str:
    return f"sklearn-iris-alice.{stack.settings.dns.serving_domain}"


def test_a_model_endpoint_needs_a_login_or_a_token_unless_opened(gateway):
    port, stack = gateway
    status = send(port, [], path="/v1/models/sklearn-iris:predict", host=_model_host(stack)).status
    assert status == (200 if stack.settings.auth.open_model_endpoints else 401)


def test_a_verified_token_reaches_a_model_as_its_user(gateway):
    port, stack = gateway
    delivered = send(port, [_cli()], path="/v1/models/sklearn-iris:predict", host=_model_host(stack))
    assert delivered.status == 200
    assert delivered.values("kubeflow-userid") == ["alice@example.com"]


def test_a_foreign_token_is_refused_at_a_model_unless_opened(gateway):
    port, stack = gateway
    status = send(port, [_cli(email="mallory@gmail.com")], path="/", host=_model_host(stack)).status
    assert status == (200 if stack.settings.auth.open_model_endpoints else 403)


@pytest.mark.parametrize("spelling", ["{host}:443", "{host}:", "{host}:8443", "{upper}:443"])
def test_a_port_on_a_model_host_does_not_step_around_the_login(gateway, spelling):
    port, stack = gateway
    host = _model_host(stack)
    status = send(port, [], path="/", host=spelling.format(host=host, upper=host.upper())).status
    assert status in ((200,) if stack.settings.auth.open_model_endpoints else (400, 401)), spelling


def test_the_kubeflow_host_is_unchanged(gateway):
    port, stack = gateway
    assert send(port, [], path="/", host=stack.settings.dns.hosts[0]).status == 401
    assert send(port, [SESSION], path="/", host=f"{stack.settings.dns.hosts[0]}:443").status == 200
