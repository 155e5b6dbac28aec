"""Refresh-token rotation, reuse detection, concurrency, lifetimes, logout and revocation."""

from __future__ import annotations

import asyncio

from tests.support.auth_client import identity_headers, login, register


async def refresh(client, token: str, **extra):
    return await client.post("/auth/refresh", json={"refresh_token": token, **extra})


async def test_refresh_rotates_and_reuse_kills_the_whole_family(auth_client) -> None:
    """A refresh gives a new pair and spends the old token; reusing it revokes the new one too."""
    client = await auth_client()
    await register(client)
    first = await login(client)
    response = await refresh(client, first["refresh_token"])
    assert response.status == 200
    assert response.headers["Cache-Control"] == "no-store"
    second = await response.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]

    reused = await refresh(client, first["refresh_token"])
    assert reused.status == 401
    assert reused.content_type == "application/problem+json"
    assert reused.headers["WWW-Authenticate"].startswith("Bearer")
    # The thief's replay logged the victim out as well: the successor is dead.
    assert (await refresh(client, second["refresh_token"])).status == 401

    metrics = await (await client.get("/metrics")).text()
    assert "auth_refresh_rotations_total 1.0" in metrics
    assert "auth_refresh_reuse_detected_total 1.0" in metrics
    # Other families of the same user are untouched.
    other = await login(client)
    assert (await refresh(client, other["refresh_token"])).status == 200


async def test_concurrent_refreshes_with_one_token_give_exactly_one_success(
    auth_client, database_url
) -> None:
    """Rotation is atomic on SQLite and PostgreSQL: of N racing uses, exactly one wins."""
    client = await auth_client(database_url=database_url)
    await register(client)
    pair = await login(client)
    responses = await asyncio.gather(*(refresh(client, pair["refresh_token"]) for _ in range(4)))
    statuses = sorted(response.status for response in responses)
    assert statuses == [200, 401, 401, 401]
    [winner] = [response for response in responses if response.status == 200]
    new_pair = await winner.json()
    # The losing uses count as reuse (no grace period): the family is revoked, winner included.
    assert (await refresh(client, new_pair["refresh_token"])).status == 401
    # A fresh login still works.
    assert (await refresh(client, (await login(client))["refresh_token"])).status == 200


async def test_idle_and_absolute_lifetimes(auth_client, clock) -> None:
    client = await auth_client(refresh_idle_ttl=3600, refresh_absolute_ttl=3 * 3600)
    await register(client)
    idle = await login(client)
    clock.advance(3601)
    assert (await refresh(client, idle["refresh_token"])).status == 401

    token = (await login(client))["refresh_token"]
    statuses = []
    for _ in range(4):  # used every 50 minutes: never idle, but the family ages
        clock.advance(3000)
        response = await refresh(client, token)
        statuses.append(response.status)
        if response.status == 200:
            token = (await response.json())["refresh_token"]
    assert statuses == [200, 200, 200, 401]  # 150 minutes fine; at 200 past the 3-hour cap


async def test_logout_revokes_the_family_and_is_idempotent(auth_client) -> None:
    client = await auth_client()
    await register(client)
    pair = await login(client)
    rotated = await (await refresh(client, pair["refresh_token"])).json()
    for _ in range(2):
        response = await client.post("/auth/logout", json={"refresh_token": pair["refresh_token"]})
        assert response.status == 204
    assert (await refresh(client, rotated["refresh_token"])).status == 401
    unknown = await client.post("/auth/logout", json={"refresh_token": "pgr_never-issued"})
    assert unknown.status == 204
    malformed = await client.post("/auth/logout", json={"token": "x"})
    assert malformed.status == 400


async def test_logout_all_revokes_every_family_of_the_caller_only(auth_client) -> None:
    client = await auth_client()
    alice = await register(client)
    await register(client, "bob")
    sessions = [await login(client) for _ in range(3)]
    bob = await login(client, "bob")
    assert (await client.post("/auth/logout-all")).status == 401
    response = await client.post("/auth/logout-all", headers=identity_headers(alice))
    assert response.status == 204
    for pair in sessions:
        assert (await refresh(client, pair["refresh_token"])).status == 401
    assert (await refresh(client, bob["refresh_token"])).status == 200


async def test_unknown_or_malformed_refresh_tokens(auth_client) -> None:
    client = await auth_client()
    assert (await refresh(client, "pgr_" + "A" * 43)).status == 401
    assert (await client.post("/auth/refresh", json={"refresh_token": ""})).status == 400
    assert (await client.post("/auth/refresh", json={})).status == 400
