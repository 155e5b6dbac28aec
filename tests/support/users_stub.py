"""A tiny real users service for tests of the auth service: it records every profile
provisioning call (PUT /internal/profiles/{id}) and answers with the status a test sets."""

from __future__ import annotations

import dataclasses
from typing import Any

from aiohttp import web


@dataclasses.dataclass
class UsersStub:
    calls: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    status: int = 201
    url: str = ""
    # Also keep each call's request headers (under "headers"), for tests of what auth sends.
    record_headers: bool = False


async def start_users_stub(aiohttp_server: Any, *, record_headers: bool = False) -> UsersStub:
    """Serve a UsersStub on loopback with pytest-aiohttp's `aiohttp_server` fixture."""
    stub = UsersStub(record_headers=record_headers)

    async def provision(request: web.Request) -> web.Response:
        call: dict[str, Any] = {"user_id": request.match_info["user_id"], "body": await request.json()}
        if stub.record_headers:
            call["headers"] = request.headers.copy()
        stub.calls.append(call)
        if stub.status >= 400:
            return web.json_response({"title": "refused by the test"}, status=stub.status)
        return web.json_response({"id": request.match_info["user_id"]}, status=stub.status)

    app = web.Application()
    app.router.add_put("/internal/profiles/{user_id}", provision)
    server = await aiohttp_server(app)
    stub.url = str(server.make_url("")).rstrip("/")
    return stub
