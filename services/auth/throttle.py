"""Failed-login throttling per account and per source address, shared by every replica.

Counters live in the database by default, or in Redis when PASSGATE_REDIS_URL is set;
never in process memory, which an attacker would spread across replicas. A lockout
answers 429 with Retry-After and skips password verification altogether, for existing
and unknown accounts alike, so neither the status nor the timing tells them apart.
"""

from __future__ import annotations

import abc
import dataclasses
import datetime as dt
import hashlib
import ipaddress
from collections.abc import Sequence

from aiohttp import web
from redis.asyncio import Redis

from services.auth.repository import AuthRepository
from services.auth.settings import AuthSettings, IpNetwork

REDIS_PREFIX = "passgate:auth:login:"


def account_key(username: str) -> str:
    # Hashed: people type passwords into the username field; these must not sit in storage.
    return hashlib.sha256(f"account:{username.casefold()}".encode()).hexdigest()


def address_key(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        subject = address
    else:
        # One IPv6 host usually owns a whole /64: count the prefix, not each address.
        subject = (
            str(ipaddress.ip_network(f"{ip}/64", strict=False)) if ip.version == 6 else str(ip)
        )
    return hashlib.sha256(f"address:{subject}".encode()).hexdigest()


def client_address(request: web.Request, trusted: Sequence[IpNetwork]) -> str:
    """The caller's address: X-Forwarded-For is believed only from a trusted proxy.

    Walk the chain from the nearest hop back and stop at the first address that is not a
    trusted proxy (anything further left could have been written by the client).
    """
    remote = request.remote or "unknown"
    forwarded = [
        part.strip()
        for header in request.headers.getall("X-Forwarded-For", [])
        for part in header.split(",")
    ]
    client = remote
    for hop in reversed(forwarded):
        if not _trusted(client, trusted):
            break
        try:
            client = str(ipaddress.ip_address(hop))
        except ValueError:
            break  # a malformed hop ends the chain; the last trusted proxy is the caller
    return client


def _trusted(address: str, trusted: Sequence[IpNetwork]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


class LoginThrottle(abc.ABC):
    @abc.abstractmethod
    async def retry_after(self, keys: Sequence[str], now: dt.datetime) -> float | None:
        """Seconds until the longest running lockout on `keys` ends, or None."""

    @abc.abstractmethod
    async def failed(self, limits: Sequence[tuple[str, int]], now: dt.datetime) -> None:
        """Count a failure on each (key, limit)."""

    @abc.abstractmethod
    async def succeeded(self, key: str, now: dt.datetime) -> None:
        """Forget the failures of `key` (the account; never the address)."""

    async def ping(self) -> None:  # noqa: B027 - optional hook; the database has its own check
        """Raise when the shared store is unreachable (a readiness check)."""

    async def close(self) -> None:
        return None


@dataclasses.dataclass(slots=True)
class DatabaseThrottle(LoginThrottle):
    repository: AuthRepository
    window: dt.timedelta
    lockout: dt.timedelta

    async def retry_after(self, keys: Sequence[str], now: dt.datetime) -> float | None:
        until = await self.repository.locked_until(keys, now)
        return None if until is None else (until - now).total_seconds()

    async def failed(self, limits: Sequence[tuple[str, int]], now: dt.datetime) -> None:
        await self.repository.record_failure(limits, now, self.window, self.lockout)

    async def succeeded(self, key: str, now: dt.datetime) -> None:
        await self.repository.clear_failures(key, now)


@dataclasses.dataclass(slots=True)
class RedisThrottle(LoginThrottle):
    """Redis counters: INCR with a window-long expiry; a lock key with the lockout's expiry.

    Redis keeps its own time, so the injected clock does not apply here.
    """

    redis: Redis
    window: dt.timedelta
    lockout: dt.timedelta

    async def retry_after(self, keys: Sequence[str], now: dt.datetime) -> float | None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.pttl(REDIS_PREFIX + "lock:" + key)
            remaining = [ms for ms in await pipe.execute() if ms > 0]
        return max(remaining) / 1000 if remaining else None

    async def failed(self, limits: Sequence[tuple[str, int]], now: dt.datetime) -> None:
        for key, limit in limits:
            counter = REDIS_PREFIX + "fail:" + key
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.incr(counter)
                pipe.expire(counter, self.window, nx=True)
                count, _ = await pipe.execute()
            if count >= limit:
                async with self.redis.pipeline(transaction=True) as pipe:
                    pipe.set(REDIS_PREFIX + "lock:" + key, 1, ex=self.lockout)
                    pipe.delete(counter)
                    await pipe.execute()

    async def succeeded(self, key: str, now: dt.datetime) -> None:
        await self.redis.delete(REDIS_PREFIX + "fail:" + key)

    async def ping(self) -> None:
        await self.redis.ping()

    async def close(self) -> None:
        await self.redis.aclose()


def make_throttle(settings: AuthSettings, repository: AuthRepository) -> LoginThrottle:
    window = dt.timedelta(seconds=settings.login_failure_window)
    lockout = dt.timedelta(seconds=settings.login_lockout)
    if settings.redis_url:
        return RedisThrottle(Redis.from_url(settings.redis_url), window, lockout)
    return DatabaseThrottle(repository, window, lockout)
