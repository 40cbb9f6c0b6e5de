"""Bad settings: each gives one clear message per problem, naming the key, and nothing is registered."""

from __future__ import annotations

import copy

import pulumi
import pytest

from tests.conftest import MARKER_SECRETS, run_stack
from tests.upstream import manifests_path
from tools.mock_runtime import stack_config


def _dev(area: str) -> dict:
    return copy.deepcopy(stack_config("dev")[f"kubeflow-platform:{area}"])


def _with(area: str, edit) -> dict:
    value = _dev(area)
    edit(value)
    return {area: value}


def _set(path: list, new):
    def edit(value):
        target = value
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = new

    return edit


def _delete(path: list):
    def edit(value):
        target = value
        for step in path[:-1]:
            target = target[step]
        del target[path[-1]]

    return edit


def _manifests(make):
    """The dev stack's Kubeflow settings with `manifests` made by `make(tmp_path)` when the test runs."""

    def overrides(tmp_path):
        value = _dev("kubeflow")
        value["manifests"] = make(tmp_path)
        return {"kubeflow": value}

    return overrides


def _file(text: str):
    def make(tmp_path):
        path = tmp_path / "kubeflow.yaml"
        path.write_text(text)
        return str(path)

    return make


_BROKEN_DEPLOYMENT = """
apiVersion: v1
kind: Namespace
metadata: {name: kubeflow}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: broken, namespace: kubeflow}
spec:
  selector: {matchLabels: {app: broken}}
  template:
    metadata: {labels: {app: broken}}
    spec:
      containers:
        - {name: app, image: ghcr.io/kubeflow/app:1, imagePullPolicyy: Always}
"""


BAD_SETTINGS = [
    ("region", _with("aws", _set(["region"], "us-westt-2")), ["aws.region: 'us-westt-2' is not an AWS region name"]),
    ("account id", _with("aws", _set(["allowedAccountIds"], ["1234"])), ["aws.allowedAccountIds: '1234' is not an AWS account id"]),
    ("tag prefix", _with("aws", _set(["defaultTags", "aws:owner"], "x")), ["aws.defaultTags.aws:owner: tag keys"]),
    ("missing cluster name", _with("cluster", _delete(["name"])), ["cluster.name: is required"]),
    ("fleet region without its global stack", {"fleet": {"role": "regional", "organization": "example-org",
                                                        "host": "kubeflow.ml.example.com"}},
     ["fleet.global: is required with fleet.role regional"]),
    ("fleet region not serving the global host", {"fleet": {"role": "regional", "organization": "example-org",
                                                           "global": "global", "host": "kubeflow.ml.example.com"}},
     ["dns.extraHosts: add the fleet's global host 'kubeflow.ml.example.com'"]),
    ("typo key", _with("dns", lambda d: d.update(hostt=d["host"])), ["dns.hostt: unknown key; did you mean 'host'?"]),
    ("host outside zone", _with("dns", _set(["host"], "kubeflow.other.com")), ["dns.host: 'kubeflow.other.com' is not inside the hosted zone"]),
    ("invalid dns name", _with("dns", _set(["host"], "Kube_flow.dev.ml.example.com")), ["dns.host: 'Kube_flow.dev.ml.example.com' is not a valid DNS name"]),
    ("records mode", _with("dns", _set(["records"], "external_dns")), ["dns.records: 'external_dns' is not one of 'route53', 'external-dns' (did you mean 'external-dns'?)"]),
    ("serving domain outside zone", _with("dns", _set(["servingDomain"], "serving.example.org")), ["dns.servingDomain: 'serving.example.org' is not inside the hosted zone 'dev.ml.example.com'"]),
    ("serving domain is the host", _with("dns", _set(["servingDomain"], "kubeflow.dev.ml.example.com")), ["dns.servingDomain: 'kubeflow.dev.ml.example.com' is dns.host; InferenceServices need a domain of their own, like serving.dev.ml.example.com"]),
    ("serving domain holds the host", _with("dns", _set(["servingDomain"], "dev.ml.example.com")), ["dns.servingDomain: dns.host 'kubeflow.dev.ml.example.com' lies directly under 'dev.ml.example.com', where InferenceService hosts are made"]),
    ("serving domain as a wildcard", _with("dns", _set(["servingDomain"], "*.serving.dev.ml.example.com")), ["dns.servingDomain: '*.serving.dev.ml.example.com' is not a valid DNS name"]),
    ("serving domain too long", _with("dns", _set(["servingDomain"], ("s" * 60 + ".") * 3 + "dev.ml.example.com")), ["dns.servingDomain: '" + ("s" * 60 + ".") * 3 + "dev.ml.example.com' is 201 characters; at most 189 leave room"]),
    ("serving domain without knative", _with("kubeflow", _set(["exclude"], ["istio", "argo", "dex", "oauth2-proxy", "knative"])), ["dns.servingDomain: is set but kubeflow.exclude removes knative, whose config-domain it is written into; remove knative from kubeflow.exclude or unset dns.servingDomain"]),
    ("san", _with("certificate", _set(["subjectAlternativeNames"], ["*.*.example.com"])), ["certificate.subjectAlternativeNames: '*.*.example.com' is not a valid DNS name"]),
    ("cidr", _with("ingress", _set(["sourceCidrs"], ["10.0.0.1/8"])), ["ingress.sourceCidrs: '10.0.0.1/8' is not a CIDR block"]),
    ("open nlb", _with("ingress", _set(["sourceCidrs"], ["0.0.0.0/0"])), ["ingress.sourceCidrs: '0.0.0.0/0' opens the load balancer to the whole internet"]),
    ("no restriction", _with("ingress", _set(["sourceCidrs"], [])), ["ingress.sourceCidrs: name the organisation's CIDR ranges or securityGroups"]),
    ("security group", _with("ingress", lambda d: d.update(sourceCidrs=[], securityGroups=["sg-xyz"])), ["ingress.securityGroups: 'sg-xyz' is not a security group id"]),
    ("lb type", _with("ingress", _set(["loadBalancerType"], "alb")), ["ingress.loadBalancerType: 'alb' is not one of 'nlb'"]),
    ("oidc arn", {"identity": {"oidcProviderArn": "arn:aws:iam::123:role/x"}}, ["identity.oidcProviderArn: 'arn:aws:iam::123:role/x' has account '123'"]),
    ("bucket prefix", _with("artifacts", _set(["bucketPrefix"], "Example_ML")), ["artifacts.bucketPrefix: 'Example_ML' is not a valid S3 bucket name"]),
    ("kms arn", _with("artifacts", _set(["buckets", 0, "kmsKeyArn"], "arn:aws:s3:::bucket")), ["artifacts.buckets[0].kmsKeyArn: 'arn:aws:s3:::bucket' is an ARN of service 's3', expected 'kms'"]),
    ("max below min", _with("gpu", lambda g: g["pools"][0].update(minSize=3, desiredSize=3, maxSize=2)), ["gpu.pools[0].maxSize: 2 is below minSize 3"]),
    ("desired outside", _with("gpu", _set(["pools", 0, "desiredSize"], 5)), ["gpu.pools[0].desiredSize: 5 is outside minSize..maxSize (0..2)"]),
    ("size type", _with("gpu", _set(["pools", 0, "maxSize"], "two")), ["gpu.pools[0].maxSize: expected a whole number, got string 'two'"]),
    ("reserved label", _with("gpu", _set(["pools", 0, "labels", "kubernetes.io/role"], "gpu")), ["gpu.pools[0].labels.kubernetes.io/role: EKS refuses labels"]),
    ("taint effect", _with("gpu", _set(["pools", 0, "taints", 0, "effect"], "NoSchedule")), ["gpu.pools[0].taints[0].effect: 'NoSchedule' is not one of"]),
    ("untainted pool", _with("gpu", _set(["pools", 0, "taints"], [])), ["gpu.pools[0].taints: GPU pools must be tainted"]),
    ("subnet", _with("gpu", _set(["pools", 0, "subnetIds"], ["subnet-1"])), ["gpu.pools[0].subnetIds: 'subnet-1' is not a subnet id"]),
    ("version", _with("kubeflow", _set(["version"], "v1.10")), ["kubeflow.version: 'v1.10' is not a release version like 1.10.2 or 26.03"]),
    ("calendar version unquoted", _with("kubeflow", _set(["version"], 26.03)),
     ['kubeflow.version: expected a string, got number 26.03: YAML reads an unquoted number; quote it as written, like "26.03"']),
    ("sha256", _with("kubeflow", _set(["manifests"], {"url": "https://example.com/k.yaml", "sha256": "abc"})), ["kubeflow.manifests.sha256: 'abc' is not a SHA-256 digest"]),
    ("unknown exclusion", _with("kubeflow", _set(["exclude"], ["istio", "argoo", "dex"])), ["kubeflow.exclude[1]: unknown exclusion 'argoo'; did you mean 'argo'?"]),
    ("argo nowhere", _with("kubeflow", _set(["argo", "external"], False)), ["kubeflow.exclude: excludes the bundled argo while argo.external is false"]),
    ("mirror rule outside mirror", _with("kubeflow", _set(["images", "rules", 0, "target"], "docker.io/kubeflow")), ["kubeflow.images.rules[0].target: 'docker.io/kubeflow' is outside the mirror 'registry.example.com/kubeflow'"]),
    ("corrupt manifests", _manifests(_file("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: [kubeflow\n")), ["kubeflow.yaml:5:1: invalid YAML"]),
    ("missing manifests", _manifests(lambda tmp: str(tmp / "kubeflow-v1.10.2.yaml")), ["kubeflow-v1.10.2.yaml: no such file or directory (fix: render the manifests to a file and run `pulumi config set --path kubeflow.manifests ./kubeflow.yaml`)"]),
    ("checksum mismatch", _manifests(lambda tmp: {"url": manifests_path().as_uri(), "sha256": "0" * 64}), ["kubeflow.manifests.sha256: checksum mismatch for file://"]),
    ("other release", _manifests(lambda tmp: str(manifests_path("1.9.1"))), ["kubeflow.manifests: holds Kubeflow 1.9.1 (dashboard v1.9.2, istio 1.22.1, katib v0.17.0, kserve v0.13.1, pipelines 2.3.0, training v1-04f9f13), not kubeflow.version 26.03"]),
    ("object that would not apply", _manifests(_file(_BROKEN_DEPLOYMENT)), ["Deployment kubeflow/broken spec.template.spec.containers[0]: Additional properties are not allowed ('imagePullPolicyy' was unexpected)"]),
    ("issuer", _with("auth", _set(["issuerUrl"], "http://login.example.com")), ["auth.issuerUrl: 'http://login.example.com' must be an https:// URL"]),
    ("issuer with query", _with("auth", _set(["issuerUrl"], "https://login.example.com/?tenant=1")), ["auth.issuerUrl: 'https://login.example.com/?tenant=1' must not have a query string"]),
    ("extra issuer", _with("auth", _set(["extraIssuers", 0, "issuer"], "https://user:pw@login.example.com/cli")), ["auth.extraIssuers[0].issuer: 'https://user:pw@login.example.com/cli' must not carry credentials"]),
    ("jwks uri", _with("auth", _set(["extraIssuers", 1, "jwksUri"], "http://keys.example.com/jwks")), ["auth.extraIssuers[1].jwksUri: 'http://keys.example.com/jwks' must be an https:// URL"]),
    ("empty claim", _with("auth", _set(["extraIssuers", 0, "userClaim"], " ")), ["auth.extraIssuers[0].userClaim: must not be empty"]),
    ("header chars", _with("auth", _set(["userSourceHeader"], "x-auth request")), ["auth.userSourceHeader: 'x-auth request' has characters outside the RFC 7230 token set"]),
    ("header underscore", _with("auth", _set(["userHeader"], "kubeflow_userid")), ["auth.userHeader: 'kubeflow_userid' contains '_'"]),
    ("header case", _with("auth", _set(["groupsHeader"], "Kubeflow-Groups")), ["auth.groupsHeader: 'Kubeflow-Groups' must be lowercase"]),
    ("header reserved", _with("auth", _set(["groupsSourceHeader"], "cookie")), ["auth.groupsSourceHeader: 'cookie' is a header with its own meaning"]),
    ("header reused", _with("auth", _set(["userHeader"], "x-auth-request-email")), ["auth.userHeader: 'x-auth-request-email' is already used by auth.userSourceHeader"]),
    ("user id prefix", _with("auth", _set(["userIdPrefix"], "corp\"; x")), ["auth.userIdPrefix: 'corp\"; x' may only contain letters, digits"]),
    ("no openid scope", _with("auth", _set(["scopes"], ["email"])), ["auth.scopes: must include 'openid'"]),
    ("github issuer for any repository", _with("auth", _delete(["extraIssuers", 1, "requiredClaims"])),
     ["auth.extraIssuers[1].requiredClaims: any GitHub Actions workflow of any repository can mint this issuer's tokens"]),
    ("github issuer for an event only", _with("auth", _set(["extraIssuers", 1, "requiredClaims"], {"event_name": ["push"]})),
     ["auth.extraIssuers[1].requiredClaims: any GitHub Actions workflow of any repository"]),
    ("required claim accepting anyone", _with("auth", _set(["extraIssuers", 1, "requiredClaims", "repository_owner"], ["*"])),
     ["auth.extraIssuers[1].requiredClaims.repository_owner[0]: '*' accepts anyone"]),
    ("issuer without audience", _with("auth", _delete(["extraIssuers", 1, "audiences"])),
     ["auth.extraIssuers[1].audiences: required: without one Istio accepts a token this issuer minted for any other relying party"]),
    ("user issuer for any domain", _with("auth", _set(["emailDomains"], ["*"])),
     ["auth.extraIssuers[0].requiredClaims: says nobody in particular may come in"]),
    ("issuer naming no one", _with("auth", _delete(["extraIssuers", 1, "machineIdentity"])),
     ["auth.extraIssuers[1].userClaim: the issuer's tokens would name no Kubeflow user and be refused"]),
    ("machine and user", _with("auth", _set(["extraIssuers", 0, "machineIdentity"], {"user": "ci@machines.example.com"})),
     ["auth.extraIssuers[0].machineIdentity: a token names either a user (userClaim) or a machine"]),
    ("no service-account audience", _with("auth", _set(["serviceAccountAudiences"], [])),
     ["auth.serviceAccountAudiences: required: without one the gateway accepts every pod's service-account"]),
    ("machine identity not a user", _with("auth", _set(["extraIssuers", 1, "machineIdentity", "user"], "robot@machines.example.com")),
     ["auth.extraIssuers[1].machineIdentity.user: 'robot@machines.example.com' is not listed under tenancy.users"]),
    ("machine identity granted nothing", _with("tenancy", _set(["profiles", 0, "contributors"], [{"group": "vision-team", "role": "edit"}])),
     ["auth.extraIssuers[1].machineIdentity.user: 'ci-ml-pipelines@machines.example.com' is a contributor of no profile"]),
    ("proxy", _with("auth", _set(["proxy"], "oauth2_proxy")), ["auth.proxy: 'oauth2_proxy' is not one of 'oauth2-proxy', 'authservice' (did you mean 'oauth2-proxy'?)"]),
    ("upstream proxy kept", _with("kubeflow", _set(["exclude"], ["istio", "argo", "dex"])), ["kubeflow.exclude: add 'oauth2-proxy': auth deploys its own oauth2-proxy"]),
    ("old istio", _with("kubeflow", _set(["mesh", "istioVersion"], "1.18")), ["kubeflow.mesh.istioVersion: 1.18 is older than 1.20"]),
    ("email", _with("tenancy", _set(["users", 0], "alice-at-example.com")), ["tenancy.users: 'alice-at-example.com' is not an email address"]),
    ("profile name", _with("tenancy", _set(["profiles", 0, "name"], "Alice")), ["tenancy.profiles[0].name: 'Alice' is not a valid Kubernetes name"]),
    ("unknown group", _with("tenancy", _set(["profiles", 0, "contributors", 0, "group"], "nlp-team")), ["tenancy.profiles[0].contributors[0].group: 'nlp-team' is not listed under tenancy.groups"]),
    ("duplicate profile", _with("tenancy", _set(["profiles", 1, "name"], "alice")), ["tenancy.profiles[1].name: 'alice' is listed twice"]),
    ("unknown pool", _with("tenancy", _set(["profiles", 0, "gpuPools"], ["gpu-h100"])), ["tenancy.profiles[0].gpuPools[0]: 'gpu-h100' is not a gpu.pools name (gpu-a10g)"]),
    # AWS rules the mock runtime would accept but EKS, ACM, S3, KMS or the load balancer controller refuse.
    ("acm first name", _with("dns", _set(["host"], "a" * 50 + ".dev.ml.example.com")), ["dns.host: '" + "a" * 50 + ".dev.ml.example.com' is 69 characters; ACM refuses"]),
    ("san outside zone", {"certificate": {"subjectAlternativeNames": ["*.example.org"]}}, ["certificate.subjectAlternativeNames[0]: '*.example.org' is not inside the hosted zone"]),
    ("ipv6 source on ipv4 nlb", _with("ingress", _set(["sourceCidrs"], ["2001:db8::/32"])), ["ingress.sourceCidrs[0]: '2001:db8::/32' is IPv6 but ipAddressType is ipv4"]),
    ("too many security groups", _with("ingress", lambda d: d.update(sourceCidrs=[], securityGroups=[f"sg-0000000{i}" for i in range(6)])), ["ingress.securityGroups: an NLB takes at most 5 security groups"]),
    ("oidc arn resource", {"identity": {"oidcProviderArn": "arn:aws:iam::111111111111:role/x"}}, ["identity.oidcProviderArn: 'arn:aws:iam::111111111111:role/x' does not name a oidc-provider"]),
    ("argo service account", {"identity": {"argoServiceAccounts": ["Argo_Server"]}}, ["identity.argoServiceAccounts[0]: 'Argo_Server' is not a valid Kubernetes name"]),
    ("bucket name too long", _with("artifacts", _set(["bucketPrefix"], "b" * 60)), ["artifacts.bucketPrefix: gives the bucket name '" + "b" * 60 + "-pipelines' is not a valid S3 bucket name"]),
    ("kms key region", _with("artifacts", _set(["buckets", 0, "kmsKeyArn"], "arn:aws:kms:eu-west-1:111111111111:key/6f1c2a9e")), ["artifacts.buckets[0].kmsKeyArn: the key is in 'eu-west-1', the buckets in 'us-west-2'"]),
    ("protect with force destroy", {"protect": True}, ["artifacts.forceDestroy: contradicts protect: true"]),
    ("negative min size", _with("gpu", _set(["pools", 0, "minSize"], -1)), ["gpu.pools[0].minSize: -1 is outside 0..450"]),
    ("warm above max", _with("gpu", _set(["pools", 0, "warmNodes"], 3)), ["gpu.pools[0].warmNodes: 3 is above maxSize 2"]),
    ("eks label key length", _with("gpu", _set(["pools", 0, "labels", "gpu.ml.example.com/" + "k" * 50], "x")), ["gpu.pools[0].labels.gpu.ml.example.com/" + "k" * 50 + ": EKS label keys are at most 63 characters"]),
    ("empty label value", _with("gpu", _set(["pools", 0, "labels", "team"], "")), ["gpu.pools[0].labels.team: EKS refuses empty label values"]),
    ("reserved label subdomain", _with("gpu", _set(["pools", 0, "labels", "node.kubernetes.io/gpu"], "a10g")), ["gpu.pools[0].labels.node.kubernetes.io/gpu: EKS refuses labels"]),
    ("taint key length", _with("gpu", _set(["pools", 0, "taints", 0, "key"], "gpu.ml.example.com/" + "t" * 50)), ["gpu.pools[0].taints[0].key: EKS taint keys are at most 63 characters"]),
    ("taint key twice", _with("gpu", lambda g: g["pools"][0]["taints"].append({"key": "workload", "value": "ai-ml", "effect": "NO_EXECUTE"})), ["gpu.pools[0].taints: a taint key is listed twice"]),
    ("not a gpu instance", _with("gpu", _set(["pools", 0, "instanceTypes"], ["m5.xlarge"])), ["gpu.pools[0].instanceTypes[0]: 'm5.xlarge' has no NVIDIA GPU"]),
    ("arm instance on x86 ami", _with("gpu", _set(["pools", 0, "instanceTypes"], ["g5g.xlarge"])), ["gpu.pools[0].instanceTypes[0]: 'g5g.xlarge' is Graviton (ARM) but amiType is AL2023_x86_64_NVIDIA"]),
    ("node group name", _with("cluster", _set(["name"], "c" * 60)), ["gpu.pools[0].name: gives the node group name '" + "c" * 60 + "-gpu-a10g'; EKS allows 1 to 63"]),
    ("member email", _with("tenancy", _set(["groups", 0, "members", 0], "alice")), ["tenancy.groups[0].members: 'alice' is not an email address"]),
    ("owner email", _with("tenancy", _set(["profiles", 2, "owner"], "carol")), ["tenancy.profiles[2].owner: 'carol' is not an email address"]),
    ("duplicate owner", _with("tenancy", _set(["profiles", 2, "owner"], "alice@example.com")), ["tenancy.profiles[2].owner: 'alice@example.com' already owns another profile"]),
    ("unknown owner", _with("tenancy", _set(["profiles", 2, "owner"], "zed@example.com")), ["tenancy.profiles[2].owner: 'zed@example.com' is not listed under tenancy.users"]),
    ("unknown member", _with("tenancy", lambda t: t["groups"][0]["members"].append("zed@example.com")), ["tenancy.groups[0].members[2]: 'zed@example.com' is not listed under tenancy.users"]),
    ("unknown contributor", _with("tenancy", _set(["profiles", 1, "contributors", 0, "user"], "zed@example.com")), ["tenancy.profiles[1].contributors[0].user: 'zed@example.com' is not listed under tenancy.users"]),
    ("user and group", _with("tenancy", _set(["profiles", 1, "contributors", 0, "group"], "vision-team")), ["tenancy.profiles[1].contributors[0]: name exactly one of user or group"]),
    ("claim-only group", _with("tenancy", _set(["groups", 0, "members"], [])), ["tenancy.groups[0].members: a group needs its members"]),
    ("upper-case email", _with("tenancy", _set(["users", 3], "Dan@example.com")), ["tenancy.users[3]: 'Dan@example.com' must be written in lower case"]),
    ("platform namespace", _with("tenancy", _set(["profiles", 2, "name"], "kubeflow")), ["tenancy.profiles[2].name: 'kubeflow' is a platform namespace"]),
    ("platform label", _with("tenancy", _set(["profiles", 2, "labels"], {"istio-injection": "disabled"})), ["tenancy.profiles[2].labels.istio-injection: is set by the platform"]),
    ("gpu pools without quota", _with("tenancy", _set(["profiles", 0, "quota", "gpus"], 0)), ["tenancy.profiles[0].quota.gpus: gpuPools without a GPU quota"]),
    ("quota beyond pools", _with("tenancy", _set(["profiles", 0, "quota", "gpus"], 5)), ["tenancy.profiles[0].quota.gpus: 5 is more than its pools can ever offer (2"]),
    ("quota quantity", _with("tenancy", _set(["profiles", 0, "quota", "cpu"], "lots")), ["tenancy.profiles[0].quota.cpu: 'lots' is not a Kubernetes quantity"]),
    ("principal", _with("tenancy", _set(["trustedPrincipals"], ["istio-ingressgateway"])), ["tenancy.trustedPrincipals: 'istio-ingressgateway' is not an Istio principal"]),
    ("trusted principals without the gateway", _with("tenancy", _set(["trustedPrincipals"], ["cluster.local/ns/kubeflow/sa/ml-pipeline-ui"])), ["tenancy.trustedPrincipals: does not name the ingress gateway's principal 'cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account'"]),
    ("unknown top-level key", {"kubeflw": {"version": "1.10.2"}}, ["kubeflw: unknown key; did you mean 'kubeflow'?"]),
    ("protect type", {"protect": "maybe"}, ["protect: expected true or false, got string 'maybe'"]),
    ("list given as a string", {"certificate": {"subjectAlternativeNames": "x.dev.ml.example.com"}},
     ["certificate.subjectAlternativeNames: expected a list of strings, got string 'x.dev.ml.example.com'; write ['x.dev.ml.example.com']"]),
    ("nested typo", _with("cluster", lambda c: c.update(namee="ml-dev")), ["cluster.namee: unknown key; did you mean 'name'?"]),
    ("recovery mode", {"recovery": {"mode": "passive"}}, ["recovery.mode: 'passive' is not one of 'primary', 'standby'"]),
    ("recovery peer in its own region", {"recovery": {"mode": "standby", "peer": {"stack": "dev-us-west-2", "region": "us-west-2", "bucketPrefix": "example-ml-dev-use1"}}},
     ["recovery.peer.region: 'us-west-2' is this stack's own region (aws.region): the peer must run in another region"]),
]


def _expect_refused(overrides: dict, secrets=None) -> str:
    with pytest.raises(pulumi.RunError) as caught:
        run_stack("dev", overrides, secrets=secrets)
    assert caught.value.program_run.resources == [], "resources were registered despite bad settings"
    return str(caught.value)


@pytest.mark.parametrize("overrides,expected", [row[1:] for row in BAD_SETTINGS], ids=[row[0] for row in BAD_SETTINGS])
def test_bad_setting_is_refused_with_its_key_path(overrides, expected, tmp_path):
    if callable(overrides):
        overrides = overrides(tmp_path)
    message = _expect_refused(overrides)
    for line in expected:
        assert line in message
    assert message.count("\n  - ") == len(expected), message
    assert "Traceback" not in message


def test_all_problems_are_reported_at_once():
    rows = {name: (overrides, expected) for name, overrides, expected in BAD_SETTINGS}
    chosen = ["region", "missing cluster name", "typo key", "cidr", "max below min", "email"]
    overrides = {}
    for name in chosen:
        overrides.update(rows[name][0])
    message = _expect_refused(overrides)
    assert f"{len(chosen)} configuration problems" in message
    for name in chosen:
        assert rows[name][1][0] in message


#: Secrets only some settings need, and the settings that make them needed.
_SECRETS_NEEDED_BY = {
    "objectStoreAccessKeyId": {"kubeflow": {"objectStore": {"staticKeys": True}}},
    "objectStoreSecretAccessKey": {"kubeflow": {"objectStore": {"staticKeys": True}}},
}


@pytest.mark.parametrize("missing", sorted(MARKER_SECRETS))
def test_a_missing_secret_names_the_command_that_sets_it(missing):
    secrets = {k: v for k, v in MARKER_SECRETS.items() if k != missing}
    overrides = {}
    if missing in _SECRETS_NEEDED_BY:
        kubeflow = copy.deepcopy(stack_config("dev")["kubeflow-platform:kubeflow"])
        kubeflow["manifests"] = str(manifests_path())
        kubeflow.update(_SECRETS_NEEDED_BY[missing]["kubeflow"])
        overrides = {"kubeflow": kubeflow}
    message = _expect_refused(overrides, secrets=secrets)
    assert f"{missing}: is required" in message
    assert f"pulumi config set --secret {missing} <value>" in message


def test_secrets_stay_pulumi_secrets():
    import config
    from config import Secrets

    settings_secrets = Secrets(auth_client_secret=pulumi.Output.secret("x"))
    assert isinstance(settings_secrets.auth_client_secret, pulumi.Output)
    # The message for bad settings never carries a secret's value.
    message = _expect_refused(_with("aws", _set(["region"], "nowhere")))
    for value in MARKER_SECRETS.values():
        assert value not in message
    assert "authClientSecret" in config.SECRET_KEYS
