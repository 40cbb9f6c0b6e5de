"""EKS Pod Identity as plain data: the trust policy, session-tag scoping, and which Kubeflow releases can use it.

No Pulumi here. Pod Identity trusts the service principal `pods.eks.amazonaws.com` (for any cluster of the
account) and tags every session with the pod's cluster, namespace and service account, so the tags, not the
principal, are what keep a role to its workloads:

- the trust policy allows `sts:AssumeRole` and `sts:TagSession` and conditions them on `aws:RequestTag/...`
  (docs.aws.amazon.com/eks/latest/userguide/pod-id-role.html, "Setting Conditions");
- the permissions repeat the namespace and cluster as `aws:PrincipalTag/...` on every statement, so a role
  assumed through some other path still reaches nothing outside its own namespace's prefix
  (docs.aws.amazon.com/eks/latest/userguide/pod-id-abac.html, the session tags EKS adds by default; they are
  on unless an association sets `disableSessionTags`, docs.aws.amazon.com/eks/latest/APIReference/API_PodIdentityAssociation).

A workload can use Pod Identity only when the AWS SDK in its container reads the container credential
provider's `AWS_CONTAINER_CREDENTIALS_FULL_URI` and token file with a non-loopback host
(docs.aws.amazon.com/eks/latest/userguide/pod-id-minimum-sdk.html). `POD_IDENTITY_SDKS` records, per release
and component, the SDK version that decides it, read at the tag the release pins; the contracts table
(manifests/facts/contracts/pod-identity.yaml) carries the same sources.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from manifests.iam import POLICY_VERSION

#: The service principal EKS Pod Identity assumes roles as.
POD_IDENTITY_PRINCIPAL = "pods.eks.amazonaws.com"
#: Both actions are required: the agent assumes the role and adds session tags in the same call.
POD_IDENTITY_ACTIONS = ("sts:AssumeRole", "sts:TagSession")
#: Session tags EKS Pod Identity adds (docs.aws.amazon.com/eks/latest/userguide/pod-id-abac.html).
TAG_CLUSTER = "eks-cluster-name"
TAG_NAMESPACE = "kubernetes-namespace"
TAG_SERVICE_ACCOUNT = "kubernetes-service-account"
#: The EKS add-on that runs the agent pods reach at 169.254.170.23 (docs.aws.amazon.com/eks/latest/userguide/pod-id-agent-setup.html).
AGENT_ADDON = "eks-pod-identity-agent"


@dataclass(frozen=True)
class SdkFact:
    """The AWS client a component's container uses, its version at the release's tag, and whether that version
    has the container credential provider Pod Identity needs."""

    component: str
    sdk: str
    version: str
    pod_identity: bool
    source: str


#: AWS's minimum versions (docs.aws.amazon.com/eks/latest/userguide/pod-id-minimum-sdk.html); minio-go's from
#: minio/minio-go v7.0.69, which added the EKS Pod Identity branch to its IAM provider. minio-go v6 sends the full
#: URI only to loopback hosts, which 169.254.170.23 is not.
MINIMUM_SDKS = {
    "aws-sdk-go-v2/config": "v1.25.0 (release 2023-11-14)",
    "aws-sdk-go": "v1.47.11",
    "@aws-sdk/credential-providers": "3.458.0",
    "boto3": "1.34.41",
    "minio-go": "v7.0.69",
}

_KFP_API = "KFP API server"
_KFP_DRIVER = "KFP driver and launcher"
_KFP_UI = "KFP UI"
_ARGO = "Argo executor"
_KSERVE = "KServe storage initializer"

#: Per release, the SDK that decides each AWS-calling component. At 1.10.2 and 1.9.1 KFP still reads S3 with
#: minio-go v6 and Argo's executor with a minio-go v7 older than v7.0.69; the UI of 1.9.1 locks a JS SDK
#: older than 3.458.0.
POD_IDENTITY_SDKS: dict[str, tuple[SdkFact, ...]] = {
    "26.03": (
        SdkFact(_KFP_API, "aws-sdk-go-v2/config", "v1.29.14", True, "kubeflow/pipelines@2.16.0 go.mod:73"),
        SdkFact(_KFP_DRIVER, "gocloud.dev s3blob over aws-sdk-go-v2/config", "v1.29.14", True,
                "kubeflow/pipelines@2.16.0 go.mod:46, 73"),
        SdkFact(_KFP_UI, "@aws-sdk/credential-providers", "3.980.0", True,
                "kubeflow/pipelines@2.16.0 frontend/server/package-lock.json:461-462"),
        SdkFact(_ARGO, "minio-go", "v7.0.92", True, "argoproj/argo-workflows@v3.7.3 go.mod:43"),
        SdkFact(_KSERVE, "boto3", "1.38.33", True, "kserve/kserve@v0.16.0 python/storage/uv.lock:70-71"),
    ),
    "1.11.0": (
        SdkFact(_KFP_API, "aws-sdk-go-v2/config", "v1.29.14", True, "kubeflow/pipelines@2.15.0 go.mod:73"),
        SdkFact(_KFP_DRIVER, "gocloud.dev s3blob over aws-sdk-go-v2/config", "v1.29.14", True,
                "kubeflow/pipelines@2.15.0 go.mod:46, 73"),
        SdkFact(_KFP_UI, "@aws-sdk/credential-providers", "3.621.0", True,
                "kubeflow/pipelines@2.15.0 frontend/server/package-lock.json:573-574"),
        SdkFact(_ARGO, "minio-go", "v7.0.92", True, "argoproj/argo-workflows@v3.7.3 go.mod:43"),
        SdkFact(_KSERVE, "boto3", "1.38.4", True, "kserve/kserve@v0.15.2 python/kserve/poetry.lock:496-497"),
    ),
    "1.10.2": (
        SdkFact(_KFP_API, "minio-go", "v6.0.57", False, "kubeflow/pipelines@2.5.0 go.mod:37"),
        SdkFact(_KFP_DRIVER, "gocloud.dev s3blob over aws-sdk-go", "v1.55.5", True,
                "kubeflow/pipelines@2.5.0 go.mod:11, 47"),
        SdkFact(_KFP_UI, "@aws-sdk/credential-providers", "3.621.0", True,
                "kubeflow/pipelines@2.5.0 frontend/server/package-lock.json:559-560"),
        SdkFact(_ARGO, "minio-go", "v7.0.65", False, "argoproj/argo-workflows@v3.5.14 go.mod:40"),
        SdkFact(_KSERVE, "boto3", "1.37.21", True, "kserve/kserve@v0.15.0 python/kserve/poetry.lock:495-496"),
    ),
    "1.9.1": (
        SdkFact(_KFP_API, "minio-go", "v6.0.57", False, "kubeflow/pipelines@2.3.0 go.mod:39"),
        SdkFact(_KFP_DRIVER, "gocloud.dev s3blob over aws-sdk-go", "v1.45.25", False,
                "kubeflow/pipelines@2.3.0 go.mod:7, 49"),
        SdkFact(_KFP_UI, "@aws-sdk/credential-providers", "3.359.0", False,
                "kubeflow/pipelines@2.3.0 frontend/server/package-lock.json:493-494"),
        SdkFact(_ARGO, "minio-go", "v7.0.61", False, "argoproj/argo-workflows@v3.4.17 go.mod:38"),
        SdkFact(_KSERVE, "boto3", "1.34.89", True, "kserve/kserve@v0.13.1 python/kserve/poetry.lock:362-363"),
    ),
}


def pod_identity_blockers(release: str) -> list[SdkFact]:
    """The components of `release` whose SDK cannot use Pod Identity; an unknown release is all blockers
    unknown, so the caller refuses it on its own terms."""
    return [fact for fact in POD_IDENTITY_SDKS.get(release, ()) if not fact.pod_identity]


def pod_identity_refusal(release: str) -> str | None:
    """Why `release` cannot run with Pod Identity, naming each component and its SDK version, or None."""
    if release not in POD_IDENTITY_SDKS:
        return f"no SDK facts are recorded for Kubeflow {release!r}, so whether its components can use Pod Identity is unknown"
    blockers = pod_identity_blockers(release)
    if not blockers:
        return None
    names = "; ".join(
        f"{fact.component} ({fact.sdk} {fact.version}, {fact.source}; needs {MINIMUM_SDKS.get(fact.sdk.split(' ')[-1], 'a newer SDK')})"
        for fact in blockers
    )
    return (
        f"Kubeflow {release} cannot use EKS Pod Identity: {names}. Use identity.mechanism: irsa with this release, "
        "or a release whose SDKs read the container credential provider (26.03, 1.11.0)"
    )


def pod_identity_trust_policy(*, cluster_name: str, subjects: Sequence[tuple[str, str]]) -> dict:
    """Trust policy letting exactly `subjects` ((namespace, service account) pairs) of `cluster_name` assume a
    role through EKS Pod Identity. The principal serves every cluster of every account that has an association
    for the role, so the request tags carry the whole scoping: one namespace's service accounts, one cluster."""
    if not cluster_name:
        raise ValueError("a Pod Identity role needs the cluster name its sessions are tagged with")
    if not subjects:
        raise ValueError("a Pod Identity role needs at least one (namespace, service account)")
    namespaces = sorted({namespace for namespace, _ in subjects})
    accounts = sorted({account for _, account in subjects})
    if len(namespaces) != 1:
        # Tags are matched one by one: two namespaces and two accounts would admit their cross product.
        raise ValueError(f"a Pod Identity role serves one namespace, not {namespaces}")
    for namespace, account in subjects:
        if not namespace or not account:
            raise ValueError(f"({namespace!r}, {account!r}) is not a namespace and service account name")
    return {
        "Version": POLICY_VERSION,
        "Statement": [
            {
                "Sid": "AllowEksAuthToAssumeRoleForPodIdentity",
                "Effect": "Allow",
                "Principal": {"Service": POD_IDENTITY_PRINCIPAL},
                "Action": list(POD_IDENTITY_ACTIONS),
                "Condition": {
                    "StringEquals": {
                        f"aws:RequestTag/{TAG_CLUSTER}": cluster_name,
                        f"aws:RequestTag/{TAG_NAMESPACE}": namespaces[0],
                        f"aws:RequestTag/{TAG_SERVICE_ACCOUNT}": accounts,
                    }
                },
            }
        ],
    }


def scoped_to_session(policy: dict, *, cluster_name: str, namespace: str) -> dict:
    """`policy` with every Allow statement conditioned on the session's cluster and namespace tags
    (`aws:PrincipalTag/...`): the role's permissions, including its S3 prefix, hold only for sessions EKS Pod
    Identity tagged for this namespace of this cluster. Deny statements are left as they are."""
    scoped = copy.deepcopy(policy)
    for statement in scoped.get("Statement", []):
        if statement.get("Effect") != "Allow":
            continue
        condition: dict[str, Any] = statement.setdefault("Condition", {})
        equals = condition.setdefault("StringEquals", {})
        equals[f"aws:PrincipalTag/{TAG_CLUSTER}"] = cluster_name
        equals[f"aws:PrincipalTag/{TAG_NAMESPACE}"] = namespace
    return scoped
