"""Route 53: the zone is looked up or created, and every host aliases the NLB with the NLB's zone id."""

from __future__ import annotations

from tests.conftest import run_stack
from tools.mock_runtime import NLB_HOSTED_ZONE_IDS, stack_config

RECORD = "aws:route53/record:Record"


def _dns(stack: str) -> dict:
    return stack_config(stack)["kubeflow-platform:dns"]


def _serving_hosts(dns: dict) -> list[str]:
    return [f"*.{dns['servingDomain']}"] if dns.get("servingDomain") else []


def _alias_records(run):
    return [r for r in run.of_type(RECORD) if r.inputs.get("aliases")]


def test_every_host_gets_an_a_and_an_aaaa_alias_to_the_load_balancer(stack_run):
    dns = _dns(stack_run.stack)
    hosts = [dns["host"], *dns.get("extraHosts", []), *_serving_hosts(dns)]
    records = _alias_records(stack_run)
    assert sorted((r.inputs["name"], r.inputs["type"]) for r in records) == sorted(
        (h, t) for h in hosts for t in ("A", "AAAA")
    )
    for record in records:
        (alias,) = record.inputs["aliases"]
        assert alias["name"] == stack_run.exports["loadBalancerHostname"]
        assert alias["evaluateTargetHealth"] is True
        assert record.inputs["zoneId"] == stack_run.exports["zoneId"]
    assert stack_run.exports["dnsRecordNames"] == sorted(hosts)


def test_aliases_use_the_network_load_balancer_zone_of_the_region(stack_run):
    region = stack_config(stack_run.stack)["kubeflow-platform:aws"]["region"]
    lookups = [args for token, args in stack_run.invokes if token == "aws:lb/getHostedZoneId:getHostedZoneId"]
    assert lookups and all(args.get("loadBalancerType") == "network" for args in lookups)
    for record in _alias_records(stack_run):
        assert record.inputs["aliases"][0]["zoneId"] == NLB_HOSTED_ZONE_IDS[region]


def test_an_existing_public_zone_is_looked_up_not_created(stack_run):
    assert stack_run.of_type("aws:route53/zone:Zone") == []
    lookups = [args for token, args in stack_run.invokes if token == "aws:route53/getZone:getZone"]
    assert lookups == [{"name": _dns(stack_run.stack)["zoneName"], "privateZone": False}]


def test_a_created_zone_exports_its_name_servers_and_is_protected_in_prod():
    for stack, protected in (("dev", False), ("prod", True)):
        run = run_stack(stack, {"dns": {**_dns(stack), "createZone": True}})
        zone = run.named("aws:route53/zone:Zone", "dns-zone")
        assert zone.inputs["name"] == _dns(stack)["zoneName"]
        assert zone.inputs["forceDestroy"] is False
        assert zone.protect is protected
        assert len(run.exports["zoneNameServers"]) == 4
        assert run.exports["zoneId"] == zone.outputs["zoneId"]


def test_external_dns_mode_leaves_the_alias_records_to_external_dns():
    run = run_stack("dev", {"dns": {**_dns("dev"), "records": "external-dns"}})
    assert _alias_records(run) == []
    assert run.exports["dnsRecordNames"] == []
    patch = run.named("kubernetes:core/v1:ServicePatch", "ingress-service")
    assert patch.inputs["metadata"]["annotations"]["external-dns.alpha.kubernetes.io/hostname"] == ",".join(
        [_dns("dev")["host"], *_serving_hosts(_dns("dev"))]
    )
