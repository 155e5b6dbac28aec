"""HTTP handlers for signing in with an external OpenID Connect provider (sign_in.py)."""

from __future__ import annotations

from aiohttp import web

from common.app_keys import REQUEST_ID, TRACE
from common.errors import Problem
from common.identity import require_identity
from services.auth.accounts.login import NotAUserError
from services.auth.app_keys import CREDENTIALS, EXTERNAL_SIGN_IN, OPENAPI, SETTINGS
from services.auth.bodies import read_body
from services.auth.external.oidc_client import OidcError
from services.auth.external.sign_in import (
    CallbackError,
    ExternalSignIn,
    HandoffError,
    InvalidStateError,
    ReturnToError,
    UnknownProviderError,
)
from services.auth.tokens.oauth import NO_STORE

# The callback's answers carry the provider's code in their request URL and a handoff code
# in their Location: no cache may keep them, and no Referer may repeat them.
_REDIRECT_HEADERS = {**NO_STORE, "Referrer-Policy": "no-referrer"}


def _service(request: web.Request) -> ExternalSignIn:
    service = request.app.get(EXTERNAL_SIGN_IN)
    if service is None:
        raise _unknown_provider()
    return service


def _unknown_provider() -> Problem:
    return Problem(404, "no such sign-in provider", kind="unknown-provider")


async def providers(request: web.Request) -> web.Response:
    """The configured providers, for the page's "sign in with ..." buttons."""
    listed = [
        {"id": provider.id, "name": provider.name}
        for provider in request.app[SETTINGS].oidc.providers
    ]
    return web.json_response({"providers": listed}, headers={"Cache-Control": "no-cache"})


async def _start(request: web.Request, link_account_id: str | None) -> web.Response:
    service = _service(request)
    body = await read_body(request, request.app[OPENAPI], "OidcStartRequest")
    try:
        url = await service.start(
            request.match_info["provider"],
            body["return_to"],
            body["binding_challenge"],
            link_account_id=link_account_id,
        )
    except UnknownProviderError:
        raise _unknown_provider() from None
    except ReturnToError:
        raise Problem(
            400,
            "return_to must be a page on an origin allowed to sign in",
            kind="invalid-return-to",
        ) from None
    except OidcError:
        raise Problem(
            503,
            "the sign-in provider cannot be reached right now; try again shortly",
            kind="provider-unavailable",
            headers={"Retry-After": "10"},
        ) from None
    return web.json_response({"authorization_url": url}, headers=NO_STORE)


async def start(request: web.Request) -> web.Response:
    return await _start(request, None)


async def link(request: web.Request) -> web.Response:
    """Start linking a provider to the caller's account (needs a token: the gateway's
    identity headers); the callback then links instead of signing in."""
    identity = require_identity(request, "users:write")
    try:
        account = await request.app[CREDENTIALS].user_account(identity.subject)
    except NotAUserError:
        raise Problem(403, "only user accounts can link a provider", kind="not-a-user") from None
    return await _start(request, account.id)


async def callback(request: web.Request) -> web.StreamResponse:
    """Where the provider sends the browser back (RFC 6749 4.1.2): 303 to the page."""
    service = _service(request)
    # Parameters appearing more than once are ambiguous (RFC 6749 3.1): refuse them.
    query = request.rel_url.query
    if any(len(query.getall(name)) > 1 for name in query):
        raise Problem(400, "a callback parameter appears more than once", kind="invalid-callback")
    try:
        location = await service.callback(
            request.match_info["provider"],
            dict(query),
            request_id=request.get(REQUEST_ID),
            trace=request.get(TRACE),
        )
    except UnknownProviderError:
        raise _unknown_provider() from None
    except InvalidStateError:
        raise Problem(
            400,
            "this sign-in is unknown, expired or already used; start again from the page",
            kind="invalid-state",
            headers=_REDIRECT_HEADERS,
        ) from None
    except CallbackError as error:
        location = f"{error.return_to}#oidc_error={error.reason}"
    raise web.HTTPSeeOther(location, headers=_REDIRECT_HEADERS)


async def exchange(request: web.Request) -> web.Response:
    """The page's one-time handoff code (and its binding verifier) for Passgate tokens."""
    service = _service(request)
    body = await read_body(request, request.app[OPENAPI], "OidcExchangeRequest")
    try:
        response = await service.exchange(body["code"], body["binding_verifier"])
    except HandoffError:
        raise Problem(
            400,
            "the sign-in code is invalid, expired or already used; sign in again",
            kind="invalid-handoff",
            extensions={"error": "invalid_grant"},
        ) from None
    return web.json_response(response.to_json(), headers=NO_STORE)
