"""The session-lookup baseline (bench.session_proxy): the gateway's own proxy path with a
Redis GET per request in place of the JWT check, and the session store's memory per user."""

from __future__ import annotations

import json
import secrets
import time
import uuid
from typing import TYPE_CHECKING

import redis.asyncio as redis_asyncio

from bench import procstat
from bench.scenarios import Figures
from devstack.processes import free_port

if TYPE_CHECKING:
    from bench.run import Bench

RUN = "session lookup (Redis) → bare"
KEY_PREFIX = "passgate-bench:session:"
SESSIONS = 100_000  # logged-in users whose sessions the store holds while measured
BATCH = 5000


def session_value(user_id: str, scopes: str) -> bytes:
    """One session as the store holds it: what the gateway would otherwise read off a token."""
    return json.dumps({"sub": user_id, "scope": scopes, "client_id": "passgate",
                       "created_at": int(time.time())}).encode()


async def fill_store(client: redis_asyncio.Redis, prefix: str, scopes: str, keys: list[str]) -> Figures:
    """SESSIONS sessions of distinct users; the store's memory per session, two ways."""
    before = int((await client.info("memory"))["used_memory"])
    value = b""
    for start in range(0, SESSIONS, BATCH):
        pipe = client.pipeline(transaction=False)
        for _ in range(min(BATCH, SESSIONS - start)):
            key = prefix + secrets.token_urlsafe(32)
            value = session_value(str(uuid.uuid4()), scopes)
            keys.append(key)
            pipe.set(key, value, ex=3600)
        await pipe.execute()
    after = int((await client.info("memory"))["used_memory"])
    samples = [int(await client.memory_usage(key) or 0) for key in keys[:: SESSIONS // 200]]
    print(f"  Redis: {(after - before) / SESSIONS:.0f} B per session (used_memory delta), "
          f"{sum(samples) / len(samples):.0f} B (MEMORY USAGE)", flush=True)
    return {"count": SESSIONS, "used_memory_delta_bytes_per_session": (after - before) / SESSIONS,
            "memory_usage_bytes_per_session": sum(samples) / len(samples), "value_bytes": len(value)}


async def run(ctx: Bench) -> Figures:
    client = redis_asyncio.from_url(ctx.o.redis_url)
    prefix = f"{KEY_PREFIX}{uuid.uuid4().hex[:8]}:"
    keys: list[str] = []
    try:
        await client.ping()
        figures = await fill_store(client, prefix, ctx.scopes, keys)
        session_id = secrets.token_urlsafe(32)
        keys.append(prefix + session_id)
        await client.set(prefix + session_id, session_value(ctx.user_id, ctx.scopes), ex=3600)
        figures |= {"session_id_chars": len(session_id), "redis_url": ctx.o.redis_url}

        port, admin = free_port(), free_port()
        env = dict(ctx.stack.process("gateway-bare").env) | {
            "PASSGATE_PORT": str(port),
            "PASSGATE_ADMIN_PORT": str(admin),
            "PASSGATE_BENCH_SESSION_REDIS_URL": ctx.o.redis_url,
            "PASSGATE_BENCH_SESSION_PREFIX": prefix,
        }
        proxy = ctx.start_python("session-proxy", ["-m", "bench.session_proxy"], env,
                                 f"http://127.0.0.1:{admin}/readyz", timeout=60)
        try:
            groups: dict[str, list[int]] = {"session proxy": [ctx.pid_of(proxy)], "backend": [ctx.bare_pid]}
            redis_pid = procstat.find_process("redis-server")
            if redis_pid is not None:
                groups["redis (unpinned, shared)"] = [redis_pid]
            await ctx.measure(RUN, f"http://127.0.0.1:{port}/orders",
                              processes=groups, headers=ctx.bearer(session_id))
        finally:
            proxy.stop()
    finally:
        for start in range(0, len(keys), 10000):
            await client.delete(*keys[start : start + 10000])
        await client.aclose()
    return figures
