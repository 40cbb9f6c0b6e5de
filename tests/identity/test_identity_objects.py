"""The Istio objects for the trusted identity: their shape, and validity against upstream's Istio CRDs."""

from __future__ import annotations

import dataclasses

import pytest

from manifests.identity import (
    IDENTITY_HEADERS_FILTER_NAME,
    JWT_EMAIL_VERIFIED_HEADER,
    JWT_GROUPS_CLAIM_HEADER,
    JWT_USER_CLAIM_HEADER,
    PIPELINES_HEADER_FORWARDERS,
    STRIP_CLIENT_IDENTITY_FILTER_NAME,
    IdentityHeaderOptions,
    JwtIssuer,
    dashboard_service_accounts,
    header_forwarders,
    http_filter_config,
    identity_envoy_filter,
    identity_header_authorization_policy,
    metadata_envoy_authorization_policy,
    request_authentications,
    strip_client_identity_filter_config,
)
from manifests.auth_proxy import AuthProxyOptions, require_verified_token_policy
from tests.identity.istio_crd_schemas import istio_version_of, schema_errors
from tests.upstream import CURRENT_VERSION, PREVIOUS_VERSION

CLUSTER_ISSUER = "https://oidc.eks.eu-west-1.amazonaws.com/id/0123456789ABCDEF"
CORP_IDP = JwtIssuer(
    "https://login.corp.example/oauth2/default",
    jwks_uri="https://login.corp.example/oauth2/default/v1/keys",
    audiences=("kubeflow",),
    email_domains=("corp.example",),
)
ROBOT_IDP = JwtIssuer(
    "https://robots.corp.example",
    audiences=("kubeflow",),
    user_claim=None,
    groups_claim=None,
    machine_user="robot@machines.corp.example",
    required_claims={"azp": ("nightly-training",)},
)
OPTIONS = IdentityHeaderOptions(extra_issuers=(CORP_IDP, ROBOT_IDP))


def _lua(filter_config: dict) -> str:
    return filter_config["typed_config"]["default_source_code"]["inline_string"]


# --- EnvoyFilter ----------------------------------------------------------------------------------------


def test_envoy_filter_targets_only_the_gateway_workload():
    envoy_filter = identity_envoy_filter(OPTIONS)
    assert envoy_filter["metadata"]["namespace"] == "istio-system"
    assert envoy_filter["spec"]["workloadSelector"] == {
        "labels": {"app": "istio-ingressgateway", "istio": "ingressgateway"}
    }
    assert {patch["match"]["context"] for patch in envoy_filter["spec"]["configPatches"]} == {"GATEWAY"}


def test_strip_goes_first_and_identity_goes_right_before_the_router():
    first, last = identity_envoy_filter(OPTIONS)["spec"]["configPatches"]
    assert first["patch"]["operation"] == "INSERT_FIRST"
    assert first["patch"]["value"]["name"] == STRIP_CLIENT_IDENTITY_FILTER_NAME
    assert last["patch"]["operation"] == "INSERT_BEFORE"
    assert last["match"]["listener"]["filterChain"]["filter"]["subFilter"] == {"name": "envoy.filters.http.router"}
    assert last["patch"]["value"]["name"] == IDENTITY_HEADERS_FILTER_NAME


def test_envoy_filter_is_not_pinned_to_a_proxy_version():
    # A proxyVersion match would silently drop the filters from an upgraded gateway.
    for patch in identity_envoy_filter(OPTIONS)["spec"]["configPatches"]:
        assert "proxy" not in patch["match"]


def test_strip_filter_removes_kubeflow_and_every_source_header():
    lua = _lua(strip_client_identity_filter_config(OPTIONS))
    for header in ("kubeflow-userid", "kubeflow-groups", "x-auth-request-email", "x-auth-request-groups",
                   JWT_USER_CLAIM_HEADER, JWT_GROUPS_CLAIM_HEADER, JWT_EMAIL_VERIFIED_HEADER):
        assert f'["{header}"] = true' in lua


def test_identity_filter_maps_each_issuer_to_its_claims_or_machine_user():
    lua = _lua(http_filter_config(OPTIONS))
    # `email`: one plain address; `verified`: email_verified is decided from the payload that names the user (one token, one decision).
    assert '["https://login.corp.example/oauth2/default"] = {user = "email", email = true, verified = true, groups = "groups"}' in lua
    # `single`: each required claim must hold one value, not a list Istio would match by any item.
    assert '["https://robots.corp.example"] = {single = {"azp"}, machine = "robot@machines.corp.example"}' in lua
    # The verified payload, not a header a filter could have got wrong: jwt_authn's metadata, as istiod names it.
    assert 'local JWT_AUTHN_FILTER = "envoy.filters.http.jwt_authn"' in lua
    assert 'local JWT_PAYLOAD_KEY = "payload"' in lua


def test_configured_names_reach_the_filter_code():
    options = IdentityHeaderOptions(user_header="x-user", groups_header="x-groups", user_id_prefix="corp:")
    lua = _lua(http_filter_config(options))
    assert 'local USER_HEADER = "x-user"' in lua
    assert 'local GROUPS_HEADER = "x-groups"' in lua
    assert 'local USER_ID_PREFIX = "corp:"' in lua


# --- RequestAuthentication ------------------------------------------------------------------------------


def test_one_request_authentication_per_issuer_plus_the_cluster_issuer():
    objects = request_authentications(OPTIONS, CLUSTER_ISSUER)
    issuers = [obj["spec"]["jwtRules"][0]["issuer"] for obj in objects]
    assert issuers == [CORP_IDP.issuer, ROBOT_IDP.issuer, CLUSTER_ISSUER]
    assert all(obj["spec"]["selector"]["matchLabels"]["app"] == "istio-ingressgateway" for obj in objects)


def test_only_the_email_verified_claim_goes_to_a_header():
    corp, robots, _ = request_authentications(OPTIONS, CLUSTER_ISSUER)
    assert corp["spec"]["jwtRules"][0]["outputClaimToHeaders"] == [
        {"header": JWT_EMAIL_VERIFIED_HEADER, "claim": "email_verified"},
    ]
    assert "outputClaimToHeaders" not in robots["spec"]["jwtRules"][0]
    assert corp["spec"]["jwtRules"][0]["audiences"] == ["kubeflow"]
    assert corp["spec"]["jwtRules"][0]["jwksUri"] == CORP_IDP.jwks_uri


def test_service_account_tokens_are_verified_but_never_become_a_kubeflow_user():
    cluster = request_authentications(OPTIONS, CLUSTER_ISSUER)[-1]
    rule = cluster["spec"]["jwtRules"][0]
    assert rule["issuer"] == CLUSTER_ISSUER
    assert "outputClaimToHeaders" not in rule
    assert rule["forwardOriginalToken"] is True


def test_request_authentication_names_do_not_depend_on_issuer_order():
    forward = request_authentications(OPTIONS, CLUSTER_ISSUER)
    backward = request_authentications(IdentityHeaderOptions(extra_issuers=(ROBOT_IDP, CORP_IDP)), CLUSTER_ISSUER)
    assert {o["metadata"]["name"] for o in forward} == {o["metadata"]["name"] for o in backward}
    assert len({o["metadata"]["name"] for o in forward}) == 3


def test_cluster_issuer_listed_as_extra_issuer_is_refused():
    options = IdentityHeaderOptions(extra_issuers=(dataclasses.replace(CORP_IDP, issuer=CLUSTER_ISSUER),))
    with pytest.raises(ValueError, match="is the cluster's own issuer"):
        request_authentications(options, CLUSTER_ISSUER)


@pytest.mark.parametrize(("istio_version", "api_version"), [("1.26", "security.istio.io/v1"), ("1.21.4", "security.istio.io/v1beta1")])
def test_security_api_version_follows_the_istio_version(istio_version, api_version):
    options = IdentityHeaderOptions(istio_version=istio_version)
    assert request_authentications(options, CLUSTER_ISSUER)[0]["apiVersion"] == api_version
    assert identity_header_authorization_policy(options, "kubeflow")["apiVersion"] == api_version


# --- AuthorizationPolicy --------------------------------------------------------------------------------


def test_identity_headers_are_denied_from_anyone_but_the_gateway_and_known_forwarders():
    policy = identity_header_authorization_policy(OPTIONS, "kubeflow-user-alice")
    assert policy["metadata"]["namespace"] == "kubeflow-user-alice"
    assert policy["spec"]["action"] == "DENY"
    assert "selector" not in policy["spec"], "must cover every workload of the namespace"
    headers = set()
    for rule in policy["spec"]["rules"]:
        trusted = rule["from"][0]["source"]["notPrincipals"]
        assert trusted[0] == "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"
        assert "cluster.local/ns/kubeflow/sa/ml-pipeline-ui" in trusted
        (condition,) = rule["when"]
        assert condition["values"] == ["*"]
        headers.add(condition["key"])
    assert headers == {
        "request.headers[kubeflow-userid]",
        "request.headers[kubeflow_userid]",
        "request.headers[kubeflow-groups]",
        "request.headers[kubeflow_groups]",
    }


def _workload(name: str, image: str, account: str | None, namespace: str = "kubeflow") -> dict:
    spec = {"containers": [{"name": name, "image": image}], **({"serviceAccountName": account} if account else {})}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace},
            "spec": {"template": {"spec": spec}}}


def test_the_dashboards_account_is_found_by_the_image_it_runs_not_by_its_name():
    objects = [
        # 26.03.1's renamed dashboard, through a mirror; 26.03's; 1.9's image, with the namespace's default account.
        _workload("dashboard", "mirror.corp.example/ghcr/kubeflow/dashboard/dashboard:v2.0.0", "dashboard"),
        _workload("centraldashboard", "ghcr.io/kubeflow/kubeflow/central-dashboard:v1.10.0", "centraldashboard"),
        _workload("centraldashboard", "docker.io/kubeflownotebookswg/centraldashboard:v1.9.2", None, "portal"),
        # An account of that name on another image is not the dashboard's.
        _workload("jupyter-web-app", "ghcr.io/kubeflow/kubeflow/jupyter-web-app:v1.10.0", "centraldashboard", "apps"),
    ]
    assert dashboard_service_accounts(objects) == (("kubeflow", "dashboard"), ("kubeflow", "centraldashboard"), ("portal", "default"))
    assert header_forwarders(objects[:1], "corp.mesh") == (
        "corp.mesh/ns/kubeflow/sa/ml-pipeline-ui",
        "corp.mesh/ns/kubeflow/sa/dashboard",
        "corp.mesh/ns/kubeflow/sa/metadata-envoy",
    )
    # Without a dashboard in the release, only Kubeflow Pipelines' forwarders are trusted.
    assert header_forwarders(objects[3:]) == PIPELINES_HEADER_FORWARDERS


def test_gateway_principal_follows_the_configured_gateway():
    options = IdentityHeaderOptions(gateway_namespace="ingress", gateway_service_account="edge", trust_domain="corp.mesh")
    policy = identity_header_authorization_policy(options, "kubeflow", forwarding_principals=())
    assert policy["spec"]["rules"][0]["from"][0]["source"]["notPrincipals"] == ["corp.mesh/ns/ingress/sa/edge"]


# --- Schemas of the Istio the upstream release pins -----------------------------------------------------


@pytest.mark.parametrize("kubeflow_version", [CURRENT_VERSION, PREVIOUS_VERSION])
def test_generated_objects_validate_against_upstream_istio_crds(kubeflow_version):
    istio = istio_version_of(kubeflow_version)
    options = IdentityHeaderOptions(extra_issuers=(CORP_IDP, ROBOT_IDP), istio_version=istio)
    objects = [
        identity_envoy_filter(options),
        *request_authentications(options, CLUSTER_ISSUER),
        identity_header_authorization_policy(options, "kubeflow"),
        metadata_envoy_authorization_policy(options, "kubeflow"),
        require_verified_token_policy(
            AuthProxyOptions(proxy="oauth2-proxy", issuer_url="https://login.corp.example", client_id="kubeflow",
                             hosts=("kubeflow.corp.example",), gateway="istio-system/kubeflow-gateway", identity=options)
        ),
    ]
    problems = {f"{o['kind']}/{o['metadata']['name']}": schema_errors(o, kubeflow_version) for o in objects}
    assert problems == {name: [] for name in problems}


def test_schema_check_catches_a_misspelt_field():
    envoy_filter = identity_envoy_filter(OPTIONS)
    envoy_filter["spec"]["workloadSelektor"] = envoy_filter["spec"].pop("workloadSelector")
    errors = schema_errors(envoy_filter, CURRENT_VERSION)
    assert any("workloadSelektor" in error for error in errors), errors


def test_schema_check_catches_a_bad_enum():
    envoy_filter = identity_envoy_filter(OPTIONS)
    envoy_filter["spec"]["configPatches"][0]["patch"]["operation"] = "PREPEND"
    assert any("PREPEND" in error for error in schema_errors(envoy_filter, CURRENT_VERSION))


# --- A stack whose Kubeflow runs in a namespace it chose (kubeflow.namespace) -----------------------------


def _chosen_namespace_objects(kubeflow_version: str) -> list[dict]:
    from analysis.plan_objects import kubernetes_objects
    from tests.plans import chosen_namespace_plan

    return [found.obj for found in kubernetes_objects(chosen_namespace_plan("dev", kubeflow_version)).objects]


def test_header_forwarders_are_principals_of_the_chosen_namespace():
    namespace = "ml-platform-x7"
    dashboard = _workload("centraldashboard", "ghcr.io/kubeflow/kubeflow/central-dashboard:v1.10.0", "centraldashboard", namespace)
    assert header_forwarders([dashboard], "corp.mesh", namespace) == (
        f"corp.mesh/ns/{namespace}/sa/ml-pipeline-ui",
        f"corp.mesh/ns/{namespace}/sa/centraldashboard",
        f"corp.mesh/ns/{namespace}/sa/metadata-envoy",
    )


# The newest and the oldest supported release (1.9's dashboard runs another image, found by it all the same).
@pytest.mark.parametrize("kubeflow_version", [CURRENT_VERSION, "1.9.1"])
def test_in_a_chosen_namespace_every_identity_policy_trusts_the_accounts_where_they_now_run(kubeflow_version):
    from tests.plans import CHOSEN_NAMESPACE

    objects = _chosen_namespace_objects(kubeflow_version)
    policies = [o for o in objects if o["kind"] == "AuthorizationPolicy"]
    header = [p for p in policies if p["metadata"]["name"] == "kubeflow-identity-header-from-gateway-only"]
    # One in Kubeflow's own namespace, one in each profile's.
    assert CHOSEN_NAMESPACE in {p["metadata"]["namespace"] for p in header} and len(header) > 1
    trusted = [f"cluster.local/ns/{CHOSEN_NAMESPACE}/sa/{account}" for account in ("ml-pipeline-ui", "centraldashboard", "metadata-envoy")]
    for policy in header:
        for rule in policy["spec"]["rules"]:
            principals = rule["from"][0]["source"].get("notPrincipals")
            if principals is not None:
                assert principals[0] == "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"
                assert set(trusted) <= set(principals), policy["metadata"]["namespace"]
    (metadata_envoy,) = [p for p in policies if p["metadata"]["name"] == "kubeflow-metadata-envoy"]
    assert metadata_envoy["metadata"]["namespace"] == CHOSEN_NAMESPACE
    assert metadata_envoy["spec"]["rules"][0]["from"][0]["source"]["principals"] == [
        "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account",
        f"cluster.local/ns/{CHOSEN_NAMESPACE}/sa/ml-pipeline-ui",
    ]
    # The workload the policy selects runs where the policy is.
    assert any(o["kind"] == "Deployment" and o["metadata"]["namespace"] == CHOSEN_NAMESPACE
               and (o["spec"]["template"]["metadata"].get("labels") or {}).get("component") == "metadata-envoy" for o in objects)
    # No principal of the program's identity objects is left in upstream's namespace.
    identity_kinds = ("AuthorizationPolicy", "EnvoyFilter", "RequestAuthentication")
    assert "/ns/kubeflow/" not in str([o for o in objects if o["kind"] in identity_kinds])
