"""Redis going away under a running gateway: the limits fall back to the replica's own
buckets, and that is visible (metric, /readyz detail) until Redis is back.

The machine's Redis is shared, so no test stops it: the gateway process reaches it through
a TCP relay this module controls (tests/support/tcp_proxy.py), and cutting the relay is
Redis becoming unreachable.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest

from devstack.processes import free_port
from devstack.stack import PortPlan, Stack, StackConfig
from tests.support.metrics import sample_sum, scrape
from tests.support.polling import wait_for
from tests.support.servers import REDIS_URL
from tests.support.stack import running_stack
from tests.support.stack_settings import CHEAP_ARGON2
from tests.support.tcp_proxy import BackgroundLoop, TcpProxy

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

LIMITED_PUBLIC_ROUTE = "/auth/oidc/providers"  # public and rate-limited: no account needed


@pytest.fixture
def relay(redis_url: str) -> Iterator[tuple[BackgroundLoop, TcpProxy]]:
    loop = BackgroundLoop()
    target = urlsplit(redis_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 6379, free_port())
    loop.run(proxy.start())
    try:
        yield loop, proxy
    finally:
        loop.run(proxy.close())
        loop.close()


@pytest.fixture
def stack(tmp_path: Path, relay: tuple[BackgroundLoop, TcpProxy]) -> Iterator[Stack]:
    _, proxy = relay
    database = urlsplit(REDIS_URL).path or "/0"
    config = StackConfig(
        data_dir=tmp_path,
        ports=PortPlan.free(),
        env={
            "auth": CHEAP_ARGON2,
            "gateway": {"PASSGATE_REDIS_URL": f"redis://127.0.0.1:{proxy.port}{database}"},
        },
    )
    with running_stack(config) as stack:
        yield stack


async def test_redis_outage_is_visible_and_recovers(
    stack: Stack, relay: tuple[BackgroundLoop, TcpProxy]
) -> None:
    loop, proxy = relay
    base = stack.gateway_url
    metrics_url = f"http://127.0.0.1:{stack.config.ports.gateway_admin}/metrics"

    async with aiohttp.ClientSession() as session:

        async def limited_request() -> None:
            async with session.get(base + LIMITED_PUBLIC_ROUTE) as response:
                assert response.status == 200, await response.text()
                assert "RateLimit" in response.headers

        async def readiness() -> dict:
            async with session.get(base + "/readyz") as response:
                assert response.status == 200, await response.text()  # ready throughout
                return await response.json()

        async def metric(name: str) -> float:
            labels = {"backend": "redis"} if name == "gateway_rate_limit_backend_up" else {}
            return sample_sum(await scrape(session, metrics_url), name, **labels)

        await limited_request()
        assert await metric("gateway_rate_limit_backend_up") == 1
        assert await metric("gateway_rate_limit_fallbacks_total") == 0
        assert (await readiness())["details"]["rate_limits"].startswith("ok")

        await loop.run_async(proxy.cut())
        await limited_request()  # still answered, by this replica's own buckets
        assert await metric("gateway_rate_limit_backend_up") == 0
        assert await metric("gateway_rate_limit_fallbacks_total") >= 1
        detail = (await readiness())["details"]["rate_limits"]
        assert detail.startswith("degraded") and "per replica" in detail

        await loop.run_async(proxy.restore())

        async def shared_again() -> bool:
            return (await readiness())["details"]["rate_limits"].startswith("ok")

        await wait_for(shared_again, "the readiness detail to say the limits are shared again")
        assert await metric("gateway_rate_limit_backend_up") == 1
        fallbacks = await metric("gateway_rate_limit_fallbacks_total")
        await limited_request()
        assert await metric("gateway_rate_limit_fallbacks_total") == fallbacks  # decided in Redis

    exits = stack.stop()
    assert set(exits.values()) == {0}, f"unclean exits: {exits}"
