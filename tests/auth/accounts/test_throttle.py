"""Login throttling per account and per source address, in storage shared by replicas."""

from __future__ import annotations

import ipaddress
import json
import secrets
import uuid

import pytest
from aiohttp.test_utils import make_mocked_request

from services.auth.accounts.throttle import client_address
from services.auth.settings import parse_networks
from tests.support.auth_client import login, register
from tests.support.http import PASSWORD

WRONG = "not the password!"


async def attempt(client, username: str, password: str = WRONG, **headers: str):
    return await client.post(
        "/auth/login", json={"username": username, "password": password}, headers=headers
    )


def comparable(status: int, headers, body: dict) -> tuple:
    """Everything a client sees, minus the per-request ids."""
    return (
        status,
        headers.get("Content-Type"),
        headers.get("Retry-After"),
        json.dumps(
            {k: v for k, v in body.items() if k not in {"request_id", "trace_id"}}, sort_keys=True
        ),
    )


async def test_after_n_failures_login_is_429_for_existing_and_unknown_users_alike(
    auth_client, clock
) -> None:
    """Three failures lock the name; then 429 + Retry-After, identical for both kinds of name."""
    client = await auth_client(login_max_failures=3, login_lockout=120)
    await register(client)
    answers = {}
    for username in ("alice", "mallory-does-not-exist"):
        for _ in range(3):
            assert (await attempt(client, username)).status == 401
        throttled = await attempt(client, username)
        assert throttled.status == 429
        answers[username] = comparable(
            throttled.status, throttled.headers, await throttled.json(content_type=None)
        )
    assert answers["alice"] == answers["mallory-does-not-exist"]
    status, content_type, retry_after, _ = answers["alice"]
    assert content_type == "application/problem+json" and retry_after == "120"

    # Locked means locked: even the right password is not checked.
    assert (await attempt(client, "alice", PASSWORD)).status == 429
    clock.advance(60)
    assert (await attempt(client, "alice", PASSWORD)).headers["Retry-After"] == "60"
    clock.advance(61)
    await login(client)
    metrics = await (await client.get("/metrics")).text()
    assert 'auth_logins_total{result="throttled"} 4.0' in metrics
    assert 'auth_logins_total{result="invalid_credentials"} 6.0' in metrics


async def test_failures_outside_the_window_do_not_add_up(auth_client, clock) -> None:
    client = await auth_client(login_max_failures=3, login_failure_window=60)
    await register(client)
    for _ in range(5):
        assert (await attempt(client, "alice")).status == 401
        clock.advance(31)  # two failures per window at most
    await login(client)


async def test_a_success_resets_the_account_count(auth_client) -> None:
    client = await auth_client(login_max_failures=3)
    await register(client)
    for _ in range(3):
        for _ in range(2):
            assert (await attempt(client, "alice")).status == 401
        await login(client)


async def test_one_address_trying_many_names_is_throttled(auth_client) -> None:
    """The per-address limit stops spraying one password over many accounts."""
    client = await auth_client(login_max_failures=3, login_max_failures_per_address=5)
    await register(client)
    for index in range(5):
        assert (await attempt(client, f"user{index}")).status == 401
    assert (await attempt(client, "someone-else")).status == 429
    # The address is locked for everyone behind it, the right password included.
    assert (await attempt(client, "alice", PASSWORD)).status == 429


async def test_forwarded_addresses_count_only_from_trusted_proxies(auth_client) -> None:
    """Behind the gateway (a trusted proxy), each client address has its own count."""
    client = await auth_client(login_max_failures=50, login_max_failures_per_address=2)
    for _ in range(2):
        await attempt(client, "x", **{"X-Forwarded-For": "203.0.113.7"})
    assert (await attempt(client, "x", **{"X-Forwarded-For": "203.0.113.7"})).status == 429
    assert (await attempt(client, "x", **{"X-Forwarded-For": "203.0.113.8"})).status == 401


@pytest.mark.parametrize(
    ("remote", "forwarded", "expected"),
    [
        ("127.0.0.1", None, "127.0.0.1"),
        ("127.0.0.1", "203.0.113.7", "203.0.113.7"),
        (
            "127.0.0.1",
            "198.51.100.1, 203.0.113.7",
            "203.0.113.7",
        ),  # the left part is the client's word
        ("127.0.0.1", "203.0.113.7, 10.0.0.2", "203.0.113.7"),  # through two trusted proxies
        (
            "198.51.100.9",
            "203.0.113.7",
            "198.51.100.9",
        ),  # an untrusted peer cannot claim an address
        ("127.0.0.1", "not-an-ip", "127.0.0.1"),
    ],
)
def test_client_address(remote: str, forwarded: str | None, expected: str) -> None:
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    request = make_mocked_request("POST", "/auth/login", headers=headers)
    trusted = parse_networks(("127.0.0.1/32", "::1/128", "10.0.0.0/8"), "test")
    request._transport_peername = (remote, 1234)  # what request.remote reads
    assert client_address(request, trusted) == expected


async def test_redis_backend_is_shared_between_replicas(auth_client, redis_url) -> None:
    """Two apps (two replicas) with one Redis: failures at one lock the name at the other."""
    # Redis outlives the test and is shared with other suites: fresh keys, no flushing.
    name = f"shared-{uuid.uuid4().hex[:12]}"
    address = {
        "X-Forwarded-For": str(ipaddress.IPv4Address("198.18.0.0") + secrets.randbelow(2**17))
    }
    first = await auth_client(redis_url=redis_url, login_max_failures=3)
    second = await auth_client(redis_url=redis_url, login_max_failures=3)
    for client in (first, second, first):
        assert (await attempt(client, name, **address)).status == 401
    throttled = await attempt(second, name, **address)
    assert throttled.status == 429
    assert 1 <= int(throttled.headers["Retry-After"]) <= 300
    ready = await second.get("/readyz")
    assert (await ready.json())["checks"]["redis"] == "ok"


async def test_database_backend_is_shared_between_replicas(auth_client, database_url) -> None:
    first = await auth_client(database_url=database_url, login_max_failures=3)
    second = await auth_client(database_url=database_url, login_max_failures=3)
    for client in (first, second, first):
        assert (await attempt(client, "shared-name")).status == 401
    assert (await attempt(second, "shared-name")).status == 429
    assert (await attempt(first, "other-name")).status == 401


async def test_an_address_locked_for_spraying_still_lets_in_its_own_known_accounts(
    auth_client, clock
) -> None:
    """The NAT case: people who signed in from an address before keep signing in after a
    sprayer behind the same address locked it; nobody else gets a password checked."""
    client = await auth_client(
        login_max_failures=3, login_max_failures_per_address=5, login_lockout=300
    )
    nat = {"X-Forwarded-For": "198.51.100.20"}
    for name in ("alice", "bob"):
        await register(client, name)
        assert (await attempt(client, name, PASSWORD, **nat)).status == 200
    await register(client, "carol")  # never signed in from the NAT
    for index in range(5):  # spraying: one wrong password over many names
        assert (await attempt(client, f"victim{index}", **nat)).status == 401
    locked = await attempt(client, "victim9", **nat)
    assert locked.status == 429 and locked.headers["Retry-After"] == "300"

    # Known pairs get in with their passwords; the address stays locked for the rest.
    assert (await attempt(client, "alice", PASSWORD, **nat)).status == 200
    assert (await attempt(client, "bob", PASSWORD, **nat)).status == 200
    assert (await attempt(client, "carol", PASSWORD, **nat)).status == 429
    # Elsewhere carol is not affected.
    assert (
        await attempt(client, "carol", PASSWORD, **{"X-Forwarded-For": "203.0.113.5"})
    ).status == 200

    # A wrong password on a known account answers exactly like an unknown name there,
    # so a sprayer behind the NAT learns nothing about which accounts exist.
    wrong = await attempt(client, "alice", **nat)
    unknown = await attempt(client, "nobody-here", **nat)
    assert comparable(wrong.status, wrong.headers, await wrong.json()) == comparable(
        unknown.status, unknown.headers, await unknown.json()
    )
    # And the known account's own limit still holds: three failures lock alice.
    for _ in range(2):
        await attempt(client, "alice", **nat)
    assert (await attempt(client, "alice", PASSWORD, **nat)).status == 429


async def test_retry_after_is_truthful_when_account_and_address_are_both_locked(
    auth_client, clock
) -> None:
    """Retry-After is the longest lockout that applies: waiting that long is enough, and
    waiting less is not."""
    client = await auth_client(
        login_max_failures=3, login_max_failures_per_address=6, login_lockout=120
    )
    await register(client)
    here = {"X-Forwarded-For": "198.51.100.30"}
    for _ in range(3):
        await attempt(client, "alice", **here)  # locks alice until t=120
    clock.advance(60)
    for index in range(3):
        await attempt(client, f"someone{index}", **here)  # locks the address until t=180
    answer = await attempt(client, "alice", PASSWORD, **here)
    assert answer.status == 429
    retry_after = int(answer.headers["Retry-After"])
    assert retry_after == 120  # the address's lockout, the longer one
    clock.advance(retry_after - 1)
    assert (await attempt(client, "alice", PASSWORD, **here)).status == 429
    clock.advance(1)
    assert (await attempt(client, "alice", PASSWORD, **here)).status == 200


async def test_known_addresses_are_shared_through_redis(auth_client, redis_url) -> None:
    name = f"nat-{uuid.uuid4().hex[:12]}"
    nat = {"X-Forwarded-For": str(ipaddress.IPv4Address("198.18.128.0") + secrets.randbelow(2**15))}
    first = await auth_client(redis_url=redis_url, login_max_failures_per_address=2)
    second = await auth_client(redis_url=redis_url, login_max_failures_per_address=2)
    await register(first, name)
    assert (await attempt(first, name, PASSWORD, **nat)).status == 200
    for _ in range(2):
        await attempt(second, f"sprayed-{uuid.uuid4().hex[:8]}", **nat)
    assert (await attempt(second, f"other-{uuid.uuid4().hex[:8]}", **nat)).status == 429
    assert (await attempt(second, name, PASSWORD, **nat)).status == 200
