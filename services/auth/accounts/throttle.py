"""Failed-login throttling per account and per source address, shared by every replica.

Only failures are counted: correct logins and refreshes from one busy address (an office
or carrier-grade NAT) are never limited, because that is what brute force and password
spraying need and legitimate users do not:

- per account: `login_max_failures` failures lock the name, from every address;
- per address: `login_max_failures_per_address` failures (over any names, known or not:
  spraying) lock the address, except for the accounts that have logged in correctly from
  it within KNOWN_ADDRESS_DAYS, so the people behind that NAT keep signing in while the
  sprayer is stopped. Those accounts keep their own per-account limit.

Counters live in the database by default, or in Redis when PASSGATE_REDIS_URL is set;
never in process memory, which an attacker would spread across replicas. A lockout
answers 429 with a Retry-After that is the lockout's remaining time, and skips password
verification altogether, for existing and unknown accounts alike, so neither the status
nor the timing tells them apart.
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

from services.auth.accounts.throttle_repository import LoginFailureRepository
from services.auth.settings import AuthSettings, IpNetwork

REDIS_PREFIX = "passgate:auth:login:"
# How long a correct login keeps its (account, address) pair known: long enough to cover
# people who sign in monthly from the office, short enough that a reassigned address
# (carrier NAT pools rotate) stops counting eventually.
KNOWN_ADDRESS_DAYS = 30
KNOWN_ADDRESS = dt.timedelta(days=KNOWN_ADDRESS_DAYS)


def account_key(username: str) -> str:
    """`username` as normalize_username() spelled it: the callers normalise, once."""
    # Hashed: people type passwords into the username field; these must not sit in storage.
    return hashlib.sha256(f"account:{username}".encode()).hexdigest()


def _address_subject(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    # One IPv6 host usually owns a whole /64: count the prefix, not each address.
    return str(ipaddress.ip_network(f"{ip}/64", strict=False)) if ip.version == 6 else str(ip)


def address_key(address: str) -> str:
    return hashlib.sha256(f"address:{_address_subject(address)}".encode()).hexdigest()


def pair_key(username: str, address: str) -> str:
    """An account and an address it signed in from, hashed like the other keys."""
    subject = f"pair:{username}|{_address_subject(address)}"
    return hashlib.sha256(subject.encode()).hexdigest()


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
    async def lockouts(self, keys: Sequence[str], now: dt.datetime) -> dict[str, float]:
        """Seconds left of each running lockout among `keys` (unlocked keys are absent)."""

    async def retry_after(self, keys: Sequence[str], now: dt.datetime) -> float | None:
        """Seconds until the longest running lockout on `keys` ends, or None."""
        return max((await self.lockouts(keys, now)).values(), default=None)

    @abc.abstractmethod
    async def failed(self, limits: Sequence[tuple[str, int]], now: dt.datetime) -> None:
        """Count a failure on each (key, limit)."""

    @abc.abstractmethod
    async def succeeded(self, account: str, pair: str, now: dt.datetime) -> None:
        """Forget the failures of `account` (never the address's) and remember `pair`
        as a known sign-in address for KNOWN_ADDRESS."""

    @abc.abstractmethod
    async def known(self, pair: str, now: dt.datetime) -> bool:
        """Whether `pair` had a correct login within KNOWN_ADDRESS."""

    async def ping(self) -> None:  # noqa: B027 - optional hook; the database has its own check
        """Raise when the shared store is unreachable (a readiness check)."""

    async def close(self) -> None:
        return None


@dataclasses.dataclass(slots=True)
class DatabaseThrottle(LoginThrottle):
    repository: LoginFailureRepository
    window: dt.timedelta
    lockout: dt.timedelta

    async def lockouts(self, keys: Sequence[str], now: dt.datetime) -> dict[str, float]:
        locked = await self.repository.lockouts(keys, now)
        return {key: (until - now).total_seconds() for key, until in locked.items()}

    async def failed(self, limits: Sequence[tuple[str, int]], now: dt.datetime) -> None:
        await self.repository.record_failure(limits, now, self.window, self.lockout)

    async def succeeded(self, account: str, pair: str, now: dt.datetime) -> None:
        await self.repository.login_succeeded(account, pair, now, KNOWN_ADDRESS)

    async def known(self, pair: str, now: dt.datetime) -> bool:
        return await self.repository.known_sign_in_address(pair, now)


@dataclasses.dataclass(slots=True)
class RedisThrottle(LoginThrottle):
    """Redis counters: INCR with a window-long expiry; a lock key with the lockout's expiry.

    Redis keeps its own time, so the injected clock does not apply here.
    """

    redis: Redis
    window: dt.timedelta
    lockout: dt.timedelta

    async def lockouts(self, keys: Sequence[str], now: dt.datetime) -> dict[str, float]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.pttl(REDIS_PREFIX + "lock:" + key)
            remaining = await pipe.execute()
        return {key: ms / 1000 for key, ms in zip(keys, remaining, strict=True) if ms > 0}

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

    async def succeeded(self, account: str, pair: str, now: dt.datetime) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.delete(REDIS_PREFIX + "fail:" + account)
            pipe.set(REDIS_PREFIX + "known:" + pair, 1, ex=KNOWN_ADDRESS)
            await pipe.execute()

    async def known(self, pair: str, now: dt.datetime) -> bool:
        return bool(await self.redis.exists(REDIS_PREFIX + "known:" + pair))

    async def ping(self) -> None:
        await self.redis.ping()

    async def close(self) -> None:
        await self.redis.aclose()


def make_throttle(settings: AuthSettings, repository: LoginFailureRepository) -> LoginThrottle:
    window = dt.timedelta(seconds=settings.login_failure_window)
    lockout = dt.timedelta(seconds=settings.login_lockout)
    if settings.redis_url:
        return RedisThrottle(Redis.from_url(settings.redis_url), window, lockout)
    return DatabaseThrottle(repository, window, lockout)
