"""Forwarding: pools, retries, timeouts, streaming limits, header hygiene, path safety."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.gateway_under_test import BACKEND_STATE, MISBEHAVE, raw_request, received_headers


async def test_one_replica_killed_every_get_succeeds(make_gateway) -> None:
    """GETs are retried once on the other replica after a connect failure; none fails."""
    stack = await make_gateway(replicas=2)
    await stack.backends["users-0"].close()
    statuses = []
    for _ in range(20):
        response = await stack.client.get("/users/me", headers=stack.bearer())
        statuses.append(response.status)
        assert (await response.json())["backend"] == "users-1"
    assert statuses == [200] * 20
    assert stack.metric("gateway_upstream_retries_total", {"upstream": "users"}) >= 1
    assert stack.metric("gateway_upstream_ejections_total", {"upstream": "users"}) == 1
    assert stack.metric("gateway_upstream_healthy_replicas", {"upstream": "users"}) == 1


async def test_all_replicas_down_gives_503_problem(make_gateway) -> None:
    """With every replica down they are ejected, and then the answer is 503 without trying."""
    stack = await make_gateway(replicas=2)
    await stack.backends["users-0"].close()
    await stack.backends["users-1"].close()
    statuses = []
    for _ in range(5):
        response = await stack.client.get("/users/me", headers=stack.bearer())
        statuses.append(response.status)
        assert response.content_type == "application/problem+json"
    assert set(statuses[:-1]) <= {502, 503}
    assert statuses[-1] == 503
    assert "Retry-After" in response.headers
    assert stack.metric("gateway_upstream_healthy_replicas", {"upstream": "users"}) == 0
    # After the ejection cooldown a replica is tried again.
    stack.clock.advance(11)
    assert stack.metric("gateway_upstream_healthy_replicas", {"upstream": "users"}) == 2


async def test_post_goes_to_another_replica_only_when_nothing_was_sent(make_gateway) -> None:
    """A connect failure sent nothing, so even a POST may go to the other replica."""
    stack = await make_gateway(replicas=2)
    await stack.backends["orders-0"].close()
    statuses = [
        (await stack.client.post("/orders", json={}, headers=stack.bearer())).status for _ in range(2)
    ]
    assert statuses == [201, 201]
    assert stack.metric("gateway_upstream_retries_total", {"upstream": "orders"}) >= 1
    assert {r["backend"] for r in stack.log} == {"orders-1"}


async def test_post_that_reached_a_backend_is_never_sent_again(make_gateway) -> None:
    """A backend that drops the connection mid-request gets a POST once: 502."""
    stack = await make_gateway(replicas=2)
    response = await stack.client.post(f"/orders/{MISBEHAVE['drop']}/cancel", headers=stack.bearer())
    assert response.status == 502
    assert response.content_type == "application/problem+json"
    assert len([r for r in stack.log if r["raw_path"] == f"/orders/{MISBEHAVE['drop']}/cancel"]) == 1
    assert stack.metric("gateway_upstream_retries_total", {"upstream": "orders"}) == 0


async def test_get_broken_off_by_a_replica_is_tried_once_on_another(make_gateway) -> None:
    """A safe request may go again (RFC 9110 9.2.1); once, on the other replica, then 502."""
    stack = await make_gateway(replicas=2)
    response = await stack.client.get(f"/orders/{MISBEHAVE['drop']}", headers=stack.bearer())
    assert response.status == 502
    tried = [r["backend"] for r in stack.log if r["raw_path"] == f"/orders/{MISBEHAVE['drop']}"]
    assert sorted(tried) == ["orders-0", "orders-1"]
    assert stack.metric("gateway_upstream_retries_total", {"upstream": "orders"}) == 1


async def _wait_for_healthy(stack, upstream: str, count: int) -> None:
    for _ in range(100):
        if stack.metric("gateway_upstream_healthy_replicas", {"upstream": upstream}) == count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{upstream} never had {count} ready replicas")


async def test_unready_replica_gets_no_requests_while_another_is_ready(make_gateway) -> None:
    """A draining replica (readyz 503) leaves the rotation; when none is ready, all are used."""
    stack = await make_gateway(replicas=2)
    stack.backends["users-0"].app[BACKEND_STATE]["ready"] = False
    await _wait_for_healthy(stack, "users", 1)
    for _ in range(6):
        response = await stack.client.get("/users/me", headers=stack.bearer())
        assert (await response.json())["backend"] == "users-1"
    stack.backends["users-1"].app[BACKEND_STATE]["ready"] = False
    await _wait_for_healthy(stack, "users", 0)
    served = set()
    for _ in range(4):
        response = await stack.client.get("/users/me", headers=stack.bearer())
        assert response.status == 200
        served.add((await response.json())["backend"])
    assert served == {"users-0", "users-1"}


async def test_route_timeout_gives_504(make_gateway) -> None:
    stack = await make_gateway(routes={"orders_get": {"timeout": 0.2}})
    response = await stack.client.get(f"/orders/{MISBEHAVE['slow']}", headers=stack.bearer())
    assert response.status == 504
    assert response.content_type == "application/problem+json"
    assert stack.metric(
        "gateway_upstream_request_duration_seconds_count", {"upstream": "orders", "outcome": "timeout"}
    ) == 1


async def test_body_limit_is_enforced_while_streaming(make_gateway) -> None:
    """A chunked body (no Content-Length) is cut off at the route's limit with 413."""
    stack = await make_gateway(routes={"orders_place": {"max_body_bytes": 1024}})

    async def chunks():
        for _ in range(16):
            yield b"x" * 512

    response = await stack.client.post("/orders", data=chunks(), headers=stack.bearer())
    assert response.status == 413
    assert response.content_type == "application/problem+json"


async def test_declared_oversize_body_is_refused_before_forwarding(make_gateway) -> None:
    stack = await make_gateway(routes={"orders_place": {"max_body_bytes": 1024}})
    response = await stack.client.post("/orders", data=b"x" * 4096, headers=stack.bearer())
    assert response.status == 413
    assert stack.log == []


async def test_body_within_limit_is_streamed_through(make_gateway) -> None:
    stack = await make_gateway(routes={"orders_place": {"max_body_bytes": 1024}})

    async def chunks():
        for _ in range(4):
            yield b"y" * 200

    response = await stack.client.post("/orders", data=chunks(), headers=stack.bearer())
    assert response.status == 201
    assert (await response.json())["body_length"] == 800


async def test_large_response_is_streamed(make_gateway) -> None:
    stack = await make_gateway()
    response = await stack.client.get(f"/orders/{MISBEHAVE['stream-out']}", headers=stack.bearer())
    assert response.status == 200
    assert len(await response.read()) == 8 * 65536


async def test_hop_by_hop_headers_are_removed_both_ways(make_gateway) -> None:
    """RFC 9110 7.6.1: Connection, the names it lists, Keep-Alive, TE, Proxy-* never pass."""
    stack = await make_gateway()
    response = await stack.client.get(
        "/users/me",
        headers={
            **stack.bearer(),
            "Connection": "X-Client-Hop, keep-alive",
            "X-Client-Hop": "secret",
            "Keep-Alive": "timeout=5",
            "TE": "trailers",
            "Proxy-Authorization": "Basic Zm9vOmJhcg==",
            "X-Kept": "yes",
        },
    )
    assert response.status == 200
    seen = received_headers(await response.json())
    for name in ("x-client-hop", "keep-alive", "te", "proxy-authorization", "authorization"):
        assert name not in seen, name
    assert seen["x-kept"] == "yes"
    # The backend's own hop-by-hop, listed and Access-Control-* fields stop at the gateway.
    assert "X-Internal-Secret" not in response.headers
    assert "Keep-Alive" not in response.headers
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Access-Control-Allow-Credentials" not in response.headers
    assert response.headers.get("Server") != "backend/1.0"
    assert response.headers["X-Backend"] == "users-0"


async def test_forwarding_headers_trust_only_configured_proxies(make_gateway) -> None:
    stack = await make_gateway()
    response = await stack.client.get(
        "/.well-known/jwks.json",
        headers={"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Host": "evil.test",
                 "X-Forwarded-Proto": "https", "Forwarded": "for=6.6.6.6"},
    )
    seen = received_headers(await response.json())
    assert seen["x-forwarded-for"] == "127.0.0.1"
    assert seen["x-forwarded-proto"] == "http"
    assert seen["x-forwarded-host"] == f"{stack.client.server.host}:{stack.client.server.port}"
    assert "forwarded" not in seen


async def test_forwarding_headers_from_a_trusted_proxy_are_extended(make_gateway) -> None:
    import ipaddress

    stack = await make_gateway(trusted_proxies=(ipaddress.ip_network("127.0.0.0/8"),))
    response = await stack.client.get(
        "/.well-known/jwks.json",
        headers={"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Host": "api.example.com",
                 "X-Forwarded-Proto": "https"},
    )
    seen = received_headers(await response.json())
    assert seen["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
    assert seen["x-forwarded-proto"] == "https"
    assert seen["x-forwarded-host"] == "api.example.com"


async def test_request_id_and_trace_are_continued(make_gateway) -> None:
    stack = await make_gateway()
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    response = await stack.client.get(
        "/users/me",
        headers={**stack.bearer(), "X-Request-Id": "req-abcdef12",
                 "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"},
    )
    seen = received_headers(await response.json())
    assert seen["x-request-id"] == "req-abcdef12"
    version, seen_trace, parent, _flags = seen["traceparent"].split("-")
    assert seen_trace == trace_id and parent != "00f067aa0ba902b7"
    assert response.headers["X-Request-Id"] == "req-abcdef12"


async def test_only_basic_credentials_reach_the_token_endpoint(make_gateway) -> None:
    """Client authentication by HTTP Basic passes to /auth/token; a bearer token never does."""
    stack = await make_gateway()
    basic = await stack.client.post("/auth/token", headers={"Authorization": "Basic Y2xpZW50OnNlY3JldA=="})
    assert received_headers(await basic.json())["authorization"] == "Basic Y2xpZW50OnNlY3JldA=="
    bearer = await stack.client.post("/auth/login", headers=stack.bearer())
    assert "authorization" not in received_headers(await bearer.json())
    cookie = await stack.client.post("/auth/login", headers={"Cookie": "session=abc"})
    assert "cookie" not in received_headers(await cookie.json())


async def test_unlisted_method_is_405_and_trace_is_refused(make_gateway) -> None:
    stack = await make_gateway()
    response = await stack.client.delete("/orders", headers=stack.bearer())
    assert response.status == 405
    assert response.content_type == "application/problem+json"
    assert set(response.headers["Allow"].split(",")) >= {"GET", "POST"}
    for path in ("/orders", "/auth/login", "/healthz"):
        traced = await stack.client.request("TRACE", path, headers=stack.bearer())
        assert traced.status == 405, path
    assert stack.log == []


async def test_unknown_paths_and_internal_are_404(make_gateway) -> None:
    stack = await make_gateway()
    for path in ("/internal/profiles/x", "/nope", "/orders/1/cancel/extra", "/metrics"):
        response = await stack.client.get(path, headers=stack.bearer())
        assert response.status == 404, path
        assert response.content_type == "application/problem+json"
    assert stack.log == []


@pytest.mark.parametrize(
    "target",
    [
        "/auth/x/../../internal/profiles/1",
        "/auth/%2e%2e/internal/profiles/1",
        "/auth/%2E%2E%2Finternal%2Fprofiles",
        "/orders/1%2f..%2f..%2finternal",
        "/orders/..",
        "/users/me/..",
        "/auth/.%2e/internal",
        "/auth/x%5c..%5cinternal",
        "/auth/x\\..\\internal",
        "//internal/profiles/1",
        "/auth/login%00",
    ],
)
async def test_encoded_and_dot_paths_cannot_escape_a_route(make_gateway, target: str) -> None:
    stack = await make_gateway()
    status, _ = await raw_request(stack.client, target, method="POST",
                                  headers={"Content-Length": "0"})
    assert status in (400, 404)
    assert all("internal" not in r["raw_path"] and ".." not in r["raw_path"] for r in stack.log)


async def test_absolute_form_target_cannot_pick_the_upstream(make_gateway) -> None:
    """The authority of an absolute-form target is ignored: the path alone routes."""
    stack = await make_gateway()
    orders = stack.upstreams["orders"][0]
    status, body = await raw_request(stack.client, f"{orders}/auth/login", method="POST",
                                     headers={"Content-Length": "0"})
    assert status == 201
    assert b'"backend": "auth-0"' in body
    status, _ = await raw_request(stack.client, f"{orders}/internal/profiles/1")
    assert status == 404
    assert all(r["backend"].startswith("auth") for r in stack.log)


async def test_head_is_answered_for_get_routes(make_gateway) -> None:
    stack = await make_gateway()
    response = await stack.client.head("/users/me", headers=stack.bearer())
    assert response.status == 200
    assert await response.read() == b""


async def test_backend_slow_does_not_block_others(make_gateway) -> None:
    """A timed-out request does not hold up another request to the same upstream."""
    stack = await make_gateway(routes={"orders_get": {"timeout": 0.2}})
    slow, fast = await asyncio.gather(
        stack.client.get(f"/orders/{MISBEHAVE['slow']}", headers=stack.bearer()),
        stack.client.get("/orders/00000000-0000-4000-8000-000000000001", headers=stack.bearer()),
    )
    assert (slow.status, fast.status) == (504, 200)


async def test_upstream_breaking_off_a_streamed_answer_cuts_the_client(make_gateway) -> None:
    """Once streaming has begun no error status is possible: the client sees a broken body."""
    import aiohttp

    stack = await make_gateway()
    response = await stack.client.get(f"/orders/{MISBEHAVE['stream-broken']}", headers=stack.bearer())
    assert response.status == 200
    with pytest.raises(aiohttp.ClientPayloadError):
        await response.read()
    # The gateway itself is fine afterwards.
    assert (await stack.client.get("/orders/00000000-0000-4000-8000-000000000001", headers=stack.bearer())).status == 200
