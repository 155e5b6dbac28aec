"""Token-bucket rate limits per caller and route: in memory, or shared by all replicas in Redis.

A caller is the token's subject (a user id, or the client id of a client-credentials
token), or the client address for anonymous requests. Every bucket holds up to `burst`
tokens and refills at `requests / per` tokens a second; a request takes one.

With PASSGATE_REDIS_URL, one Lua script reads, refills and takes atomically on the Redis
server, using the server's clock, so every gateway replica draws from one bucket. If
Redis cannot be reached the gateway falls back to its own buckets rather than failing
requests (the limit is then per replica until Redis is back).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
import time
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.routes import RateLimit, RouteConfig

_LOGGER = logging.getLogger(__name__)

MAX_MEMORY_BUCKETS = 100_000
REDIS_KEY_PREFIX = "passgate:ratelimit:"
REDIS_WARNING_INTERVAL = 30.0

# KEYS[1] bucket; ARGV rate (tokens/s), burst. Returns {allowed, tokens left} (as strings:
# Redis would truncate Lua numbers to integers).
_TAKE_SCRIPT = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
local elapsed = math.max(0, now - ts)
tokens = math.min(burst, tokens + elapsed * rate)
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, tostring(tokens)}
"""


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    tokens: float  # left after this request
    limit: RateLimit

    @property
    def retry_after(self) -> float:
        """Seconds until a token is available again."""
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.limit.rate

    def headers(self, policy: str) -> dict[str, str]:
        """RateLimit and RateLimit-Policy fields (draft-ietf-httpapi-ratelimit-headers)."""
        remaining = int(self.tokens)
        reset = self.retry_after if remaining == 0 else (self.limit.burst - self.tokens) / self.limit.rate
        return {
            "RateLimit-Policy": policy,
            "RateLimit": f'{policy.split(";", 1)[0]};r={remaining};t={math.ceil(reset)}',
        }


def policy_header(route: RouteConfig) -> str:
    limit = route.rate_limit
    assert limit is not None
    window = math.ceil(limit.burst / limit.rate)
    return f'"{route.name}";q={limit.burst};w={window}'


class MemoryBuckets:
    """Buckets in this process, bounded in number; the least recently used is forgotten
    first, and being the longest idle it has most likely refilled, so forgetting it
    loses nothing: a fresh bucket is a full one."""

    def __init__(self, clock: Callable[[], float], max_buckets: int = MAX_MEMORY_BUCKETS) -> None:
        self._clock = clock
        self._max = max_buckets
        self._buckets: collections.OrderedDict[str, list[float]] = collections.OrderedDict()

    def take(self, key: str, limit: RateLimit) -> Decision:
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max:
                self._buckets.popitem(last=False)
            bucket = self._buckets[key] = [float(limit.burst), now]
        else:
            self._buckets.move_to_end(key)
        tokens = min(limit.burst, bucket[0] + max(0.0, now - bucket[1]) * limit.rate)
        allowed = tokens >= 1
        if allowed:
            tokens -= 1
        bucket[0], bucket[1] = tokens, now
        return Decision(allowed, tokens, limit)


class RateLimiter:
    """Takes a token for (route, caller) from Redis when configured, else from memory."""

    def __init__(self, *, clock: Callable[[], float], redis_url: str | None = None) -> None:
        self._memory = MemoryBuckets(clock)
        self._redis: aioredis.Redis | None = None
        self._script = None
        self._last_warning = -math.inf
        if redis_url:
            self._redis = aioredis.Redis.from_url(
                redis_url, socket_timeout=0.5, socket_connect_timeout=0.5
            )
            self._script = self._redis.register_script(_TAKE_SCRIPT)

    async def take(self, route: RouteConfig, caller: str) -> Decision:
        limit = route.rate_limit
        assert limit is not None
        key = f"{route.name}:{caller}"
        if self._script is not None:
            try:
                allowed, tokens = await self._script(
                    keys=[REDIS_KEY_PREFIX + key], args=[limit.rate, limit.burst]
                )
                return Decision(bool(int(allowed)), float(tokens), limit)
            except (RedisError, OSError) as exc:
                now = time.monotonic()
                if now - self._last_warning >= REDIS_WARNING_INTERVAL:
                    self._last_warning = now
                    _LOGGER.warning("rate limits fall back to local buckets: Redis %s", type(exc).__name__)
        return self._memory.take(key, limit)

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
