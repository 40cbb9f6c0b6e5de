"""ACM: one certificate for the hosts and SANs, validated by one DNS record per validation name."""

from __future__ import annotations

from tests.conftest import run_stack
from tools.mock_runtime import stack_config

CERTIFICATE = "aws:acm/certificate:Certificate"


def _validation_records(run):
    return [r for r in run.of_type("aws:route53/record:Record") if r.name.startswith("certificate-validation-")]


def test_the_certificate_covers_the_hosts_and_sans_once_each(stack_run):
    config = stack_config(stack_run.stack)
    dns, sans = config["kubeflow-platform:dns"], config["kubeflow-platform:certificate"]["subjectAlternativeNames"]
    (certificate,) = stack_run.of_type(CERTIFICATE)
    assert certificate.inputs["domainName"] == dns["host"]
    assert certificate.inputs["validationMethod"] == "DNS"
    serving = [f"*.{dns['servingDomain']}"] if dns.get("servingDomain") else []
    assert certificate.inputs.get("subjectAlternativeNames", []) == [*dns.get("extraHosts", []), *sans, *serving]


def test_validation_records_come_from_the_domain_validation_options(stack_run):
    (certificate,) = stack_run.of_type(CERTIFICATE)
    options = {o["resourceRecordName"]: o for o in certificate.outputs["domainValidationOptions"]}
    records = _validation_records(stack_run)
    assert {r.inputs["name"] for r in records} == set(options)
    for record in records:
        option = options[record.inputs["name"]]
        assert record.inputs["type"] == option["resourceRecordType"] == "CNAME"
        assert record.inputs["records"] == [option["resourceRecordValue"]]
        assert record.inputs["zoneId"] == stack_run.exports["zoneId"]
        assert record.inputs["allowOverwrite"] is True


def test_a_wildcard_and_its_apex_share_one_validation_record():
    dns = stack_config("prod")["kubeflow-platform:dns"]
    run = run_stack("prod", {"certificate": {"subjectAlternativeNames": ["*.ml.example.com", "ml.example.com"]}})
    names = [r.inputs["name"] for r in _validation_records(run)]
    assert len(names) == len(set(names))
    # kubeflow., pipelines., one shared by *.ml.example.com and ml.example.com, one for *.serving.ml.example.com
    assert len(names) == len(dns["extraHosts"]) + 3
    assert sum(1 for n in names if n.endswith(".ml.example.com.") and n.count(".") == 4) == 1


def test_the_exported_arn_waits_for_validation(stack_run):
    (validation,) = stack_run.of_type("aws:acm/certificateValidation:CertificateValidation")
    (certificate,) = stack_run.of_type(CERTIFICATE)
    assert validation.inputs["certificateArn"] == certificate.outputs["arn"]
    assert sorted(validation.inputs["validationRecordFqdns"]) == sorted(
        r.inputs["name"].rstrip(".") for r in _validation_records(stack_run)
    )
    assert stack_run.exports["certificateArn"] == certificate.outputs["arn"]
    region = stack_config(stack_run.stack)["kubeflow-platform:aws"]["region"]
    assert stack_run.exports["certificateArn"].split(":")[3] == region
