"""Every IAM policy document the program builds, linted with parliament.

The documents are gathered from what both stacks register under the mock runtime: role trust policies
(`assumeRolePolicy`), permission policies (`aws:iam/*` `policy`, inline policies) and S3 bucket
policies. Every document a builder in `manifests/` produces ends up in one of those registrations, so
the stack runs are the complete set. A finding fails the test unless a suppression below names it, the
kind of document it applies to, and why it is not a problem.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

import pytest
from parliament import analyze_policy_string



@dataclass(frozen=True)
class IamDocument:
    where: str
    #: "trust" (a role's assumeRolePolicy), "identity" (permissions) or "resource" (a bucket policy)
    kind: str
    text: str


@dataclass(frozen=True)
class Suppression:
    issue: str
    kind: str
    applies: Callable[[Any], bool]
    reason: str


SUPPRESSIONS = (
    Suppression(
        "MALFORMED", "trust",
        lambda finding: "neither Resource nor NotResource" in str(finding.detail),
        "A role trust policy is a resource policy on the role itself: IAM refuses a Resource element in it, "
        "parliament's identity-policy rule expects one.",
    ),
    Suppression(
        "UNKNOWN_FEDERATION_SOURCE", "trust",
        lambda finding: ":oidc-provider/oidc.eks." in str(finding.detail),
        "parliament only knows SAML, Cognito and the big web identity providers; an EKS cluster's IAM OIDC "
        "provider ARN (arn:aws:iam::<account>:oidc-provider/oidc.eks.<region>.amazonaws.com/id/<id>) is the "
        "documented IRSA principal.",
    ),
)


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Statement" in value:
        return json.dumps(value)
    return None


def iam_documents(registrations) -> list[IamDocument]:
    documents = []
    for resource in registrations:
        where = f"{resource.type} {resource.name}"
        inputs = resource.inputs
        if resource.type.startswith("aws:iam/"):
            if _text(inputs.get("assumeRolePolicy")):
                documents.append(IamDocument(f"{where} assumeRolePolicy", "trust", _text(inputs["assumeRolePolicy"])))
            if _text(inputs.get("policy")):
                documents.append(IamDocument(f"{where} policy", "identity", _text(inputs["policy"])))
            for index, inline in enumerate(inputs.get("inlinePolicies") or []):
                if _text(inline.get("policy")):
                    documents.append(IamDocument(f"{where} inlinePolicies[{index}]", "identity", _text(inline["policy"])))
        elif resource.type == "aws:s3/bucketPolicy:BucketPolicy" and _text(inputs.get("policy")):
            documents.append(IamDocument(f"{where} policy", "resource", _text(inputs["policy"])))
    return documents


def lint(document: IamDocument) -> tuple[list[str], list[str]]:
    """(unsuppressed findings, suppressed findings with their reasons) for one document."""
    findings, suppressed = [], []
    for finding in analyze_policy_string(document.text).findings:
        rule = next((s for s in SUPPRESSIONS if s.issue == finding.issue and s.kind == document.kind and s.applies(finding)), None)
        line = f"{document.where}: {finding.issue} {finding.detail}"
        (suppressed if rule else findings).append(line if rule is None else f"{line} (suppressed: {rule.reason})")
    return findings, suppressed


_DOCUMENTS: dict[tuple[str, str], list[IamDocument]] = {}


def _documents(stack_run) -> list[IamDocument]:
    # Keyed by the mechanism too: dev runs both as its stack file has it (Pod Identity) and on IRSA.
    key = (stack_run.stack, stack_run.exports["identityMechanism"])
    if key not in _DOCUMENTS:
        _DOCUMENTS[key] = iam_documents(stack_run.resources)
    return _DOCUMENTS[key]


def test_every_iam_document_the_stacks_register_is_clean_or_suppressed_with_a_reason(stack_run):
    problems = [finding for document in _documents(stack_run) for finding in lint(document)[0]]
    assert problems == []


def test_the_stacks_register_iam_documents_to_lint(stack_run):
    """Guards the test above against passing on nothing: both stacks create workload roles and buckets."""
    kinds = {document.kind for document in _documents(stack_run)}
    assert {"trust", "identity", "resource"} <= kinds, f"{stack_run.stack}: IAM documents found: {sorted(kinds) or 'none'}"


def test_every_suppression_is_still_needed(irsa_run):
    """A suppression no document of the stack needs any more is removed, not kept as a blank cheque.

    Both suppressions are for IRSA's web-identity trust, so each stack is checked on IRSA (prod as it is, dev
    with identity.mechanism: irsa); dev's Pod Identity documents are linted in tests/test_pod_identity.py."""
    used = {line.split(": ", 1)[1].split(" ", 1)[0] for document in _documents(irsa_run) for line in lint(document)[1]}
    assert used == {s.issue for s in SUPPRESSIONS}


# --------------------------------------------------------------------- the linter and suppressions

ISSUER = "oidc.eks.us-west-2.amazonaws.com/id/EXAMPLE0123456789ABCDEF"
IRSA_TRUST = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Action": "sts:AssumeRoleWithWebIdentity",
    "Principal": {"Federated": f"arn:aws:iam::111111111111:oidc-provider/{ISSUER}"},
    "Condition": {"StringEquals": {f"{ISSUER}:sub": "system:serviceaccount:kubeflow:ml-pipeline", f"{ISSUER}:aud": "sts.amazonaws.com"}}}]}


def test_an_irsa_trust_policy_is_clean_once_its_two_documented_findings_are_suppressed():
    findings, suppressed = lint(IamDocument("role trust", "trust", json.dumps(IRSA_TRUST)))
    assert findings == []
    assert sorted(line.split(": ", 1)[1].split(" ", 1)[0] for line in suppressed) == ["MALFORMED", "UNKNOWN_FEDERATION_SOURCE"]


def test_suppressions_do_not_hide_the_same_finding_elsewhere():
    # A permissions policy without Resource is malformed, and a federated principal that is not an EKS
    # cluster's provider is unknown: neither is suppressed.
    no_resource = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket"}]}
    assert lint(IamDocument("permissions", "identity", json.dumps(no_resource)))[0]
    foreign = json.loads(json.dumps(IRSA_TRUST))
    foreign["Statement"][0]["Principal"]["Federated"] = "arn:aws:iam::111111111111:oidc-provider/token.example.com"
    assert any("UNKNOWN_FEDERATION_SOURCE" in line for line in lint(IamDocument("role trust", "trust", json.dumps(foreign)))[0])


@pytest.mark.parametrize("statement,issue", [
    ({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::bucket"}, "RESOURCE_MISMATCH"),
    ({"Effect": "Allow", "Action": "s3:GetObjekt", "Resource": "arn:aws:s3:::bucket/*"}, "UNKNOWN_ACTION"),
])
def test_parliament_finds_what_it_is_here_for(statement, issue):
    findings, _ = lint(IamDocument("permissions", "identity", json.dumps({"Version": "2012-10-17", "Statement": [statement]})))
    assert any(issue in line for line in findings), findings
