"""Proxy attacks, sent byte for byte over raw sockets (asyncio streams): request targets
that could reach another host or path, hop-by-hop tricks, request smuggling framings,
oversized and slow requests.

Each is refused with a 4xx and reaches no backend: every attack names a fresh marker (a
UUID) in its path, and no service's log may ever show that marker. Malformed framing is
refused by aiohttp's HTTP parser before any application code runs; see
`assert_refused_by_parser` for why that 400 is plain text.
"""

from __future__ import annotations

import json
import uuid

import pytest

from devstack.stack import Stack
from tests.support.hostile import (
    PROBLEM_TYPE,
    Client,
    RawReply,
    Secrets,
    User,
    assert_no_leak,
    assert_raw_refused,
    assert_refused,
    raw_exchange,
    read_text,
    tripwire,
)

pytestmark = pytest.mark.e2e

ORDER = json.dumps({"items": [{"sku": "proxy-1", "quantity": 1, "unit_price_cents": 1}]}).encode()


def service_logs(stack: Stack) -> str:
    return read_text(
        p.log_path for name, p in stack.processes.items() if not name.startswith("gateway")
    )


def assert_not_forwarded(stack: Stack, marker: str) -> None:
    assert marker not in service_logs(stack), f"a backend saw the request carrying {marker}"


def order_count(gateway: Client, user: User) -> int:
    reply = gateway.get("/orders?limit=100", token=user.access_token)
    assert reply.status == 200
    return len(reply.json()["items"])


async def send(stack: Stack, head: str, body: bytes = b"", **kwargs) -> RawReply:
    """One request over a fresh connection: `head` is the request line and header lines."""
    data = head.replace("\n", "\r\n").encode("latin-1")
    if not data.endswith(b"\r\n\r\n"):
        data += b"\r\n" if data.endswith(b"\r\n") else b"\r\n\r\n"
    return await raw_exchange(stack.config.host, stack.config.ports.gateway, data + body, **kwargs)


def assert_refused_by_parser(reply: RawReply, secrets: Secrets) -> None:
    """aiohttp's HTTP parser refuses malformed framing with a plain-text 400 and closes the
    connection. That answer cannot be problem+json: aiohttp builds it in its private
    connection handler (RequestHandler.handle_error) before any application, middleware or
    response signal exists, so only replacing aiohttp's protocol class could change it. What
    matters holds: a 4xx, the connection closed (nothing smuggled after it), no stack trace,
    no secret."""
    assert reply.status == 400, (reply.status, reply.head, reply.body[:300])
    assert reply.content_type in ("text/plain", PROBLEM_TYPE), reply.head
    assert reply.closed is True, reply.head
    text = reply.head + reply.body.decode("utf-8", "replace")
    assert "Traceback" not in text and "-----BEGIN" not in text
    assert not secrets.found_in(text)


# -- request targets ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "statuses"),
    [
        ("http://{wire}/users/me", (401,)),
        ("http://{wire}/internal/profiles/{marker}", (404,)),
        ("http://{wire}/users/%2e%2e/internal/profiles/{marker}", (400, 404)),
        ("https://{wire}/orders/{marker}", (401,)),
        ("http://user:pass@{wire}/users/{marker}", (401,)),
        ("//{wire}/internal/profiles/{marker}", (400, 404)),
    ],
    ids=["protected-route", "internal", "escape", "other-scheme", "userinfo", "network-path"],
)
async def test_an_absolute_form_target_never_chooses_the_upstream(
    stack: Stack, secrets: Secrets, target: str, statuses: tuple[int, ...]
) -> None:
    """RFC 9112 section 3.2.2 lets a server accept absolute-form; its authority must never
    become where the gateway sends the request."""
    marker = str(uuid.uuid4())
    with tripwire() as wire:
        line = target.format(wire=wire.authority, marker=marker)
        reply = await send(stack, f"GET {line} HTTP/1.1\nHost: gateway\nConnection: close")
        assert_raw_refused(reply, statuses)
        assert wire.requests == []
    assert_not_forwarded(stack, marker)


async def test_an_absolute_form_target_on_a_public_route_is_answered_by_the_real_upstream(
    stack: Stack, gateway: Client
) -> None:
    """Not refused (a public route, a legal target form), but answered by auth, never by the
    host the target names."""
    with tripwire() as wire:
        wire.keys = [{"kty": "RSA", "kid": "attacker", "n": "AQAB", "e": "AQAB"}]
        reply = await send(
            stack, f"GET http://{wire.authority}/.well-known/jwks.json HTTP/1.1\nHost: x\nConnection: close"
        )
        assert reply.status == 200
        assert json.loads(reply.body) == gateway.get("/.well-known/jwks.json").json()
        assert wire.requests == []


@pytest.mark.parametrize(
    "line",
    ["CONNECT {wire} HTTP/1.1", "OPTIONS * HTTP/1.1", "TRACE /users/me HTTP/1.1"],
    ids=["connect-authority-form", "asterisk-form", "trace"],
)
async def test_tunnels_and_echoes_are_refused(stack: Stack, secrets: Secrets, line: str) -> None:
    with tripwire() as wire:
        reply = await send(
            stack, f"{line.format(wire=wire.authority)}\nHost: gateway\nConnection: close"
        )
        assert 400 <= reply.status < 500, reply.head
        assert wire.requests == []
        if reply.content_type == PROBLEM_TYPE:
            assert_raw_refused(reply, (reply.status,))
        else:
            assert_refused_by_parser(reply, secrets)


ESCAPES = {
    "encoded-dot-dot": ("GET", "/users/%2e%2e/internal/profiles/{m}"),
    "encoded-dot-dot-upper": ("GET", "/users/%2E%2E/internal/profiles/{m}"),
    "encoded-dot-dot-deep": ("GET", "/users/me/%2e%2e/%2e%2e/internal/profiles/{m}"),
    "encoded-dot-dot-public-route": ("POST", "/auth/%2e%2e/internal/profiles/{m}"),
    "half-encoded-dot-dot": ("GET", "/.well-known/.%2e/internal/profiles/{m}"),
    "encoded-slash": ("GET", "/.well-known/..%2f..%2finternal%2fprofiles%2f{m}"),
    "encoded-slash-in-id": ("POST", "/orders/{m}%2fcancel"),
    "encoded-slash-after-route": ("GET", "/orders%2f{m}"),
    "encoded-backslash": ("GET", "/users/me%5c..%5c..%5cinternal%5cprofiles%5c{m}"),
    "double-encoded-dot-dot": ("GET", "/.well-known/%252e%252e/internal/profiles/{m}"),
    "double-slash-prefix": ("GET", "//internal/profiles/{m}"),
    "double-slash-inside": ("GET", "/users//{m}"),
    "double-slash-then-dots": ("POST", "/auth//../internal/profiles/{m}"),
    "literal-dot-dot": ("POST", "/auth/../internal/profiles/{m}"),
    "literal-dot": ("GET", "/users/./{m}"),
    "backslash": ("GET", "/users\\..\\internal\\profiles\\{m}"),
    "encoded-nul": ("GET", "/users/{m}%00"),
    "semicolon-dot-dot": ("GET", "/users/..;/internal/profiles/{m}"),
    "fullwidth-dots": ("GET", "/users/%ef%bc%8e%ef%bc%8e/internal/profiles/{m}"),
}


@pytest.mark.parametrize("case", list(ESCAPES))
async def test_a_path_escape_is_refused_before_any_backend(
    stack: Stack, alice: User, secrets: Secrets, case: str
) -> None:
    """With a valid admin-free token, so a refusal is the path's doing, not a missing token."""
    marker = str(uuid.uuid4())
    method, path = ESCAPES[case]
    path = path.format(m=marker)
    reply = await send(
        stack,
        f"{method} {path} HTTP/1.1\nHost: gateway\nAuthorization: Bearer {alice.access_token}\n"
        "Content-Length: 0\nConnection: close",
    )
    if reply.content_type == PROBLEM_TYPE:
        assert_raw_refused(reply, (400, 403, 404, 405))
    else:
        assert_refused_by_parser(reply, secrets)
    assert_not_forwarded(stack, marker)


# -- hop-by-hop --------------------------------------------------------------------------


async def test_connection_naming_identity_headers_forges_nothing_without_a_token(
    stack: Stack, alice: User, secrets: Secrets
) -> None:
    reply = await send(
        stack,
        f"GET /users/me HTTP/1.1\nHost: gateway\nX-User-Id: {alice.id}\n"
        "X-User-Scopes: users:read admin\nConnection: X-User-Id, X-User-Scopes, close",
    )
    assert_raw_refused(reply, (401,))


async def test_connection_naming_identity_headers_cannot_strip_the_gateways_own(
    stack: Stack, alice: User, bob: User
) -> None:
    """Listing the identity headers in Connection must not remove the ones the gateway adds
    (the backend would then see no identity, or an earlier forged one): Bob is Bob."""
    reply = await send(
        stack,
        f"GET /users/me HTTP/1.1\nHost: gateway\nAuthorization: Bearer {bob.access_token}\n"
        f"X-User-Id: {alice.id}\nConnection: close, X-User-Id, X-User-Scopes, X-User-Token-Id",
    )
    assert reply.status == 200, reply.body
    assert json.loads(reply.body)["id"] == bob.id


# -- framing: duplicate lengths, transfer codings -------------------------------------------

SMUGGLED = "GET /internal/profiles/{m} HTTP/1.1\r\nHost: users\r\n\r\n"
FRAMINGS = {
    "duplicate-content-length": "Content-Length: {n}\nContent-Length: 5",
    "content-length-list": "Content-Length: {n}, 5",
    "content-length-plus-sign": "Content-Length: +{n}",
    "content-length-huge": "Content-Length: 99999999999999999999999999",
    "content-length-negative": "Content-Length: -1",
    "te-chunked-and-content-length": "Content-Length: {n}\nTransfer-Encoding: chunked",
    "te-duplicate": "Transfer-Encoding: chunked\nTransfer-Encoding: identity",
    "te-obfuscated": "Transfer-Encoding: xchunked",
    "te-chunked-not-last": "Transfer-Encoding: chunked, identity",
    "te-with-space-before-colon": "Transfer-Encoding : chunked",
    "te-bare-lf": "Transfer-Encoding: chunked\n",
    "te-on-http-1-0": "Transfer-Encoding: chunked",
}


@pytest.mark.parametrize("case", list(FRAMINGS))
async def test_ambiguous_framing_is_refused_and_smuggles_nothing(
    stack: Stack, gateway: Client, alice: User, secrets: Secrets, case: str
) -> None:
    marker = str(uuid.uuid4())
    smuggled = SMUGGLED.format(m=marker)
    body = f"0\r\n\r\n{smuggled}".encode()
    version = "HTTP/1.0" if case == "te-on-http-1-0" else "HTTP/1.1"
    framing = FRAMINGS[case].format(n=len(body))
    if case == "te-bare-lf":
        head = (
            f"POST /orders {version}\r\nHost: gateway\r\nAuthorization: Bearer {alice.access_token}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\n\r\n"
        ).encode()
        reply = await raw_exchange(stack.config.host, stack.config.ports.gateway, head + body)
    else:
        reply = await send(
            stack,
            f"POST /orders {version}\nHost: gateway\nAuthorization: Bearer {alice.access_token}\n"
            f"Content-Type: application/json\n{framing}",
            body,
        )
    if reply.content_type == PROBLEM_TYPE:
        assert_raw_refused(reply, (400, 411, 413))
    else:
        assert_refused_by_parser(reply, secrets)
    assert_not_forwarded(stack, marker)
    assert order_count(gateway, alice) == order_count(gateway, alice)  # the service still answers


# -- size ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    ["X-Padding: {big}", "Authorization: Bearer {big}", "Cookie: a={big}", "X-{big}: 1"],
    ids=["long-value", "long-authorization", "long-cookie", "long-name"],
)
async def test_an_oversized_header_is_refused(stack: Stack, secrets: Secrets, header: str) -> None:
    marker = str(uuid.uuid4())
    big = "a" * 9000
    reply = await send(
        stack, f"GET /orders/{marker} HTTP/1.1\nHost: gateway\n{header.format(big=big)}\nConnection: close"
    )
    assert_refused_by_parser(reply, secrets)
    assert big not in reply.body.decode("latin-1")  # at most a short excerpt is quoted
    assert_not_forwarded(stack, marker)


async def test_too_many_headers_are_refused(stack: Stack, alice: User, secrets: Secrets) -> None:
    marker = str(uuid.uuid4())
    many = "\n".join(f"X-Filler-{i}: {'v' * 100}" for i in range(2000))
    reply = await send(
        stack,
        f"GET /orders/{marker} HTTP/1.1\nHost: gateway\nAuthorization: Bearer {alice.access_token}\n"
        f"{many}\nConnection: close",
    )
    if reply.content_type == PROBLEM_TYPE:
        assert_raw_refused(reply, (400, 431))
    else:
        assert_refused_by_parser(reply, secrets)
    assert_not_forwarded(stack, marker)


async def test_an_oversized_request_line_is_refused(stack: Stack, secrets: Secrets) -> None:
    marker = str(uuid.uuid4())
    reply = await send(stack, f"GET /orders/{marker}?q={'a' * 9000} HTTP/1.1\nHost: gateway\nConnection: close")
    assert_refused_by_parser(reply, secrets)
    assert_not_forwarded(stack, marker)


@pytest.mark.parametrize("route", ["/orders", "/auth/register", "/users/me"])
@pytest.mark.parametrize("framing", ["content-length", "chunked", "announced-only"])
async def test_an_oversized_body_is_refused_and_nothing_stored(
    stack: Stack, gateway: Client, alice: User, secrets: Secrets, route: str, framing: str
) -> None:
    """413 whether the size is announced (refused before reading) or only discovered while
    streaming (a chunked body, counted as it passes)."""
    before = order_count(gateway, alice)
    item = {"sku": "x" * 60, "quantity": 1, "unit_price_cents": 1}
    body = json.dumps({"items": [item] * 1500, "username": "big-body", "password": "p" * 20}).encode()
    assert len(body) > 65536
    method = "PATCH" if route == "/users/me" else "POST"
    head = (
        f"{method} {route} HTTP/1.1\nHost: gateway\nAuthorization: Bearer {alice.access_token}\n"
        "Content-Type: application/json\nConnection: close\n"
    )
    # Whether the connection is closed afterwards is not this test's question: not probed.
    if framing == "content-length":
        reply = await send(stack, head + f"Content-Length: {len(body)}", body, probe_close=False)
    elif framing == "chunked":
        chunks = b"".join(
            b"%x\r\n%s\r\n" % (len(body[i : i + 8192]), body[i : i + 8192]) for i in range(0, len(body), 8192)
        )
        reply = await send(stack, head + "Transfer-Encoding: chunked", chunks + b"0\r\n\r\n", probe_close=False)
    else:
        reply = await send(stack, head + "Content-Length: 1000000000000", probe_close=False)
    assert_raw_refused(reply, (413,))
    assert order_count(gateway, alice) == before
    assert gateway.get("/users/me", token=alice.access_token).json()["display_name"] != "x"


# -- slow ------------------------------------------------------------------------------------


async def test_a_body_that_trickles_in_is_cut_off_with_408(
    stack: Stack, gateway: Client, alice: User, secrets: Secrets
) -> None:
    """Slow POST (slowloris for bodies): one byte a while, never finishing. The gateway
    answers 408 Request Timeout (the client's fault, not a 5xx from the upstream) within the
    route's time limit, and nothing is stored."""
    before = order_count(gateway, alice)
    reply = await send(
        stack,
        f"POST /orders HTTP/1.1\nHost: gateway\nAuthorization: Bearer {alice.access_token}\n"
        f"Content-Type: application/json\nContent-Length: {len(ORDER)}",
        ORDER[:1],
        trickle=[(0.5, ORDER[i : i + 1]) for i in range(1, len(ORDER) - 1)],
        timeout=30,
    )
    problem = assert_raw_refused(reply, (408,))
    assert "body" in problem["detail"]
    assert order_count(gateway, alice) == before


async def test_headers_then_silence_is_cut_off(stack: Stack, gateway: Client, alice: User) -> None:
    """Headers announce a body that never comes: 408, nothing stored."""
    before = order_count(gateway, alice)
    reply = await send(
        stack,
        f"POST /orders HTTP/1.1\nHost: gateway\nAuthorization: Bearer {alice.access_token}\n"
        f"Content-Type: application/json\nContent-Length: {len(ORDER)}",
        timeout=30,
    )
    assert_raw_refused(reply, (408,))
    assert order_count(gateway, alice) == before


def test_the_gateway_still_answers_after_the_attacks(gateway: Client, alice: User) -> None:
    reply = gateway.get("/users/me", token=alice.access_token)
    assert reply.status == 200
    assert_no_leak(reply)
    assert_refused(gateway.get("/users/me"), 401)
