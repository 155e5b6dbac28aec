"""Roles, the scopes they grant, and scope requests that may narrow but never widen."""

from __future__ import annotations

import re

USER_SCOPES = frozenset({"users:read", "users:write", "orders:read", "orders:write"})
ADMIN_SCOPES = USER_SCOPES | {"admin"}
ROLE_SCOPES = {"user": USER_SCOPES, "admin": ADMIN_SCOPES}
ROLES = tuple(ROLE_SCOPES)
# What a token may carry at all. `profiles:provision` is deliberately absent: only the
# auth service itself asserts it, straight to the users service, never in a token.
SUPPORTED_SCOPES = ADMIN_SCOPES

# RFC 6749 section 3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ), space separated.
_SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+$")


class InvalidScopeError(ValueError):
    """The request asked for a scope it may not have (RFC 6749 error `invalid_scope`)."""


def parse_scope(value: str) -> frozenset[str]:
    tokens = value.split(" ")
    if any(not _SCOPE_TOKEN.match(token) for token in tokens if token) or not value.strip():
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


def role_scopes(role: str) -> frozenset[str]:
    return ROLE_SCOPES.get(role, frozenset())
