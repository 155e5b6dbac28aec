"""The base app: request ids, problem+json errors, health, readiness and metrics."""

from __future__ import annotations

import json

from aiohttp import web
from prometheus_client import CollectorRegistry

from common.app import make_base_app
from common.app_keys import READINESS
from common.errors import Problem, unauthorized


def _app() -> web.Application:
    app = make_base_app("test", registry=CollectorRegistry())

    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("secret internals")

    async def denied(request: web.Request) -> web.Response:
        raise unauthorized("token expired")

    async def teapot(request: web.Request) -> web.Response:
        raise Problem(418, "short and stout", kind="teapot")

    app.router.add_get("/boom", boom)
    app.router.add_get("/denied", denied)
    app.router.add_get("/items/{item_id}", teapot)
    return app


async def test_unexpected_error_is_a_bare_problem(aiohttp_client) -> None:
    """A crash answers 500 problem+json that names the request but reveals nothing."""
    client = await aiohttp_client(_app())
    response = await client.get("/boom", headers={"X-Request-Id": "req-12345678"})
    assert response.status == 500
    assert response.content_type == "application/problem+json"
    body = await response.json(content_type=None)
    assert body["status"] == 500 and body["request_id"] == "req-12345678"
    assert "secret internals" not in json.dumps(body)
    assert response.headers["X-Request-Id"] == "req-12345678"


async def test_insane_request_id_is_replaced(aiohttp_client) -> None:
    client = await aiohttp_client(_app())
    response = await client.get("/healthz", headers={"X-Request-Id": "bad id\twith tabs"})
    assert response.status == 200
    assert response.headers["X-Request-Id"] != "bad id\twith tabs"
    assert len(response.headers["X-Request-Id"]) == 32


async def test_unauthorized_carries_bearer_challenge(aiohttp_client) -> None:
    client = await aiohttp_client(_app())
    response = await client.get("/denied")
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer ")
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    body = await response.json(content_type=None)
    assert body["type"] == "urn:passgate:problem:invalid-token"


async def test_aiohttp_404_and_405_become_problems(aiohttp_client) -> None:
    client = await aiohttp_client(_app())
    missing = await client.get("/nowhere")
    assert missing.status == 404
    assert missing.content_type == "application/problem+json"
    wrong = await client.post("/boom")
    assert wrong.status == 405
    assert wrong.content_type == "application/problem+json"
    assert "GET" in wrong.headers["Allow"]


async def test_readiness_reports_failing_check(aiohttp_client) -> None:
    app = _app()

    async def broken() -> None:
        raise ConnectionError("database refused connection")

    app[READINESS].add("database", broken)
    client = await aiohttp_client(app)
    assert (await client.get("/healthz")).status == 200
    response = await client.get("/readyz")
    assert response.status == 503
    body = await response.json(content_type=None)
    assert body["checks"] == {"database": "database refused connection"}


async def test_metrics_use_route_templates_not_raw_paths(aiohttp_client) -> None:
    client = await aiohttp_client(_app())
    await client.get("/items/user-secret-42")
    text = await (await client.get("/metrics")).text()
    assert 'route="/items/{item_id}"' in text
    assert "user-secret-42" not in text
    assert 'http_server_requests_total{method="GET",route="/items/{item_id}",status_class="4xx"} 1.0' in text
    assert "process_cpu_seconds_total" in text


async def test_traceparent_is_continued(aiohttp_client) -> None:
    app = _app()
    client = await aiohttp_client(app)
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    response = await client.get("/denied", headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
    body = await response.json(content_type=None)
    assert body["trace_id"] == trace_id


def test_a_loop_counter_is_exposed_like_a_prometheus_counter() -> None:
    from prometheus_client import generate_latest

    from common.metrics import LoopCounter

    registry = CollectorRegistry()
    lookups = LoopCounter(registry, "demo_lookups", "Lookups, by result.", ["result"])
    hit, miss = lookups.labels("hit"), lookups.labels("miss")
    for _ in range(3):
        hit.inc()
    miss.inc()
    assert lookups.labels("hit") is hit  # one series per label values
    text = generate_latest(registry).decode()
    assert "# TYPE demo_lookups_total counter" in text
    assert 'demo_lookups_total{result="hit"} 3.0' in text and 'demo_lookups_total{result="miss"} 1.0' in text
    assert registry.get_sample_value("demo_lookups_total", {"result": "hit"}) == 3
