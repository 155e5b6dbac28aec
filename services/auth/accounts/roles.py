"""Scope requests that may narrow but never widen what was granted.

Which scopes exist and which roles grant them is configuration (common.scopes), not code.
"""

from __future__ import annotations

from common.scopes import SCOPE_TOKEN


class InvalidScopeError(ValueError):
    """The request asked for a scope it may not have (RFC 6749 error `invalid_scope`)."""


def parse_scope(value: str) -> frozenset[str]:
    tokens = value.split(" ")
    if any(not SCOPE_TOKEN.fullmatch(token) for token in tokens if token) or not value.strip():
        raise InvalidScopeError("scope must be space-separated scope tokens")
    return frozenset(token for token in tokens if token)


def format_scope(scopes: frozenset[str]) -> str:
    return " ".join(sorted(scopes))


def narrow(granted: frozenset[str], requested: str | None) -> frozenset[str]:
    """The scopes to issue: all of `granted`, or the requested subset of it."""
    if requested is None:
        return granted
    wanted = parse_scope(requested)
    extra = wanted - granted
    if extra:
        raise InvalidScopeError(f"not granted: {format_scope(frozenset(extra))}")
    return wanted
