"""Through a real Envoy built from each stack's gateway objects: a token's claims decide together, in one shape.

Two tokens on one request (the `Authorization` header and the `access_token` query parameter, both places
Istio's jwt_authn looks by default) are each verified and each add their `email_verified` copy; Envoy 1.38 and
later match a repeated header copy by copy, so the header check alone could be satisfied by the other token.
The gateway now takes one token per request and decides `email_verified` from the payload that names the user.
Claims in shapes a backend would read differently (leading whitespace, a list, an empty `email_verified`) are
refused rather than passed on. Uses the gateway fixtures of test_token_admission_envoy.
"""

from __future__ import annotations

import pytest

from tests.identity.envoy_harness import signed_jwt
from tests.identity.test_token_admission_envoy import (  # noqa: F401 - fixtures
    CLI_ISSUER,
    TEST_KEYS,
    _cli,
    _get,
    auth_proxy_server,
    echo_upstream,
    gateway,
)


def _raw_cli(**claims) -> str:
    defaults = {"aud": "kubeflow-cli", "sub": "00u1", "email": "alice@example.com", "email_verified": True}
    return signed_jwt({"iss": CLI_ISSUER, **{k: v for k, v in {**defaults, **claims}.items() if v is not None}}, TEST_KEYS[CLI_ISSUER])


def test_a_second_token_cannot_stand_in_for_an_unverified_email(gateway):
    unverified_victim = _raw_cli(email="alice@example.com", email_verified=False, sub="mallory-2nd")
    attackers_own = _raw_cli(email="mallory@example.com", email_verified=True, sub="mallory")
    delivered = _get(gateway, ("authorization", f"Bearer {unverified_victim}"), path=f"/pipeline/apis/v2beta1/runs?access_token={attackers_own}")
    assert delivered.status in (400, 403), delivered
    assert delivered.values("kubeflow-userid") == []


def test_two_authorization_headers_are_refused(gateway):
    delivered = _get(gateway, ("authorization", f"Bearer {_raw_cli()}"), ("authorization", f"Bearer {_raw_cli(email='bob@example.com')}"))
    assert delivered.status in (400, 401, 403)


def test_one_token_in_the_query_still_needs_the_login(gateway):
    # Not a new path in: a query token alone is as before (the CUSTOM policy still sends it to the login).
    assert _get(gateway, path=f"/?access_token={_raw_cli()}").status == 401


@pytest.mark.parametrize(
    "email",
    [" alice@example.com", "\talice@example.com", "alice@example.com ", "mallory@gmail.com@example.com", "a,b@example.com"],
    ids=["leading-space", "leading-tab", "trailing-space", "two-ats", "comma"],
)
def test_an_email_claim_in_another_shape_is_refused(gateway, email):
    delivered = _get(gateway, _cli(email=email), path="/")
    assert delivered.status == 403, email
    assert delivered.values("kubeflow-userid") == []


def test_an_email_list_is_refused_not_passed_on_without_identity(gateway):
    delivered = _get(gateway, _cli(email=["mallory@gmail.com", "x@example.com"]), path="/")
    assert delivered.status == 403


@pytest.mark.parametrize("verified", ["", 0, "TRUE", [True], {}], ids=["empty", "zero", "upper", "list", "object"])
def test_email_verified_other_than_true_is_refused(gateway, verified):
    assert _get(gateway, _cli(email_verified=verified), path="/").status == 403


def test_email_verified_as_the_string_true_is_accepted(gateway):
    # Some IdPs (Amazon Cognito) write the claim as a string.
    delivered = _get(gateway, _cli(email_verified="true"), path="/")
    assert delivered.status == 200
    assert delivered.values("kubeflow-userid") == ["alice@example.com"]


def test_a_github_token_with_a_list_repository_claim_is_refused(gateway):
    # Istio matches a list claim by any item: ["example-org/ml-pipelines", "x"] would pass the repository rule.
    from tests.identity.test_token_admission_envoy import _github

    delivered = _get(gateway, _github(gateway, repository=["example-org/ml-pipelines", "x"]), path="/")
    assert delivered.status == 403
    assert delivered.values("kubeflow-userid") == []
