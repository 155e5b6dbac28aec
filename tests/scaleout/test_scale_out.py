"""The central claim, shown on real processes and a real PostgreSQL: with tokens, any replica
serves any request, so the system scales out and survives losing parts of itself.

One stack for the whole module, shaped like `make run REPLICAS=3 DB=postgres`: two gateways,
three replicas of auth, users and orders, one fresh PostgreSQL database per service. Each
test leaves every process running again (the `whole_stack` fixture revives what it killed).
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from devstack.stack import Stack
from tests.support.http import (
    Account,
    assert_problem,
    bearer,
    login,
    new_account,
    refresh,
    register,
)
from tests.support.load import Tally, assert_each_key_once, list_orders, place_order, read
from tests.support.metrics import sample_sum, scrape
from tests.support.polling import wait_for
from tests.support.stack import postgres_stack

pytestmark = [pytest.mark.postgres, pytest.mark.e2e]

REPLICAS = 3
GATEWAYS = 2
SERVICES = ("auth", "users", "orders")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with postgres_stack(
        tmp_path_factory.mktemp("scaleout"),
        replicas=REPLICAS,
        gateways=GATEWAYS,
        # Refresh the key set often, so the auth-down test sees refreshes fail meanwhile.
        env={"gateway": {"PASSGATE_JWKS_REFRESH_SECONDS": "5"}},
    ) as stack:
        yield stack


@pytest.fixture
async def whole_stack(stack: Stack) -> AsyncIterator[Stack]:
    """The module's stack, every process running again after the test, whatever it killed."""
    yield stack
    await asyncio.to_thread(stack.revive)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
        yield session


# -- the shape of the scale-out run -------------------------------------------------------


async def test_gateway_pools_list_every_replica(whole_stack: Stack, session: aiohttp.ClientSession) -> None:
    """Both gateways run, each configured with, and counting as healthy, all three replicas."""
    stack = whole_stack
    assert stack.names("gateway") == ["gateway-1", "gateway-2"]
    for service in SERVICES:
        assert stack.names(service) == [f"{service}-{i}" for i in (1, 2, 3)]
    for index, name in enumerate(stack.names("gateway")):
        env = stack.process(name).env
        for service in SERVICES:
            configured = env[f"PASSGATE_UPSTREAM_{service.upper()}"].split(",")
            assert configured == stack.replica_urls(service)
            assert len(set(configured)) == REPLICAS
        metrics = await scrape(session, f"{stack.url('gateway_admin', index)}/metrics")
        for service in SERVICES:
            healthy = sample_sum(metrics, "gateway_upstream_healthy_replicas", upstream=service)
            assert healthy == REPLICAS, (name, service, metrics.get("gateway_upstream_healthy_replicas"))
    for service in SERVICES:
        for name in stack.names(service):
            assert stack.process(name).env["PASSGATE_DATABASE_URL"].startswith("postgresql://")


# -- 2. any replica serves anyone ---------------------------------------------------------


async def test_a_token_from_any_auth_replica_works_through_every_gateway(
    whole_stack: Stack, session: aiohttp.ClientSession
) -> None:
    """Log in directly at each auth replica; each token works through each gateway."""
    stack = whole_stack
    user_id, username = await register(session, stack.gateway_url)
    for auth_url in stack.replica_urls("auth"):
        tokens = await login(session, auth_url, username)
        for gateway in stack.gateway_urls():
            async with session.get(f"{gateway}/users/me", headers=bearer(tokens["access_token"])) as response:
                assert response.status == 200, f"token from {auth_url} via {gateway}: {await response.text()}"
                assert (await response.json())["id"] == user_id


async def test_login_on_one_auth_replica_refresh_on_another(
    whole_stack: Stack, session: aiohttp.ClientSession
) -> None:
    """The refresh token's state lives in the shared database, not in the replica that issued it:
    rotation continues on any replica, and reuse of a spent token is caught on any replica."""
    stack = whole_stack
    auth_1, auth_2, auth_3 = stack.replica_urls("auth")
    _, username = await register(session, stack.gateway_url)
    first = await login(session, auth_1, username)

    response = await refresh(session, auth_2, first["refresh_token"])
    assert response.status == 200
    second = await response.json()
    assert second["refresh_token"] != first["refresh_token"]
    for gateway in stack.gateway_urls():
        async with session.get(f"{gateway}/orders", headers=bearer(second["access_token"])) as r:
            assert r.status == 200, await r.text()

    response = await refresh(session, auth_3, second["refresh_token"])
    assert response.status == 200
    third = await response.json()

    # Replaying the spent first token at yet another replica is reuse: refused, family revoked.
    async with session.post(f"{auth_3}/auth/refresh", json={"refresh_token": first["refresh_token"]}) as r:
        await assert_problem(r, 401)
    async with session.post(f"{auth_1}/auth/refresh", json={"refresh_token": third["refresh_token"]}) as r:
        await assert_problem(r, 401)


async def test_the_gateways_spread_one_users_requests_over_every_replica(
    whole_stack: Stack, session: aiohttp.ClientSession
) -> None:
    """One token, many requests through each gateway: every users and every orders replica
    answered some of them (their own request counters say so), so no replica is special."""
    stack = whole_stack
    account = await new_account(session, stack.gateway_url)

    routes = {"users": "/users/me", "orders": "/orders"}

    async def served(service: str) -> list[float]:
        counts = []
        for url in stack.replica_urls(service):
            metrics = await scrape(session, f"{url}/metrics")
            counts.append(
                sample_sum(
                    metrics, "http_server_requests_total", route=routes[service], method="GET", status_class="2xx"
                )
            )
        return counts

    before = {service: await served(service) for service in routes}
    for gateway in stack.gateway_urls():
        for _ in range(4 * REPLICAS):
            for path in routes.values():
                async with session.get(gateway + path, headers=account.headers) as response:
                    assert response.status == 200, await response.text()
    for service in routes:
        grown = [a - b for a, b in zip(await served(service), before[service], strict=True)]
        assert all(n > 0 for n in grown), f"{service} replicas served {grown} of the requests"
        assert sum(grown) == 4 * REPLICAS * GATEWAYS


# -- 4. auth entirely down ----------------------------------------------------------------


async def test_with_every_auth_replica_down_logged_in_users_carry_on(
    whole_stack: Stack, session: aiohttp.ClientSession
) -> None:
    """Tokens are verified at the gateway against cached public keys: reads and orders go on;
    login and refresh (the only calls that need auth) answer 503 problem+json."""
    stack = whole_stack
    account = await new_account(session, stack.gateway_url)
    _, other_username = await register(session, stack.gateway_url)

    for name in stack.names("auth"):
        await asyncio.to_thread(stack.kill, name)

    tally = Tally()
    keys = []
    auth_answers = []  # (what, status, content type) of every login and refresh meanwhile
    for round_ in range(3):
        for gateway in stack.gateway_urls():
            for path in ("/users/me", "/orders"):
                await read(session, gateway, path, account, tally)
            key = f"auth-down-{round_}-{uuid.uuid4().hex[:8]}"
            keys.append(key)
            async with session.post(
                f"{gateway}/orders",
                json={"items": [{"sku": "a", "quantity": 1, "unit_price_cents": 100}], "note": key},
                headers=account.headers | {"Idempotency-Key": key},
            ) as response:
                assert response.status == 201, await response.text()
                tally.acknowledged[key] = (await response.json())["id"]
            for what, path, body in (
                ("login", "/auth/login", {"username": other_username, "password": "x" * 12}),
                ("refresh", "/auth/refresh", {"refresh_token": account.refresh_token}),
            ):
                async with session.post(gateway + path, json=body) as response:
                    await response.read()
                    auth_answers.append((what, response.status, response.content_type))
        if round_ == 0:
            # Let the gateways try (and fail) to refresh their key set: they keep the last one.
            async def refresh_failed() -> bool:
                for index in range(GATEWAYS):
                    metrics = await scrape(session, f"{stack.url('gateway_admin', index)}/metrics")
                    if not sample_sum(metrics, "gateway_jwks_refreshes_total", result="error"):
                        return False
                return True

            await wait_for(refresh_failed, "a failed key set refresh at every gateway", timeout=30)
    print(f"\nauth down: {tally.summary()} logins/refreshes: {[s for _, s, _ in auth_answers]}")
    assert tally.read_failures == []
    await asyncio.to_thread(stack.revive)

    # Auth is back: the refresh token kept while it was down still works (a gateway that
    # ejected the auth replicas takes them back after its ejection period).
    async def refreshed() -> bool:
        response = await refresh(session, stack.gateway_url, account.refresh_token)
        assert response.status in (200, 502, 503), response.status
        return response.status == 200

    await wait_for(refreshed, "a refresh through the gateway once auth is back", timeout=30, interval=1)
    listed = await list_orders(session, stack.gateway_url, account)
    assert sorted(o["note"] for o in listed) == sorted(keys)
    # Checked last, so that everything above is shown even while this one fails.
    assert all(
        status == 503 and content_type == "application/problem+json"
        for _, status, content_type in auth_answers
    ), f"login and refresh with auth down must be 503 problem+json; got {auth_answers}"


# -- 3. losing a replica of users, one of orders and one gateway under load ----------------


async def test_killing_replicas_and_a_gateway_under_load(
    whole_stack: Stack, session: aiohttp.ClientSession
) -> None:
    """A few client loops read and place orders while users-2, orders-2 and gateway-2 are
    killed (SIGKILL). Reads go through gateway-1, the survivor: none fails. Orders go through
    either gateway and are retried with their Idempotency-Key: each is created exactly once."""
    stack = whole_stack
    loops, iterations = 4, 24
    gateway_1, gateway_2 = stack.gateway_urls()
    accounts = [await new_account(session, gateway_1) for _ in range(loops)]
    tally = Tally()
    keys: dict[str, list[str]] = {a.user_id: [] for a in accounts}
    done = 0
    progressed = asyncio.Event()

    async def client(index: int, account: Account) -> None:
        nonlocal done
        # Half the clients prefer the gateway that is going to die for their writes.
        write_gateways = [gateway_2, gateway_1] if index % 2 else [gateway_1, gateway_2]
        for n in range(iterations):
            await read(session, gateway_1, "/users/me", account, tally)
            await read(session, gateway_1, "/orders?limit=5", account, tally)
            key = f"load-{index}-{n}-{uuid.uuid4().hex[:8]}"
            keys[account.user_id].append(key)
            await place_order(session, write_gateways, account, key, tally)
            done += 1
            if done >= loops * iterations // 4:
                progressed.set()
            await asyncio.sleep(random.uniform(0, 0.02))

    async def chaos() -> list[int | None]:
        await progressed.wait()  # a quarter of the work done, the rest still to come
        codes = []
        for name in ("users-2", "orders-2", "gateway-2"):
            codes.append(await asyncio.to_thread(stack.kill, name))
        return codes

    results = await asyncio.wait_for(
        asyncio.gather(chaos(), *(client(i, a) for i, a in enumerate(accounts))), timeout=120
    )
    assert results[0] == [-9, -9, -9]
    print(f"\nkill under load: {tally.summary()}")
    assert len(tally.acknowledged) == loops * iterations
    for account in accounts:
        orders = await list_orders(session, gateway_1, account)
        assert_each_key_once(orders, keys[account.user_id], tally.acknowledged)
    assert tally.read_failures == [], tally.read_failures[:5]


# -- 5. restarting every process ---------------------------------------------------------


async def test_restarting_every_process_loses_no_acknowledged_write(
    whole_stack: Stack, session: aiohttp.ClientSession
) -> None:
    """While writers place orders and rename themselves, every process is restarted in turn
    (SIGTERM, exit 0, start, ready; one replica of each service at a time, then each gateway), then the whole system is stopped and started cold. Every
    write that was acknowledged is there afterwards; tokens and refresh tokens still work."""
    stack = whole_stack
    writers = 2
    accounts = [await new_account(session, stack.gateway_url) for _ in range(writers)]
    tally = Tally()
    keys: dict[str, list[str]] = {a.user_id: [] for a in accounts}
    renames: dict[str, list[tuple[str, bool]]] = {a.user_id: [] for a in accounts}
    rolling_done = asyncio.Event()
    exit_codes: dict[str, int] = {}

    async def rename(account: Account, name: str) -> bool:
        for gateway in stack.gateway_urls():
            try:
                async with session.patch(
                    f"{gateway}/users/me", json={"display_name": name}, headers=account.headers
                ) as response:
                    tally.write_attempts += 1
                    if response.status == 200:
                        return True
                    tally.failed_write(f"PATCH {response.status}", await response.text())
            except (aiohttp.ClientError, TimeoutError) as error:
                tally.failed_write(f"PATCH {type(error).__name__}")
        return False

    async def writer(index: int, account: Account) -> None:
        for n in range(150):  # bounded; normally ends when the rolling restart is over
            if rolling_done.is_set() and n >= 5:
                return
            key = f"restart-{index}-{n}-{uuid.uuid4().hex[:8]}"
            keys[account.user_id].append(key)
            await place_order(session, stack.gateway_urls(), account, key, tally, attempts=80)
            name = f"Writer {index} rev {n}"
            renames[account.user_id].append((name, await rename(account, name)))
            await asyncio.sleep(0.1)

    async def rolling_restart() -> None:
        # Replica i of every service at once (the others keep serving), then each gateway.
        batches = [[f"{service}-{i}" for service in SERVICES] for i in range(1, REPLICAS + 1)]
        batches += [[name] for name in stack.names("gateway")]
        try:
            for batch in batches:
                codes = await asyncio.gather(*(asyncio.to_thread(stack.terminate, n) for n in batch))
                exit_codes.update(zip(batch, codes, strict=True))
                await asyncio.to_thread(stack.revive)
        finally:
            rolling_done.set()

    await asyncio.wait_for(
        asyncio.gather(rolling_restart(), *(writer(i, a) for i, a in enumerate(accounts))), timeout=150
    )
    assert sorted(exit_codes) == sorted(stack.processes), "every process restarted once"
    assert all(code == 0 for code in exit_codes.values()), exit_codes
    print(f"\nrolling restart of {len(exit_codes)} processes: {tally.summary()}")

    # Cold: every process stopped (gracefully, exit 0), then the whole system started again.
    codes = await asyncio.to_thread(stack.stop)
    assert all(code == 0 for code in codes.values()), codes
    await asyncio.to_thread(stack.start, 90)

    # The access and refresh tokens issued before any restart: keys and refresh state live on
    # disk and in the database, not in a process.
    for account in accounts:
        orders = await list_orders(session, stack.gateway_url, account)
        assert_each_key_once(orders, keys[account.user_id], tally.acknowledged)
        async with session.get(f"{stack.gateway_url}/users/me", headers=account.headers) as response:
            assert response.status == 200, await response.text()
            final = (await response.json())["display_name"]
        # The last acknowledged name, or one sent after it whose answer was lost in a restart.
        attempts = renames[account.user_id]
        acked = [i for i, (_, ok) in enumerate(attempts) if ok]
        assert acked, "no rename was ever acknowledged"
        assert final in [name for name, _ in attempts[acked[-1]:]], (final, attempts[acked[-1]:])
        response = await refresh(session, stack.gateway_urls()[-1], account.refresh_token)
        assert response.status == 200
