"""Every guardrail with a passing and a failing resource: the pure check and the policy pack's wrapper."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from pulumi_policy import PolicyResource, ResourceValidationArgs, StackValidationArgs

from manifests import guardrails
from manifests.guardrails import GuardrailParams, PlannedObject, PlannedResource, Unknown, check_plan
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


def binding(name, kind="Group"):
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "open-door"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name}]}


def daemon_set(privileged=False, host_path=False):
    spec = {"containers": [{"name": "agent", "image": f"{MIRROR}/agent:1", "securityContext": {"privileged": privileged}}]}
    if host_path:
        spec["volumes"] = [{"name": "root", "hostPath": {"path": "/"}}]
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "node-agent", "namespace": "kubeflow"},
            "spec": {"template": {"spec": spec}}}


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
    ("no-anonymous-bindings", config_group(binding("system:authenticated")), {"yaml": json.dumps(binding("system:anonymous", "User"))},
     "ClusterRoleBinding open-door: subjects[0] system:anonymous is bound to 'cluster-admin'"),
    ("no-host-access-workloads", config_group(daemon_set()), {"yaml": json.dumps(daemon_set(host_path=True))},
     "DaemonSet kubeflow/node-agent: spec.template.spec.volumes[0] (root) is a hostPath volume"),
]


def _pure(policy: str, type_: str, name: str, props: dict) -> list[str]:
    """The pure rule on its own, as check_plan runs it."""
    resource = PlannedResource(type_, name, props)
    if policy in guardrails.OBJECT_RULES:
        return [v for planned in guardrails.objects_by_origin([resource]) for v in guardrails.OBJECT_RULES[policy](planned, PARAMS)]
    types, rule = guardrails.RESOURCE_RULES[policy]
    return rule(resource, PARAMS) if type_ in types else []


def _pack(policy: str, type_: str, name: str, props: dict, config: dict | None = None) -> list[str]:
    """The pack's policy run the way the engine runs it: the inputs, the policy's config."""
    reported: list[str] = []
    args = ResourceValidationArgs(type_, copy.deepcopy(props), f"urn:pulumi:dev::kubeflow-platform::{type_}::{name}",
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
    assert "must set istio.io/rev: 'prod-1-24', istio-injection: ''" in guardrails.profile_namespaces_in_mesh([_labels_config_map("istio-injection: 'enabled'\n")], revision)[0]
    # Without the controller's ConfigMap in the plan, the profile's own Namespace must be planned.
    assert "no namespace-labels-data ConfigMap" in guardrails.profile_namespaces_in_mesh([PROFILE], PARAMS)[0]
    assert guardrails.profile_namespaces_in_mesh([PROFILE, {**namespace({"istio-injection": "enabled"}), "metadata": {"name": "alice"}}], PARAMS) == []


def test_profile_policy_in_the_pack_passes_mesh_labels_and_reports_a_config_map_without_them():
    labelled = StackValidationArgs([_policy_resource(*config_group(_labels_config_map("istio-injection: enabled\n"), PROFILE))], {})
    reported = []
    POLICIES["profile-namespaces-in-mesh"].validate(labelled, lambda message, urn=None: reported.append(message))
    assert reported == []
    stack = StackValidationArgs([_policy_resource(*config_group(_labels_config_map("pipelines.kubeflow.org/enabled: 'true'\n"), PROFILE))], {})
    POLICIES["profile-namespaces-in-mesh"].validate(stack, lambda message, urn=None: reported.append(message))
    assert len(reported) == 1 and "must set istio-injection: 'enabled' so the namespaces the profile controller" in reported[0]


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
    secret_value = guardrails.Secret("MARKER-db-password-b5e8")
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
    assert len(reported) == 1 and "no approved mirror is configured" in reported[0]


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


def _planned(rows, depends_on_bucket=False):
    bucket_urn = "urn:pulumi:dev::kubeflow-platform::aws:s3/bucket:Bucket::artifacts-pipelines"
    return [PlannedResource(type_, name, props, urn=f"urn:pulumi:dev::kubeflow-platform::{type_}::{name}",
                            depends_on=(bucket_urn,) if depends_on_bucket and type_ != "aws:s3/bucket:Bucket" else ())
            for type_, name, props in rows]


def _policy_resource(type_, name, props):
    return PolicyResource(type_, copy.deepcopy(props), f"urn:pulumi:dev::kubeflow-platform::{type_}::{name}", name, None, None, None, [], {})


def test_a_bucket_needs_every_companion_joined_by_bucket_name():
    assert guardrails.s3_bucket_companions_present(_planned(_bucket_plan())).violations == []
    missing = guardrails.s3_bucket_companions_present(_planned(_bucket_plan(drop=guardrails.VERSIONING_TYPES[0])))
    assert missing.violations == ["Bucket artifacts-pipelines: no versioning (BucketVersioning) for bucket 'example-ml-dev-pipelines'"]
    # A companion of another bucket does not count.
    foreign = _planned(_bucket_plan()[:1] + _bucket_plan(bucket_ref="other")[1:])
    assert len(guardrails.s3_bucket_companions_present(foreign).violations) == 4


def test_companions_of_a_bucket_whose_id_is_unknown_are_joined_through_what_they_depend_on():
    unknown = _bucket_plan(bucket_ref=Unknown("bucket"))
    assert guardrails.s3_bucket_companions_present(_planned(unknown, depends_on_bucket=True)) == guardrails.GuardrailReport([], [])
    without_versioning = [row for row in unknown if row[0] != guardrails.VERSIONING_TYPES[0]]
    assert guardrails.s3_bucket_companions_present(_planned(without_versioning, depends_on_bucket=True)).violations == [
        "Bucket artifacts-pipelines: no versioning (BucketVersioning) for bucket 'example-ml-dev-pipelines'"]
    # Neither the id nor a dependency says which bucket: a missing companion can only be told at deploy.
    unjoined = guardrails.s3_bucket_companions_present(_planned(without_versioning))
    assert unjoined.violations == [] and len(unjoined.deferred) == 4


def test_the_pack_joins_companions_to_their_bucket():
    rows = _bucket_plan()
    reported = []
    POLICIES["s3-bucket-companions"].validate(StackValidationArgs([_policy_resource(*row) for row in rows], {}),
                                              lambda m, urn=None: reported.append(m))
    assert reported == []
    POLICIES["s3-bucket-companions"].validate(StackValidationArgs([_policy_resource(*row) for row in rows[:1] + rows[2:]], {}),
                                              lambda m, urn=None: reported.append(m))
    assert reported == ["Bucket artifacts-pipelines: no server-side encryption (BucketServerSideEncryptionConfiguration) for bucket 'example-ml-dev-pipelines'"]


def test_a_value_unknown_during_a_preview_is_left_to_the_sdk_not_guessed():
    # The engine hands a policy its inputs wrapped by the SDK; reading an unknown raises the SDK's own error,
    # which it reports as "can't run policy during preview". The pack must let it through, not judge a guess.
    from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError, unknown_checking_proxy

    props = unknown_checking_proxy({"bucket": "b", "policy": UNKNOWN_STRING_VALUE})
    args = ResourceValidationArgs(guardrails.BUCKET_POLICY_TYPE, props, "urn:pulumi:dev::p::t::n", "n", None, None, {})
    with pytest.raises(UnknownValueError):
        POLICIES["s3-bucket-tls-only"].validate(args, lambda message, urn=None: None)


def test_check_plan_defers_a_violation_that_rests_on_a_value_known_only_at_deploy():
    role = PlannedResource(guardrails.ROLE_TYPE, "irsa", {"name": "r", "assumeRolePolicy": Unknown("assumeRolePolicy")})
    report = check_plan([role], PARAMS, objects=[])
    assert report.violations == [] and len(report.deferred) == 1 and "[irsa-trust-pinned] Role r" in report.deferred[0]


def test_an_unknown_the_rule_does_not_read_does_not_defer_its_verdict():
    role = PlannedResource(guardrails.ROLE_TYPE, "irsa", {"name": "r", "arn": Unknown("arn"), "assumeRolePolicy": trust(aud="*")})
    gateway = service(ranges=["0.0.0.0/0"], annotations=Unknown("metadata.annotations"))
    report = check_plan([role], PARAMS, objects=[PlannedObject(gateway, typed=True)])
    assert report.deferred == []
    assert [v.split(":", 1)[0] for v in report.violations] == ["[irsa-trust-pinned] Role r", "[gateway-nlb-restricted] Service istio-system/istio-ingressgateway"]
    # The same NLB restricted only by annotations unknown before deploy: undecided, so deferred.
    undecided = check_plan([], PARAMS, objects=[PlannedObject(service(annotations=Unknown("metadata.annotations")), typed=True)])
    assert undecided.violations == [] and len(undecided.deferred) == 1


# ------------------------------------------------------------------------------------ whole plans


def test_check_plan_runs_every_rule_over_resources_and_the_objects_they_carry():
    plan = _planned(_bucket_plan(drop=guardrails.BUCKET_POLICY_TYPE))
    plan.append(PlannedResource(*config_group(deployment("quay.io/x:1"), service(name="ui", namespace="kubeflow"))))
    plan.append(PlannedResource(guardrails.ROLE_TYPE, "irsa", {"name": "r", "assumeRolePolicy": trust(aud="*")}))
    plan.append(PlannedResource("kubernetes:core/v1:Namespace", "kubeflow", namespace({})))
    report = check_plan(plan, PARAMS)
    assert len(report.violations) == 5 and report.deferred == [], report
    for fragment in ("[s3-bucket-companions] Bucket artifacts-pipelines: no a TLS-only bucket policy",
                     "[images-from-approved-mirror] Deployment kubeflow/ml-pipeline: spec.template.spec.containers[0].image 'quay.io/x:1'",
                     "[only-gateway-load-balancer] Service kubeflow/ui: spec.type is LoadBalancer",
                     "[irsa-trust-pinned] Role r: assumeRolePolicy Statement[0]: Condition.StringEquals",
                     "[namespaces-in-mesh] Namespace kubeflow: metadata.labels[istio-injection] is None"):
        assert any(v.startswith(fragment) for v in report.violations), fragment


def test_without_a_mirror_the_images_rule_fails_once_for_the_plan():
    report = check_plan([PlannedResource(*config_group(deployment("quay.io/x:1"), deployment("quay.io/y:1")))], GuardrailParams(mirror=""))
    assert report.violations == ["[images-from-approved-mirror] no approved mirror is configured, so no image can be shown to come "
                                 "from it (set kubeflow.images.mirror, or `mirror` for images-from-approved-mirror in --policy-pack-config)"]


def test_the_policy_pack_config_and_the_parameters_say_the_same():
    params = GuardrailParams(mirror=MIRROR, gateway_service="gw/gateway", cluster_oidc_issuer=f"https://{ISSUER}",
                             wildcard_trust_roles=frozenset({"shared"}), mesh_revision="1-24", namespaces_outside_mesh=frozenset({"warm"}))
    config = params.policy_config()
    assert config["all"] == "mandatory" and set(config) - {"all"} <= set(guardrails.POLICIES)
    assert GuardrailParams.from_policy_config(config) == params
    # The pack hands each policy only its own section; each section alone gives that policy what it reads.
    assert GuardrailParams.from_policy_config({"images-from-approved-mirror": config["images-from-approved-mirror"]}).mirror == MIRROR
    assert GuardrailParams.from_policy_config({"namespaces-in-mesh": config["namespaces-in-mesh"]}).namespaces_outside_mesh == {"warm"}


def test_the_example_config_and_every_stacks_config_fit_the_packs_schemas():
    """The config a stack exports (policyPackConfig) and the example are what --policy-pack-config takes."""
    import jsonschema

    example = json.loads((Path(__file__).resolve().parent.parent / "policy" / "config.example.json").read_text())
    assert GuardrailParams.from_policy_config(example).policy_config() == example
    for config in (example, PARAMS.policy_config()):
        for name, section in config.items():
            if name == "all":
                continue
            schema = POLICIES[name].config_schema
            assert schema is not None, f"{name} has config but no schema"
            jsonschema.validate(section, {"type": "object", "properties": schema.properties, "required": schema.required or [],
                                          "additionalProperties": False})


def test_a_privileged_container_and_every_host_namespace_are_each_named():
    bad = daemon_set(privileged=True)
    bad["spec"]["template"]["spec"].update(hostNetwork=True, hostPID=True, hostIPC=True)
    found = guardrails.no_host_access(bad)
    assert sorted(found) == sorted([
        "DaemonSet kubeflow/node-agent: spec.template.spec.containers[0] (agent) is privileged",
        *(f"DaemonSet kubeflow/node-agent: spec.template.spec.{f} is true" for f in ("hostNetwork", "hostPID", "hostIPC"))])


def test_the_unauthenticated_group_is_refused_and_the_authenticated_one_left_to_review():
    assert guardrails.no_anonymous_bindings(binding("system:unauthenticated"))
    assert guardrails.no_anonymous_bindings(binding("system:authenticated")) == []
