"""Header and path hygiene: what enters the gateway, what reaches a backend, what goes back.

Inbound, on every request and every path (public, private, preflight, errors, unmatched):
a path that could mean something else to a backend is refused, and nothing of the
reserved identity namespace X-User-* is ever read or passed on.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Mapping

from aiohttp import hdrs, web
from multidict import CIMultiDictProxy

from common.errors import Problem

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
#   host            the replica's own Host is set by the proxy;
#   content-length  set by the proxy from the body's framing (with transfer-encoding);
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
_DROP_RESPONSE_BYTES = frozenset(name.encode() for name in _DROP_RESPONSE)
_NO_NAMES: frozenset[bytes] = frozenset()
_EMPTY_TOKEN = frozenset({b""})  # what "a, , b" lists between its commas
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


def screen(request: web.Request) -> None:
    """Refuse a path a backend could read differently from the gateway's router, and a
    body no backend can read.

    Client-sent identity headers need no removal here: no gateway code reads them, and
    `upstream_head_fields` drops the whole namespace, in every spelling, from what a
    backend receives (the only place request headers are copied).
    """
    if not is_safe_path(request.rel_url.raw_path):
        raise Problem(
            400,
            "the path holds encoded separators or dot segments, which are not accepted",
            kind="invalid-path",
        )
    headers = request.headers
    if hdrs.CONTENT_ENCODING in headers or hdrs.CONTENT_TYPE in headers:
        _screen_body_headers(headers)


# Request content codings (RFC 9110 8.4) no service decodes: a coded body is refused here,
# so no backend ever reads compressed bytes as JSON. RFC 7694 3: 415 with Accept-Encoding.
_IDENTITY_ONLY = {"Accept-Encoding": "identity"}


def _screen_body_headers(headers: CIMultiDictProxy[str]) -> None:
    codings = [
        coding.strip().lower()
        for value in headers.getall(hdrs.CONTENT_ENCODING, ())
        for coding in value.split(",")
        if coding.strip()
    ]
    if any(coding != "identity" for coding in codings):
        raise Problem(
            415,
            "request bodies are accepted without content coding only (Content-Encoding: identity)",
            kind="unsupported-content-encoding",
            headers=_IDENTITY_ONLY,
        )
    content_type = headers.get(hdrs.CONTENT_TYPE)
    if content_type is not None:
        for parameter in content_type.split(";")[1:]:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
                raise Problem(
                    415,
                    "request bodies are UTF-8 (API contract): the only charset accepted is utf-8",
                    kind="unsupported-charset",
                )


def upstream_head_fields(
    headers: CIMultiDictProxy[str], *, forward_basic_auth: bool = False
) -> str:
    """The client's header lines a backend may receive, each as "Name: value\r\n".

    aiohttp's parser has already refused CR, LF and NUL in names and values, so the lines
    are well-formed as they are.
    """
    listed = _connection_tokens(headers)
    lines = []
    for name, value in headers.items():
        lname = name.lower()
        if lname in _DROP_REQUEST or lname in listed or lname.startswith(_IDENTITY_PREFIXES):
            if forward_basic_auth and lname == "authorization" and value[:6].lower() == "basic ":
                lines.append(f"{name}: {value}\r\n")  # OAuth client authentication (RFC 6749 2.3.1)
            continue
        lines.append(f"{name}: {value}\r\n")
    return "".join(lines)


def response_headers(
    raw: list[tuple[bytes, bytes]], own: Mapping[str, str] | None = None
) -> tuple[list[tuple[str, str]], int | None]:
    """The upstream's response header fields minus hop-by-hop and any Access-Control-*
    field, plus the gateway's `own` (which replace the upstream's of the same names), and
    the body length the upstream announced.

    CORS is decided only by the gateway: an upstream's Access-Control-* headers could
    widen it, and aiohttp-cors refuses a response that already carries them. Names are
    compared as the bytes llhttp gave, and only kept fields are decoded, in one pass over
    them (this runs on every answer). The fields are returned as pairs, which the response
    turns into its one header multidict.
    """
    replaced = _lowered_names(tuple(own)) if own else _NO_NAMES
    listed = _NO_NAMES  # named by the upstream's Connection field (RFC 9110 7.6.1)
    length: int | None = None
    kept = []
    for name, value in raw:
        lname = name.lower()
        if lname in _DROP_RESPONSE_BYTES:
            if lname == b"connection":
                listed = listed | _listed_names(value)
            elif lname == b"content-length" and value.isdigit():
                length = int(value)  # llhttp has refused any other spelling, and two lengths
        elif lname not in replaced and not lname.startswith(b"access-control-"):
            kept.append((name.decode("latin-1"), value.decode("utf-8", "surrogateescape")))
    if listed:  # rare: wherever such a field stood, before or after Connection, it goes
        kept = [field for field in kept if field[0].lower().encode("latin-1") not in listed]
    if own:
        kept.extend(own.items())
    return kept, length


@functools.lru_cache(maxsize=64)
def _lowered_names(names: tuple[str, ...]) -> frozenset[bytes]:
    """The gateway's own field names as an upstream's would compare (a route's few)."""
    return frozenset(name.lower().encode("latin-1") for name in names)


def _listed_names(value: bytes) -> frozenset[bytes]:
    """The field names a Connection value lists that are not dropped anyway."""
    listed = frozenset(token.strip().lower() for token in value.split(b","))
    return listed - _DROP_RESPONSE_BYTES - _EMPTY_TOKEN


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

    def resolve(self, request: web.Request) -> tuple[str, str]:
        """The client address (for rate limits) and the X-Forwarded-* header lines to send."""
        peer = request.remote or "unknown"
        host = request.headers.get("Host", "")
        proto = request.scheme
        if not self._trusted or not self._is_trusted(peer):
            return peer, (
                f"X-Forwarded-For: {peer}\r\nX-Forwarded-Proto: {proto}\r\nX-Forwarded-Host: {host}\r\n"
            )
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
        return client, (
            f"X-Forwarded-For: {', '.join(chain)}\r\n"
            f"X-Forwarded-Proto: {forwarded_proto if forwarded_proto in ('http', 'https') else proto}\r\n"
            f"X-Forwarded-Host: {forwarded_host or host}\r\n"
        )
