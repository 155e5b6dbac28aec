"""HTTP handlers of accounts: register, password login, password change."""

from __future__ import annotations

from aiohttp import web

from common.app_keys import REQUEST_ID, TRACE
from common.errors import Problem, too_many_requests
from common.identity import require_identity
from common.validation import invalid_request
from services.auth.accounts.login import (
    InvalidCredentialsError,
    LoginThrottledError,
    NoPasswordError,
    NotAUserError,
    PasswordUnchangedError,
)
from services.auth.accounts.password_policy import PasswordPolicyError
from services.auth.accounts.registration import ProvisioningError
from services.auth.accounts.repository import UsernameTakenError
from services.auth.accounts.roles import InvalidScopeError
from services.auth.accounts.throttle import client_address
from services.auth.app_keys import CREDENTIALS, METRICS, OPENAPI, REGISTRATION, SESSIONS, SETTINGS
from services.auth.bodies import read_body
from services.auth.tokens.responses import invalid_scope, token_response

# One 401 for a wrong password and an unknown user alike: same status, body and headers.
_BAD_CREDENTIALS = "invalid username or password"


def _invalid_credentials(detail: str = _BAD_CREDENTIALS) -> Problem:
    return Problem(
        401,
        detail,
        kind="invalid-credentials",
        headers={"WWW-Authenticate": 'Bearer realm="passgate"'},
    )


async def register(request: web.Request) -> web.Response:
    body = await read_body(request, request.app[OPENAPI], "RegisterRequest")
    try:
        account = await request.app[REGISTRATION].register_account(
            [body["username"]],
            password=body["password"],
            display_name=body.get("display_name"),
            request_id=request.get(REQUEST_ID),
            trace=request.get(TRACE),
        )
    except PasswordPolicyError as error:
        raise invalid_request([{"pointer": "/password", "detail": str(error)}]) from None
    except UsernameTakenError:
        raise Problem(409, "the username is taken", kind="username-taken") from None
    except ProvisioningError:
        raise Problem(
            503,
            "the account could not be set up; try again shortly",
            kind="provisioning-failed",
            headers={"Retry-After": "5"},
        ) from None
    return web.json_response({"id": account.id, "username": account.username}, status=201)


async def login(request: web.Request) -> web.Response:
    body = await read_body(request, request.app[OPENAPI], "LoginRequest")
    metrics = request.app[METRICS]
    address = client_address(request, request.app[SETTINGS].trusted_proxies)
    try:
        account = await request.app[CREDENTIALS].authenticate(
            body["username"], body["password"], address
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
        response = await request.app[SESSIONS].login(account.id, account.role, body.get("scope"))
    except InvalidScopeError as error:
        raise invalid_scope(error) from None
    metrics.logins.labels("success").inc()
    metrics.tokens_issued.labels("password").inc()
    return token_response(response)


async def change_password(request: web.Request) -> web.Response:
    identity = require_identity(request, "users:write")
    body = await read_body(request, request.app[OPENAPI], "PasswordChangeRequest")
    try:
        await request.app[CREDENTIALS].change_password(
            identity.subject, body["current_password"], body["new_password"]
        )
    except NotAUserError:
        raise Problem(403, "only user accounts have a password", kind="not-a-user") from None
    except NoPasswordError:
        raise Problem(
            409,
            "this account signs in with an external provider and has no password",
            kind="no-password",
        ) from None
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
