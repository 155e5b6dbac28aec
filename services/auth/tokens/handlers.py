"""HTTP handlers of tokens: refresh, logout, the RFC 6749 token endpoint, RFC 7009
revocation, RFC 7662 introspection, discovery."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from common.errors import Problem
from common.identity import require_identity
from services.auth.accounts.roles import InvalidScopeError
from services.auth.app_keys import (
    CLIENT_AUTHENTICATION,
    CLIENT_CREDENTIALS,
    INTROSPECTION,
    METRICS,
    OPENAPI,
    REVOCATION,
    SESSIONS,
    SETTINGS,
)
from services.auth.bodies import read_body
from services.auth.keyring.signing_keys import ALGORITHM
from services.auth.tokens.client_auth import AUTH_METHODS
from services.auth.tokens.families import RotationStatus
from services.auth.tokens.minter import TokenResponse
from services.auth.tokens.oauth import (
    CLIENT_PARAMETERS,
    INVALID_REFRESH_GRANT,
    NO_STORE,
    OAuthError,
    form_parameters,
    invalid_client,
    read_form,
)
from services.auth.tokens.refresh import RefreshError
from services.auth.tokens.responses import invalid_scope, token_response


async def _refresh(request: web.Request, refresh_token: str, scope: str | None) -> TokenResponse:
    """Rotate; raises RefreshError or InvalidScopeError for the caller to word."""
    metrics = request.app[METRICS]
    try:
        response = await request.app[SESSIONS].refresh(refresh_token, scope)
    except RefreshError as error:
        if error.status is RotationStatus.REUSED:
            metrics.refresh_reuse.inc()
        raise
    metrics.refresh_rotations.inc()
    metrics.tokens_issued.labels("refresh_token").inc()
    return response


async def refresh(request: web.Request) -> web.Response:
    body = await read_body(request, request.app[OPENAPI], "RefreshRequest")
    try:
        response = await _refresh(request, body["refresh_token"], body.get("scope"))
    except RefreshError:
        raise Problem(
            401,
            "the refresh token is invalid, expired or revoked; log in again",
            kind="invalid-refresh-token",
            headers={"WWW-Authenticate": 'Bearer realm="passgate", error="invalid_token"'},
            extensions={"error": "invalid_grant"},
        ) from None
    except InvalidScopeError as error:
        raise invalid_scope(error) from None
    return token_response(response)


async def logout(request: web.Request) -> web.Response:
    body = await read_body(request, request.app[OPENAPI], "LogoutRequest")
    await request.app[SESSIONS].revoke(body["refresh_token"])
    return web.Response(status=204)


async def logout_all(request: web.Request) -> web.Response:
    identity = require_identity(request)
    await request.app[SESSIONS].revoke_all(identity.subject)
    return web.Response(status=204)


async def token(request: web.Request) -> web.Response:
    """RFC 6749 token endpoint; every failure is a section 5.2 error, not problem+json."""
    try:
        form = await read_form(request, request.app[OPENAPI])
        if form["grant_type"] == "client_credentials":
            response = await _client_credentials(request, form)
        else:
            try:
                response = await _refresh(request, form["refresh_token"], form.get("scope"))
            except RefreshError:
                raise OAuthError("invalid_grant", INVALID_REFRESH_GRANT) from None
    except InvalidScopeError as error:
        return OAuthError("invalid_scope", str(error)).to_response()
    except OAuthError as error:
        return error.to_response()
    return token_response(response)


async def _client_credentials(request: web.Request, form: dict[str, str]) -> TokenResponse:
    client = await request.app[CLIENT_AUTHENTICATION].authenticate(request, form)
    if not client.confidential:
        raise invalid_client("the client-credentials grant needs a confidential client")
    response = request.app[CLIENT_CREDENTIALS].grant(
        client.client_id, client.scope, form.get("scope")
    )
    request.app[METRICS].tokens_issued.labels("client_credentials").inc()
    return response


# RFC 7009 section 2.1 and RFC 7662 section 2.1: the token, an optional hint (which may be
# ignored, and is: the two kinds cannot be confused), and client authentication.
TOKEN_REFERENCE_PARAMETERS = frozenset({"token", "token_type_hint"}) | CLIENT_PARAMETERS


async def _token_reference(request: web.Request, *, introspection: bool) -> tuple[str, str]:
    """(client id, token) of a revocation or introspection request: the client is
    authenticated (and, to introspect, allowed to) before the token is looked at."""
    form = await form_parameters(request, TOKEN_REFERENCE_PARAMETERS)
    client = await request.app[CLIENT_AUTHENTICATION].authenticate(request, form)
    if introspection and not client.may_introspect:
        raise OAuthError(
            "unauthorized_client", "this client may not introspect tokens", status=403
        )
    if not request.app[OPENAPI].validator("TokenReferenceForm").is_valid(form):
        raise OAuthError("invalid_request", "token is missing or malformed")
    return client.client_id, form["token"]


async def revoke(request: web.Request) -> web.Response:
    """RFC 7009: 200 with an empty body whether or not there was anything to revoke."""
    metrics = request.app[METRICS]
    try:
        client_id, token = await _token_reference(request, introspection=False)
        revoked = await request.app[REVOCATION].revoke(token, client_id)
    except OAuthError as error:
        if error.status == 400 and error.error != "invalid_request":
            metrics.revocations.labels("refused").inc()
        return error.to_response()
    metrics.revocations.labels("revoked" if revoked else "nothing_to_revoke").inc()
    return web.Response(status=200, headers=NO_STORE)


async def introspect(request: web.Request) -> web.Response:
    """RFC 7662: {"active": false} alone for any token that is not active."""
    try:
        _, token = await _token_reference(request, introspection=True)
    except OAuthError as error:
        return error.to_response()
    answer = await request.app[INTROSPECTION].introspect(token)
    request.app[METRICS].introspections.labels("active" if answer["active"] else "inactive").inc()
    return web.json_response(answer, headers=NO_STORE)


async def discovery(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    issuer = settings.issuer
    document: dict[str, Any] = {
        "issuer": issuer,
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "token_endpoint": f"{issuer}/auth/token",
        # Grants of the token endpoint; password logins use POST /auth/login instead.
        "grant_types_supported": ["client_credentials", "refresh_token"],
        "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "revocation_endpoint": f"{issuer}/auth/revoke",
        "revocation_endpoint_auth_methods_supported": list(AUTH_METHODS),
        # Not `none`: only confidential clients flagged as resource servers
        # (create-client --introspect) may introspect.
        "introspection_endpoint": f"{issuer}/auth/introspect",
        "introspection_endpoint_auth_methods_supported": [
            method for method in AUTH_METHODS if method != "none"
        ],
        "id_token_signing_alg_values_supported": [ALGORITHM],
        "access_token_signing_alg_values_supported": [ALGORITHM],
        "scopes_supported": sorted(settings.scope_policy.issuable),
        "subject_types_supported": ["public"],
    }
    return web.json_response(
        document, headers={"Cache-Control": f"public, max-age={settings.jwks_max_age}"}
    )
