"""Rate limits per caller and route: in memory, or shared by all replicas in Redis.

A caller is the token's subject (a user id, or the client id of a client-credentials
token), or the client address for anonymous requests. Every bucket holds up to `burst`
tokens and refills at `requests / per` tokens a second; a request takes one
(gateway.ratelimit.buckets keeps each bucket as one GCRA timestamp).

With PASSGATE_REDIS_URL, every replica draws from one bucket in Redis
(gateway.ratelimit.shared). If Redis cannot answer, the gateway falls back to its own
buckets rather than failing requests, and says so: the limits are then per replica, so a
client may get up to N times its limit from N replicas. The fallback shows as
gateway_rate_limit_backend_up 0, a count of the requests it decided, a `degraded` detail
in /readyz's body (the gateway stays ready: it still protects the backends), and the
PassgateRateLimitsPerReplica alert.
"""

from __future__ import annotations

import logging
import math
import time

from prometheus_client import CollectorRegistry, Counter, Gauge
from redis.exceptions import RedisError

from common.timestamps import EpochClock
from gateway.ratelimit.buckets import MAX_MEMORY_BUCKETS, Decision, MemoryBuckets, RatePolicy
from gateway.ratelimit.shared import REDIS_KEY_PREFIX, SharedBuckets
from gateway.routes import RouteConfig

__all__ = [
    "MAX_MEMORY_BUCKETS",
    "REDIS_KEY_PREFIX",
    "Decision",
    "MemoryBuckets",
    "RateLimiter",
    "RatePolicy",
    "policy_header",
]

_LOGGER = logging.getLogger(__name__)

REDIS_WARNING_INTERVAL = 30.0
# After Redis failed, requests use local buckets for this long before one tries Redis
# again: an unreachable Redis must not add its connect timeout to every request.
REDIS_RETRY_SECONDS = 1.0


def policy_header(route: RouteConfig) -> RatePolicy:
    limit = route.rate_limit
    assert limit is not None
    window = math.ceil(limit.burst / limit.rate)
    name = f'"{route.name}"'
    return RatePolicy(f"{name};q={limit.burst};w={window}", name)


class _BackendMetrics:
    """Exported with or without Redis (the `backend` label says which is configured), so
    dashboards and alerts read one series everywhere; the memory backend is always up."""

    def __init__(self, registry: CollectorRegistry | None, backend: str) -> None:
        self.up = Gauge(
            "gateway_rate_limit_backend_up",
            "1 while the configured rate-limit store answers (memory always does); 0 while "
            "Redis cannot answer and this replica decides limits alone.",
            ["backend"],
            registry=registry,
        ).labels(backend)
        self.fallbacks = Counter(
            "gateway_rate_limit_fallbacks",
            "Rate-limit decisions made by this replica's own buckets because Redis could not answer.",
            registry=registry,
        )
        self.up.set(1)


class RateLimiter:
    """Takes a token for (route, caller) from Redis when configured, else from memory."""

    def __init__(
        self,
        *,
        clock: EpochClock,
        redis_url: str | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self._memory = MemoryBuckets(clock)
        self._shared = SharedBuckets(redis_url) if redis_url else None
        self._metrics = _BackendMetrics(registry, "redis" if self._shared is not None else "memory")
        self._down_since: float | None = None  # time.monotonic() of the first failure
        self._down_reason = ""
        self._retry_at = -math.inf
        self._last_warning = -math.inf

    async def take(self, route: RouteConfig, caller: str) -> Decision:
        limit = route.rate_limit
        assert limit is not None
        key = f"{route.name}:{caller}"
        if self._shared is None:
            return self._memory.take(key, limit)
        now = time.monotonic()
        if now >= self._retry_at:
            if self._down_since is not None:
                self._retry_at = now + REDIS_RETRY_SECONDS  # one request probes at a time
            try:
                decision = await self._shared.take(key, limit)
            except (RedisError, OSError) as exc:
                self._failed(exc)
            else:
                self._answered()
                return decision
        self._metrics.fallbacks.inc()
        return self._memory.take(key, limit)

    async def describe(self) -> str:
        """The readiness detail: which store decides limits. Pings Redis, so an outage
        and the recovery show even while no request arrives."""
        if self._shared is None:
            return "local: no PASSGATE_REDIS_URL, limits are per replica"
        try:
            await self._shared.ping()
        except (RedisError, OSError) as exc:
            self._failed(exc)
        else:
            self._answered()
        if self._down_since is None:
            return "ok: shared in Redis"
        seconds = time.monotonic() - self._down_since
        return (
            f"degraded: Redis unreachable for {seconds:.0f} s ({self._down_reason}); "
            "limits are per replica"
        )

    def _failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        self._retry_at = now + REDIS_RETRY_SECONDS
        self._down_reason = type(exc).__name__
        if self._down_since is None:
            self._down_since = now
            self._metrics.up.set(0)
        if now - self._last_warning >= REDIS_WARNING_INTERVAL:
            self._last_warning = now
            _LOGGER.warning("rate limits fall back to local buckets: Redis %s", type(exc).__name__)

    def _answered(self) -> None:
        if self._down_since is not None:
            _LOGGER.warning(
                "rate limits are shared in Redis again after %.0f s",
                time.monotonic() - self._down_since,
            )
            self._down_since = None
            self._retry_at = -math.inf
            self._metrics.up.set(1)

    async def close(self) -> None:
        if self._shared is not None:
            await self._shared.close()
