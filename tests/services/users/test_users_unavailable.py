"""A lost database is a 503 problem and an unready service, never a 500."""

from __future__ import annotations

import uuid

from devstack.processes import free_port
from services.users.app import create_app


async def test_unreachable_database_is_503_and_unready(
    aiohttp_client, make_users_settings, headers
) -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/passgate"
    client = await aiohttp_client(create_app(make_users_settings(url, migrate_on_start=False)))
    response = await client.get("/users/me", headers=headers.user(str(uuid.uuid4())))
    assert response.status == 503
    assert response.content_type == "application/problem+json"
    assert response.headers["Retry-After"]
    body = await response.json(content_type=None)
    assert body["type"] == "urn:passgate:problem:database-unavailable"

    ready = await client.get("/readyz")
    assert ready.status == 503
    assert (await ready.json(content_type=None))["checks"]["database"] != "ok"
    assert (await client.get("/healthz")).status == 200
