"""Through a real Envoy: what a Kubeflow service receives as `kubeflow-userid` and `kubeflow-groups`.

Two kinds of gateway are started on loopback:

* "identity filter only": the chain is exactly `http_filter_config(options)` + router. The request itself
  carries the source header, standing in for what ext-authz put there in the real gateway.
* "full chain": strip filter, a real ext_authz filter calling a stand-in auth proxy, a real jwt_authn filter
  built from the generated RequestAuthentication, the identity filter, router: the order the EnvoyFilter
  produces in an Istio gateway. Here the client cannot forge a source header either, even on a route where
  the auth proxy does not run.

Control gateways without the filters show that the spoofs would otherwise get through, so these tests
can fail.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from manifests.identity import (
    IdentityHeaderOptions,
    JwtIssuer,
    http_filter_config,
    identity_envoy_filter,
    request_authentications,
    strip_client_identity_filter_config,
)
from tests.identity.envoy_harness import (
    NO_AUTH_PROXY_PREFIX,
    EnvoyGateway,
    EnvoyMissing,
    LoopbackServer,
    envoy_binary,
    ext_authz_filter,
    gateway_bootstrap,
    jwt_authn_filter,
    send,
    signed_jwt,
    start_echo_upstream,
    start_fake_auth_proxy,
)

ALICE = "alice@corp.example"
VICTIM = "victim@corp.example"
CAROL = "carol@corp.example"
ALICE_SESSION = ("cookie", "session=alice")

CORP_IDP = JwtIssuer("https://login.corp.example/oauth2/default", audiences=("kubeflow",), email_domains=("corp.example",))
CLUSTER_ISSUER = "https://oidc.eks.eu-west-1.amazonaws.com/id/0123456789ABCDEF"
TEST_KEYS = {CORP_IDP.issuer: b"corp-idp-test-key-0123456789abcdef", CLUSTER_ISSUER: b"cluster-test-key-0123456789abcdef"}

DEFAULTS = IdentityHeaderOptions()
WITH_CORP_IDP = IdentityHeaderOptions(extra_issuers=(CORP_IDP,))
FORWARDED_USER_PREFIXED_LOWERCASE = IdentityHeaderOptions(
    user_source_header="x-forwarded-user",
    groups_source_header=None,
    user_id_prefix="corp:",
    lowercase_user=True,
)

USERID_SPELLINGS = ["kubeflow-userid", "Kubeflow-UserID", "KUBEFLOW-USERID", "kubeflow_userid", "KUBEFLOW_USERID"]
GROUPS_SPELLINGS = ["kubeflow-groups", "Kubeflow-Groups", "KUBEFLOW-GROUPS", "kubeflow_groups"]


@pytest.fixture(scope="module")
def envoy_path() -> str:
    try:
        return envoy_binary()
    except EnvoyMissing as missing:
        pytest.fail(str(missing), pytrace=False)


@pytest.fixture(scope="module")
def echo_upstream() -> Iterator[LoopbackServer]:
    server = start_echo_upstream()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def auth_proxy() -> Iterator[LoopbackServer]:
    server = start_fake_auth_proxy()
    yield server
    server.stop()


def _gateway(tmp_path_factory: pytest.TempPathFactory, name: str, bootstrap: dict) -> Iterator[int]:
    with EnvoyGateway(bootstrap, Path(tmp_path_factory.mktemp(name))) as gateway:
        yield gateway.port


@pytest.fixture(scope="module")
def identity_filter_gateway(envoy_path, echo_upstream, tmp_path_factory) -> Iterator[int]:
    bootstrap = gateway_bootstrap([http_filter_config(DEFAULTS)], echo_upstream.port)
    yield from _gateway(tmp_path_factory, "identity-filter", bootstrap)


@pytest.fixture(scope="module")
def prefixed_lowercase_gateway(envoy_path, echo_upstream, tmp_path_factory) -> Iterator[int]:
    bootstrap = gateway_bootstrap([http_filter_config(FORWARDED_USER_PREFIXED_LOWERCASE)], echo_upstream.port)
    yield from _gateway(tmp_path_factory, "prefixed-lowercase", bootstrap)


@pytest.fixture(scope="module")
def unfiltered_gateway(envoy_path, echo_upstream, tmp_path_factory) -> Iterator[int]:
    yield from _gateway(tmp_path_factory, "unfiltered", gateway_bootstrap([], echo_upstream.port))


def _full_chain(options: IdentityHeaderOptions, auth_proxy_port: int, *, strip_first: bool = True) -> list[dict]:
    """The gateway chain in Istio's order (CUSTOM authz, then authn), with our filters where the EnvoyFilter puts them."""
    chain = [
        ext_authz_filter(auth_proxy_port),
        jwt_authn_filter(request_authentications(options, CLUSTER_ISSUER), TEST_KEYS),
        http_filter_config(options),
    ]
    return [strip_client_identity_filter_config(options), *chain] if strip_first else chain


@pytest.fixture(scope="module")
def full_chain_gateway(envoy_path, echo_upstream, auth_proxy, tmp_path_factory) -> Iterator[int]:
    bootstrap = gateway_bootstrap(_full_chain(WITH_CORP_IDP, auth_proxy.port), echo_upstream.port, auth_proxy.port)
    yield from _gateway(tmp_path_factory, "full-chain", bootstrap)


@pytest.fixture(scope="module")
def pre_1_21_payload_gateway(envoy_path, echo_upstream, auth_proxy, tmp_path_factory) -> Iterator[int]:
    chain = _full_chain(WITH_CORP_IDP, auth_proxy.port)
    chain[2] = jwt_authn_filter(request_authentications(WITH_CORP_IDP, CLUSTER_ISSUER), TEST_KEYS, payload_key=None)
    yield from _gateway(tmp_path_factory, "pre-1-21-payload", gateway_bootstrap(chain, echo_upstream.port, auth_proxy.port))


@pytest.fixture(scope="module")
def full_chain_without_strip_gateway(envoy_path, echo_upstream, auth_proxy, tmp_path_factory) -> Iterator[int]:
    chain = _full_chain(WITH_CORP_IDP, auth_proxy.port, strip_first=False)
    yield from _gateway(tmp_path_factory, "full-chain-no-strip", gateway_bootstrap(chain, echo_upstream.port, auth_proxy.port))


# --- the identity filter alone ----------------------------------------------------------------------


def test_spoofed_userid_is_replaced_by_the_authenticated_user(identity_filter_gateway):
    delivered = send(identity_filter_gateway, [("kubeflow-userid", VICTIM), ("x-auth-request-email", ALICE)])
    assert delivered.status == 200
    assert delivered.values("kubeflow-userid") == [ALICE]


def test_spoofed_userid_without_identity_reaches_no_one(identity_filter_gateway):
    delivered = send(identity_filter_gateway, [("kubeflow-userid", VICTIM)])
    assert delivered.status == 200
    assert delivered.values("kubeflow-userid") == []


def test_spoofed_groups_are_replaced_by_the_authenticated_groups(identity_filter_gateway):
    delivered = send(
        identity_filter_gateway,
        [("kubeflow-groups", "admins"), ("x-auth-request-email", ALICE), ("x-auth-request-groups", "ml-team")],
    )
    assert delivered.values("kubeflow-groups") == ["ml-team"]


def test_spoofed_groups_without_identity_reach_no_one(identity_filter_gateway):
    delivered = send(identity_filter_gateway, [("kubeflow-groups", "admins")])
    assert delivered.values("kubeflow-groups") == []


def test_spoofed_groups_are_dropped_when_the_user_has_none(identity_filter_gateway):
    delivered = send(identity_filter_gateway, [("kubeflow-groups", "admins"), ("x-auth-request-email", ALICE)])
    assert delivered.values("kubeflow-userid") == [ALICE]
    assert delivered.values("kubeflow-groups") == []


def test_groups_alone_are_no_identity(identity_filter_gateway):
    delivered = send(identity_filter_gateway, [("x-auth-request-groups", "admins")])
    assert delivered.values("kubeflow-userid") == []
    assert delivered.values("kubeflow-groups") == []


@pytest.mark.parametrize("spelling", USERID_SPELLINGS)
def test_userid_spoof_in_any_spelling_is_replaced(identity_filter_gateway, spelling):
    delivered = send(identity_filter_gateway, [(spelling, VICTIM), ("x-auth-request-email", ALICE)])
    assert delivered.values("kubeflow-userid") == [ALICE]


@pytest.mark.parametrize("spelling", USERID_SPELLINGS)
def test_userid_spoof_in_any_spelling_without_identity_is_removed(identity_filter_gateway, spelling):
    delivered = send(identity_filter_gateway, [(spelling, VICTIM)])
    assert delivered.values("kubeflow-userid") == []


@pytest.mark.parametrize("spelling", GROUPS_SPELLINGS)
def test_groups_spoof_in_any_spelling_without_identity_is_removed(identity_filter_gateway, spelling):
    delivered = send(identity_filter_gateway, [(spelling, "admins")])
    assert delivered.values("kubeflow-groups") == []


def test_every_copy_of_a_repeated_spoof_is_removed(identity_filter_gateway):
    spoofs = [("kubeflow-userid", VICTIM), ("Kubeflow-UserID", "root"), ("KUBEFLOW-USERID", "admin@corp.example")]
    delivered = send(identity_filter_gateway, [*spoofs, ("x-auth-request-email", ALICE)])
    assert delivered.values("kubeflow-userid") == [ALICE]


def test_repeated_identity_source_gives_no_identity(identity_filter_gateway):
    # Two values mean two writers (say a client's and jwt_authn's appended copy): refuse to pick one.
    delivered = send(identity_filter_gateway, [("x-auth-request-email", VICTIM), ("x-auth-request-email", ALICE)])
    assert delivered.values("kubeflow-userid") == []


def test_empty_identity_source_gives_no_identity(identity_filter_gateway):
    delivered = send(identity_filter_gateway, [("kubeflow-userid", VICTIM), ("x-auth-request-email", "")])
    assert delivered.values("kubeflow-userid") == []


def test_user_id_case_is_kept_by_default(identity_filter_gateway):
    delivered = send(identity_filter_gateway, [("x-auth-request-email", "Jane.Doe@Corp.Example")])
    assert delivered.values("kubeflow-userid") == ["Jane.Doe@Corp.Example"]


def test_prefix_and_lowercasing_apply_to_the_configured_source(prefixed_lowercase_gateway):
    delivered = send(prefixed_lowercase_gateway, [("kubeflow-userid", VICTIM), ("X-Forwarded-User", "Jane.Doe@Corp.Example")])
    assert delivered.values("kubeflow-userid") == ["corp:jane.doe@corp.example"]


def test_default_source_is_not_trusted_when_another_is_configured(prefixed_lowercase_gateway):
    delivered = send(prefixed_lowercase_gateway, [("x-auth-request-email", ALICE)])
    assert delivered.values("kubeflow-userid") == []


def test_spoofed_groups_are_removed_when_no_groups_source_is_configured(prefixed_lowercase_gateway):
    delivered = send(prefixed_lowercase_gateway, [("x-forwarded-user", ALICE), ("kubeflow-groups", "admins")])
    assert delivered.values("kubeflow-groups") == []


def test_spoof_reaches_the_service_without_the_identity_filter(unfiltered_gateway):
    # The control: the same request through a gateway without our filter. If this ever stops holding,
    # the tests above prove nothing about the filter.
    delivered = send(unfiltered_gateway, [("kubeflow-userid", VICTIM), ("x-auth-request-email", ALICE)])
    assert delivered.values("kubeflow-userid") == [VICTIM]


# --- the full gateway chain: strip, ext_authz, identity ------------------------------------------------


def test_auth_proxy_identity_replaces_every_spoof(full_chain_gateway):
    forged = [("kubeflow-userid", VICTIM), ("x-auth-request-email", VICTIM), ("kubeflow-groups", "admins")]
    delivered = send(full_chain_gateway, [*forged, ALICE_SESSION])
    assert delivered.status == 200
    assert delivered.values("kubeflow-userid") == [ALICE]
    assert delivered.values("kubeflow-groups") == ["ml-team,admins"]


def test_request_without_session_is_stopped_by_the_auth_proxy(full_chain_gateway):
    delivered = send(full_chain_gateway, [("kubeflow-userid", VICTIM), ("x-auth-request-email", VICTIM)])
    assert delivered.status == 401


@pytest.mark.parametrize("source_spelling", ["x-auth-request-email", "X-Auth-Request-Email", "x_auth_request_email"])
def test_forged_source_header_is_ignored_where_the_auth_proxy_does_not_run(full_chain_gateway, source_spelling):
    forged = [(source_spelling, VICTIM), ("x-auth-request-groups", "admins"), ("kubeflow-userid", VICTIM)]
    delivered = send(full_chain_gateway, forged, path=NO_AUTH_PROXY_PREFIX + "api")
    assert delivered.status == 200
    assert delivered.values("kubeflow-userid") == []
    assert delivered.values("kubeflow-groups") == []
    assert delivered.values("x-auth-request-email") == []


def test_forged_source_header_becomes_the_identity_without_the_strip_filter(full_chain_without_strip_gateway):
    # The control for the strip filter: where ext_authz does not overwrite the source, only it stops a forgery.
    delivered = send(full_chain_without_strip_gateway, [("x-auth-request-email", VICTIM)], path=NO_AUTH_PROXY_PREFIX)
    assert delivered.values("kubeflow-userid") == [VICTIM]


def _bearer(claims: dict, issuer: str = CORP_IDP.issuer, key: bytes | None = None) -> tuple[str, str]:
    token = signed_jwt({"iss": issuer, "aud": "kubeflow", **claims}, key or TEST_KEYS[issuer])
    return ("authorization", f"Bearer {token}")


def test_verified_jwt_claim_becomes_the_identity(full_chain_gateway):
    # Machine clients skip the auth proxy (upstream exempts requests carrying Authorization).
    forged = [("kubeflow-userid", VICTIM), ("x-kubeflow-jwt-userid", VICTIM), ("x-kubeflow-jwt-groups", "admins")]
    token = _bearer({"email": CAROL, "groups": "ml-team"})
    delivered = send(full_chain_gateway, [*forged, token], path=NO_AUTH_PROXY_PREFIX + "apis/v2beta1/runs")
    assert delivered.status == 200
    assert delivered.values("kubeflow-userid") == [CAROL]
    assert delivered.values("kubeflow-groups") == ["ml-team"]


def test_forged_claim_header_without_a_token_is_ignored(full_chain_gateway):
    delivered = send(full_chain_gateway, [("x-kubeflow-jwt-userid", VICTIM)], path=NO_AUTH_PROXY_PREFIX)
    assert delivered.status == 200
    assert delivered.values("kubeflow-userid") == []


def test_token_signed_with_another_key_is_refused(full_chain_gateway):
    forged = _bearer({"email": VICTIM}, key=b"attacker-key-0123456789abcdef0123")
    delivered = send(full_chain_gateway, [forged], path=NO_AUTH_PROXY_PREFIX)
    assert delivered.status == 401


def test_service_account_token_is_verified_but_is_no_kubeflow_user(full_chain_gateway):
    token = _bearer({"sub": "system:serviceaccount:kubeflow-user-alice:default", "email": VICTIM}, issuer=CLUSTER_ISSUER)
    delivered = send(full_chain_gateway, [token], path=NO_AUTH_PROXY_PREFIX)
    assert delivered.status == 200
    assert delivered.values("kubeflow-userid") == []
    assert delivered.values("authorization") == [token[1]], "Pipelines needs the token itself"


def test_envoy_filter_carries_exactly_the_filters_proven_here():
    patches = identity_envoy_filter(WITH_CORP_IDP)["spec"]["configPatches"]
    assert [patch["patch"]["value"] for patch in patches] == [
        strip_client_identity_filter_config(WITH_CORP_IDP),
        http_filter_config(WITH_CORP_IDP),
    ]


def test_verified_claims_are_found_where_gateways_before_istio_1_21_keep_them(pre_1_21_payload_gateway):
    token = _bearer({"email": CAROL, "groups": ["ml-team", "admins"]})
    delivered = send(pre_1_21_payload_gateway, [token], path=NO_AUTH_PROXY_PREFIX)
    assert delivered.values("kubeflow-userid") == [CAROL]
    assert delivered.values("kubeflow-groups") == ["ml-team,admins"]
