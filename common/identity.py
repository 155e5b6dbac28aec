"""The identity contract between the gateway and the backends.

The gateway verifies the access token once and passes who the caller is in the reserved
``X-User-*`` header namespace. It strips every header of that namespace (in any case, and
with ``_`` in place of ``-``) from incoming requests first, so only it can set them.
Backends do not trust the plain fields (kept for logs and tools): they take the identity
only from the signed assertion in ``X-User-Assertion`` (common.assertion), so a process that
reaches a backend some other way than through the gateway cannot vouch for anyone.
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
# Which trusted issuer vouched for the token, by its name in the gateway's routes file
# ("passgate" for Passgate's own auth).
ISSUER_HEADER = "X-User-Issuer"
ASSERTION_HEADER = "X-User-Assertion"


class AssertionRefused(Exception):
    """Why an identity assertion was not accepted (the 401's detail)."""


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
    issuer: str | None = None

    def to_headers(self) -> dict[str, str]:
        headers = {USER_ID_HEADER: self.subject, SCOPES_HEADER: " ".join(sorted(self.scopes))}
        if self.client_id:
            headers[CLIENT_ID_HEADER] = self.client_id
        if self.token_id:
            headers[TOKEN_ID_HEADER] = self.token_id
        if self.issuer:
            headers[ISSUER_HEADER] = self.issuer
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
            issuer=headers.get(ISSUER_HEADER) or None,
        )

    @property
    def is_admin(self) -> bool:
        return "admin" in self.scopes


# Declared beside its type and re-exported by common.app_keys (no import circle).
IDENTITY = web.RequestKey("identity", Identity)
# The backend's verifier of identity assertions (common.assertion), named by string: that
# module imports this one.
ASSERTION_VERIFIER = web.AppKey("assertion_verifier", "AssertionVerifier")


def require_identity(request: web.Request, scope: str | None = None) -> Identity:
    """The caller's identity as the gateway (or auth) vouched for it in a signed assertion;
    401 without a valid one, 403 without `scope`."""
    identity = request.get(IDENTITY)
    if identity is None:
        identity = _asserted_identity(request)
        request[IDENTITY] = identity
    user_id_var.set(identity.subject)
    if scope is not None and scope not in identity.scopes:
        raise insufficient_scope(scope)
    return identity


def _asserted_identity(request: web.Request) -> Identity:
    assertions = request.headers.getall(ASSERTION_HEADER, ())
    if not assertions:
        raise unauthorized("authentication required", token_presented=False)
    verifier = request.app.get(ASSERTION_VERIFIER)
    if verifier is None:  # no trust directory configured: nobody can vouch (fail closed)
        raise unauthorized("this service trusts no identity assertion keys", reason="assertion")
    if len(assertions) > 1:
        raise unauthorized("send exactly one identity assertion", reason="assertion")
    try:
        return verifier.identity(assertions[0])
    except AssertionRefused as refused:
        raise unauthorized(str(refused), reason="assertion") from None
