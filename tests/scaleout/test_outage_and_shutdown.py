"""The database going away and coming back; SIGTERM while requests are in flight.

The machine's PostgreSQL is shared, so no test restarts it. The orders service reaches it
through a TCP proxy this module controls (tests/support/tcp_proxy.py): cutting the proxy
aborts every connection and refuses new ones, which is what a PostgreSQL restart looks like
from the service; restoring it is the server coming back. Pausing it holds requests inside
the service, genuinely in flight, for as long as the test wants.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from aiohttp import web

from devstack.processes import free_port
from devstack.stack import Stack
from tests.support.http import assert_problem, new_account, status_of
from tests.support.identity_headers import IdentityHeaders, stack_signer
from tests.support.load import ORDER_ITEMS, list_orders
from tests.support.metrics import sample_sum, scrape
from tests.support.polling import wait_for
from tests.support.stack import postgres_stack
from tests.support.tcp_proxy import BackgroundLoop, TcpProxy

pytestmark = [pytest.mark.postgres, pytest.mark.e2e]

POSTGRES_HOST, POSTGRES_PORT = "127.0.0.1", 5432


@pytest.fixture(scope="module")
def proxy_loop() -> Iterator[BackgroundLoop]:
    loop = BackgroundLoop()
    try:
        yield loop
    finally:
        loop.close()


@pytest.fixture(scope="module")
def database_proxy(proxy_loop: BackgroundLoop) -> Iterator[TcpProxy]:
    proxy = TcpProxy(POSTGRES_HOST, POSTGRES_PORT, free_port())
    proxy_loop.run(proxy.start())
    try:
        yield proxy
    finally:
        proxy_loop.run(proxy.close())


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, database_proxy: TcpProxy) -> Iterator[Stack]:
    prefix = f"passgate_scaleout_{uuid.uuid4().hex[:10]}"
    via_proxy = f"postgresql://postgres@127.0.0.1:{database_proxy.port}/{prefix}_orders"
    with postgres_stack(
        tmp_path_factory.mktemp("outage"),
        replicas=1,
        gateways=1,
        prefix=prefix,
        # Only orders goes through the proxy: an outage of one service's database.
        env={"orders": {"PASSGATE_DATABASE_URL": via_proxy}},
    ) as stack:
        yield stack


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


@pytest.fixture
async def proxy(
    database_proxy: TcpProxy, proxy_loop: BackgroundLoop, stack: Stack
) -> AsyncIterator[Controls]:
    controls = Controls(database_proxy, proxy_loop)
    yield controls
    await controls.restore()
    await controls.resume()
    await asyncio.to_thread(stack.revive)


class Controls:
    """The proxy's controls, callable from the test's own event loop."""

    def __init__(self, proxy: TcpProxy, loop: BackgroundLoop) -> None:
        self._proxy = proxy
        self._loop = loop

    async def cut(self) -> None:
        await self._loop.run_async(self._proxy.cut())

    async def restore(self) -> None:
        await self._loop.run_async(self._proxy.restore())

    async def pause(self) -> None:
        await self._loop.run_async(self._proxy.pause())

    async def resume(self) -> None:
        await self._loop.run_async(self._proxy.resume())




# -- 6. the database goes away and comes back --------------------------------------------


async def test_lost_database_is_503_and_unready_then_recovers_without_restart(
    stack: Stack, session: aiohttp.ClientSession, proxy: Controls
) -> None:
    gateway = stack.gateway_url
    orders = stack.replica_urls("orders")[0]
    process = stack.process("orders-1")
    pid = process.pid
    account = await new_account(session, gateway)
    identity = IdentityHeaders.user(account.user_id, signer=stack_signer(stack.config.data_dir))
    async with session.post(f"{gateway}/orders", json={"items": ORDER_ITEMS}, headers=account.headers) as r:
        assert r.status == 201, await r.text()
        before = (await r.json())["id"]

    await proxy.cut()

    await wait_for(lambda: _status_is(session, f"{orders}/readyz", 503), "orders to turn unready")
    async with session.get(f"{orders}/readyz") as response:
        body = await assert_problem(response, 503)
        assert body["checks"]["database"] != "ok"
    # The service itself, and the public API through the gateway, answer 503 problem+json.
    async with session.get(f"{orders}/orders", headers=identity) as response:
        await assert_problem(response, 503)
    async with session.get(f"{gateway}/orders", headers=account.headers) as response:
        await assert_problem(response, 503)
    async with session.post(f"{gateway}/orders", json={"items": ORDER_ITEMS}, headers=account.headers) as r:
        await assert_problem(r, 503)
    # Only orders lost its database: users (same token, same gateway) carries on.
    async with session.get(f"{gateway}/users/me", headers=account.headers) as response:
        assert response.status == 200
    assert await status_of(session, f"{stack.replica_urls('users')[0]}/readyz") == 200

    await proxy.restore()

    await wait_for(lambda: _status_is(session, f"{orders}/readyz", 200), "orders to be ready again")
    assert process.running and process.pid == pid, "orders was restarted; it should recover by itself"
    await wait_for(
        lambda: _status_is(session, f"{gateway}/orders", 200, account.headers),
        "the gateway to route to orders again",
    )
    async with session.post(f"{gateway}/orders", json={"items": ORDER_ITEMS}, headers=account.headers) as r:
        assert r.status == 201, await r.text()
        after = (await r.json())["id"]
    listed = {order["id"] for order in await list_orders(session, gateway, account)}
    assert listed == {before, after}


async def _status_is(
    session: aiohttp.ClientSession, url: str, status: int, headers: dict[str, str] | None = None
) -> bool:
    try:
        async with session.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=5)) as r:
            await r.read()
            return r.status == status
    except (aiohttp.ClientError, TimeoutError):
        return False


# -- 7. SIGTERM during in-flight requests -------------------------------------------------


async def test_sigterm_gateway_finishes_in_flight_requests_and_exits_0(
    stack: Stack, session: aiohttp.ClientSession, aiohttp_server, proxy: Controls
) -> None:
    """A gateway in front of a deliberately slow upstream (a real server in this test, which
    answers only when told): requests are held inside the gateway, SIGTERM arrives, the gateway
    stops accepting, and only then is the upstream let go. Every held request completes."""
    held = 4
    arrived: list[web.Request] = []
    all_arrived = asyncio.Event()
    release = asyncio.Event()

    async def slow_orders(request: web.Request) -> web.Response:
        arrived.append(request)
        if len(arrived) >= held:
            all_arrived.set()
        await release.wait()
        return web.json_response({"items": [], "next_cursor": None})

    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    upstream = web.Application()
    upstream.router.add_get("/orders", slow_orders)
    upstream.router.add_get("/healthz", ok)
    upstream.router.add_get("/readyz", ok)
    server = await aiohttp_server(upstream)
    upstream_url = str(server.make_url("")).rstrip("/")

    account = await new_account(session, stack.gateway_url)
    process = await asyncio.to_thread(
        stack.spawn,
        "gateway",
        "gateway-slow",
        {"PASSGATE_UPSTREAM_ORDERS": upstream_url, "PASSGATE_SHUTDOWN_TIMEOUT": "60"},
    )
    gateway = stack.process_url("gateway-slow")
    try:

        async def get_orders() -> int:
            async with session.get(f"{gateway}/orders", headers=account.headers) as response:
                await response.json()
                return response.status

        requests = [asyncio.ensure_future(get_orders()) for _ in range(held)]
        await asyncio.wait_for(all_arrived.wait(), 30)

        process.signal(signal.SIGTERM)
        await wait_for(
            lambda: _refused(session, f"{gateway}/healthz"), "the gateway to stop accepting connections"
        )
        assert not any(request.done() for request in requests), "requests finished before release"
        release.set()
        statuses = await asyncio.wait_for(asyncio.gather(*requests), 30)
        assert statuses == [200] * held
        assert await asyncio.to_thread(process.wait_exit, 30) == 0
    finally:
        release.set()
        await asyncio.to_thread(stack.remove, "gateway-slow")


async def _refused(session: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=5)) as response:
            await response.read()
            return False
    except aiohttp.ClientConnectorError:
        return True
    except (aiohttp.ClientError, TimeoutError):
        return False


async def test_sigterm_orders_finishes_in_flight_writes_and_exits_0(
    stack: Stack, session: aiohttp.ClientSession, proxy: Controls
) -> None:
    """Orders placed while the database link is paused are held inside the orders service;
    SIGTERM arrives, the service stops accepting, the link resumes: every held order is
    created and answered 201, the service exits 0, and the orders are there after restart."""
    held = 3
    orders = stack.replica_urls("orders")[0]
    process = stack.process("orders-1")
    account = await new_account(session, stack.gateway_url)
    identity = IdentityHeaders.user(account.user_id, signer=stack_signer(stack.config.data_dir))

    async def in_flight() -> float:
        metrics = await scrape(session, f"{orders}/metrics")
        return sample_sum(metrics, "http_server_requests_in_flight") - 1  # minus this scrape

    async def place(n: int) -> tuple[int, str]:
        key = f"sigterm-{n}-{uuid.uuid4().hex[:8]}"
        async with session.post(
            f"{orders}/orders",
            json={"items": ORDER_ITEMS, "note": key},
            headers=identity | {"Idempotency-Key": key},
        ) as response:
            body = await response.json()
            return response.status, body.get("id", body)

    await proxy.pause()
    try:
        requests = [asyncio.ensure_future(place(n)) for n in range(held)]
        await wait_for(lambda: _at_least(in_flight, held), f"{held} orders in flight in the service")
        process.signal(signal.SIGTERM)
        await wait_for(lambda: _refused(session, f"{orders}/healthz"), "orders to stop accepting")
        assert not any(request.done() for request in requests)
    finally:
        await proxy.resume()
    results = await asyncio.wait_for(asyncio.gather(*requests), 30)
    assert [status for status, _ in results] == [201] * held, results
    assert await asyncio.to_thread(process.wait_exit, 30) == 0

    await asyncio.to_thread(stack.revive)
    listed = {order["id"] for order in await list_orders(session, stack.gateway_url, account)}
    assert listed == {order_id for _, order_id in results}


async def _at_least(measure, threshold: float) -> bool:
    return await measure() >= threshold


# -- 3, made deterministic: a read in flight at a replica that dies ----------------------


async def test_a_read_in_flight_at_a_killed_replica_is_answered_by_another(
    stack: Stack, session: aiohttp.ClientSession, proxy: Controls
) -> None:
    """The load test (test_scale_out.py) can only hope to catch a read in flight at the
    moment a replica dies; here one is held there on purpose. A gateway pools orders-1
    (database behind the paused proxy) and a second replica on the direct database; a GET
    is held inside orders-1, which is then killed (SIGKILL). GET is idempotent (RFC 9110
    section 9.2.2): the gateway may and should answer it from the other replica."""
    orders_1 = stack.replica_urls("orders")[0]
    account = await new_account(session, stack.gateway_url)
    async with session.post(
        f"{stack.gateway_url}/orders", json={"items": ORDER_ITEMS}, headers=account.headers
    ) as response:
        assert response.status == 201
        placed = (await response.json())["id"]
    second = await asyncio.to_thread(
        stack.spawn, "orders", "orders-direct", {"PASSGATE_DATABASE_URL": stack.database_url("orders")}
    )
    try:
        await asyncio.to_thread(
            stack.spawn,
            "gateway",
            "gateway-pair",
            {"PASSGATE_UPSTREAM_ORDERS": f"{orders_1},{stack.process_url('orders-direct')}"},
        )
        gateway = stack.process_url("gateway-pair")

        async def get_orders() -> tuple[int, bytes]:
            async with session.get(f"{gateway}/orders", headers=account.headers) as response:
                return response.status, await response.read()

        async def held_in_orders_1() -> float:
            metrics = await scrape(session, f"{orders_1}/metrics")
            return sample_sum(metrics, "http_server_requests_in_flight") - 1  # minus this scrape

        await proxy.pause()
        # Round robin: of two reads, one goes to each replica; the one at orders-1 is held.
        reads = [asyncio.ensure_future(get_orders()) for _ in range(2)]
        await wait_for(lambda: _at_least(held_in_orders_1, 1), "a read held inside orders-1")
        assert await asyncio.to_thread(stack.kill, "orders-1") == -9
        await proxy.resume()
        answers = await asyncio.wait_for(asyncio.gather(*reads), 30)
        assert [status for status, _ in answers] == [200, 200], answers
        assert all(placed in body.decode() for _, body in answers)
    finally:
        await proxy.resume()
        for name in ("gateway-pair", "orders-direct"):
            if name in stack.processes:
                await asyncio.to_thread(stack.remove, name)
    assert second.returncode == 0


async def test_sigterm_turns_readiness_false_first_while_still_serving(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    """With a drain period, SIGTERM makes /readyz answer 503 at once while requests are still
    served, so whoever balances load stops sending before the port closes. The drain here is
    long (60 s) so that watching it is no race; the process is then killed, not waited for."""
    process = await asyncio.to_thread(
        stack.spawn,
        "orders",
        "orders-draining",
        {"PASSGATE_DATABASE_URL": stack.database_url("orders"), "PASSGATE_DRAIN_SECONDS": "60"},
    )
    url = stack.process_url("orders-draining")
    identity = IdentityHeaders.user(str(uuid.uuid4()), signer=stack_signer(stack.config.data_dir))
    try:
        assert await status_of(session, f"{url}/readyz") == 200
        process.signal(signal.SIGTERM)
        await wait_for(lambda: _status_is(session, f"{url}/readyz", 503), "readiness to turn false")
        async with session.get(f"{url}/readyz") as response:
            body = await assert_problem(response, 503)
            assert body["detail"] == "shutting down"
        async with session.get(f"{url}/orders", headers=identity) as response:
            assert response.status == 200, "still serving while draining"
        assert process.running
    finally:
        await asyncio.to_thread(stack.kill, "orders-draining")
        await asyncio.to_thread(stack.remove, "orders-draining")
