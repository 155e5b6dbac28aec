"""Argon2id password hashing, run on a small thread pool and never on the event loop.

argon2-cffi releases the GIL while hashing, so a few threads hash in parallel while the
loop keeps serving; the pool is bounded so that bursts of logins cannot exhaust memory
(each hash holds `memory_cost` KiB).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import time
from collections.abc import Callable
from typing import TypeVar

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from prometheus_client import Histogram

from services.auth.settings import Argon2Settings

T = TypeVar("T")

MAX_HASHING_THREADS = 4
# Hashes admitted at once, running or queued. A login storm beyond this is answered 503 at
# once instead of queueing for longer than any client (or the gateway) waits, which would
# leave auth hashing passwords for callers that have already given up.
MAX_PENDING_HASHES = 4 * MAX_HASHING_THREADS
# A hash that waited this long for a thread is not started: its caller is about to give up
# (the gateway's route timeout is 10 s), and its work would only delay the ones behind it.
MAX_QUEUE_SECONDS = 3.0
# Never a valid password: a verification against it always fails, at full cost.
_DUMMY_PASSWORD = "passgate dummy password for unknown users"


class HashingBusyError(RuntimeError):
    """Too many password hashes are admitted, or this one waited too long; try again shortly."""


@dataclasses.dataclass(frozen=True, slots=True)
class Verification:
    ok: bool
    needs_rehash: bool = False


class Passwords:
    """Hash and verify passwords off the loop, timing each operation in a histogram."""

    def __init__(
        self,
        settings: Argon2Settings,
        duration: Histogram,
        *,
        max_queue_seconds: float = MAX_QUEUE_SECONDS,
    ) -> None:
        self._hasher = argon2.PasswordHasher(
            time_cost=settings.time_cost,
            memory_cost=settings.memory_cost,
            parallelism=settings.parallelism,
            type=argon2.Type.ID,
        )
        self._duration = duration
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=MAX_HASHING_THREADS, thread_name_prefix="argon2"
        )
        self._dummy_hash: str | None = None
        self._pending = 0
        self._max_queue_seconds = max_queue_seconds

    async def start(self) -> None:
        """Make the dummy hash with the current parameters, so unknown users cost the same."""
        self._dummy_hash = await self.hash(_DUMMY_PASSWORD)

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    async def _run(self, operation: str, function: Callable[[], T]) -> T:
        if self._pending >= MAX_PENDING_HASHES:
            raise HashingBusyError(operation)
        loop = asyncio.get_running_loop()
        queued = time.monotonic()

        def timed() -> T:
            if time.monotonic() - queued > self._max_queue_seconds:
                raise HashingBusyError(operation)
            start = time.perf_counter()
            try:
                return function()
            finally:
                self._duration.labels(operation).observe(time.perf_counter() - start)

        self._pending += 1
        try:
            return await loop.run_in_executor(self._executor, timed)
        finally:
            self._pending -= 1

    async def hash(self, password: str) -> str:
        return await self._run("hash", lambda: self._hasher.hash(password))

    async def verify(self, password_hash: str | None, password: str) -> Verification:
        """Check `password`; with no hash (unknown user) spend the same work and fail."""
        if password_hash is None:
            assert self._dummy_hash is not None, "Passwords.start() was not awaited"
            dummy = self._dummy_hash
            await self._run("verify", lambda: self._verify_quietly(dummy, password))
            return Verification(ok=False)
        if not await self._run("verify", lambda: self._verify_quietly(password_hash, password)):
            return Verification(ok=False)
        return Verification(ok=True, needs_rehash=self._hasher.check_needs_rehash(password_hash))

    def _verify_quietly(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
