"""A WebSocket handshake at the gateway: recognised, checked, and given its token.

Checked before any token is looked at, in this order:

1. Origin (cross-site WebSocket hijacking): browsers do not apply CORS to WebSockets, so
   any page could open one with a user's ambient credentials; the gateway refuses (403)
   an Origin not on PASSGATE_CORS_ORIGINS, and a browser handshake without one (a
   browser always sends it; one that offers its token in the subprotocol or says
   `Sec-Fetch-Mode: websocket` is a browser).
2. The handshake's shape (RFC 6455 4.2.1): `Connection: upgrade`, `Sec-WebSocket-Version:
   13` and a `Sec-WebSocket-Key` of 16 base64 bytes, else 400 (with the version we speak,
   RFC 6455 4.4), never a 500 from further down.
3. The token, once. From `Authorization: Bearer` (any non-browser client), or, since a
   browser cannot set headers on a WebSocket, from the subprotocol offer
   `["passgate.v1", "bearer.<token>"]` (Kubernetes' API server does the same). The
   gateway answers `passgate.v1` only, never echoes the token, never passes the offer on
   upstream and never logs a header value. Never from the query string, which ends up in
   access logs, proxies' logs and browser history.

Then the route's pipeline runs as for any request (token, scopes, rate limit) with the
relay as its last step.
"""

from __future__ import annotations

import base64
import binascii

from aiohttp import hdrs, web

from common.errors import Problem
from gateway.cors import CorsPolicy
from gateway.pipeline import RouteHandler
from gateway.websocket.metrics import WebSocketMetrics

SUBPROTOCOL = "passgate.v1"
BEARER_PREFIX = "bearer."
VERSION = "13"


def _tokens(request: web.Request, name: str) -> list[str]:
    """The comma-separated tokens of every `name` header, in order."""
    return [
        token.strip() for value in request.headers.getall(name, ()) for token in value.split(",")
        if token.strip()
    ]


def is_upgrade(request: web.Request) -> bool:
    """A WebSocket handshake: a GET asking to upgrade to websocket (RFC 6455 4.1); a HEAD
    or anything else with the field is proxied as HTTP, which drops Upgrade."""
    return request.method == hdrs.METH_GET and any(
        token.lower() == "websocket" for token in _tokens(request, hdrs.UPGRADE)
    )


def offers_subprotocol(request: web.Request) -> bool:
    return SUBPROTOCOL in _tokens(request, hdrs.SEC_WEBSOCKET_PROTOCOL)


def _bad_handshake(detail: str) -> Problem:
    return Problem(
        400, detail, kind="invalid-websocket-handshake",
        headers={hdrs.SEC_WEBSOCKET_VERSION: VERSION},
    )


def check_shape(request: web.Request) -> None:
    """RFC 6455 4.2.1: what a server needs to answer a handshake; 400 otherwise."""
    if not any(token.lower() == "upgrade" for token in _tokens(request, hdrs.CONNECTION)):
        raise _bad_handshake("a WebSocket handshake says Connection: Upgrade")
    if request.headers.getall(hdrs.SEC_WEBSOCKET_VERSION, ()) != [VERSION]:
        raise _bad_handshake(f"Sec-WebSocket-Version must be {VERSION}")
    keys = request.headers.getall(hdrs.SEC_WEBSOCKET_KEY, ())
    if len(keys) != 1 or not _is_key(keys[0]):
        raise _bad_handshake("Sec-WebSocket-Key must be 16 bytes in base64, sent once")


def _is_key(value: str) -> bool:
    if len(value) != 24:
        return False
    try:
        return len(base64.b64decode(value, validate=True)) == 16
    except (binascii.Error, ValueError):
        return False


def offered_token(request: web.Request) -> str | None:
    """The token of a `bearer.<token>` subprotocol offer, or None; 400 for an offer the
    gateway could not answer (without passgate.v1, two tokens, a token and Authorization)."""
    offered = _tokens(request, hdrs.SEC_WEBSOCKET_PROTOCOL)
    tokens = [item[len(BEARER_PREFIX):] for item in offered if item.startswith(BEARER_PREFIX)]
    if not tokens:
        return None
    if len(tokens) > 1 or not tokens[0]:
        raise _bad_handshake("offer exactly one bearer.<token> subprotocol")
    if SUBPROTOCOL not in offered:
        raise _bad_handshake(f"offer the {SUBPROTOCOL} subprotocol with the bearer token")
    if hdrs.AUTHORIZATION in request.headers:
        raise _bad_handshake("send the token once: Authorization or the subprotocol, not both")
    return tokens[0]


class WebSocketRoute:
    """The handler of a route with `websocket: true`: handshakes go through `upgrade` (the
    route's pipeline ending in the relay), every other request through `http`."""

    def __init__(
        self,
        http: RouteHandler,
        upgrade: RouteHandler,
        *,
        policy: CorsPolicy,
        metrics: WebSocketMetrics,
    ) -> None:
        self._http = http
        self._upgrade = upgrade
        self._policy = policy
        self._refused = metrics.refused

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if not is_upgrade(request):
            return await self._http.handle(request)
        token = self._screen(request)
        if token is not None:
            # The pipeline reads the one place a token may be; the offer's token goes there.
            headers = request.headers.copy()
            headers[hdrs.AUTHORIZATION] = f"Bearer {token}"
            request = request.clone(headers=headers)
        return await self._upgrade.handle(request)

    def _screen(self, request: web.Request) -> str | None:
        """Steps 1-2 above, and the token a browser offered (None: Authorization, if any)."""
        try:
            token = offered_token(request)
            origin = request.headers.get(hdrs.ORIGIN)
            browser = token is not None or "Sec-Fetch-Mode" in request.headers
            if origin is None and browser:
                self._refused["origin"].inc()
                raise Problem(403, "a browser's WebSocket handshake must carry its Origin",
                              kind="websocket-origin-refused")
            if origin is not None and not self._policy.allows(origin):
                self._refused["origin"].inc()
                raise Problem(403, "WebSockets from this origin are not allowed",
                              kind="websocket-origin-refused")
            check_shape(request)
        except Problem as problem:
            if problem.status == 400:
                self._refused["bad_handshake"].inc()
            raise
        return token
