"""A small model of IAM's evaluation of identity policies, for the tests: Allow statements with Action,
Resource and the condition operators the program's documents use (StringEquals, StringLike).

What it follows (docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html):
a condition key absent from the request makes a condition on it false; the values listed for one key are
OR-ed, keys and operators AND-ed; `*` and `?` are wildcards in StringLike, Action and Resource.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any, Mapping


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _condition_holds(condition: Mapping[str, Mapping[str, Any]], context: Mapping[str, str]) -> bool:
    for operator, keys in condition.items():
        for key, wanted in keys.items():
            if key not in context:
                return False
            value = context[key]
            if operator == "StringEquals":
                if value not in _as_list(wanted):
                    return False
            elif operator == "StringLike":
                if not any(fnmatchcase(value, pattern) for pattern in _as_list(wanted)):
                    return False
            else:
                raise NotImplementedError(f"condition operator {operator}")
    return True


def allows(policy: Mapping[str, Any], action: str, resource: str, context: Mapping[str, str] | None = None) -> bool:
    """True when an Allow statement of `policy` grants `action` on `resource` in the request `context`."""
    for statement in policy["Statement"]:
        if statement["Effect"] != "Allow":
            continue
        if not any(fnmatchcase(action, pattern) for pattern in _as_list(statement["Action"])):
            continue
        if not any(fnmatchcase(resource, pattern) for pattern in _as_list(statement["Resource"])):
            continue
        if _condition_holds(statement.get("Condition") or {}, context or {}):
            return True
    return False
