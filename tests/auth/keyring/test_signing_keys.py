"""Signing keys: published before they sign, retired only after every token they signed expired."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import stat

import jwt
import pytest
from aiohttp import web

from services.auth.app import create_app
from services.auth.app_keys import KEY_RING
from services.auth.keyring.signing_keys import KeySetError, ensure_key_set, read_key_set, rotate
from services.auth.settings import ACCESS_TOKEN_TTL_MAX
from tests.support.http import PASSWORD
from tests.support.auth_client import decode, login, register
from tests.support.clock import START

LEAD = 600
LEEWAY = 30
RETENTION = dt.timedelta(seconds=ACCESS_TOKEN_TTL_MAX + LEEWAY)


def test_keys_are_generated_only_when_allowed_and_private_to_the_owner(tmp_path) -> None:
    directory = tmp_path / "keys"
    with pytest.raises(KeySetError, match="PASSGATE_GENERATE_KEYS"):
        ensure_key_set(directory, START, generate=False)
    assert ensure_key_set(directory, START, generate=True) is True
    assert ensure_key_set(directory, START, generate=True) is False  # kept across restarts
    [key] = read_key_set(directory)
    assert key.not_before == key.created_at == START
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for path in directory.iterdir():
        if path.name != ".lock":
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
    metadata = json.loads((directory / "keys.json").read_text())
    assert metadata["keys"][0]["file"] == f"{key.kid}.pem"


async def test_the_service_refuses_to_start_without_keys_unless_told_to_generate(
    aiohttp_client, make_settings, tmp_path
) -> None:
    runner = web.AppRunner(create_app(make_settings(signing_keys_dir=tmp_path / "empty")))
    with pytest.raises(KeySetError):
        await runner.setup()
    await runner.cleanup()
    assert not (tmp_path / "empty" / "keys.json").exists()
    client = await aiohttp_client(
        create_app(make_settings(signing_keys_dir=tmp_path / "new", generate_keys=True))
    )
    keys = (await (await client.get("/.well-known/jwks.json")).json())["keys"]
    assert len(keys) == 1


def test_a_damaged_key_file_is_named_without_its_content(keys_dir) -> None:
    [key] = read_key_set(keys_dir)
    pem = keys_dir / f"{key.kid}.pem"
    content = pem.read_text()
    pem.write_text(content[:200])
    with pytest.raises(KeySetError) as raised:
        read_key_set(keys_dir)
    assert key.kid in str(raised.value) and content[40:80] not in str(raised.value)


async def test_key_rotation_publishes_first_signs_after_the_lead_and_retires_late(
    auth_client, clock, keys_dir
) -> None:
    client = await auth_client(key_publish_lead=LEAD, token_leeway=LEEWAY)
    ring = client.server.app[KEY_RING]
    await register(client)

    async def state() -> tuple[set[str], str]:
        response = await client.get("/.well-known/jwks.json")
        published = {key["kid"] for key in (await response.json())["keys"]}
        token = (await login(client))["access_token"]
        return published, jwt.get_unverified_header(token)["kid"]

    [old] = ring.keys
    new = rotate(keys_dir, clock(), lead=dt.timedelta(seconds=LEAD), retention=RETENTION)
    ring.load()  # what the reload task does when keys.json changes

    published, signer = await state()
    assert published == {old.kid, new.kid}  # the new key is out at once ...
    assert signer == old.kid  # ... but does not sign yet

    clock.advance(LEAD - 1)
    assert (await state())[1] == old.kid
    clock.advance(1)
    published, signer = await state()
    assert signer == new.kid and old.kid in published  # old tokens still verify

    clock.advance(RETENTION.total_seconds() - 1)
    assert old.kid in (await state())[0]
    clock.advance(1)
    published, signer = await state()
    assert published == {new.kid} and signer == new.kid

    # The next rotation deletes the retired key's file.
    rotate(keys_dir, clock(), lead=dt.timedelta(seconds=LEAD), retention=RETENTION)
    assert not (keys_dir / f"{old.kid}.pem").exists()
    assert (keys_dir / f"{new.kid}.pem").exists()


async def test_at_no_moment_does_a_key_sign_before_it_is_published(
    auth_client, clock, keys_dir
) -> None:
    client = await auth_client(key_publish_lead=LEAD, token_leeway=LEEWAY)
    ring = client.server.app[KEY_RING]
    await register(client)
    for _ in range(3):
        rotate(keys_dir, clock(), lead=dt.timedelta(seconds=LEAD), retention=RETENTION)
        ring.load()
        for _ in range(4):
            jwks = await (await client.get("/.well-known/jwks.json")).json()
            token = (await login(client))["access_token"]
            decode(token, jwks)  # a gateway holding this JWKS accepts the token
            clock.advance(LEAD / 2)


async def test_replicas_follow_a_rotation_without_restart(auth_client, clock, keys_dir) -> None:
    """The reload task notices the changed key set (as after a Kubernetes Secret update)."""
    client = await auth_client(key_reload_interval=0.02)
    new = rotate(keys_dir, clock(), lead=dt.timedelta(seconds=LEAD), retention=RETENTION)
    for _ in range(250):  # bounded: at most ~5 s
        kids = {
            key["kid"]
            for key in (await (await client.get("/.well-known/jwks.json")).json())["keys"]
        }
        if new.kid in kids:
            break
        await asyncio.sleep(0.02)
    assert new.kid in kids


async def test_jwks_is_cacheable_and_holds_public_keys_only(auth_client) -> None:
    client = await auth_client(jwks_max_age=120)
    response = await client.get("/.well-known/jwks.json")
    assert response.headers["Cache-Control"] == "public, max-age=120"
    body = await response.json()
    for key in body["keys"]:
        assert key["kty"] == "RSA" and key["alg"] == "RS256" and key["use"] == "sig"
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key)


async def test_no_active_key_is_a_503_not_a_500(auth_client, clock) -> None:
    client = await auth_client()
    await register(client)
    clock.now = START - dt.timedelta(days=2)  # before the only key's not_before
    response = await client.post(
        "/auth/login", json={"username": "alice", "password": PASSWORD}
    )
    assert response.status == 503
    ready = await client.get("/readyz")
    assert ready.status == 503
