"""Every backend the central gateway routes to is behind an AuthorizationPolicy, in the plan `pulumi up` applies.

A workload no AuthorizationPolicy selects accepts every caller of the mesh (Istio allows when no policy applies to
the workload), whatever the gateway checked: ML Metadata sat that way behind `/ml_metadata`.
"""

from __future__ import annotations

import pytest

from tests.plans import evaluated_plan
from tools.plan import kubernetes_objects


def _objects(stack: str) -> list[dict]:
    plan, _ = evaluated_plan(stack)
    return [found.obj for found in kubernetes_objects(plan).objects]


def _pod_labels(objects: list[dict], namespace: str, service: str) -> list[dict]:
    (svc,) = [o for o in objects if o["kind"] == "Service" and o["metadata"]["name"] == service
              and o["metadata"].get("namespace") == namespace]
    selector = svc["spec"].get("selector") or {}
    pods = []
    for obj in objects:
        if obj["kind"] not in ("Deployment", "StatefulSet") or obj["metadata"].get("namespace") != namespace:
            continue
        labels = obj["spec"]["template"]["metadata"].get("labels") or {}
        if selector and selector.items() <= labels.items():
            pods.append(labels)
    return pods


def _allowed_by_some_policy(objects: list[dict], namespace: str, labels: dict) -> list[str]:
    names = []
    for obj in objects:
        if obj["kind"] != "AuthorizationPolicy" or obj["metadata"].get("namespace") != namespace:
            continue
        if obj["spec"].get("action", "ALLOW") != "ALLOW":
            continue
        wanted = (obj["spec"].get("selector") or {}).get("matchLabels") or {}
        if wanted.items() <= labels.items():
            names.append(obj["metadata"]["name"])
    return names


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_gateway_route_leads_to_a_workload_under_an_allow_policy(stack):
    objects = _objects(stack)
    gateways = {f"{o['metadata']['namespace']}/{o['metadata']['name']}" for o in objects if o["kind"] == "Gateway"}
    unguarded, backends = [], set()
    for vs in (o for o in objects if o["kind"] == "VirtualService"):
        if not set(vs["spec"].get("gateways") or ()) & gateways:
            continue
        for route in vs["spec"].get("http") or ():
            for destination in route.get("route") or ():
                host = destination["destination"]["host"]
                service, namespace = host.split(".")[:2]
                backends.add(f"{namespace}/{service}")
                for labels in _pod_labels(objects, namespace, service):
                    if not _allowed_by_some_policy(objects, namespace, labels):
                        unguarded.append(f"{namespace}/{service} {labels}")
    assert "kubeflow/metadata-envoy-service" in backends
    assert unguarded == []
