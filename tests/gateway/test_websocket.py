"""WebSocket routes through the gateway: the handshake's refusals, the relay and its limits.

The gateway is the real create_app on a real port, in front of the recording backend,
whose WebSocket side (tests/support/websocket_peer.py) reports the handshake it received
and echoes or misbehaves on command. The packaged routes file's `orders-stream` route
(/orders/stream, websocket: true, scope orders:read) is the route under test.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import make_mocked_request
from hypothesis import given, settings
from hypothesis import strategies as st

from common.errors import Problem
from common.scopes import default_scope_policy
from gateway.routes import RoutesError, load_routes, parse_routes
from gateway.websocket import WebSocketSettings
from gateway.websocket.handshake import check_shape, is_upgrade, offered_token
from tests.support.gateway_under_test import BACKEND_STATE
from tests.support.stack_settings import PACKAGED_ROUTES

PATH = "/orders/stream"
ORIGIN = "http://app.test"
KEY = "dGhlIHNhbXBsZSBub25jZQ=="


@pytest.fixture
async def gateway(make_gateway):
    return await make_gateway(cors_origins=(ORIGIN,))


async def _open(gateway, **kwargs):
    socket = await gateway.client.ws_connect(PATH, **kwargs)
    hello = await socket.receive_json()
    return socket, hello


def _headers(hello) -> dict[str, str]:
    return {name.lower(): value for name, value in hello["headers"]}


async def test_authorization_header_opens_a_relayed_socket_with_the_callers_identity(gateway):
    token = gateway.token()
    socket, hello = await _open(
        gateway,
        headers={"Authorization": f"Bearer {token}", "X-User-Id": "someone-else",
                 "X_User_Scopes": "admin"},
    )
    received = _headers(hello)
    assert received["x-user-id"] == "3f1c2a4e-0000-4000-8000-000000000001"
    assert "admin" not in received["x-user-scopes"].split()
    assert "authorization" not in received
    assert token not in json.dumps(hello)
    assert hello["raw_path"] == PATH
    assert socket.protocol is None
    await socket.send_str("hello")
    assert await socket.receive_str() == "hello"
    await socket.send_bytes(b"\x00\x01")
    assert await socket.receive_bytes() == b"\x00\x01"
    await socket.close()


async def test_a_browser_offers_its_token_as_a_subprotocol_and_gets_only_passgate_back(gateway):
    token = gateway.token()
    socket, hello = await _open(
        gateway, protocols=("passgate.v1", f"bearer.{token}"), origin=ORIGIN
    )
    assert socket.protocol == "passgate.v1"
    received = _headers(hello)
    assert token not in json.dumps(hello)  # no header upstream carries the token
    assert "sec-websocket-protocol" not in received
    assert received["x-user-id"] == "3f1c2a4e-0000-4000-8000-000000000001"
    await socket.close()


async def test_the_101_answer_never_echoes_the_token(gateway):
    token = gateway.token()
    status, head = await _raw_handshake(
        gateway, {"Sec-WebSocket-Protocol": f"passgate.v1, bearer.{token}", "Origin": ORIGIN}
    )
    assert status == 101
    assert token.encode() not in head
    assert b"sec-websocket-protocol: passgate.v1\r\n" in head.lower()


async def _raw_handshake(gateway, headers: dict[str, str]) -> tuple[int, bytes]:
    """A handshake sent byte for byte; the status and the answer's head."""
    host, port = gateway.client.server.host, gateway.client.server.port
    reader, writer = await asyncio.open_connection(host, port)
    fields = {"Host": f"{host}:{port}", "Upgrade": "websocket", "Connection": "Upgrade",
              "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": KEY, **headers}
    lines = [f"GET {PATH} HTTP/1.1"] + [f"{k}: {v}" for k, v in fields.items() if v is not None]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    head = await reader.readuntil(b"\r\n\r\n")
    writer.close()
    return int(head.split(b" ", 2)[1]), head


@pytest.mark.parametrize(
    "kind, headers",
    [
        ("none", {}),
        ("bad", {"Authorization": "Bearer not.a.jwt"}),
        ("expired", "expired"),
        ("bad-subprotocol-token", {"Origin": ORIGIN, "Sec-WebSocket-Protocol": "passgate.v1, bearer.x.y.z"}),
    ],
)
async def test_no_bad_or_expired_token_is_401_before_any_upgrade(gateway, kind, headers):
    if headers == "expired":
        headers = {"Authorization": f"Bearer {gateway.token(exp=int(gateway.clock()) - 120)}"}
    before = len(gateway.log)
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await gateway.client.ws_connect(PATH, headers=headers)
    assert refused.value.status == 401
    assert "Bearer" in refused.value.headers["WWW-Authenticate"]
    assert len(gateway.log) == before  # nothing reached the backend


async def test_a_token_without_the_routes_scope_is_403(gateway):
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await gateway.client.ws_connect(PATH, headers=gateway.bearer(scope="users:read"))
    assert refused.value.status == 403


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.test"},
        {"Origin": "null"},
        {"Sec-Fetch-Mode": "websocket"},  # a browser that sent no Origin
    ],
)
async def test_a_disallowed_or_missing_browser_origin_is_403_before_the_token(gateway, headers):
    status, head = await _raw_handshake(gateway, {"Authorization": f"Bearer {gateway.token()}", **headers})
    assert status == 403
    assert b"application/problem+json" in head
    assert gateway.metric("gateway_websocket_refused_total", {"reason": "origin"}) == 1


async def test_a_subprotocol_token_without_origin_is_403(gateway):
    status, _ = await _raw_handshake(
        gateway, {"Sec-WebSocket-Protocol": f"passgate.v1, bearer.{gateway.token()}"}
    )
    assert status == 403


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-WebSocket-Key": "short"},
        {"Sec-WebSocket-Key": "!!!!!!!!!!!!!!!!!!!!!!=="},
        {"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ"},
        {"Sec-WebSocket-Key": None},
        {"Sec-WebSocket-Version": "8"},
        {"Sec-WebSocket-Version": "13, 13"},
        {"Sec-WebSocket-Version": "\u00ff"},
        {"Sec-WebSocket-Version": None},
        {"Connection": "keep-alive"},
        {"Sec-WebSocket-Protocol": "bearer.a, bearer.b, passgate.v1", "Origin": ORIGIN},
        {"Sec-WebSocket-Protocol": "bearer.abc", "Origin": ORIGIN},
        {"Sec-WebSocket-Protocol": "passgate.v1, bearer.", "Origin": ORIGIN},
    ],
)
async def test_hostile_handshakes_are_400_problems_never_500(gateway, headers):
    fields = {"Authorization": f"Bearer {gateway.token()}", **headers}
    if "Sec-WebSocket-Protocol" in headers:
        del fields["Authorization"]
    status, head = await _raw_handshake(gateway, fields)
    assert status == 400, head
    assert b"application/problem+json" in head
    assert b"sec-websocket-version: 13\r\n" in head.lower()


async def test_token_and_subprotocol_token_together_are_400(gateway):
    token = gateway.token()
    status, _ = await _raw_handshake(
        gateway, {"Authorization": f"Bearer {token}", "Origin": ORIGIN,
                  "Sec-WebSocket-Protocol": f"passgate.v1, bearer.{token}"},
    )
    assert status == 400


async def test_a_plain_get_on_a_websocket_route_is_proxied_as_http(gateway):
    response = await gateway.client.get(PATH, headers=gateway.bearer())
    assert response.status == 200
    body = await response.json()
    assert body["raw_path"] == PATH and body["method"] == "GET"


async def test_a_head_asking_for_an_upgrade_is_proxied_as_http_without_it(gateway):
    response = await gateway.client.head(
        PATH, headers={**gateway.bearer(), "Upgrade": "websocket", "Connection": "Upgrade",
                       "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": KEY},
    )
    assert response.status == 200
    assert gateway.log[-1]["method"] == "HEAD"
    assert "upgrade" not in {name.lower() for name, _ in gateway.log[-1]["headers"]}


async def test_a_message_over_the_routes_limit_closes_with_1009_either_way(make_gateway):
    gateway = await make_gateway(routes={"orders_stream": {"max_body_bytes": 1024}})
    socket, _ = await _open(gateway, headers=gateway.bearer())
    await socket.send_bytes(b"x" * 1024)
    assert len(await socket.receive_bytes()) == 1024  # at the limit: relayed
    await socket.send_bytes(b"x" * 1025)
    closing = await socket.receive()
    assert closing.type is WSMsgType.CLOSE and closing.data == 1009
    socket, _ = await _open(gateway, headers=gateway.bearer())
    await socket.send_str("big:2048")  # the backend answers with a message over the limit
    closing = await socket.receive()
    assert closing.type is WSMsgType.CLOSE and closing.data == 1009
    await _until(lambda: gateway.metric("gateway_websocket_connections") == 0)
    assert gateway.metric("gateway_websocket_closes_total", {"reason": "message_too_big"}) == 2


async def test_the_socket_closes_with_4001_when_the_token_expires(gateway):
    token = gateway.token(exp=int(gateway.clock()) + 300)
    socket, _ = await _open(gateway, headers={"Authorization": f"Bearer {token}"})
    await socket.send_str("still here")
    assert await socket.receive_str() == "still here"
    gateway.clock.advance(300 + 30)  # past exp and the gateway's leeway
    closing = await asyncio.wait_for(socket.receive(), 10)
    assert closing.type is WSMsgType.CLOSE and closing.data == 4001
    assert closing.extra == "token expired"
    await _until(lambda: gateway.metric("gateway_websocket_closes_total", {"reason": "token_expired"}) == 1)


async def test_an_idle_socket_closes_with_4002(make_gateway):
    gateway = await make_gateway(websocket=WebSocketSettings(idle_timeout_seconds=1))
    socket, _ = await _open(gateway, headers=gateway.bearer())
    closing = await asyncio.wait_for(socket.receive(), 10)
    assert closing.type is WSMsgType.CLOSE and closing.data == 4002


async def test_close_codes_pass_through_and_counters_count(gateway):
    socket, _ = await _open(gateway, headers=gateway.bearer())
    for _ in range(3):
        await socket.send_str("ping")
        assert await socket.receive_str() == "ping"
    await socket.send_str("close:4100")
    closing = await socket.receive()
    assert closing.type is WSMsgType.CLOSE and closing.data == 4100
    assert closing.extra == "backend says bye"
    await _until(lambda: gateway.metric("gateway_websocket_connections") == 0)
    assert gateway.metric("gateway_websocket_closes_total", {"reason": "upstream_closed"}) == 1
    # hello + 3 echoes to the client; 4 messages (3 pings and the command) upstream
    assert gateway.metric("gateway_websocket_messages_total", {"direction": "to_client"}) == 4
    assert gateway.metric("gateway_websocket_messages_total", {"direction": "to_upstream"}) == 4
    assert gateway.metric("gateway_websocket_bytes_total", {"direction": "to_upstream"}) == 3 * 4 + 10
    assert gateway.metric("gateway_websocket_connections") == 0


async def test_a_client_close_reaches_the_backend_and_frees_the_slot(make_gateway):
    gateway = await make_gateway(websocket=WebSocketSettings(max_per_caller=1))
    socket, _ = await _open(gateway, headers=gateway.bearer())
    assert gateway.metric("gateway_websocket_connections") == 1
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await gateway.client.ws_connect(PATH, headers=gateway.bearer())
    assert refused.value.status == 429
    other, _ = await _open(gateway, headers=gateway.bearer(sub="someone-else"))
    await socket.close()
    await _until(lambda: gateway.metric("gateway_websocket_closes_total", {"reason": "client_closed"}) == 1)
    again, _ = await _open(gateway, headers=gateway.bearer())
    await again.close()
    await other.close()


async def test_the_gateway_cap_refuses_with_503(make_gateway):
    gateway = await make_gateway(websocket=WebSocketSettings(max_connections=1))
    socket, _ = await _open(gateway, headers=gateway.bearer())
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await gateway.client.ws_connect(PATH, headers=gateway.bearer(sub="someone-else"))
    assert refused.value.status == 503 and refused.value.headers["Retry-After"]
    await socket.close()


async def test_a_slow_reader_holds_back_the_sender_instead_of_filling_the_gateway(gateway):
    """The backend floods 2,000 messages of 64 KiB (125 MiB); the client reads none for a
    while. The backend gets rid of only what the socket buffers on the way hold; once the
    client reads, every message arrives, in order and whole."""
    count, size = 2000, 64 * 1024
    state = gateway.backends["orders-0"].app[BACKEND_STATE]
    socket, _ = await _open(gateway, headers=gateway.bearer())
    await socket.send_str(f"flood:{count}:{size}")
    await _until(lambda: state.get("flood_sent", 0) > 0)
    stalled = -1
    while state["flood_sent"] != stalled:  # wait until the sender stops making progress
        stalled = state["flood_sent"]
        await asyncio.sleep(0.5)
    # Kernel buffers on three connections plus aiohttp's queues: a few MiB, not 125.
    assert stalled * size < 32 * 1024 * 1024, stalled
    for _ in range(count):
        message = await asyncio.wait_for(socket.receive(), 30)
        assert message.type is WSMsgType.BINARY and len(message.data) == size
    assert state["flood_sent"] == count
    await socket.close()


async def test_no_reachable_replica_is_503_before_any_upgrade(make_gateway, unused_tcp_port):
    gateway = await make_gateway()
    pool_url = f"http://127.0.0.1:{unused_tcp_port}"
    from gateway.app_keys import ROUTING

    pool = gateway.app[ROUTING].current.pools["orders"]
    pool.set_replicas({pool_url: f"127.0.0.1:{unused_tcp_port}"})
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await gateway.client.ws_connect(PATH, headers=gateway.bearer())
    assert refused.value.status == 503
    assert gateway.metric("gateway_websocket_refused_total", {"reason": "upstream"}) == 1


async def _until(condition, seconds: float = 10.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.05)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"methods": ["POST"]}, "a WebSocket handshake is a GET"),
        ({"auth": "public"}, "a public route has none"),
        ({"websocket": "yes"}, "websocket"),
    ],
)
def test_the_routes_file_refuses_a_websocket_route_that_cannot_work(fields, message) -> None:
    spec = {"name": "stream", "path": "/stream", "methods": ["GET"], "upstream": "orders",
            "websocket": True, **fields}
    document = {"upstreams": {"orders": {"replicas": ["http://127.0.0.1:1"]}}, "routes": [spec]}
    with pytest.raises(RoutesError) as refused:
        parse_routes(document, source="test.yaml", scopes=frozenset(), overrides={})
    assert message in str(refused.value)


def test_routes_are_not_websockets_unless_they_say_so() -> None:
    table = load_routes(PACKAGED_ROUTES, default_scope_policy().issuable)
    assert [route.name for route in table.routes if route.websocket] == ["orders-stream"]


_HEADER_VALUE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)


@settings(max_examples=300, deadline=None)
@given(
    upgrade=st.sampled_from(["websocket", "WebSocket", "websocket, h2c"]),
    connection=st.one_of(st.none(), st.sampled_from(["Upgrade", "keep-alive, Upgrade", "close"]), _HEADER_VALUE),
    version=st.one_of(st.none(), st.sampled_from(["13", "8", "13, 8"]), _HEADER_VALUE),
    key=st.one_of(st.none(), st.just(KEY), _HEADER_VALUE),
    protocol=st.one_of(st.none(), st.sampled_from(["passgate.v1", "passgate.v1, bearer.a.b.c", "bearer."]),
                       _HEADER_VALUE),
)
def test_any_handshake_headers_are_accepted_or_refused_with_400(upgrade, connection, version, key, protocol) -> None:
    """The checks before the token, on any header values: a pass or a 400 problem, never
    another error (which would be a 500)."""
    fields = {"Upgrade": upgrade, "Connection": connection, "Sec-WebSocket-Version": version,
              "Sec-WebSocket-Key": key, "Sec-WebSocket-Protocol": protocol}
    request = make_mocked_request(
        "GET", PATH, headers={name: value for name, value in fields.items() if value is not None}
    )
    assert is_upgrade(request)
    try:
        offered_token(request)
        check_shape(request)
    except Problem as problem:
        assert problem.status == 400
        return
    assert version == "13" and key == KEY and "upgrade" in connection.lower()


async def test_a_quiet_client_is_pinged_so_intermediaries_keep_the_socket(gateway, monkeypatch):
    from gateway.websocket import relay

    monkeypatch.setattr(relay, "PING_SECONDS", 0.5)
    socket, _ = await _open(gateway, headers=gateway.bearer(), autoping=False)
    message = await asyncio.wait_for(socket.receive(), 10)
    assert message.type is WSMsgType.PING
    await socket.pong(message.data)
    await socket.send_str("still relayed")
    assert (await socket.receive()).data == "still relayed"
    await socket.close()


async def test_a_socket_ends_when_its_tokens_key_is_withdrawn(gateway):
    from gateway.app_keys import JWKS

    socket, _ = await _open(gateway, headers=gateway.bearer())
    gateway.jwks.keys = [gateway.keys["k2"]]  # auth withdrew k1, say after a compromise
    await gateway.app[JWKS].refresh()
    closing = await asyncio.wait_for(socket.receive(), 10)
    assert (closing.type, closing.data) == (WSMsgType.CLOSE, 4001)


async def test_a_stopping_gateway_says_going_away(gateway):
    socket, _ = await _open(gateway, headers=gateway.bearer())
    await gateway.app.on_shutdown.send(gateway.app)  # what the server does first on SIGTERM
    closing = await asyncio.wait_for(socket.receive(), 10)
    assert (closing.type, closing.data, closing.extra) == (WSMsgType.CLOSE, 1001, "gateway shutting down")


async def test_an_upstream_refusing_the_handshake_is_answered_before_any_upgrade(make_gateway, aiohttp_server):
    async def refuse(request):
        if request.path == "/readyz":
            return web.Response()
        return web.Response(status=403, text="not for you")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", refuse)
    server = await aiohttp_server(app)
    url = str(server.make_url("")).rstrip("/")
    gateway = await make_gateway(upstreams={"auth": [url], "users": [url], "orders": [url]})
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await gateway.client.ws_connect(PATH, headers=gateway.bearer())
    assert refused.value.status == 403
    assert gateway.metric("gateway_websocket_refused_total", {"reason": "upstream"}) == 1
    assert gateway.metric("gateway_websocket_connections") == 0


async def test_the_routes_rate_limit_applies_to_handshakes(make_gateway):
    gateway = await make_gateway(routes={"orders_stream": {"rate_limit": {"requests": 1, "per": 60}}})
    socket, _ = await _open(gateway, headers=gateway.bearer())
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await gateway.client.ws_connect(PATH, headers=gateway.bearer())
    assert refused.value.status == 429 and refused.value.headers["Retry-After"]
    await socket.close()
