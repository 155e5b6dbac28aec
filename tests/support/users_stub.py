"""A tiny real users service for tests of the auth service: it records every profile
provisioning call (PUT /internal/profiles/{id}) and answers with the status a test sets."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from aiohttp import web


@dataclasses.dataclass
class UsersStub:
    calls: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    status: int = 201
    url: str = ""
    # Each call's request headers, in the order of `calls`, for tests of what auth sends.
    headers: list[Mapping[str, str]] = dataclasses.field(default_factory=list)


async def start_users_stub(aiohttp_server: Any) -> UsersStub:
    """Serve a UsersStub on loopback with pytest-aiohttp's `aiohttp_server` fixture."""
    stub = UsersStub()

    async def provision(request: web.Request) -> web.Response:
        stub.calls.append({"user_id": request.match_info["user_id"], "body": await request.json()})
        stub.headers.append(request.headers.copy())
        if stub.status >= 400:
            return web.json_response({"title": "refused by the test"}, status=stub.status)
        return web.json_response({"id": request.match_info["user_id"]}, status=stub.status)

    app = web.Application()
    app.router.add_put("/internal/profiles/{user_id}", provision)
    server = await aiohttp_server(app)
    stub.url = str(server.make_url("")).rstrip("/")
    return stub
