"""Header and path hygiene: what enters the gateway, what reaches a backend, what goes back.

Inbound, on every request and every path (public, private, preflight, errors, unmatched):
the reserved identity namespace X-User-* is removed before any gateway code reads the
request, and a path that could mean something else to a backend is refused.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from common.errors import Problem
from common.identity import Identity, is_identity_header
from common.keys import IDENTITY

# RFC 9110 section 7.6.1: connection-specific fields a proxy must not forward, plus the
# de-facto ones (Keep-Alive, Proxy-Connection) and the Proxy-* auth fields of RFC 9110 11.7.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authenticate",
        "proxy-authorization",
    }
)
# Request fields the gateway never passes on, besides hop-by-hop and X-User-*:
#   authorization   backends never see bearer tokens: the gateway verified it and sends the
#                   identity instead, so a backend log or bug cannot leak a replayable token;
#   cookie          tokens never travel in cookies, and backends have no use for them;
#   host            the upstream's own Host is set by the client session;
#   content-length  re-set below only when the body length is known;
#   expect          100-continue is answered by the gateway's own server;
#   forwarding fields and tracing: replaced by the gateway's own values.
_DROP_REQUEST = HOP_BY_HOP | {
    "authorization",
    "cookie",
    "host",
    "content-length",
    "expect",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
    "x-request-id",
    "traceparent",
}
# Response fields dropped besides hop-by-hop and Access-Control-*: Server names the
# backend's stack; Content-Length is set from the body the gateway actually sends.
_DROP_RESPONSE = HOP_BY_HOP | {"server", "content-length"}
_IDENTITY_PREFIXES = ("x-user-", "x_user_", "x-user_", "x_user-")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _connection_tokens(headers: CIMultiDictProxy[str]) -> frozenset[str]:
    """Field names listed in Connection, which are hop-by-hop too (RFC 9110 section 7.6.1)."""
    values = headers.getall("Connection", ())
    if not values:
        return frozenset()
    return frozenset(
        token.strip().lower() for value in values for token in value.split(",") if token.strip()
    )


def is_safe_path(raw_path: str) -> bool:
    """False for a raw path a backend could read differently from the gateway's router.

    Encoded '/', '\\' and '.' (%2f, %5c, %2e), NUL, backslashes, empty segments and dot
    segments could move the request to another route or upstream after decoding or
    normalisation further down; aiohttp itself normalises none of them in the raw path.
    An encoded '%' (%25) is refused too: decoded once more (%252e%252e), by a backend or
    any hop that decodes twice, it spells all of the above. No API path needs one.
    """
    if "%" in raw_path:
        lowered = raw_path.lower()
        if any(escape in lowered for escape in ("%2f", "%5c", "%2e", "%00", "%25")):
            return False
    if "\\" in raw_path or "//" in raw_path:
        return False
    if "/." in raw_path:
        return not any(segment in (".", "..") for segment in raw_path.split("/"))
    return True


@web.middleware
async def request_hygiene_middleware(
    request: web.Request, handler: web.RequestHandler
) -> web.StreamResponse:
    """Drop every X-User-* header, then refuse ambiguous paths; runs for every request.

    aiohttp resolves the route before middlewares run, but routing reads only the method
    and path, so no gateway code ever sees a client-sent identity header.
    """
    headers = request.headers
    if any(name.lower().startswith(_IDENTITY_PREFIXES) for name in headers):
        clean = CIMultiDict((k, v) for k, v in headers.items() if not is_identity_header(k))
        clone = request.clone(headers=clean)
        try:
            return await _guarded(clone, handler)
        finally:
            # The access log reads the original request: tell it who the caller was.
            identity: Identity | None = clone.get(IDENTITY)
            if identity is not None:
                request[IDENTITY] = identity
    return await _guarded(request, handler)


async def _guarded(request: web.Request, handler: web.RequestHandler) -> web.StreamResponse:
    if not is_safe_path(request.rel_url.raw_path):
        raise Problem(
            400,
            "the path holds encoded separators or dot segments, which are not accepted",
            kind="invalid-path",
        )
    return await handler(request)


def upstream_request_headers(
    request: web.Request, *, forward_basic_auth: bool = False
) -> CIMultiDict[str]:
    """The client's headers minus everything a backend must not receive."""
    incoming = request.headers
    listed = _connection_tokens(incoming)
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in incoming.items():
        lname = name.lower()
        if lname in _DROP_REQUEST or lname in listed or is_identity_header(lname):
            if forward_basic_auth and lname == "authorization" and value[:6].lower() == "basic ":
                out.add(name, value)  # OAuth client authentication (RFC 6749 2.3.1) only
            continue
        out.add(name, value)
    return out


def response_headers(upstream: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    """The upstream's response headers minus hop-by-hop and any Access-Control-* field.

    CORS is decided only by the gateway: an upstream's Access-Control-* headers could
    widen it, and aiohttp-cors refuses a response that already carries them.
    """
    listed = _connection_tokens(upstream)
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in upstream.items():
        lname = name.lower()
        if lname in _DROP_RESPONSE or lname in listed or lname.startswith("access-control-"):
            continue
        out.add(name, value)
    return out


class ForwardedHeaders:
    """X-Forwarded-For/-Proto/-Host, believing the incoming ones only from trusted proxies."""

    def __init__(self, trusted_proxies: Iterable[Network] = ()) -> None:
        self._trusted = tuple(trusted_proxies)

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.strip())
        except ValueError:
            return False
        return any(ip in network for network in self._trusted)

    def resolve(self, request: web.Request) -> tuple[str, dict[str, str]]:
        """The client address (for rate limits) and the X-Forwarded-* headers to send."""
        peer = request.remote or "unknown"
        host = request.headers.get("Host", "")
        proto = request.scheme
        if not self._trusted or not self._is_trusted(peer):
            return peer, {
                "X-Forwarded-For": peer,
                "X-Forwarded-Proto": proto,
                "X-Forwarded-Host": host,
            }
        chain = [
            hop.strip()
            for value in request.headers.getall("X-Forwarded-For", ())
            for hop in value.split(",")
            if hop.strip()
        ]
        chain.append(peer)
        # The client is the rightmost address not added by one of our own proxies.
        client = next((hop for hop in reversed(chain) if not self._is_trusted(hop)), chain[0])
        forwarded_proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
        forwarded_host = request.headers.get("X-Forwarded-Host", "").split(",")[0].strip()
        return client, {
            "X-Forwarded-For": ", ".join(chain),
            "X-Forwarded-Proto": forwarded_proto if forwarded_proto in ("http", "https") else proto,
            "X-Forwarded-Host": forwarded_host or host,
        }
