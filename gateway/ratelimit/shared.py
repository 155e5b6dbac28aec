"""The bucket store shared by every gateway replica: one Lua script on a Redis server.

The script is gateway.ratelimit.buckets.gcra in Lua: one key per (route, caller) holding
its theoretical arrival time, read, moved and written atomically on the server, with the
server's clock, so every replica draws from one bucket. A refused request writes nothing.
The key expires when its bucket is full again (a missing key is a full bucket).
"""

from __future__ import annotations

import redis.asyncio as aioredis

from gateway.ratelimit.buckets import Decision
from gateway.routes import RateLimit

REDIS_KEY_PREFIX = "passgate:ratelimit:"
CONNECT_TIMEOUT_SECONDS = 0.5

# KEYS[1] the bucket; ARGV interval (seconds a token), burst, and optionally `now` (seconds;
# given only by tests that hold the script to the in-memory arithmetic on one clock).
# 1e-5 is buckets.CLOCK_TOLERANCE. Returns {allowed, tokens left}; numbers go back as
# strings because Redis truncates Lua numbers to integers, and '%.17g' keeps every bit of
# a double (tostring keeps 14 digits).
TAKE_SCRIPT = """
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
if now == nil then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then
  tat = now
end
local tokens = burst - (tat - now) / interval
if tat - now <= (burst - 1) * interval + 1e-5 then
  tat = tat + interval
  redis.call('SET', KEYS[1], string.format('%.17g', tat), 'PX', math.ceil((tat - now) * 1000) + 1000)
  return {1, string.format('%.17g', math.max(0, tokens - 1))}
end
return {0, string.format('%.17g', math.max(0, tokens))}
"""


class SharedBuckets:
    """Buckets in Redis; `take` raises RedisError or OSError when Redis cannot answer."""

    def __init__(self, redis_url: str) -> None:
        self._redis = aioredis.Redis.from_url(
            redis_url,
            socket_timeout=CONNECT_TIMEOUT_SECONDS,
            socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
        )
        self._script = self._redis.register_script(TAKE_SCRIPT)

    async def take(self, key: str, limit: RateLimit, *, now: float | None = None) -> Decision:
        args: list[float] = [limit.interval, limit.burst]
        if now is not None:
            args.append(now)
        allowed, tokens = await self._script(keys=[REDIS_KEY_PREFIX + key], args=args)
        return Decision(bool(int(allowed)), float(tokens), limit)

    async def ping(self) -> None:
        await self._redis.ping()

    async def close(self) -> None:
        await self._redis.aclose()
