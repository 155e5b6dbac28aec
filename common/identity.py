"""The identity contract between the gateway and the backends.

The gateway verifies the access token once and passes who the caller is in the reserved
``X-User-*`` header namespace. It strips every header of that namespace (in any case, and
with ``_`` in place of ``-``) from incoming requests first, so only it can set them.
Backends trust these headers only because nothing but the gateway can reach them:
loopback binding locally, NetworkPolicy in Kubernetes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from aiohttp import web

from common.context import user_id_var
from common.errors import insufficient_scope, unauthorized

IDENTITY_HEADER_PREFIX = "x-user-"
USER_ID_HEADER = "X-User-Id"
SCOPES_HEADER = "X-User-Scopes"
CLIENT_ID_HEADER = "X-User-Client-Id"
TOKEN_ID_HEADER = "X-User-Token-Id"


def is_identity_header(name: str) -> bool:
    """True for any header in the reserved namespace, however it is spelt."""
    return name.lower().replace("_", "-").startswith(IDENTITY_HEADER_PREFIX)


@dataclasses.dataclass(frozen=True, slots=True)
class Identity:
    """Who is calling: the token's subject, its scopes, and for machine clients the client id."""

    subject: str
    scopes: frozenset[str]
    client_id: str | None = None
    token_id: str | None = None

    def to_headers(self) -> dict[str, str]:
        headers = {USER_ID_HEADER: self.subject, SCOPES_HEADER: " ".join(sorted(self.scopes))}
        if self.client_id:
            headers[CLIENT_ID_HEADER] = self.client_id
        if self.token_id:
            headers[TOKEN_ID_HEADER] = self.token_id
        return headers

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> Identity | None:
        subject = headers.get(USER_ID_HEADER)
        if not subject:
            return None
        return cls(
            subject=subject,
            scopes=frozenset(headers.get(SCOPES_HEADER, "").split()),
            client_id=headers.get(CLIENT_ID_HEADER) or None,
            token_id=headers.get(TOKEN_ID_HEADER) or None,
        )

    @property
    def is_admin(self) -> bool:
        return "admin" in self.scopes


# Declared beside its type and re-exported by common.app_keys (no import circle).
IDENTITY = web.RequestKey("identity", Identity)


def require_identity(request: web.Request, scope: str | None = None) -> Identity:
    """The caller's identity as set by the gateway; 401 without one, 403 without `scope`."""
    identity = request.get(IDENTITY) or Identity.from_headers(request.headers)
    if identity is None:
        raise unauthorized("authentication required", token_presented=False)
    request[IDENTITY] = identity
    user_id_var.set(identity.subject)
    if scope is not None and scope not in identity.scopes:
        raise insufficient_scope(scope)
    return identity
