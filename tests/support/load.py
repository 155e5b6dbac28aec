"""Load on a running system and the figures it yields: orders placed with idempotency keys
over several gateways, reads that must never fail, and the checks on what was acknowledged.

Everything here talks HTTP to real processes; nothing is mocked.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from typing import Any

import aiohttp

from tests.support.http import Account

ORDER_ITEMS = [{"sku": "book-1", "quantity": 2, "unit_price_cents": 1250}]


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
