"""The session-lookup baseline (bench only, never a product feature): the stateful design
the seed argues against, on the same proxy path as the gateway.

It is the gateway itself (same routes, middlewares, rate limiter, proxy and access log)
with one change: instead of verifying a signed token, each request's opaque session id
(sent as `Authorization: Bearer <id>`) is looked up in Redis, on every request, as a
shared session store requires (any replica may serve any session). Only the
authentication step differs, so the throughput ratio measures exactly that.

    PASSGATE_BENCH_SESSION_REDIS_URL  the session store (redis://host:port/db)
    PASSGATE_BENCH_SESSION_PREFIX     key prefix; a session is <prefix><id> -> JSON
                                      {"sub", "scope", "client_id", ...}
plus every gateway variable (PASSGATE_PORT, PASSGATE_ADMIN_PORT, upstreams ...).
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from aiohttp import web

from common.identity import Identity
from common.settings import env_str
from gateway.app import create_app
from gateway.app_keys import VERIFIER
from gateway.settings import GatewaySettings
from gateway.verification import TokenError, Verified


class SessionStore:
    """verify(session_id) -> Identity, by one Redis GET: the gateway verifier's interface."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix

    async def verify(self, session_id: str) -> Verified:
        raw = await self._client.get(self._prefix + session_id)
        if raw is None:
            raise TokenError("expired", "the session does not exist or has expired")
        session = json.loads(raw)
        identity = Identity(
            subject=session["sub"],
            scopes=frozenset(session.get("scope", "").split()),
            client_id=session.get("client_id"),
        )
        # The same identity header lines the gateway sends: the work per request is equal.
        return Verified.of(identity, math.inf, "session")


def create_session_proxy(settings: GatewaySettings, redis_url: str, prefix: str) -> web.Application:
    app = create_app(settings)

    async def session_store_ctx(app: web.Application) -> AsyncIterator[None]:
        client = aioredis.Redis.from_url(redis_url)
        # The gateway's handlers call app[VERIFIER].verify(token): answer with the store.
        app[VERIFIER].verify = SessionStore(client, prefix).verify  # type: ignore[method-assign]
        try:
            yield
        finally:
            await client.aclose()

    # Appended after the gateway's own contexts, so the verifier exists when this runs.
    app.cleanup_ctx.append(session_store_ctx)
    return app


def main() -> int:
    """Run exactly as `python -m gateway` does, with the app built by create_session_proxy."""
    import gateway.__main__ as gateway_main

    redis_url = env_str(os.environ, "PASSGATE_BENCH_SESSION_REDIS_URL", "redis://127.0.0.1:6379/11")
    prefix = env_str(os.environ, "PASSGATE_BENCH_SESSION_PREFIX", "passgate-bench:session:")
    gateway_main.create_app = lambda settings, **kw: create_session_proxy(settings, redis_url, prefix)  # type: ignore[assignment]
    return int(gateway_main.main([]))


if __name__ == "__main__":
    sys.exit(main())
