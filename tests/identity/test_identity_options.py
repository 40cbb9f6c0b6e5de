"""Identity options are checked up front, every problem at once, each under its config key."""

from __future__ import annotations

import pytest

from manifests.identity import (
    IdentityHeaderOptions,
    JwtIssuer,
    http_filter_config,
    identity_envoy_filter,
    request_authentications,
    validate_identity_options,
)

GITHUB = "https://token.actions.githubusercontent.com"
CLUSTER_ISSUER = "https://oidc.eks.eu-west-1.amazonaws.com/id/0123456789ABCDEF"


def problems_for(**overrides) -> list[str]:
    return validate_identity_options(IdentityHeaderOptions(**overrides))


def test_defaults_are_valid():
    assert validate_identity_options(IdentityHeaderOptions()) == []


def test_realistic_enterprise_options_are_valid():
    options = IdentityHeaderOptions(
        user_source_header="x-forwarded-user",
        groups_source_header=None,
        lowercase_user=True,
        user_id_prefix="accounts.google.com:",
        extra_issuers=(
            JwtIssuer("https://login.corp.example/oauth2/default", audiences=("kubeflow",), email_domains=("corp.example",)),
        ),
        istio_version="1.22.3",
    )
    assert validate_identity_options(options) == []


@pytest.mark.parametrize(
    ("issuer", "complaint"),
    [
        ("http://login.corp.example", "must be an https:// URL"),
        ("https://login.corp.example/oauth2#frag", "must not have a fragment"),
        ("https://login.corp.example/oauth2?tenant=1", "must not have a query string"),
        ("https:///no-host", "has no host"),
        ("login.corp.example", "must be an https:// URL"),
        ("https://user:secret@login.corp.example", "must not carry credentials"),
        ("", "must not be empty"),
    ],
)
def test_malformed_issuer_url_is_reported_under_its_key(issuer, complaint):
    problems = problems_for(extra_issuers=(JwtIssuer("https://ok.corp.example"), JwtIssuer(issuer)))
    assert any(p.startswith("auth.extraIssuers[1].issuer: ") and complaint in p for p in problems), problems


def test_plain_http_jwks_uri_is_reported():
    issuer = JwtIssuer("https://login.corp.example", jwks_uri="http://keys.corp.example", audiences=("kubeflow",),
                       email_domains=("corp.example",))
    problems = problems_for(extra_issuers=(issuer,))
    assert problems == ["auth.extraIssuers[0].jwksUri: 'http://keys.corp.example' must be an https:// URL; "
                        "keys fetched over plain http can be forged"]


def test_issuer_listed_twice_is_reported():
    issuer = JwtIssuer("https://login.corp.example")
    assert any("listed twice" in p for p in problems_for(extra_issuers=(issuer, issuer)))


@pytest.mark.parametrize(
    ("name", "complaint"),
    [
        ("Kubeflow-UserID", "must be lowercase"),
        (":authority", "pseudo-header"),
        ("kubeflow userid", "RFC 7230 token"),
        ("kubeflow-userid\r\nx-admin", "RFC 7230 token"),
        ("kubeflow-userid\n", "RFC 7230 token"),
        ("kubeflow_userid", "contains '_'"),
        ("", "must not be empty"),
        ("host", "its own meaning"),
        ("x-envoy-user", "x-envoy- prefix"),
    ],
)
def test_header_name_envoy_would_reject_is_reported(name, complaint):
    problems = problems_for(user_header=name)
    assert any(p.startswith("auth.userHeader: ") and complaint in p for p in problems), problems


def test_source_header_names_are_checked_too():
    problems = problems_for(user_source_header="X-Forwarded-User", groups_source_header="x groups")
    assert [p.split(":")[0] for p in problems] == ["auth.userSourceHeader", "auth.groupsSourceHeader"]


def test_one_header_in_two_roles_is_reported():
    problems = problems_for(user_source_header="kubeflow-userid")
    assert any(p.startswith("auth.userHeader: ") and "already used by auth.userSourceHeader" in p for p in problems)


def test_claim_header_names_are_reserved():
    assert any("reserved for verified JWT claims" in p for p in problems_for(user_source_header="x-kubeflow-jwt-userid"))


@pytest.mark.parametrize("prefix", ['corp"', "corp:\n", "corp ", "ünï:", "a,b"])
def test_user_id_prefix_with_illegal_characters_is_reported(prefix):
    problems = problems_for(user_id_prefix=prefix)
    assert len(problems) == 1 and problems[0].startswith("auth.userIdPrefix: ")


@pytest.mark.parametrize(("version", "complaint"), [("1.19", "older than 1.20"), ("latest", "not a version")])
def test_unsupported_istio_version_is_reported(version, complaint):
    problems = problems_for(istio_version=version)
    assert len(problems) == 1 and problems[0].startswith("auth.istioVersion: ") and complaint in problems[0]


def test_empty_gateway_selector_is_reported():
    assert any(p.startswith("auth.gatewaySelector: ") for p in problems_for(gateway_selector={}))


def test_every_problem_is_reported_at_once():
    problems = problems_for(
        user_header="Kubeflow-UserID",
        groups_header=":groups",
        user_id_prefix="bad prefix",
        extra_issuers=(JwtIssuer("http://login.corp.example#x"),),
        istio_version="0.9",
    )
    keys = {p.split(":")[0] for p in problems}
    assert keys == {
        "auth.userHeader",
        "auth.groupsHeader",
        "auth.userIdPrefix",
        "auth.extraIssuers[0].issuer",
        "auth.extraIssuers[0].audiences",
        "auth.extraIssuers[0].requiredClaims",
        "auth.istioVersion",
    }


def test_builders_refuse_invalid_options_with_all_problems():
    options = IdentityHeaderOptions(user_header="Kubeflow-UserID", user_id_prefix="bad prefix")
    for build in (http_filter_config, identity_envoy_filter):
        with pytest.raises(ValueError) as raised:
            build(options)
        assert "auth.userHeader" in str(raised.value) and "auth.userIdPrefix" in str(raised.value)


def test_malformed_service_account_issuer_is_refused():
    with pytest.raises(ValueError, match="serviceAccountIssuer: 'http://oidc.local' must be an https:// URL"):
        request_authentications(IdentityHeaderOptions(), "http://oidc.local")


# --- who may come in with a token -----------------------------------------------------------------------

GITHUB = "https://token.actions.githubusercontent.com"


def _issuer_problems(**fields) -> list[str]:
    return problems_for(extra_issuers=(JwtIssuer(**{"issuer": "https://login.corp.example", "audiences": ("kubeflow",), **fields}),))


def test_issuer_without_audience_is_refused():
    problems = _issuer_problems(audiences=(), email_domains=("corp.example",))
    assert problems == [
        "auth.extraIssuers[0].audiences: required: without one Istio accepts a token this issuer minted for any"
        " other relying party (list the audience your clients request, like kubeflow-cli)"
    ]


def test_issuer_that_admits_every_token_it_mints_is_refused():
    problems = _issuer_problems()
    assert [p.split(": ")[0] for p in problems] == ["auth.extraIssuers[0].requiredClaims"]
    assert "every token the issuer mints for the audience would pass" in problems[0]


def test_issuer_naming_no_user_and_no_machine_is_refused():
    problems = _issuer_problems(user_claim=None, required_claims={"azp": ("ci",)})
    assert [p.split(": ")[0] for p in problems] == ["auth.extraIssuers[0].userClaim"]


@pytest.mark.parametrize("claims", [{}, {"event_name": ("push",)}, {"workflow": ("deploy",)}])
def test_github_issuer_must_name_the_repository_or_owner(claims):
    problems = problems_for(
        extra_issuers=(JwtIssuer(GITHUB, audiences=("kubeflow",), user_claim=None, machine_user="ci@machines.corp.example",
                                 required_claims=claims),),
    )
    assert any(p.startswith("auth.extraIssuers[0].requiredClaims: any GitHub Actions workflow") for p in problems), problems


def test_github_issuer_restricted_to_an_owner_is_valid():
    issuer = JwtIssuer(GITHUB, audiences=("kubeflow",), user_claim=None, machine_user="ci@machines.corp.example",
                       required_claims={"repository_owner": ("corp",)})
    assert problems_for(extra_issuers=(issuer,)) == []


@pytest.mark.parametrize("value", ["*", "", "**"])
def test_required_claim_that_accepts_anything_is_refused(value):
    problems = _issuer_problems(required_claims={"repository_owner": (value,)}, email_domains=("corp.example",))
    assert any(p.startswith("auth.extraIssuers[0].requiredClaims.repository_owner[0]: ") for p in problems), problems


@pytest.mark.parametrize(
    "claims",
    [
        {"repository": ("*/ml-pipelines",)},
        {"repository_owner": ("example-*",)},
        {"repository_owner": ("example-org",), "repository": ("example-org/*",)},
        {"repository_owner_id": ("12*",)},
        {"sub": ("repo:example-*",)},
        {"sub": ("repo:*/ml-pipelines:ref:refs/heads/main",)},
    ],
    ids=["repository-suffix", "owner-prefix", "repository-prefix", "owner-id-prefix", "sub-owner-prefix", "sub-owner-suffix"],
)
def test_github_identity_claims_must_be_exact(claims):
    # Anyone can create a GitHub owner or repository that completes a wildcard.
    issuer = JwtIssuer(GITHUB, audiences=("kubeflow",), user_claim=None, groups_claim=None,
                       required_claims=claims, machine_user="ci@machines.example.com")
    problems = validate_identity_options(IdentityHeaderOptions(extra_issuers=(issuer,)))
    assert any("requiredClaims." in p and ("exact" in p or "whole" in p) for p in problems), problems


def test_a_github_sub_prefix_after_the_whole_repository_is_accepted():
    issuer = JwtIssuer(GITHUB, audiences=("kubeflow",), user_claim=None, groups_claim=None,
                       required_claims={"sub": ("repo:example-org/ml-pipelines:ref:refs/heads/*",)},
                       machine_user="ci@machines.example.com")
    assert validate_identity_options(IdentityHeaderOptions(extra_issuers=(issuer,))) == []
