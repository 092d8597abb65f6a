"""A small, strict evaluator of IAM identity policies, for checking what a role may do.

It implements the part of IAM's evaluation logic our policies use: an explicit Deny wins,
otherwise some Allow must match the action, the resource and every condition. Actions and
resources match with IAM's ``*``/``?`` wildcards (actions case-insensitively). Conditions
support ``StringEquals``, ``StringLike`` and ``Bool``; a key absent from the request context
makes the condition false, as in IAM. Anything else (``NotAction``, ``NotResource``, other
operators, ``...IfExists``) raises, so a policy we cannot judge never passes silently.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from typing import Any

_SUPPORTED_OPERATORS = {"StringEquals", "StringLike", "Bool"}


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _wildcard(pattern: str, value: str, *, ignore_case: bool) -> bool:
    # fnmatch also treats [...] as a class; IAM does not, so escape brackets first.
    regex = fnmatch.translate(pattern.replace("[", "[[]"))
    return re.match(regex, value, re.IGNORECASE if ignore_case else 0) is not None


def _condition_holds(condition: Mapping[str, Mapping[str, Any]], context: Mapping[str, Any]) -> bool:
    for operator, checks in condition.items():
        if operator not in _SUPPORTED_OPERATORS:
            raise NotImplementedError(f"condition operator {operator!r} is not supported by this evaluator")
        for key, expected in checks.items():
            if key not in context:
                return False
            actual = _as_list(context[key])
            wanted = [str(v) for v in _as_list(expected)]
            if operator == "StringEquals":
                ok = any(str(a) == w for a in actual for w in wanted)
            elif operator == "StringLike":
                ok = any(_wildcard(w, str(a), ignore_case=False) for a in actual for w in wanted)
            else:  # Bool
                ok = any(str(a).lower() == w.lower() for a in actual for w in wanted)
            if not ok:
                return False
    return True


def _statement_matches(statement: Mapping[str, Any], action: str, resource: str,
                       context: Mapping[str, Any]) -> bool:
    for unsupported in ("NotAction", "NotResource", "NotPrincipal", "Principal"):
        if unsupported in statement:
            raise NotImplementedError(f"{unsupported} in an identity policy is not supported here")
    if not any(_wildcard(p, action, ignore_case=True) for p in _as_list(statement["Action"])):
        return False
    if not any(_wildcard(p, resource, ignore_case=False) for p in _as_list(statement["Resource"])):
        return False
    return _condition_holds(statement.get("Condition", {}), context)


def statements(policies: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """All statements of several policy documents, in order."""
    return [s for doc in policies for s in _as_list(doc["Statement"])]


def is_allowed(policies: Iterable[Mapping[str, Any]], action: str, resource: str,
               context: Mapping[str, Any] | None = None) -> bool:
    """Whether the identity policies ``policies`` allow ``action`` on ``resource``.

    ``context`` holds the request's condition keys, e.g. ``{"s3:prefix": "datasets/"}``.
    """
    context = context or {}
    matching = [s for s in statements(policies) if _statement_matches(s, action, resource, context)]
    if any(s["Effect"] == "Deny" for s in matching):
        return False
    return any(s["Effect"] == "Allow" for s in matching)


def allowed_actions(policies: Iterable[Mapping[str, Any]]) -> set[str]:
    """Every action pattern that some Allow statement names (wildcards kept as written)."""
    return {a for s in statements(policies) if s["Effect"] == "Allow" for a in _as_list(s["Action"])}
