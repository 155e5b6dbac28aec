"""HTTP handlers of tokens: refresh, logout, the RFC 6749 token endpoint, discovery."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from common.errors import Problem
from common.identity import require_identity
from services.auth.accounts.roles import InvalidScopeError
from services.auth.app_keys import CLIENT_CREDENTIALS, METRICS, OPENAPI, SESSIONS, SETTINGS
from services.auth.bodies import read_body
from services.auth.keyring.signing_keys import ALGORITHM
from services.auth.tokens.families import RotationStatus
from services.auth.tokens.minter import TokenResponse
from services.auth.tokens.oauth import (
    INVALID_REFRESH_GRANT,
    OAuthError,
    basic_credentials,
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
            response = await _client_credentials(request, form.get("scope"))
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


async def _client_credentials(request: web.Request, scope: str | None) -> TokenResponse:
    client_id, secret = basic_credentials(request)
    response = await request.app[CLIENT_CREDENTIALS].grant(client_id, secret, scope)
    if response is None:
        raise OAuthError("invalid_client", "client authentication failed", status=401)
    request.app[METRICS].tokens_issued.labels("client_credentials").inc()
    return response


async def discovery(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    issuer = settings.issuer
    document: dict[str, Any] = {
        "issuer": issuer,
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "token_endpoint": f"{issuer}/auth/token",
        # Grants of the token endpoint; password logins use POST /auth/login instead.
        "grant_types_supported": ["client_credentials", "refresh_token"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "none"],
        "id_token_signing_alg_values_supported": [ALGORITHM],
        "access_token_signing_alg_values_supported": [ALGORITHM],
        "scopes_supported": sorted(settings.scope_policy.issuable),
        "subject_types_supported": ["public"],
    }
    return web.json_response(
        document, headers={"Cache-Control": f"public, max-age={settings.jwks_max_age}"}
    )
