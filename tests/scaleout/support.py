"""Helpers of the scale-out tests: a real stack on PostgreSQL, a client that fails over, figures.

Everything here talks HTTP to real processes; nothing is mocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from prometheus_client.parser import text_string_to_metric_families

from devstack.stack import ROOT, PortPlan, Stack, StackConfig
from tests.conftest import POSTGRES_URL, require_server
from tests.stack_settings import CHEAP_ARGON2

GATEWAY_ROUTES = ROOT / "gateway" / "routes.yaml"
PASSWORD = "correct horse battery staple"
ORDER_ITEMS = [{"sku": "book-1", "quantity": 2, "unit_price_cents": 1250}]

# Cheap password hashing and generous rate limits: these tests measure availability, not
# Argon2's cost or the gateway's throttling (both have their own tests).
STACK_ENV: dict[str, dict[str, str]] = {
    "auth": {**CHEAP_ARGON2, "PASSGATE_ARGON2_PARALLELISM": "1"},
}


@contextlib.contextmanager
def postgres_stack(
    data_dir: Path,
    *,
    replicas: int,
    gateways: int,
    env: Mapping[str, Mapping[str, str]] | None = None,
    process_env: Mapping[str, Mapping[str, str]] | None = None,
    prefix: str | None = None,
) -> Iterator[Stack]:
    """Start a stack on fresh PostgreSQL databases; stop it (every exit must be 0) and drop them."""
    require_server(POSTGRES_URL, 5432, "postgres")
    merged: dict[str, dict[str, str]] = {k: dict(v) for k, v in STACK_ENV.items()}
    merged["gateway"] = {"PASSGATE_ROUTES_FILE": str(unthrottled_routes(data_dir))}
    for component, values in (env or {}).items():
        merged.setdefault(component, {}).update(values)
    config = StackConfig(
        data_dir=data_dir,
        ports=PortPlan.free(replicas=replicas, gateways=gateways),
        replicas=replicas,
        gateways=gateways,
        db="postgres",
        postgres_url=POSTGRES_URL,
        database_prefix=prefix or f"passgate_scaleout_{uuid.uuid4().hex[:10]}",
        database_pool_size=2,
        env=merged,
        process_env=dict(process_env or {}),
    )
    stack = Stack(config)
    try:
        stack.start(timeout=90)
        yield stack
        stack.revive()  # a test that failed half-way may have left a process down
        codes = stack.stop()
        assert all(code == 0 for code in codes.values()), f"unclean exits at the end: {codes}"
    finally:
        stack.stop()
        asyncio.run(stack.drop_databases())


def unthrottled_routes(data_dir: Path) -> Path:
    """The packaged route table with every rate limit raised far above what a test sends:
    every test client is 127.0.0.1, one anonymous caller for the /auth/* limits."""
    table = yaml.safe_load(GATEWAY_ROUTES.read_text())
    generous = {"requests": 100_000, "per": 60, "burst": 10_000}
    table.setdefault("defaults", {})["rate_limit"] = generous
    for route in table["routes"]:
        if "rate_limit" in route:
            route["rate_limit"] = generous
    path = data_dir / "routes.yaml"
    path.write_text(yaml.safe_dump(table, sort_keys=False))
    return path


# -- HTTP -------------------------------------------------------------------------------


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def assert_problem(response: aiohttp.ClientResponse, status: int) -> dict[str, Any]:
    """The response is an RFC 9457 problem with this status and the request id."""
    text = await response.text()
    assert response.status == status, f"{response.method} {response.url}: {response.status} {text}"
    assert response.content_type == "application/problem+json", text
    body = await response.json(content_type=None)
    assert body["status"] == status
    return body


@dataclasses.dataclass
class Account:
    username: str
    user_id: str
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.access_token)


async def register(session: aiohttp.ClientSession, base: str, display_name: str = "Scale Out") -> tuple[str, str]:
    username = f"so-{uuid.uuid4().hex[:12]}"
    async with session.post(
        f"{base}/auth/register",
        json={"username": username, "password": PASSWORD, "display_name": display_name},
    ) as response:
        assert response.status == 201, await response.text()
        return (await response.json())["id"], username


async def login(session: aiohttp.ClientSession, base: str, username: str) -> dict[str, Any]:
    async with session.post(
        f"{base}/auth/login", json={"username": username, "password": PASSWORD}
    ) as response:
        assert response.status == 200, f"login at {base}: {response.status} {await response.text()}"
        return await response.json()


async def refresh(session: aiohttp.ClientSession, base: str, refresh_token: str) -> aiohttp.ClientResponse:
    async with session.post(f"{base}/auth/refresh", json={"refresh_token": refresh_token}) as response:
        await response.read()
        return response


async def new_account(session: aiohttp.ClientSession, base: str) -> Account:
    user_id, username = await register(session, base)
    tokens = await login(session, base, username)
    return Account(username, user_id, tokens["access_token"], tokens["refresh_token"])


async def list_orders(session: aiohttp.ClientSession, base: str, account: Account) -> list[dict[str, Any]]:
    """Every order of the account, following the cursor (bounded: at most 50 pages)."""
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(50):
        params = {"limit": "100"} | ({"cursor": cursor} if cursor else {})
        async with session.get(f"{base}/orders", params=params, headers=account.headers) as response:
            assert response.status == 200, await response.text()
            page = await response.json()
        items += page["items"]
        cursor = page.get("next_cursor")
        if not cursor:
            return items
    raise AssertionError("more than 50 pages of orders")


# -- figures ----------------------------------------------------------------------------


@dataclasses.dataclass
class Tally:
    """What a load run did: requests sent, what failed and how, what was acknowledged."""

    reads: int = 0
    read_failures: list[str] = dataclasses.field(default_factory=list)
    write_attempts: int = 0
    write_failures: dict[str, int] = dataclasses.field(default_factory=dict)
    # idempotency key -> order id, for every order a 2xx acknowledged
    acknowledged: dict[str, str] = dataclasses.field(default_factory=dict)
    retried_keys: int = 0
    # the first answer of each kind of failed write, to say what failed and why
    examples: dict[str, str] = dataclasses.field(default_factory=dict)

    def failed_write(self, what: str, example: str = "") -> None:
        self.write_failures[what] = self.write_failures.get(what, 0) + 1
        self.examples.setdefault(what, example[:300])

    def summary(self) -> str:
        return (
            f"reads={self.reads} read_failures={len(self.read_failures)} "
            f"write_attempts={self.write_attempts} failed_attempts={sum(self.write_failures.values())} "
            f"{self.write_failures} orders_acknowledged={len(self.acknowledged)} "
            f"keys_needing_retry={self.retried_keys}\n  examples: {self.examples}"
        )


async def read(
    session: aiohttp.ClientSession, base: str, path: str, account: Account, tally: Tally
) -> None:
    """One read that must succeed; a failure is recorded, never retried."""
    tally.reads += 1
    try:
        async with session.get(base + path, headers=account.headers) as response:
            body = await response.read()
            if response.status != 200:
                tally.read_failures.append(f"GET {path} via {base}: {response.status} {body[:200]!r}")
    except (aiohttp.ClientError, TimeoutError) as error:
        tally.read_failures.append(f"GET {path} via {base}: {type(error).__name__}: {error}")


async def place_order(
    session: aiohttp.ClientSession,
    gateways: list[str],
    account: Account,
    key: str,
    tally: Tally,
    *,
    attempts: int = 40,
) -> dict[str, Any]:
    """POST /orders with an Idempotency-Key, retried with the same key and body (over every
    gateway in turn) until acknowledged. The note carries the key so listings can be checked."""
    body = {"items": ORDER_ITEMS, "note": key}
    headers = account.headers | {"Idempotency-Key": key}
    for attempt in range(attempts):
        base = gateways[attempt % len(gateways)]
        tally.write_attempts += 1
        if attempt == 1:
            tally.retried_keys += 1
        try:
            async with session.post(f"{base}/orders", json=body, headers=headers) as response:
                if response.status in (200, 201):
                    order = await response.json()
                    previous = tally.acknowledged.setdefault(key, order["id"])
                    assert previous == order["id"], f"key {key} answered two orders"
                    return order
                text = await response.text()
                assert response.status not in (400, 401, 403, 409, 422), text
                tally.failed_write(str(response.status), f"via {base}: {text}")
        except (aiohttp.ClientError, TimeoutError) as error:
            tally.failed_write(type(error).__name__)
        await asyncio.sleep(min(0.05 * (attempt + 1), 0.5))
    raise AssertionError(f"order {key} never acknowledged after {attempts} attempts: {tally.write_failures}")


def assert_each_key_once(orders: list[dict[str, Any]], keys: list[str], acknowledged: Mapping[str, str]) -> None:
    """Every key produced exactly one order, the very one acknowledged; no order without a key."""
    by_note: dict[str, list[str]] = {}
    for order in orders:
        by_note.setdefault(order.get("note"), []).append(order["id"])
    duplicates = {key: ids for key, ids in by_note.items() if len(ids) > 1}
    assert not duplicates, f"keys with more than one order: {duplicates}"
    assert sorted(by_note) == sorted(keys), "orders listed do not match the keys sent"
    for key in keys:
        assert by_note[key] == [acknowledged[key]], f"key {key}: listed {by_note[key]}, acknowledged {acknowledged[key]}"


# -- metrics and waiting ----------------------------------------------------------------


async def scrape(session: aiohttp.ClientSession, url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """A /metrics page as {sample name: [(labels, value)]}."""
    async with session.get(url) as response:
        assert response.status == 200, f"{url}: {response.status}"
        text = await response.text()
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return samples


def sample_sum(samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    return sum(
        value
        for sample_labels, value in samples.get(name, [])
        if all(sample_labels.get(k) == v for k, v in labels.items())
    )


async def wait_for(
    condition: Callable[[], Awaitable[bool]], what: str, timeout: float = 30.0, interval: float = 0.1
) -> None:
    """Poll until the condition holds; fail with `what` after the bound (never a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await condition():
            return
        await asyncio.sleep(interval)
    raise AssertionError(f"gave up after {timeout:.0f} s waiting for {what}")


async def status_of(session: aiohttp.ClientSession, url: str) -> int | None:
    """The status of a GET, or None when nothing accepts the connection."""
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=3)) as response:
            await response.read()
            return response.status
    except (aiohttp.ClientError, TimeoutError):
        return None
