"""Fixtures for gateway tests: keys, a JWKS server, and a gateway in front of recording backends."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from gateway.app import create_app
from gateway.app_keys import JWKS
from gateway.settings import GatewaySettings
from tests.support.clock import FakeEpochClock
from tests.support.gateway_under_test import (
    AUDIENCE,
    ISSUER,
    GatewayFactory,
    GatewayUnderTest,
    JwksServer,
    SigningKey,
    new_key,
    recording_app,
    write_routes,
)


@pytest.fixture(scope="session")
def keys() -> dict[str, SigningKey]:
    """Three 2048-bit keys: k1 published from the start, k2 for rotation, rogue never."""
    return {name: new_key(name) for name in ("k1", "k2", "rogue")}


@pytest.fixture
def clock() -> FakeEpochClock:
    return FakeEpochClock()


@pytest.fixture
async def jwks_server(aiohttp_server, keys) -> JwksServer:
    server = JwksServer([keys["k1"]])
    server.server = await aiohttp_server(server.app)
    return server


@pytest.fixture
async def make_gateway(aiohttp_client, aiohttp_server, tmp_path, keys, jwks_server, clock) -> GatewayFactory:
    """Build a gateway in front of recording backends; keyword arguments tune it."""

    async def factory(
        *,
        replicas: int = 1,
        routes: dict[str, Any] | None = None,
        upstreams: dict[str, list[str]] | None = None,
        prepare: Callable[[web.Application], None] | None = None,
        **settings: Any,
    ) -> GatewayUnderTest:
        backends: dict[str, Any] = {}
        log: list[dict[str, Any]] = []
        if upstreams is None:
            upstreams = {}
            for name in ("auth", "users", "orders"):
                urls = []
                for index in range(replicas):
                    server = await aiohttp_server(recording_app(f"{name}-{index}", log))
                    backends[f"{name}-{index}"] = server
                    urls.append(str(server.make_url("")).rstrip("/"))
                upstreams[name] = urls
        routes_file = write_routes(tmp_path / f"routes-{uuid.uuid4().hex[:6]}.yaml", upstreams, **(routes or {}))
        config = GatewaySettings(
            routes_file=routes_file,
            issuer=ISSUER,
            audience=AUDIENCE,
            jwks_url=jwks_server.url,
            **settings,
        )
        app = create_app(config, registry=CollectorRegistry(), clock=clock)
        if prepare is not None:
            prepare(app)  # before it starts, as __main__ would (tracing's hooks)
        client = await aiohttp_client(app)
        await app[JWKS].refresh()
        return GatewayUnderTest(client, app, clock, jwks_server, keys, backends, log, upstreams)

    return factory


