"""Requests of the revocation and introspection endpoints, as an OAuth client sends them."""

from __future__ import annotations

from typing import Any

from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from tests.auth.helpers import basic

# The first-party public client names itself; it has no secret.
FIRST_PARTY = {"client_id": "passgate"}


async def revoke(
    client: TestClient, token: str, *, headers: dict[str, str] | None = None, **form: str
) -> ClientResponse:
    """POST /auth/revoke; without `headers` or client fields, as the first-party page."""
    fields = form if (headers or "client_id" in form) else {**FIRST_PARTY, **form}
    return await client.post("/auth/revoke", data={"token": token, **fields}, headers=headers)


async def introspect(
    client: TestClient, token: str, client_id: str, secret: str, **form: str
) -> dict[str, Any]:
    """POST /auth/introspect as a resource server (HTTP Basic); the 200 answer's body."""
    response = await client.post(
        "/auth/introspect", data={"token": token, **form}, headers=basic(client_id, secret)
    )
    assert response.status == 200, await response.text()
    assert response.headers["Cache-Control"] == "no-store"
    return dict(await response.json())
