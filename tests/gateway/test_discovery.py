"""Upstream discovery by DNS (a Kubernetes headless Service): every address of a name is a
replica, so balancing, ejection, readiness and retries act per pod.

The resolver is the test's own: a name whose answer the test changes while traffic flows.
The replicas are real servers on one port of different loopback addresses (127.0.0.x).
"""

from __future__ import annotations

import asyncio
import socket

import pytest
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry

from gateway.app import create_app
from gateway.app_keys import JWKS
from gateway.settings import GatewaySettings
from tests.support.gateway_under_test import AUDIENCE, ISSUER, mint, recording_app, write_routes


NAMES = ("auth.test", "users.test", "orders.test")


class Resolver:
    """Answers for names the test sets; counts the questions."""

    def __init__(self, *addresses: str) -> None:
        self.answers: dict[str, list[str]] = {name: list(addresses) for name in NAMES}
        self.failing = False
        self.questions = 0

    async def __call__(self, host: str, port: int) -> list[str]:
        self.questions += 1
        if self.failing:
            raise socket.gaierror(socket.EAI_AGAIN, "temporary failure")
        return list(self.answers[host])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Pod:
    """A recording backend on one loopback address; counts the connections it holds."""

    def __init__(self, address: str, port: int, log: list) -> None:
        self.address = address
        self.app = recording_app(address, log)
        self.server = TestServer(self.app, host=address, port=port)
        self.open_connections = 0

    async def start(self) -> None:
        await self.server.start_server()

    def connections(self) -> int:
        return len(self.server.runner.server.connections) if self.server.runner.server else 0


@pytest.fixture
async def pods():
    port = _free_port()
    log: list = []
    started = []

    async def start(address: str) -> Pod:
        pod = Pod(address, port, log)
        await pod.start()
        started.append(pod)
        return pod

    yield port, log, start
    for pod in started:
        await pod.server.close()


async def _gateway(aiohttp_client, tmp_path, jwks_server, clock, port: int, resolver: Resolver):
    unlimited = {"rate_limit": {"requests": 10**9, "per": 1, "burst": 10**9}}
    routes = write_routes(tmp_path / "routes.yaml", {
        "auth": [f"http://auth.test:{port}"], "users": [f"http://users.test:{port}"],
        "orders": [f"http://orders.test:{port}"],
    }, users_me_read=unlimited, orders_list=unlimited)
    import yaml

    spec = yaml.safe_load(routes.read_text())
    for upstream in spec["upstreams"].values():
        upstream.update(discovery="dns", resolve_interval=0.2)
    routes.write_text(yaml.safe_dump(spec))
    settings = GatewaySettings(routes_file=routes, issuer=ISSUER, audience=AUDIENCE, jwks_url=jwks_server.url)
    app = create_app(settings, registry=CollectorRegistry(), clock=clock, resolver=resolver)
    client = await aiohttp_client(app)
    await app[JWKS].refresh()
    return client


async def test_added_pods_are_used_and_removed_ones_dropped_without_a_failed_read(
    aiohttp_client, tmp_path, jwks_server, keys, clock, pods
) -> None:
    port, log, start = pods
    first = await start("127.0.0.2")
    second = await start("127.0.0.3")
    resolver = Resolver("127.0.0.2")
    client = await _gateway(aiohttp_client, tmp_path, jwks_server, clock, port, resolver)
    headers = {"Authorization": f"Bearer {mint(keys['k1'], clock)}"}

    async def read(n: int) -> list[str]:
        seen = []
        for _ in range(n):
            response = await client.get("/users/me", headers=headers)
            assert response.status == 200, await response.text()
            seen.append((await response.json())["backend"])
        return seen

    assert set(await read(6)) == {"127.0.0.2"}
    # A pod appears: it is used within a re-resolution.
    resolver.answers = {name: ["127.0.0.2", "127.0.0.3"] for name in resolver.answers}
    await asyncio.sleep(0.5)
    assert set(await read(10)) == {"127.0.0.2", "127.0.0.3"}
    # Every request's Host names the service, not the pod's address.
    assert all(
        dict((k.lower(), v) for k, v in entry["headers"])["host"] == f"users.test:{port}"
        for entry in log if entry["backend"] == "127.0.0.3"
    )
    # The first pod goes while reads keep flowing: none fails, and its connections close.
    assert first.connections() >= 1
    stop = asyncio.Event()

    async def keep_reading() -> list[str]:
        seen: list[str] = []
        while not stop.is_set():
            seen += await read(1)
        return seen

    reads = asyncio.ensure_future(keep_reading())
    await asyncio.sleep(0.05)
    resolver.answers = {name: ["127.0.0.3"] for name in resolver.answers}
    for _ in range(100):  # until the gateway has noticed (a few resolve intervals at most)
        if set(await read(3)) == {"127.0.0.3"} and first.connections() == 0:
            break
        await asyncio.sleep(0.05)
    stop.set()
    await reads  # every read during the change was answered (read() asserts 200)
    assert set(await read(5)) == {"127.0.0.3"}
    assert first.connections() == 0


async def test_a_failed_resolution_keeps_the_pods_last_known(
    aiohttp_client, tmp_path, jwks_server, keys, clock, pods
) -> None:
    port, log, start = pods
    await start("127.0.0.4")
    resolver = Resolver("127.0.0.4")
    client = await _gateway(aiohttp_client, tmp_path, jwks_server, clock, port, resolver)
    headers = {"Authorization": f"Bearer {mint(keys['k1'], clock)}"}
    resolver.failing = True
    asked = resolver.questions
    await asyncio.sleep(0.5)
    assert resolver.questions > asked  # it kept asking
    response = await client.get("/users/me", headers=headers)
    assert response.status == 200


async def test_a_connect_failure_asks_dns_again_at_once(
    aiohttp_client, tmp_path, jwks_server, keys, clock, pods
) -> None:
    port, log, start = pods
    await start("127.0.0.5")
    resolver = Resolver("127.0.0.5")
    # 127.0.0.6 has no server: a pod that is gone while DNS still names it.
    resolver.answers["orders.test"] = ["127.0.0.6", "127.0.0.5"]
    client = await _gateway(aiohttp_client, tmp_path, jwks_server, clock, port, resolver)
    headers = {"Authorization": f"Bearer {mint(keys['k1'], clock)}"}
    for _ in range(4):
        response = await client.get("/orders", headers=headers)
        assert response.status == 200  # the connect failure goes to the other pod
    assert {entry["backend"] for entry in log if entry["raw_path"] == "/orders"} == {"127.0.0.5"}
