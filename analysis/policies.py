"""Whether an Istio AuthorizationPolicy rule matches a request, as Istio 1.24 builds Envoy RBAC from it.

Enough of istio/istio@1.24.6 pilot/pkg/security/authz to ask "does this DENY policy refuse this hop?"
for the identity-header policies: sources by principal, destination ports, and request-header
conditions. Anything else in a rule (namespaces, IP blocks, paths, methods, hosts, JWT claims) is refused
with ValueError rather than guessed.

The rules (model/model.go, tag 1.24.6):
- a rule matches when one of its `from` entries, one of its `to` entries and every `when` condition
  match; no `from` or no `to` matches everything (model.go:76-147, 212-225);
- within an entry every field must match: a value from the list, and none from the `not` list
  (model.go:283-337);
- `*` matches any non-empty value, `abc*` a prefix, `*abc` a suffix, else exactly (matcher/string.go:99-115);
  a principal is compared as `spiffe://<principal>`, so a plaintext caller (no principal) matches no
  `principals` entry and every `notPrincipals` entry;
- a principal in a policy whose trust domain is `cluster.local` stands for the mesh's own trust domain
  (security/trustdomain/bundle.go:68-73, applied by model.go:149-163).

Pure Python over plain dicts; no Pulumi.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

_HEADER_KEY = re.compile(r"^request\.headers\[(.+)\]$")
_SOURCE_FIELDS = {"principals", "notPrincipals"}
_OPERATION_FIELDS = {"ports", "notPorts"}


@dataclass(frozen=True)
class Request:
    """One hop: who calls (its mesh principal, None for plaintext), which port, with which headers."""

    principal: str | None
    port: int = 8080
    headers: Mapping[str, str] = field(default_factory=dict)
    trust_domain: str = "cluster.local"


def _matches(pattern: str, value: str) -> bool:
    if pattern == "*":
        return value != ""
    if pattern.startswith("*"):
        return value.endswith(pattern[1:])
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    return value == pattern


def _principal_spellings(pattern: str, trust_domain: str) -> list[str]:
    domain, sep, rest = pattern.partition("/")
    if sep and domain == "cluster.local":
        return [pattern, f"{trust_domain}/{rest}"]
    return [pattern]


def _principal_in(patterns: Iterable[str], request: Request) -> bool:
    if request.principal is None:
        return False
    return any(_matches(spelling, request.principal)
               for pattern in patterns for spelling in _principal_spellings(pattern, request.trust_domain))


def _field_holds(values: list | None, not_values: list | None, test) -> bool:
    if values is not None and not any(test(v) for v in values):
        return False
    if not_values is not None and any(test(v) for v in not_values):
        return False
    return True


def _source_matches(source: Mapping, request: Request) -> bool:
    unknown = set(source) - _SOURCE_FIELDS
    if unknown:
        raise ValueError(f"source fields not modelled: {sorted(unknown)}")
    return _field_holds(source.get("principals"), source.get("notPrincipals"),
                        lambda pattern: _principal_in([pattern], request))


def _operation_matches(operation: Mapping, request: Request) -> bool:
    unknown = set(operation) - _OPERATION_FIELDS
    if unknown:
        raise ValueError(f"operation fields not modelled: {sorted(unknown)}")
    return _field_holds(operation.get("ports"), operation.get("notPorts"), lambda port: str(port) == str(request.port))


def _condition_matches(condition: Mapping, request: Request) -> bool:
    header = _HEADER_KEY.match(str(condition.get("key", "")))
    if header is None:
        raise ValueError(f"condition not modelled: {condition.get('key')!r}")
    # Envoy matches header names case-insensitively; the value of an absent header never matches.
    name = header.group(1).lower()
    value = next((v for k, v in request.headers.items() if k.lower() == name), None)
    test = (lambda pattern: value is not None and _matches(str(pattern), value))
    return _field_holds(condition.get("values"), condition.get("notValues"), test)


def rule_matches(rule: Mapping, request: Request) -> bool:
    """Whether one AuthorizationPolicy rule matches the request (model.go:76-147)."""
    sources = rule.get("from")
    operations = rule.get("to")
    if sources and not any(_source_matches(entry.get("source") or {}, request) for entry in sources):
        return False
    if operations and not any(_operation_matches(entry.get("operation") or {}, request) for entry in operations):
        return False
    return all(_condition_matches(condition, request) for condition in rule.get("when") or [])


def denies(policy: Mapping, request: Request) -> bool:
    """Whether a DENY AuthorizationPolicy (without a workload selector) refuses the request."""
    spec = policy.get("spec") or {}
    if spec.get("action") != "DENY":
        raise ValueError(f"{(policy.get('metadata') or {}).get('name')}: not a DENY policy")
    if spec.get("selector"):
        raise ValueError("workload selectors are not modelled")
    return any(rule_matches(rule, request) for rule in spec.get("rules") or [])
