"""HTTP handlers of the auth service: read and validate, call a use case, answer."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from common.errors import Problem, too_many_requests
from common.identity import require_identity
from common.keys import REQUEST_ID, TRACE
from common.validation import invalid_request
from services.auth.accounts import (
    InvalidCredentialsError,
    LoginThrottledError,
    PasswordUnchangedError,
    ProvisioningError,
)
from services.auth.bodies import read_body
from services.auth.keys import (
    ACCOUNTS,
    CLOCK,
    KEY_RING,
    METRICS,
    OPENAPI,
    REPOSITORY,
    SETTINGS,
    TOKENS,
)
from services.auth.oauth import (
    INVALID_REFRESH_GRANT,
    NO_STORE,
    OAuthError,
    basic_credentials,
    read_form,
)
from services.auth.password_policy import PasswordPolicyError
from services.auth.repository import RotationStatus, UsernameTakenError
from services.auth.scopes import SUPPORTED_SCOPES, InvalidScopeError
from services.auth.signing_keys import ALGORITHM
from services.auth.throttle import client_address
from services.auth.tokens import RefreshError, TokenResponse

# One 401 for a wrong password and an unknown user alike: same status, body and headers.
_BAD_CREDENTIALS = "invalid username or password"


def _invalid_credentials(detail: str = _BAD_CREDENTIALS) -> Problem:
    return Problem(
        401,
        detail,
        kind="invalid-credentials",
        headers={"WWW-Authenticate": 'Bearer realm="passgate"'},
    )


def _invalid_scope(error: InvalidScopeError) -> Problem:
    return Problem(400, str(error), kind="invalid-scope", extensions={"error": "invalid_scope"})


def _tokens(response: TokenResponse) -> web.Response:
    return web.json_response(response.to_json(), headers=NO_STORE)


async def register(request: web.Request) -> web.Response:
    body = await read_body(request, request.app[OPENAPI], "RegisterRequest")
    metrics = request.app[METRICS]
    try:
        account = await request.app[ACCOUNTS].register(
            body["username"],
            body["password"],
            body.get("display_name"),
            request_id=request.get(REQUEST_ID),
            trace=request.get(TRACE),
        )
    except PasswordPolicyError as error:
        metrics.registrations.labels("invalid").inc()
        raise invalid_request([{"pointer": "/password", "detail": str(error)}]) from None
    except UsernameTakenError:
        metrics.registrations.labels("conflict").inc()
        raise Problem(409, "the username is taken", kind="username-taken") from None
    except ProvisioningError:
        metrics.registrations.labels("provisioning_failed").inc()
        raise Problem(
            503,
            "the account could not be set up; try again shortly",
            kind="provisioning-failed",
            headers={"Retry-After": "5"},
        ) from None
    metrics.registrations.labels("success").inc()
    return web.json_response({"id": account.id, "username": account.username}, status=201)


async def login(request: web.Request) -> web.Response:
    body = await read_body(request, request.app[OPENAPI], "LoginRequest")
    metrics = request.app[METRICS]
    address = client_address(request, request.app[SETTINGS].trusted_proxies)
    try:
        account = await request.app[ACCOUNTS].authenticate(
            body["username"].lower(), body["password"], address
        )
    except LoginThrottledError as error:
        metrics.logins.labels("throttled").inc()
        raise too_many_requests(
            error.retry_after, "too many failed logins; try again later"
        ) from None
    except InvalidCredentialsError:
        metrics.logins.labels("invalid_credentials").inc()
        raise _invalid_credentials() from None
    try:
        response = await request.app[TOKENS].login(account.id, account.role, body.get("scope"))
    except InvalidScopeError as error:
        raise _invalid_scope(error) from None
    metrics.logins.labels("success").inc()
    metrics.tokens_issued.labels("password").inc()
    return _tokens(response)


async def _refresh(request: web.Request, refresh_token: str, scope: str | None) -> TokenResponse:
    """Rotate; raises RefreshError or InvalidScopeError for the caller to word."""
    metrics = request.app[METRICS]
    try:
        response = await request.app[TOKENS].refresh(refresh_token, scope)
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
        raise _invalid_scope(error) from None
    return _tokens(response)


async def logout(request: web.Request) -> web.Response:
    body = await read_body(request, request.app[OPENAPI], "LogoutRequest")
    await request.app[TOKENS].revoke(body["refresh_token"])
    return web.Response(status=204)


async def logout_all(request: web.Request) -> web.Response:
    identity = require_identity(request)
    now = request.app[CLOCK]()
    await request.app[REPOSITORY].revoke_account_families(identity.subject, now, "logout_all")
    return web.Response(status=204)


async def change_password(request: web.Request) -> web.Response:
    identity = require_identity(request, "users:write")
    body = await read_body(request, request.app[OPENAPI], "PasswordChangeRequest")
    account = await request.app[REPOSITORY].account_by_id(identity.subject)
    if account is None:
        raise Problem(403, "only user accounts have a password", kind="not-a-user")
    if not account.has_password:
        raise Problem(
            409,
            "this account signs in with an external provider and has no password",
            kind="no-password",
        )
    try:
        await request.app[ACCOUNTS].change_password(
            account, body["current_password"], body["new_password"]
        )
    except LoginThrottledError as error:
        raise too_many_requests(
            error.retry_after, "too many failed attempts; try again later"
        ) from None
    except InvalidCredentialsError:
        raise _invalid_credentials("the current password is incorrect") from None
    except PasswordPolicyError as error:
        raise invalid_request([{"pointer": "/new_password", "detail": str(error)}]) from None
    except PasswordUnchangedError:
        raise Problem(409, "the password was changed meanwhile", kind="conflict") from None
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
    return _tokens(response)


async def _client_credentials(request: web.Request, scope: str | None) -> TokenResponse:
    client_id, secret = basic_credentials(request)
    response = await request.app[TOKENS].client_credentials(client_id, secret, scope)
    if response is None:
        raise OAuthError("invalid_client", "client authentication failed", status=401)
    request.app[METRICS].tokens_issued.labels("client_credentials").inc()
    return response


async def jwks(request: web.Request) -> web.Response:
    """The public keys, new ones included before they sign (RFC 7517)."""
    settings = request.app[SETTINGS]
    key_set = request.app[KEY_RING].jwks(request.app[CLOCK]())
    return web.json_response(
        key_set, headers={"Cache-Control": f"public, max-age={settings.jwks_max_age}"}
    )


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
        "scopes_supported": sorted(SUPPORTED_SCOPES),
        "subject_types_supported": ["public"],
    }
    return web.json_response(
        document, headers={"Cache-Control": f"public, max-age={settings.jwks_max_age}"}
    )
