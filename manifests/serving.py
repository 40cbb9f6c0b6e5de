"""Model serving's domain: where Knative and KServe put InferenceServices' routes (issue 14, point 7).

Knative names a route's host from three ConfigMaps in knative-serving, and net-istio marks the route's
Ingress ready only once the gateway pods answer a probe sent with that host
(knative-extensions/net-istio@knative-v1.16.0 pkg/reconciler/ingress/lister.go:62-100, ingress.go:254-270).
So the hosts Knative generates must be hosts the central Gateway serves, the NLB's certificate covers and
DNS resolves: one wildcard, `*.<serving domain>`, set up by the edge components from the same setting.

- `config-domain`: each key is a domain; one whose value has no selector is the default for every route
  (knative/serving@knative-v1.16.2 pkg/reconciler/route/config/domain.go:95-120). Without any such key
  Knative uses `svc.<cluster domain>`, and a route under it is cluster-local: no external Ingress host
  (pkg/reconciler/route/visibility/visibility.go:65-72).
- `config-network` `domain-template`: Knative's default `{{.Name}}.{{.Namespace}}.{{.Domain}}` puts the
  namespace in a label of its own, two labels under the domain, which a wildcard certificate does not cover
  (a wildcard matches one label); `{{.Name}}-{{.Namespace}}.{{.Domain}}` keeps every host one label deep.
  Cluster-local routes keep the default template (pkg/reconciler/route/domains/domains.go:117-124).
- `config-network` `default-external-scheme`: TLS ends at the NLB, so route URLs say https
  (pkg/reconciler/route/route.go:514-517).
- KServe's `inferenceservice-config` `ingress`: a serverless InferenceService's host is its predictor's
  (or transformer's) Knative host without the `-predictor` suffix (kserve/kserve@v0.15.0
  pkg/controller/v1beta1/inferenceservice/reconcilers/ingress/ingress_reconciler.go:163-197), so
  `<name>-<namespace>.<domain>` with the template above; `ingressDomain`/`domainTemplate` name the hosts of
  raw deployments (reconcilers/ingress/domain.go:42-67) and `urlScheme` the scheme of both
  (ingress_reconciler.go:239, 258).
- KServe's `ingress.pathTemplate`, which Kubeflow 26.03's manifests set (`/serving/{{ .Namespace }}/{{ .Name }}`),
  is removed. With it KServe reports every serverless InferenceService at `<urlScheme>://<ingressDomain>/<path>`
  and adds the bare `ingressDomain` to its VirtualService's hosts (kserve/kserve@v0.16.0
  pkg/controller/v1beta1/inferenceservice/reconcilers/ingress/ingress_reconciler.go:159-183, 568, 661): a
  host the serving wildcard's Gateway server, certificate and DNS records do not cover (a wildcard matches
  one label, never the domain itself), and without a serving domain upstream's `example.com`. Without it the
  reported URL is the one-label host above, as in every earlier release.
"""

from __future__ import annotations

import json

from manifests.objects import Change, TransformResult, clone, object_ref
from manifests.options import ServingOptions

KNATIVE_NAMESPACE = "knative-serving"
DOMAIN_CONFIGMAP = "config-domain"
NETWORK_CONFIGMAP = "config-network"
KSERVE_CONFIGMAP = "inferenceservice-config"
#: Knative's ConfigMaps document their options under this key; Knative skips it when reading.
EXAMPLE_KEY = "_example"
#: One label per route under the domain (see the module docstring), so the wildcard certificate covers it.
KNATIVE_DOMAIN_TEMPLATE = "{{.Name}}-{{.Namespace}}.{{.Domain}}"
#: KServe's default template, written out so the hosts stay one label deep whatever a release's default.
KSERVE_DOMAIN_TEMPLATE = "{{ .Name }}-{{ .Namespace }}.{{ .IngressDomain }}"
#: TLS ends at the NLB (components/ingress.py), whose only listener for these hosts is 443.
EXTERNAL_SCHEME = "https"
#: KServe's path-based URLs (see the module docstring): removed whatever the serving domain.
KSERVE_PATH_TEMPLATE = "pathTemplate"


def knative_domain_data(data: dict, domain: str | None) -> dict:
    """config-domain's data: the serving domain as the default for every route, or no default at all so
    Knative falls back to its cluster-local domain. The documentation key stays."""
    kept = {EXAMPLE_KEY: data[EXAMPLE_KEY]} if EXAMPLE_KEY in data else {}
    # An empty value is a domain without a selector: the default (domain.go:107-111).
    return {**kept, domain: ""} if domain else kept


def set_serving_domain(objects: list[dict], options: ServingOptions) -> TransformResult:
    """Knative's and KServe's ConfigMaps name the serving domain (or keep every route cluster-local)."""
    domain = options.domain.rstrip(".") if options.domain else None
    result, changes = [], []
    for obj in objects:
        patched = _patched(obj, domain)
        if patched is None:
            result.append(obj)
            continue
        copy, what = patched
        changes.extend(Change(object_ref(obj), entry) for entry in what)
        result.append(copy)
    return TransformResult(result, tuple(changes))


def _patched(obj: dict, domain: str | None) -> tuple[dict, list[str]] | None:
    if obj.get("kind") != "ConfigMap":
        return None
    metadata = obj.get("metadata") or {}
    name, namespace = metadata.get("name"), metadata.get("namespace")
    data = obj.get("data") or {}
    new_data = dict(data)
    what: list[str] = []
    if namespace == KNATIVE_NAMESPACE and name == DOMAIN_CONFIGMAP:
        new_data = knative_domain_data(data, domain)
        removed = sorted(set(data) - set(new_data))
        if removed:
            what.append(f"data: removed domains {removed}")
        if domain and domain not in data:
            what.append(f"data[{domain!r}]: the default domain of every route")
        if not domain and removed:
            what.append("no default domain: routes stay cluster-local (dns.servingDomain is unset)")
    elif namespace == KNATIVE_NAMESPACE and name == NETWORK_CONFIGMAP and domain:
        for key, value in (("domain-template", KNATIVE_DOMAIN_TEMPLATE), ("default-external-scheme", EXTERNAL_SCHEME)):
            if data.get(key) != value:
                new_data[key] = value
                what.append(f"data[{key!r}]: {data.get(key)!r} -> {value!r}")
    elif name == KSERVE_CONFIGMAP and isinstance(data.get("ingress"), str):
        try:
            ingress = json.loads(data["ingress"])
        except ValueError:
            return None  # not the JSON KServe reads; schema validation and review catch it
        if not isinstance(ingress, dict):
            return None
        wanted = {"ingressDomain": domain, "domainTemplate": KSERVE_DOMAIN_TEMPLATE, "urlScheme": EXTERNAL_SCHEME} if domain else {}
        for key, value in wanted.items():
            if ingress.get(key) != value:
                what.append(f"data.ingress.{key}: {ingress.get(key)!r} -> {value!r}")
                ingress[key] = value
        if KSERVE_PATH_TEMPLATE in ingress:
            what.append(f"data.ingress.{KSERVE_PATH_TEMPLATE}: {ingress.pop(KSERVE_PATH_TEMPLATE)!r} removed "
                        "(InferenceService URLs stay one label under the serving domain)")
        new_data["ingress"] = json.dumps(ingress, indent=2, sort_keys=True)
    if not what:
        return None
    copy = clone(obj)
    copy["data"] = new_data
    return copy, what
