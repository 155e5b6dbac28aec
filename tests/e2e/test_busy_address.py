"""A busy address against a sprayer, side by side, through the real gateway and the
packaged route table (issue 15, item 9).

Everyone behind one office or carrier NAT shares an address: their correct logins and
refreshes must all get through. A sprayer trying one password over many names from
another address must be stopped, with answers that never tell an existing name from an
unknown one. The two "addresses" are real: the clients bind 127.0.0.2 and 127.0.0.3,
which the gateway sees as the peers and forwards to auth.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from devstack.stack import PortPlan, Stack, StackConfig
from tests.support.http import PASSWORD
from tests.support.stack import running_stack
from tests.support.stack_settings import CHEAP_ARGON2

NAT, SPRAYER = "127.0.0.2", "127.0.0.3"
PEOPLE = 30  # registered and signed in behind the NAT
REFRESHES = 3  # each, right after signing in: 90 refreshes from one address
FAILURES_PER_ADDRESS = 10


@pytest.fixture(scope="module")
def packaged_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A system with the packaged routes.yaml (its real rate limits) in front of auth."""
    data_dir: Path = tmp_path_factory.mktemp("busy-address")
    config = StackConfig(
        data_dir=data_dir,
        ports=PortPlan.free(),
        env={
            "auth": {
                **CHEAP_ARGON2,
                "PASSGATE_LOGIN_MAX_FAILURES_PER_ADDRESS": str(FAILURES_PER_ADDRESS),
            }
        },
    )
    with running_stack(config) as stack:
        yield stack


def from_address(address: str) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0)))


async def post(session: aiohttp.ClientSession, url: str, body: dict) -> tuple[int, dict, dict]:
    async with session.post(url, json=body) as response:
        return response.status, dict(response.headers), await response.json(content_type=None)


def visible(status: int, headers: dict, body: dict) -> tuple:
    """(status, content type, body, Retry-After): the body without the per-request ids
    and the seconds to wait, which fall by the second as the spraying goes on."""
    kept = {k: v for k, v in body.items() if k not in {"request_id", "trace_id", "retry_after"}}
    return (
        status,
        headers.get("Content-Type"),
        json.dumps(kept, sort_keys=True),
        int(headers.get("Retry-After", "0")),
    )


async def office(gateway: str, names: list[str]) -> list[int]:
    """Each person behind the NAT registers, signs in and refreshes a few times."""
    statuses: list[int] = []
    async with from_address(NAT) as session:

        async def person(name: str) -> None:
            status, _, _ = await post(
                session, f"{gateway}/auth/register", {"username": name, "password": PASSWORD}
            )
            statuses.append(status)
            status, _, tokens = await post(
                session, f"{gateway}/auth/login", {"username": name, "password": PASSWORD}
            )
            statuses.append(status)
            for _ in range(REFRESHES):
                status, _, tokens = await post(
                    session, f"{gateway}/auth/refresh", {"refresh_token": tokens["refresh_token"]}
                )
                statuses.append(status)

        await asyncio.gather(*(person(name) for name in names))
    return statuses


async def spray(gateway: str, names: list[str]) -> list[tuple]:
    """One wrong password over many names, known and unknown, from the sprayer's address."""
    async with from_address(SPRAYER) as session:
        return [
            visible(*await post(
                session, f"{gateway}/auth/login", {"username": name, "password": "Summer2026!!"}
            ))
            for name in names
        ]


async def test_a_busy_address_signs_in_while_a_sprayer_beside_it_is_stopped(
    packaged_stack: Stack,
) -> None:
    gateway = packaged_stack.gateway_url
    tag = uuid.uuid4().hex[:6]
    people = [f"office-{tag}-{index}" for index in range(PEOPLE)]
    strangers = [f"nobody-{tag}-{index}" for index in range(PEOPLE)]
    # The sprayer alternates people who exist (once registered) with names that do not.
    sprayed = [name for pair in zip(people, strangers, strict=True) for name in pair]

    # Side by side: the office signs in while the sprayer sprays.
    statuses, answers = await asyncio.gather(office(gateway, people), spray(gateway, sprayed))

    # Every registration (201), login and refresh (200) from the busy address succeeded:
    # 30 + 30 + 90 requests, far beyond the old per-address limit of a burst of 20.
    assert statuses.count(201) == PEOPLE
    assert statuses.count(200) == PEOPLE * (1 + REFRESHES), sorted(set(statuses))

    # The sprayer was stopped after its failures, and then for every name alike.
    assert [answer[0] for answer in answers[:FAILURES_PER_ADDRESS]] == [401] * FAILURES_PER_ADDRESS
    locked = answers[FAILURES_PER_ADDRESS:]
    assert {answer[0] for answer in locked} == {429}
    # Whether a name exists never shows, before the lockout or during it: one status,
    # type and body for every name (existing and unknown alternate) ...
    assert len({answer[:3] for answer in answers[:FAILURES_PER_ADDRESS]}) == 1
    assert len({answer[:3] for answer in locked}) == 1
    # ... and Retry-After is the lockout's remaining time (5 minutes by default), falling.
    waits = [answer[3] for answer in locked]
    assert all(0 < wait <= 300 for wait in waits) and waits == sorted(waits, reverse=True)

    # After the spraying the office still signs in; a person who never signed in from
    # the sprayer's address is refused there like everyone else.
    async with from_address(NAT) as session:
        for name in people[:5]:
            status, _, _ = await post(
                session, f"{gateway}/auth/login", {"username": name, "password": PASSWORD}
            )
            assert status == 200
    async with from_address(SPRAYER) as session:
        status, headers, _ = await post(
            session, f"{gateway}/auth/login", {"username": people[0], "password": PASSWORD}
        )
        assert status == 429 and int(headers["Retry-After"]) > 0
