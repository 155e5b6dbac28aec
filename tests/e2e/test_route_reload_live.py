"""Live route reload under load, through the real gateway process in front of the real services:
a valid file (on SIGHUP, then by the file changing) switches the routes, a broken one is
refused while the old routes serve, and not one request of the load fails meanwhile."""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import yaml

from devstack.stack import PortPlan, Stack, StackConfig
from tests.support.http import Account, new_account
from tests.support.metrics import sample_sum, scrape
from tests.support.polling import wait_for
from tests.support.stack import running_stack
from tests.support.stack_settings import CHEAP_ARGON2, generous_routes

WORKERS = 8


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data_dir: Path = tmp_path_factory.mktemp("reload-stack")
    config = StackConfig(
        data_dir=data_dir,
        ports=PortPlan.free(),
        env={
            "auth": dict(CHEAP_ARGON2),
            "gateway": {
                "PASSGATE_ROUTES_FILE": str(generous_routes(data_dir / "routes.yaml")),
                "PASSGATE_ROUTES_WATCH_SECONDS": "0.2",
            },
        },
    )
    with running_stack(config) as running:
        yield running


def replace_file(path: Path, text: str) -> None:
    """Write the whole file at once (as an editor or a ConfigMap update does)."""
    staged = path.with_suffix(".staged")
    staged.write_text(text)
    os.replace(staged, path)


def routes_with(path: Path, *, me_scopes: list[str], orders_connect_timeout: float) -> str:
    document = yaml.safe_load(path.read_text())
    next(r for r in document["routes"] if r["name"] == "users-me-read")["scopes"] = me_scopes
    # A changed upstream: its pool is replaced, the old one drained under the load.
    document["upstreams"]["orders"]["connect_timeout"] = orders_connect_timeout
    return yaml.safe_dump(document)


class Load:
    """Workers reading /orders over kept-alive connections until told to stop."""

    def __init__(self, base: str, account: Account) -> None:
        self.base, self.account = base, account
        self.outcomes: Counter[str] = Counter()
        self.stop = asyncio.Event()

    async def worker(self) -> None:
        async with aiohttp.ClientSession() as session:
            while not self.stop.is_set():
                try:
                    async with session.get(f"{self.base}/orders", headers=self.account.headers) as response:
                        await response.read()
                        self.outcomes[str(response.status)] += 1
                except aiohttp.ClientError as exc:
                    self.outcomes[type(exc).__name__] += 1

    async def requests(self) -> int:
        return sum(self.outcomes.values())


async def status(session: aiohttp.ClientSession, url: str, account: Account) -> int:
    async with session.get(url, headers=account.headers) as response:
        return response.status


def test_reloads_under_load_switch_routes_refuse_broken_files_and_fail_nothing(stack: Stack) -> None:
    asyncio.run(_reloads_under_load(stack))


async def _reloads_under_load(stack: Stack) -> None:
    base = stack.gateway_url
    routes = Path(stack.config.env["gateway"]["PASSGATE_ROUTES_FILE"])
    original = routes.read_text()
    gateway = stack.process("gateway-1")
    admin = f"http://{stack.config.host}:{gateway.env['PASSGATE_ADMIN_PORT']}/metrics"
    async with aiohttp.ClientSession() as session:
        account = await new_account(session, base)
        me = f"{base}/users/me"
        assert await status(session, me, account) == 200
        load = Load(base, account)
        workers = [asyncio.create_task(load.worker()) for _ in range(WORKERS)]
        try:
            await _running(load, 50)
            # 1. SIGHUP with a valid file: GET /users/me now needs admin.
            replace_file(routes, routes_with(routes, me_scopes=["admin"], orders_connect_timeout=1.5))
            gateway.process.send_signal(signal.SIGHUP)
            await wait_for(lambda: _is(session, me, account, 403), "the reloaded routes to serve")
            await _running(load, 50)
            # 2. A broken file: refused, the routes in service stay.
            replace_file(routes, original.replace("routes:", "routes: [", 1))
            gateway.process.send_signal(signal.SIGHUP)
            await wait_for(lambda: _refused(session, admin), "the broken file to be refused")
            assert await status(session, me, account) == 403
            await _running(load, 50)
            # 3. No signal: the file changes, and is reloaded.
            replace_file(routes, original)
            await wait_for(lambda: _is(session, me, account, 200), "the changed file to be served")
            await _running(load, 50)
        finally:
            load.stop.set()
            await asyncio.gather(*workers)
        samples = await scrape(session, admin)
    assert set(load.outcomes) == {"200"}, load.outcomes
    assert sample_sum(samples, "gateway_route_reloads_total", result="applied") >= 2
    assert sample_sum(samples, "gateway_route_reloads_total", result="refused") >= 1
    log = gateway.log_path.read_text()
    assert "refused; the routes in service stay" in log
    assert "routes reloaded (SIGHUP)" in log


async def _running(load: Load, more: int) -> None:
    """Let at least `more` further requests of the load complete."""
    target = await load.requests() + more

    async def done() -> bool:
        return await load.requests() >= target

    await wait_for(done, f"{more} more requests of the load")


async def _is(session: aiohttp.ClientSession, url: str, account: Account, expected: int) -> bool:
    return await status(session, url, account) == expected


async def _refused(session: aiohttp.ClientSession, admin: str) -> bool:
    return sample_sum(await scrape(session, admin), "gateway_route_reloads_total", result="refused") >= 1
