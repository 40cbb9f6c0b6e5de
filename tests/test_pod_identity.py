"""EKS Pod Identity (identity.mechanism: podIdentity): every role served by an association, trust scoped by the
session tags, no IRSA annotation left, the agent add-on read, and releases whose SDKs cannot use it refused."""

from __future__ import annotations

import json

import pulumi
import pytest

from manifests.guardrails import GuardrailParams, irsa_trust_pinned
from manifests.iam import IRSA_ROLE_ANNOTATION, s3_access_policy
from manifests.pod_identity import (
    AGENT_ADDON, POD_IDENTITY_SDKS, pod_identity_blockers, pod_identity_refusal, pod_identity_trust_policy,
    scoped_to_session,
)
from tests.conftest import _stack_kubeflow, irsa_overrides, shared_run
from tests.iam_eval import allows
from tests.upstream import manifests_path
from tools.mock_runtime import stack_config

ROLE = "aws:iam/role:Role"
ASSOCIATION = "aws:eks/podIdentityAssociation:PodIdentityAssociation"
POD_IDENTITY = {"identity": {"mechanism": "podIdentity", "argoServiceAccounts": []}}


def _dev_pod_identity():
    """dev as its stack file has it: Pod Identity."""
    return shared_run("dev")


def _dev_irsa():
    """dev with only identity.mechanism set to irsa: what the Pod Identity checks are set against."""
    return shared_run("dev", irsa_overrides("dev"))


def _session(namespace: str, account: str, cluster: str = "ml-dev") -> dict[str, str]:
    return {"aws:PrincipalTag/eks-cluster-name": cluster, "aws:PrincipalTag/kubernetes-namespace": namespace,
            "aws:PrincipalTag/kubernetes-service-account": account}


def _lake_profiles(run) -> list[str]:
    return [r.name.removeprefix("tenancy-").removesuffix("-data-lake") for r in run.of_type(ROLE)
            if r.name.startswith("tenancy-") and r.name.endswith("-data-lake")]


def test_every_role_is_served_by_an_association_and_no_oidc_provider_is_made():
    run = _dev_pod_identity()
    roles = {role.name: role for role in run.of_type(ROLE) if "EKS Pod Identity" in role.inputs.get("description", "")}
    associations = run.of_type(ASSOCIATION)
    # The platform's two pipelines roles and each data-lake profile's role, one association per service account.
    served = {(a.inputs["namespace"], a.inputs["serviceAccount"]) for a in associations}
    assert {("kubeflow", "ml-pipeline"), ("kubeflow", "ml-pipeline-ui"), ("kubeflow", "ml-pipeline-visualizationserver")} <= served
    profiles_with_lake = _lake_profiles(run)
    assert profiles_with_lake, "dev has data-lake profiles"
    for profile in profiles_with_lake:
        assert {(profile, "default-editor"), (profile, "pipeline-runner")} <= served
    assert len(associations) == len(served) == 3 + 2 * len(profiles_with_lake)
    for association in associations:
        assert association.inputs["clusterName"] == "ml-dev"
        role = next(r for r in roles.values() if r.name == association.name.rsplit("-" + association.inputs["serviceAccount"], 1)[0])
        assert role.urn in association.dependencies or association.inputs["roleArn"] == role.outputs["arn"]
    assert not run.of_type("aws:iam/openIdConnectProvider:OpenIdConnectProvider")
    assert run.exports["identityMechanism"] == "podIdentity"


def test_no_irsa_annotation_is_left_anywhere_in_the_plan():
    run = _dev_pod_identity()
    text = json.dumps([r.inputs for r in run.resources], default=str)
    assert IRSA_ROLE_ANNOTATION not in text
    assert "AwsIamForServiceAccount" not in text
    # The IRSA stack of the same program does carry it: the check above can fail.
    assert IRSA_ROLE_ANNOTATION in json.dumps([r.inputs for r in _dev_irsa().resources], default=str)


def test_the_pod_identity_agent_add_on_is_read_from_the_cluster():
    run = _dev_pod_identity()
    reads = [args for token, args in run.invokes if token == "aws:eks/getAddon:getAddon"]
    assert [(r.get("clusterName"), r.get("addonName")) for r in reads] == [("ml-dev", AGENT_ADDON)]
    assert not [t for t, _ in _dev_irsa().invokes if t == "aws:eks/getAddon:getAddon"]


def test_a_profile_role_is_trusted_only_in_its_namespace_and_reaches_only_its_prefix():
    run = _dev_pod_identity()
    profile = _lake_profiles(run)[0]
    role = next(r for r in run.of_type(ROLE) if r.name == f"tenancy-{profile}-data-lake")
    (statement,) = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    assert statement["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    assert sorted(statement["Action"]) == ["sts:AssumeRole", "sts:TagSession"]
    assert statement["Condition"]["StringEquals"] == {
        "aws:RequestTag/eks-cluster-name": "ml-dev", "aws:RequestTag/kubernetes-namespace": profile,
        "aws:RequestTag/kubernetes-service-account": ["default-editor", "pipeline-runner"],
    }
    assert irsa_trust_pinned(role.name, role.inputs["assumeRolePolicy"], GuardrailParams(mirror="m")) == []
    policy = json.loads(run.named("aws:iam/rolePolicy:RolePolicy", f"{role.name}-policy").inputs["policy"])
    put = [s for s in policy["Statement"] if "s3:PutObject" in s.get("Action", [])]
    assert put and all(s["Condition"]["StringEquals"]["aws:PrincipalTag/kubernetes-namespace"] == profile for s in put)


def test_session_scoping_denies_another_namespace_the_same_role():
    policy = s3_access_policy(bucket="lake", prefixes=["alice"], kms_key_arn=None, region="us-west-2")
    scoped = scoped_to_session(policy, cluster_name="ml-dev", namespace="alice")
    key = "arn:aws:s3:::lake/alice/model.bin"
    assert allows(scoped, "s3:PutObject", key, context=_session("alice", "default-editor"))
    assert not allows(scoped, "s3:PutObject", key, context=_session("bob", "default-editor"))
    assert not allows(scoped, "s3:PutObject", key, context=_session("alice", "default-editor", cluster="other"))


@pytest.mark.parametrize("change,expected", [
    (lambda s: s["Condition"]["StringEquals"].pop("aws:RequestTag/kubernetes-namespace"), "kubernetes-namespace] is missing"),
    (lambda s: s["Condition"]["StringEquals"].update({"aws:RequestTag/eks-cluster-name": "*"}), "eks-cluster-name] is ['*']"),
    (lambda s: s.update({"Action": ["sts:AssumeRole"]}), "must be exactly ['sts:AssumeRole', 'sts:TagSession']"),
    (lambda s: s["Condition"].update({"StringLike": {"aws:RequestTag/kubernetes-service-account": "*"}}), "StringLike is not allowed"),
])
def test_the_trust_guardrail_refuses_a_pod_identity_trust_that_is_not_pinned(change, expected):
    trust = pod_identity_trust_policy(cluster_name="ml-dev", subjects=[("alice", "default-editor")])
    change(trust["Statement"][0])
    found = irsa_trust_pinned("r", json.dumps(trust), GuardrailParams(mirror="m"))
    assert any(expected in message for message in found), found


def test_a_pod_identity_role_serves_one_namespace():
    with pytest.raises(ValueError, match="one namespace"):
        pod_identity_trust_policy(cluster_name="c", subjects=[("alice", "default-editor"), ("bob", "default-editor")])


def test_every_role_of_the_pod_identity_stack_passes_the_trust_guardrail():
    run = _dev_pod_identity()
    roles = run.of_type(ROLE)
    assert roles
    for role in roles:
        assert irsa_trust_pinned(role.name, role.inputs["assumeRolePolicy"], GuardrailParams(mirror="m")) == [], role.name


def test_releases_whose_sdks_cannot_use_pod_identity_are_named_with_the_deciding_sdk():
    assert [f.component for f in pod_identity_blockers("26.03")] == []
    assert [f.component for f in pod_identity_blockers("1.11.0")] == []
    assert [(f.component, f.sdk, f.version) for f in pod_identity_blockers("1.10.2")] == [
        ("KFP API server", "minio-go", "v6.0.57"), ("Argo executor", "minio-go", "v7.0.65")]
    assert {f.component for f in pod_identity_blockers("1.9.1")} == {
        "KFP API server", "KFP driver and launcher", "KFP UI", "Argo executor"}
    message = pod_identity_refusal("1.10.2")
    assert "KFP API server (minio-go v6.0.57, kubeflow/pipelines@2.5.0 go.mod:37" in message
    assert "Argo executor (minio-go v7.0.65, argoproj/argo-workflows@v3.5.14 go.mod:40" in message
    assert pod_identity_refusal("26.03") is None
    assert "no SDK facts" in pod_identity_refusal("2.0")


def test_every_release_records_each_aws_calling_component():
    components = {f.component for f in POD_IDENTITY_SDKS["26.03"]}
    assert len(components) == 5
    for release, facts in POD_IDENTITY_SDKS.items():
        assert {f.component for f in facts} == components, release
        assert all("@" in f.source and ":" in f.source for f in facts), release


def test_the_stack_with_pod_identity_is_refused_at_1_10_2_naming_the_components():
    kubeflow = _stack_kubeflow("dev")
    kubeflow.update(version="1.10.2", manifests=str(manifests_path("1.10.2")))
    from tests.conftest import run_stack

    with pytest.raises(pulumi.RunError) as caught:
        run_stack("dev", {**POD_IDENTITY, "kubeflow": kubeflow})
    message = str(caught.value)
    assert "identity.mechanism" in message and "KFP API server (minio-go v6.0.57" in message
    assert "Argo executor (minio-go v7.0.65" in message and "Traceback" not in message
    assert caught.value.program_run.resources == []


def test_the_contracts_table_carries_each_sdk_fact_with_its_source():
    from manifests.contracts import load_contracts

    contracts = {c.id: c for c in load_contracts() if c.id.startswith("pod-identity-sdk-")}
    by_component = {c.consumer: c for c in contracts.values()}
    assert set(by_component) == {f.component for f in POD_IDENTITY_SDKS["26.03"]}
    for release, facts in POD_IDENTITY_SDKS.items():
        for fact in facts:
            contract = by_component[fact.component]
            assert contract.sources[release] == fact.source, (fact.component, release)
            verdict = f"{release}: {fact.sdk} {fact.version} ({'yes' if fact.pod_identity else 'no'})"
            assert verdict in " ".join(contract.why.split()), (fact.component, release)


def test_every_iam_document_of_the_pod_identity_stack_is_clean_under_parliament():
    from tests.test_scanners_iam import iam_documents, lint

    documents = iam_documents(_dev_pod_identity().resources)
    trusts = [d for d in documents if d.kind == "trust" and "pods.eks.amazonaws.com" in (d.text or "")]
    assert trusts, "the Pod Identity roles' trust policies are linted"
    problems = [finding for document in documents for finding in lint(document)[0]]
    assert problems == []


def test_the_associations_have_a_sourced_provisioning_time():
    from tools.critical_path import provisioning

    (association, *_) = [r for r in _dev_pod_identity().resources if r.type == ASSOCIATION]
    cost = provisioning({"type": association.type, "name": association.name, "inputs": association.inputs})
    assert cost.seconds and cost.source.startswith("https://") and cost.what != "other AWS resource"


def test_an_adopted_oidc_provider_is_refused_with_pod_identity():
    from config.capacity import ArtifactSettings, GpuSettings, IdentitySettings, capacity_cross_checks

    identity = IdentitySettings(mechanism="podIdentity",
                                oidc_provider_arn="arn:aws:iam::111111111111:oidc-provider/oidc.eks.us-west-2.amazonaws.com/id/X")
    problems = dict(capacity_cross_checks(region="us-west-2", cluster_name="ml-dev", protect=False,
                                          artifacts=ArtifactSettings(bucket_prefix="example-ml-dev"), gpu=GpuSettings(),
                                          identity=identity, kubeflow_version="26.03"))
    assert list(problems) == ["identity.oidcProviderArn"]
    refused = dict(capacity_cross_checks(region="us-west-2", cluster_name="ml-dev", protect=False,
                                         artifacts=ArtifactSettings(bucket_prefix="example-ml-dev"), gpu=GpuSettings(),
                                         identity=IdentitySettings(mechanism="podIdentity"), kubeflow_version="1.9.1"))
    assert "KFP UI (@aws-sdk/credential-providers 3.359.0" in refused["identity.mechanism"]


def test_the_group_creating_the_api_server_waits_for_its_association():
    from manifests.objects import objects_from_config_group_inputs

    run = _dev_pod_identity()
    association = next(a for a in run.of_type(ASSOCIATION)
                       if (a.inputs["namespace"], a.inputs["serviceAccount"]) == ("kubeflow", "ml-pipeline"))
    (group,) = [g for g in run.of_type("kubernetes:yaml/v2:ConfigGroup")
                if any(o.get("kind") == "ServiceAccount" and o["metadata"].get("name") == "ml-pipeline"
                       and o["metadata"].get("namespace") == "kubeflow" for o in objects_from_config_group_inputs(g.inputs))]
    assert association.urn in group.dependencies
    # With IRSA the same group carries the annotation instead; with Pod Identity it carries none.
    (account,) = [o for o in objects_from_config_group_inputs(group.inputs)
                  if o.get("kind") == "ServiceAccount" and o["metadata"].get("name") == "ml-pipeline"]
    assert IRSA_ROLE_ANNOTATION not in (account["metadata"].get("annotations") or {})


# ------------------------------------------------------------------------- the agent under REGISTRY_ONLY

AGENT_ROW = "API server -> Pod Identity agent 169.254.170.23:80"


def _registry_only_plan(stack: str):
    from tests.plans import evaluated_plan

    plan, _ = evaluated_plan(stack, settings={"kubeflow.mesh.outboundTrafficPolicy": "REGISTRY_ONLY"})
    return plan


def _agent_entries(plan):
    from analysis.plan_objects import kubernetes_objects

    return [o.obj for o in kubernetes_objects(plan).objects
            if o.obj.get("kind") == "ServiceEntry" and o.obj["metadata"]["name"] == "external-pod-identity-agent"]


def test_under_registry_only_an_aws_calling_pod_reaches_the_pod_identity_agent():
    from analysis import runtime_trace as rt

    plan = _registry_only_plan("dev")
    (entry,) = _agent_entries(plan)
    spec = entry["spec"]
    # Both agent addresses (IPv4 and IPv6 clusters), port 80, forwarded to the IP dialled, outside the mesh.
    assert spec["addresses"] == ["169.254.170.23", "fd00:ec2::23"]
    assert spec["ports"] == [{"number": 80, "name": "tcp-80", "protocol": "TCP"}]
    assert (spec["location"], spec["resolution"]) == ("MESH_EXTERNAL", "NONE")
    # Exported only where pods have roles: Kubeflow's namespace (the entry's own) and each data-lake profile's.
    lakes = [p["name"] for p in stack_config("dev")["kubeflow-platform:tenancy"]["profiles"] if p.get("dataLake")]
    assert lakes and spec["exportTo"] == [".", *lakes]
    model, mesh = rt.model_from_plan(plan)
    assert mesh.pod_identity and mesh.outbound_traffic_policy == "REGISTRY_ONLY"
    (row,) = [p for p in rt.paths(model, mesh) if p.label == AGENT_ROW]
    assert row.ok, row.problem()
    assert any(hop.step == "egress" and "ServiceEntry" in hop.why for hop in row.trace.hops)


def test_without_the_agents_entry_registry_only_sends_its_credentials_call_to_the_blackhole():
    from analysis import runtime_trace as rt

    plan = _registry_only_plan("dev")
    model, mesh = rt.model_from_plan(plan)
    stripped = type(model)([o for o in model.objects if not (o.get("kind") == "ServiceEntry"
                            and o["metadata"]["name"] == "external-pod-identity-agent")], model.settings)
    (row,) = [p for p in rt.paths(stripped, mesh) if p.label == AGENT_ROW]
    assert not row.ok and "BlackHoleCluster" in row.problem()


def test_the_agents_entry_is_made_only_for_pod_identity_under_registry_only():
    from analysis import runtime_trace as rt

    # prod is on IRSA (REGISTRY_ONLY): its pods call STS, not the agent; dev as filed passes unknown hosts (ALLOW_ANY).
    prod = _registry_only_plan("prod")
    assert _agent_entries(prod) == []
    model, mesh = rt.model_from_plan(prod)
    assert not any(p.label == AGENT_ROW for p in rt.paths(model, mesh))
    from tests.plans import evaluated_plan

    assert _agent_entries(evaluated_plan("dev")[0]) == []
