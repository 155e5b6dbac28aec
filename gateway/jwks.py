"""An async JWKS client that a flood of junk `kid`s or an issuer outage cannot knock over.

- One fetch in flight at a time: concurrent callers wait for the same fetch.
- A background task refreshes the set every `refresh_seconds`, before it can go stale.
- An unknown `kid` triggers a refetch at most once per `cooldown_seconds` (globally), and
  each unknown `kid` is remembered for a cooldown (negative cache), so random `kid`s cost
  the issuer at most one fetch per cooldown (lua-resty-openidc#468, Oathkeeper).
- A failed fetch keeps the last good set, which is served up to `max_staleness_seconds`
  after its last successful fetch; readiness turns false beyond that.
- A new key is picked up without restart, on the next refresh or on its first `kid` miss.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import math
from collections.abc import Iterable
from typing import Any

import aiohttp
from jwt import PyJWK
from jwt.exceptions import PyJWKError

from common.timestamps import EpochClock
from gateway.metrics import GatewayMetrics, IssuerKeyMetrics

_LOGGER = logging.getLogger(__name__)

MAX_JWKS_BYTES = 256 * 1024
NEGATIVE_CACHE_SIZE = 4096
RETRY_AFTER_FAILURE_SECONDS = 1.0


class KeysUnavailableError(Exception):
    """No usable key set: never fetched, or older than the maximum staleness."""


class UnknownKeyIdError(Exception):
    """The key set has no key with this `kid`, even after a (throttled) refetch."""


class JwksClient:
    """Public signing keys of the issuer, by `kid`, kept fresh from its JWKS endpoint."""

    def __init__(
        self,
        url: str,
        *,
        session: aiohttp.ClientSession,
        algorithms: Iterable[str],
        metrics: GatewayMetrics | IssuerKeyMetrics,
        clock: EpochClock,
        refresh_seconds: float = 300.0,
        cooldown_seconds: float = 30.0,
        max_staleness_seconds: float = 3600.0,
        timeout_seconds: float = 5.0,
    ) -> None:
        self.url = url
        self._session = session
        self._algorithms = frozenset(algorithms)
        self._metrics = metrics
        self._clock = clock
        self.refresh_seconds = refresh_seconds
        self.cooldown_seconds = cooldown_seconds
        self.max_staleness_seconds = max_staleness_seconds
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._keys: dict[str, PyJWK] = {}
        self._fetched_at = -math.inf  # clock time of the last successful fetch
        self._last_attempt = -math.inf
        self._inflight: asyncio.Future[bool] | None = None
        self._unknown: collections.OrderedDict[str, float] = collections.OrderedDict()
        metrics.jwks_age.set_function(lambda: self._clock() - self._fetched_at)

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(self._keys)

    def usable(self, kid: str, now: float) -> bool:
        """True while `kid` is in a key set that is not too stale (the token cache asks)."""
        return kid in self._keys and now - self._fetched_at <= self.max_staleness_seconds

    async def get_key(self, kid: str) -> PyJWK:
        """The key for `kid`; raise UnknownKeyIdError or KeysUnavailableError."""
        now = self._clock()
        if now - self._fetched_at > self.max_staleness_seconds:
            await self._refresh_throttled(now)
            if self._clock() - self._fetched_at > self.max_staleness_seconds:
                raise KeysUnavailableError("the key set is unavailable or too old")
        key = self._keys.get(kid)
        if key is not None:
            return key
        until = self._unknown.get(kid)
        if until is not None and now < until:
            raise UnknownKeyIdError(kid)
        await self._refresh_throttled(now)
        key = self._keys.get(kid)
        if key is not None:
            return key
        self._remember_unknown(kid, now + self.cooldown_seconds)
        raise UnknownKeyIdError(kid)

    def _remember_unknown(self, kid: str, until: float) -> None:
        self._unknown[kid] = until
        self._unknown.move_to_end(kid)
        while len(self._unknown) > NEGATIVE_CACHE_SIZE:
            self._unknown.popitem(last=False)

    async def _refresh_throttled(self, now: float) -> None:
        """Join the fetch in flight, or start one if the last began a cooldown ago."""
        if self._inflight is not None or now - self._last_attempt >= self.cooldown_seconds:
            await self.refresh()

    async def refresh(self) -> bool:
        """Fetch the key set now (or join the fetch in flight); True when it succeeded."""
        if self._inflight is None:
            self._last_attempt = self._clock()
            self._inflight = asyncio.ensure_future(self.fetch())
            self._inflight.add_done_callback(self._fetch_done)
        # shield: a caller that goes away (client disconnect) must not cancel the shared fetch.
        return await asyncio.shield(self._inflight)

    def _fetch_done(self, _future: asyncio.Future[bool]) -> None:
        self._inflight = None

    async def fetch(self) -> bool:
        try:
            document = await self._download()
            keys = self._parse(document)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any failure keeps the last good set
            self._metrics.jwks_error.inc()
            _LOGGER.warning("JWKS fetch from %s failed: %s", self.url, _describe(exc))
            return False
        if keys.keys() - self._keys.keys():
            self._unknown.clear()  # a kid refused a moment ago may exist now
        self._keys = keys
        self._fetched_at = self._clock()
        self._metrics.jwks_success.inc()
        self._metrics.jwks_keys.set(len(keys))
        return True

    async def _download(self) -> Any:
        async with self._session.get(
            self.url, timeout=self._timeout, allow_redirects=False
        ) as response:
            if response.status != 200:
                raise ValueError(f"HTTP status {response.status}")
            body = bytearray()
            async for chunk in response.content.iter_chunked(16384):
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise ValueError(f"key set larger than {MAX_JWKS_BYTES} bytes")
        return json.loads(body)

    def _parse(self, document: Any) -> dict[str, PyJWK]:
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise ValueError("not a JWK Set (RFC 7517 section 5)")
        keys: dict[str, PyJWK] = {}
        for jwk in document["keys"]:
            key = self._usable_key(jwk)
            if key is not None:
                keys[jwk["kid"]] = key
        if not keys:
            raise ValueError("the key set holds no usable signing key")
        return keys

    def _usable_key(self, jwk: Any) -> PyJWK | None:
        """A verification key for an allowed algorithm, or None (skipped, never fatal)."""
        if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str):
            return None
        if jwk.get("use", "sig") != "sig" or "d" in jwk or jwk.get("kty") == "oct":
            return None  # encryption keys, private or symmetric material: never for verifying
        try:
            key = PyJWK(jwk)
        except (PyJWKError, ValueError, TypeError, KeyError):
            _LOGGER.warning("JWKS key %r is malformed; skipped", jwk.get("kid"))
            return None
        if key.algorithm_name not in self._algorithms:
            return None
        return key

    async def run(self) -> None:
        """Refresh forever: every refresh_seconds, sooner (with backoff) after a failure."""
        delay = 0.0
        failures = 0
        while True:
            await asyncio.sleep(delay)
            if await self.refresh():
                failures = 0
                delay = self.refresh_seconds
            else:
                failures += 1
                delay = min(self.cooldown_seconds, RETRY_AFTER_FAILURE_SECONDS * 2 ** (failures - 1))

    async def readiness_check(self) -> None:
        """Raise (with a reason for operators) unless a fresh enough key set is loaded."""
        if not self._keys:
            raise RuntimeError("JWKS not loaded yet")
        age = self._clock() - self._fetched_at
        if age > self.max_staleness_seconds:
            raise RuntimeError(f"JWKS is {age:.0f}s old (max {self.max_staleness_seconds:.0f}s)")

    @contextlib.asynccontextmanager
    async def running(self) -> Any:
        """Run the background refresher for the lifetime of the block."""
        task = asyncio.create_task(self.run(), name="jwks-refresh")
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if self._inflight is not None:
                self._inflight.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._inflight


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
