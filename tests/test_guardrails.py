"""Every guardrail with a passing and a failing resource: the pure check and the policy pack's wrapper."""

from __future__ import annotations

import copy
import json

import pytest
from pulumi_policy import PolicyResource, ResourceValidationArgs, StackValidationArgs
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError, unknown_checking_proxy

from manifests import guardrails
from manifests.guardrails import GuardrailParams, PlannedResource, check_plan
from policy.guardrail_policies import all_policies

MIRROR = "registry.example.com/kubeflow"
ISSUER = "oidc.eks.us-west-2.amazonaws.com/id/EXAMPLE0123456789ABCDEF"
ACCOUNT = "111111111111"
PARAMS = GuardrailParams(mirror=MIRROR, cluster_oidc_issuer=f"https://{ISSUER}")
PACK_CONFIG = {
    "images-from-approved-mirror": {"mirror": MIRROR},
    "irsa-trust-pinned": {"clusterOidcIssuer": f"https://{ISSUER}"},
}
POLICIES = {policy.name: policy for policy in all_policies()}


def trust(sub="system:serviceaccount:kubeflow:ml-pipeline", aud="sts.amazonaws.com", operator="StringEquals", issuer=ISSUER):
    condition = {operator: {f"{issuer}:sub": sub}}
    condition.setdefault("StringEquals", {})[f"{issuer}:aud"] = aud
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "sts:AssumeRoleWithWebIdentity",
        "Principal": {"Federated": f"arn:aws:iam::{ACCOUNT}:oidc-provider/{issuer}"}, "Condition": condition}]})


def tls_only(bucket="example-ml-dev-pipelines"):
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
        "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]})


def deployment(image, env=None):
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "ml-pipeline", "namespace": "kubeflow"},
            "spec": {"template": {"spec": {"containers": [{"name": "main", "image": image, "env": env or []}]}}}}


def service(name="istio-ingressgateway", namespace="istio-system", type_="LoadBalancer", ranges=None, annotations=None):
    spec = {"type": type_}
    if ranges is not None:
        spec["loadBalancerSourceRanges"] = ranges
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace, "annotations": annotations or {}}, "spec": spec}


def namespace(labels):
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kubeflow", "labels": labels}}


def config_group(*objects):
    return ("kubernetes:yaml/v2:ConfigGroup", "kubeflow-core", {"yaml": "\n---\n".join(json.dumps(o) for o in objects)})


GPU_POOL = {"clusterName": "ml-dev", "nodeGroupName": "ml-dev-gpu-a10g", "amiType": "AL2023_x86_64_NVIDIA",
            "instanceTypes": ["g5.xlarge"], "labels": {"workload": "ai-ml"},
            "taints": [{"key": "workload", "value": "ai-ml", "effect": "NO_SCHEDULE"}]}

# policy, (type, name, good props), bad props, what the message must say
RESOURCE_CASES = [
    ("images-from-approved-mirror", config_group(deployment(f"{MIRROR}/ghcr/kubeflow/ml-pipeline/api-server:2.5.0")),
     {"yaml": json.dumps(deployment("ghcr.io/kubeflow/ml-pipeline/api-server:2.5.0"))},
     "spec.template.spec.containers[0].image 'ghcr.io/kubeflow/ml-pipeline/api-server:2.5.0' is not from the approved mirror"),
    ("s3-bucket-encrypted",
     (guardrails.ENCRYPTION_TYPES[0], "pipelines-sse", {"bucket": "b", "rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "aws:kms"}}]}),
     {"bucket": "b", "rules": []}, "sseAlgorithm is missing"),
    ("s3-bucket-versioned",
     (guardrails.VERSIONING_TYPES[0], "pipelines-versioning", {"bucket": "b", "versioningConfiguration": {"status": "Enabled"}}),
     {"bucket": "b", "versioningConfiguration": {"status": "Suspended"}}, "versioningConfiguration.status is 'Suspended'"),
    ("s3-bucket-public-access-blocked",
     (guardrails.PUBLIC_ACCESS_BLOCK_TYPE, "pipelines-pab", {"bucket": "b", **{f: True for f in guardrails.PUBLIC_ACCESS_FLAGS}}),
     {"bucket": "b", **{f: True for f in guardrails.PUBLIC_ACCESS_FLAGS}, "restrictPublicBuckets": False}, "restrictPublicBuckets must be true"),
    ("s3-bucket-tls-only", (guardrails.BUCKET_POLICY_TYPE, "pipelines-policy", {"bucket": "b", "policy": tls_only()}),
     {"bucket": "b", "policy": tls_only().replace('"false"', '"true"')}, "no statement denying Principal '*'"),
    ("irsa-trust-pinned", (guardrails.ROLE_TYPE, "pipelines-irsa", {"name": "ml-dev-pipelines", "assumeRolePolicy": trust()}),
     {"name": "ml-dev-pipelines", "assumeRolePolicy": trust(sub="system:serviceaccount:kubeflow:*", operator="StringLike")},
     "is a wildcard subject"),
    ("gpu-node-groups-tainted-and-labelled", (guardrails.NODE_GROUP_TYPE, "gpu-a10g", GPU_POOL),
     {**GPU_POOL, "taints": [{"key": "workload", "value": "ai-ml", "effect": "PREFER_NO_SCHEDULE"}]}, "has no NO_SCHEDULE or NO_EXECUTE taint"),
    ("only-gateway-load-balancer", ("kubernetes:core/v1:Service", "gateway", service(ranges=["10.0.0.0/8"])),
     service(name="ml-pipeline-ui", namespace="kubeflow"), "Service kubeflow/ml-pipeline-ui: spec.type is LoadBalancer"),
    ("gateway-nlb-restricted", ("kubernetes:core/v1:ServicePatch", "gateway",
                                service(annotations={guardrails.SECURITY_GROUPS_ANNOTATION: "sg-0123456789abcdef0"})),
     service(ranges=["10.0.0.0/8", "0.0.0.0/0"]), "source range '0.0.0.0/0' opens the load balancer"),
    ("namespaces-in-mesh", ("kubernetes:core/v1:Namespace", "kubeflow", namespace({"istio-injection": "enabled"})),
     namespace({"istio-injection": "disabled"}), "metadata.labels[istio-injection] is 'disabled'"),
    ("no-static-credentials", config_group(deployment(f"{MIRROR}/x:1", env=[
        {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "kubeflow-platform-credentials", "key": "db-password"}}}])),
     {"yaml": json.dumps(deployment(f"{MIRROR}/x:1", env=[{"name": "AWS_SECRET_ACCESS_KEY", "value": "wJalrXUtnFEMI/K7MDENG"}]))},
     "env AWS_SECRET_ACCESS_KEY has a literal value"),
]


def _pure(policy: str, type_: str, name: str, props: dict) -> list[str]:
    resource = PlannedResource(type_, name, props)
    if type_.startswith("kubernetes:"):
        params = PARAMS
        checks = {
            "images-from-approved-mirror": lambda o, typed: guardrails.images_from_approved_mirror(o, MIRROR),
            "only-gateway-load-balancer": lambda o, typed: guardrails.only_gateway_is_load_balancer(o, params.gateway_service),
            "gateway-nlb-restricted": lambda o, typed: guardrails.gateway_load_balancer_restricted(o, params.gateway_service),
            "namespaces-in-mesh": lambda o, typed: guardrails.namespace_in_mesh(o, params),
            "no-static-credentials": lambda o, typed: guardrails.no_static_credentials(o, typed),
        }
        return [v for obj, typed in guardrails.objects_by_origin([resource]) for v in checks[policy](obj, typed)]
    return guardrails.check_resource(resource, PARAMS)


def _pack(policy: str, type_: str, name: str, props: dict, config: dict | None = None) -> list[str]:
    """The pack's policy run the way the engine runs it: proxied inputs, the policy's config."""
    reported: list[str] = []
    args = ResourceValidationArgs(type_, unknown_checking_proxy(copy.deepcopy(props)), f"urn:pulumi:dev::kubeflow-platform::{type_}::{name}",
                                  name, None, None, config if config is not None else PACK_CONFIG.get(policy))
    POLICIES[policy].validate(args, lambda message, urn=None: reported.append(message))
    return reported


@pytest.mark.parametrize("policy,good,bad_props,message", RESOURCE_CASES, ids=[case[0] for case in RESOURCE_CASES])
def test_policy_passes_a_good_resource_and_names_the_field_of_a_bad_one(policy, good, bad_props, message):
    type_, name, good_props = good
    assert _pure(policy, type_, name, good_props) == []
    assert _pack(policy, type_, name, good_props) == []
    pure = _pure(policy, type_, name, bad_props)
    assert len(pure) == 1 and message in pure[0], pure
    assert _pack(policy, type_, name, bad_props) == pure


def test_every_guardrail_has_a_policy_in_the_pack_and_a_case_here():
    assert list(POLICIES) == list(guardrails.POLICIES)
    covered = {case[0] for case in RESOURCE_CASES} | {"s3-bucket-companions", "profile-namespaces-in-mesh"}
    assert covered == set(guardrails.POLICIES)


# --------------------------------------------------------------------------------- particular rules


@pytest.mark.parametrize("assume_role_policy,message", [
    (trust(aud="*"), "aud] is ['*']; pin it to ['sts.amazonaws.com']"),
    (trust(sub="system:serviceaccount:kubeflow:ml-*"), "is not one service account"),
    (trust(issuer="oidc.eks.us-west-2.amazonaws.com/id/OTHERCLUSTER"), "not this cluster's"),
    (json.dumps({"Statement": [{"Effect": "Allow", "Action": "sts:AssumeRoleWithWebIdentity",
                               "Principal": {"Federated": f"arn:aws:iam::{ACCOUNT}:oidc-provider/{ISSUER}"}}]}), "sub] is missing"),
    ("not json", "is not a JSON policy document"),
])
def test_irsa_trust_refuses_unpinned_or_foreign_trust(assume_role_policy, message):
    violations = guardrails.irsa_trust_pinned("role", assume_role_policy, PARAMS)
    assert any(message in v for v in violations), violations


def test_an_allow_listed_role_may_trust_a_wildcard_subject_but_still_pins_the_audience():
    params = GuardrailParams(mirror=MIRROR, cluster_oidc_issuer=f"https://{ISSUER}", wildcard_trust_roles=frozenset({"profiles-shared"}))
    assert guardrails.irsa_trust_pinned("profiles-shared", trust(sub="system:serviceaccount:*:default-editor", operator="StringLike"), params) == []
    assert guardrails.irsa_trust_pinned("profiles-shared", trust(sub="system:serviceaccount:*:x", aud="*", operator="StringLike"), params)


def test_non_gpu_node_groups_are_not_required_to_be_tainted():
    general = {**GPU_POOL, "amiType": "AL2023_x86_64_STANDARD", "instanceTypes": ["m6i.xlarge"], "taints": [], "labels": {}}
    assert guardrails.gpu_node_group_tainted_and_labelled(PlannedResource(guardrails.NODE_GROUP_TYPE, "general", general)) == []
    assert guardrails.is_gpu_node_group({"instanceTypes": ["p4d.24xlarge"]})


def test_a_revisioned_mesh_needs_the_revision_label_and_no_injection_label():
    params = GuardrailParams(mirror=MIRROR, mesh_revision="prod-1-24")
    assert guardrails.namespace_in_mesh(namespace({"istio.io/rev": "prod-1-24"}), params) == []
    assert "Istio then ignores istio.io/rev" in guardrails.namespace_in_mesh(namespace({"istio.io/rev": "prod-1-24", "istio-injection": "enabled"}), params)[0]
    assert "not the mesh revision" in guardrails.namespace_in_mesh(namespace({"istio-injection": "enabled"}), params)[0]


def _labels_config_map(text):
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "namespace-labels-data-2k29b64d74", "namespace": "kubeflow"},
            "data": {"namespace-labels.yaml": text}}


PROFILE = {"apiVersion": "kubeflow.org/v1", "kind": "Profile", "metadata": {"name": "alice"}, "spec": {"owner": {"kind": "User", "name": "alice@example.com"}}}


def test_profile_namespaces_join_the_mesh_through_the_profile_controllers_labels():
    assert guardrails.profile_namespaces_in_mesh([PROFILE, _labels_config_map("istio-injection: 'enabled'\n")], PARAMS) == []
    revision = GuardrailParams(mirror=MIRROR, mesh_revision="prod-1-24")
    assert guardrails.profile_namespaces_in_mesh([PROFILE, _labels_config_map("istio.io/rev: prod-1-24\nistio-injection: ''\n")], revision) == []
    assert "must set istio.io/rev: 'prod-1-24'" in guardrails.profile_namespaces_in_mesh([_labels_config_map("istio-injection: 'enabled'\n")], revision)[0]
    # Without the controller's ConfigMap in the plan, the profile's own Namespace must be planned.
    assert "no namespace-labels-data ConfigMap" in guardrails.profile_namespaces_in_mesh([PROFILE], PARAMS)[0]
    assert guardrails.profile_namespaces_in_mesh([PROFILE, {**namespace({"istio-injection": "enabled"}), "metadata": {"name": "alice"}}], PARAMS) == []


def test_profile_policy_in_the_pack_reports_the_config_map():
    stack = StackValidationArgs([_policy_resource(*config_group(_labels_config_map("pipelines.kubeflow.org/enabled: 'true'\n"), PROFILE))], {})
    reported = []
    POLICIES["profile-namespaces-in-mesh"].validate(stack, lambda message, urn=None: reported.append(message))
    assert len(reported) == 1 and "must set istio-injection: 'enabled'" in reported[0]


@pytest.mark.parametrize("obj,message", [
    ({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "kubeflow"}, "data": {"note": "key AKIAIOSFODNN7EXAMPLE"}}, "holds an AWS access key id (AKIA...)"),
    ({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "kubeflow"}, "data": {"dbPassword": "hunter2"}}, "data[dbPassword] is a literal credential"),
    ({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "kubeflow"}, "stringData": {"password": "minio123"}}, "stringData[password] is a literal credential"),
    (deployment(f"{MIRROR}/x:1", env=[{"name": "MYSQL_PASSWORD", "value": "root"}]), "env MYSQL_PASSWORD has a literal value"),
])
def test_static_credentials_are_found_in_manifests_config_maps_and_env(obj, message):
    violations = guardrails.no_static_credentials(obj)
    assert any(message in v for v in violations), violations


def test_references_switches_and_pulumi_secrets_are_not_credentials():
    secret_value = {guardrails._SIG_KEY: guardrails._SECRET_SIG, "value": "MARKER-db-password-b5e8"}
    objects = [
        deployment(f"{MIRROR}/x:1", env=[{"name": "MYSQL_ALLOW_EMPTY_PASSWORD", "value": "true"},
                                         {"name": "PASSWORD_FILE", "value": "/etc/secret/password"},
                                         {"name": "DB_PASSWORD", "value": "$(DB_PASSWORD_FROM_ENV)"}]),
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "kubeflow"}, "stringData": {"password": secret_value}},
    ]
    for obj in objects:
        assert guardrails.no_static_credentials(obj) == [], obj


def test_a_typed_secret_resource_is_encrypted_by_the_provider_but_one_in_manifest_text_is_not():
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "kubeflow-platform-credentials", "namespace": "kubeflow"},
              "stringData": {"db-password": "value-from-a-pulumi-secret"}}
    assert _pack("no-static-credentials", "kubernetes:core/v1:Secret", "central", secret) == []
    in_text = _pack("no-static-credentials", *config_group(secret)[:2], config_group(secret)[2])
    assert len(in_text) == 1 and "stringData[db-password]" in in_text[0]


def test_images_in_text_and_args_must_be_mirrored_too():
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "inferenceservice-config", "namespace": "kubeflow"},
                  "data": {"agent": json.dumps({"image": "docker.io/kserve/agent:v0.15.0"}),
                           "_example": "image: quay.io/documentation/only",
                           "docs": "see https://gcr.io/some/page"}}
    violations = guardrails.images_from_approved_mirror(config_map, MIRROR)
    assert len(violations) == 1 and "data.agent pulls 'docker.io/kserve/agent:v0.15.0'" in violations[0]
    mirrored = deployment(f"{MIRROR}/x:1")
    mirrored["spec"]["template"]["spec"]["containers"][0]["args"] = [f"--solver-image={MIRROR}/quay.io/jetstack/acmesolver:v1"]
    assert guardrails.images_from_approved_mirror(mirrored, MIRROR) == []
    # A registry that merely starts like the mirror is another registry.
    assert guardrails.images_from_approved_mirror(deployment("registry.example.com/kubeflow-evil/x:1"), MIRROR)


def test_the_pack_refuses_to_guess_a_mirror_it_was_not_given():
    reported = _pack("images-from-approved-mirror", *config_group(deployment(f"{MIRROR}/x:1"))[:2], config_group(deployment(f"{MIRROR}/x:1"))[2], config={})
    assert reported and "no approved mirror configured" in reported[0]


# ----------------------------------------------------------------------------- S3 join, unknowns


def _bucket_plan(*, drop: str | None = None, bucket_ref="example-ml-dev-pipelines"):
    name = "example-ml-dev-pipelines"
    plan = [
        ("aws:s3/bucket:Bucket", "artifacts-pipelines", {"bucket": name, "forceDestroy": True}),
        (guardrails.ENCRYPTION_TYPES[0], "artifacts-pipelines-sse", {"bucket": bucket_ref, "rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}]}),
        (guardrails.VERSIONING_TYPES[0], "artifacts-pipelines-versioning", {"bucket": bucket_ref, "versioningConfiguration": {"status": "Enabled"}}),
        (guardrails.PUBLIC_ACCESS_BLOCK_TYPE, "artifacts-pipelines-pab", {"bucket": bucket_ref, **{f: True for f in guardrails.PUBLIC_ACCESS_FLAGS}}),
        (guardrails.BUCKET_POLICY_TYPE, "artifacts-pipelines-policy", {"bucket": bucket_ref, "policy": tls_only(name)}),
    ]
    return [row for row in plan if row[0] != drop]


def _policy_resource(type_, name, props, property_dependencies=None):
    return PolicyResource(type_, unknown_checking_proxy(copy.deepcopy(props)), f"urn:pulumi:dev::kubeflow-platform::{type_}::{name}",
                          name, None, None, None, [], property_dependencies or {})


def test_a_bucket_needs_every_companion_joined_by_bucket_name():
    assert guardrails.s3_buckets_secured([PlannedResource(*row) for row in _bucket_plan()]) == []
    missing = guardrails.s3_buckets_secured([PlannedResource(*row) for row in _bucket_plan(drop=guardrails.VERSIONING_TYPES[0])])
    assert missing == ["Bucket artifacts-pipelines: no versioning (BucketVersioning) for bucket 'example-ml-dev-pipelines'"]
    # A companion of another bucket does not count.
    foreign = [PlannedResource(*row) for row in _bucket_plan()[:1]] + [PlannedResource(*row) for row in _bucket_plan(bucket_ref="other")[1:]]
    assert len(guardrails.s3_buckets_secured(foreign)) == 4


def test_the_pack_joins_companions_through_their_dependency_when_the_bucket_id_is_unknown():
    rows = _bucket_plan(bucket_ref=UNKNOWN_STRING_VALUE)
    bucket = _policy_resource(*rows[0])
    companions = [_policy_resource(*row, property_dependencies={"bucket": [bucket]}) for row in rows[1:]]
    reported = []
    POLICIES["s3-bucket-companions"].validate(StackValidationArgs([bucket, *companions], {}), lambda m, urn=None: reported.append(m))
    assert reported == []
    reported_without = []
    POLICIES["s3-bucket-companions"].validate(StackValidationArgs([bucket, *companions[1:]], {}), lambda m, urn=None: reported_without.append(m))
    assert reported_without == ["Bucket artifacts-pipelines: no server-side encryption (BucketServerSideEncryptionConfiguration) for bucket 'example-ml-dev-pipelines'"]


def test_a_violation_that_depends_on_preview_unknowns_is_deferred_not_guessed():
    props = {"bucket": "b", "policy": UNKNOWN_STRING_VALUE}
    with pytest.raises(UnknownValueError):
        _pack("s3-bucket-tls-only", guardrails.BUCKET_POLICY_TYPE, "p", props)
    # Unknowns the verdict does not depend on do not stop a passing check.
    assert _pack("s3-bucket-versioned", guardrails.VERSIONING_TYPES[0], "v", {"bucket": UNKNOWN_STRING_VALUE, "versioningConfiguration": {"status": "Enabled"}}) == []


# ------------------------------------------------------------------------------------ whole plans


def test_check_plan_runs_every_rule_over_resources_and_the_objects_they_carry():
    plan = [PlannedResource(*row) for row in _bucket_plan(drop=guardrails.BUCKET_POLICY_TYPE)]
    plan.append(PlannedResource(*config_group(deployment("quay.io/x:1"), service(name="ui", namespace="kubeflow"))))
    plan.append(PlannedResource(guardrails.ROLE_TYPE, "irsa", {"name": "r", "assumeRolePolicy": trust(aud="*")}))
    violations = check_plan(plan, [namespace({})], PARAMS)
    assert len(violations) == 5, violations
    for fragment in ("no a TLS-only bucket policy", "'quay.io/x:1' is not from the approved mirror", "Service kubeflow/ui: spec.type is LoadBalancer",
                     "aud] is ['*']", "Namespace kubeflow: metadata.labels[istio-injection] is None"):
        assert any(fragment in v for v in violations), fragment
