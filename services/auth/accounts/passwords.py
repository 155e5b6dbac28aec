"""Argon2id password hashing, run on a small thread pool and never on the event loop.

argon2-cffi releases the GIL while hashing, so a few threads hash in parallel while the
loop keeps serving; the pool is bounded so that bursts of logins cannot exhaust memory
(each hash holds `memory_cost` KiB), and admission (services.auth.accounts.admission) refuses at
once what could not be hashed in time.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from prometheus_client import Histogram

from services.auth.accounts.admission import HashAdmission, HashingBusyError
from services.auth.settings import Argon2Settings

T = TypeVar("T")

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def usable_cores(cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup v2 CPU quota (a
    Kubernetes CPU limit of 1 shows every core of the node in the affinity mask)."""
    cores = len(os.sched_getaffinity(0))
    with contextlib.suppress(OSError, ValueError):
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    return cores


# Threads hashing at once: one per usable core (a 1-CPU pod gets one), at most 4. More
# would only share the same cores and hold more memory (each hash holds `memory_cost` KiB
# while it runs).
MAX_HASHING_THREADS = min(4, usable_cores())
# A hash is admitted while the queue ahead of it finishes within this many seconds (see
# services.auth.accounts.admission): inside the gateway's route timeout of 10 s with room for the
# rest of a login (a few milliseconds of database and signing) and for estimation error.
# Shorter refused logins that would have succeeded: clients of a storm that retry at once
# turn every early refusal into several.
MAX_WAIT_SECONDS = 6.0
# A safety net for when the estimate was wrong (a neighbour took the CPU after admission):
# a hash that waited this long for a thread is not started, since its caller (or the
# gateway, at 10 s) is about to give up and its work would only delay the ones behind it.
MAX_QUEUE_SECONDS = 8.0
# Never a valid password: a verification against it always fails, at full cost.
_DUMMY_PASSWORD = "passgate dummy password for unknown users"


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
        threads: int = MAX_HASHING_THREADS,
        max_wait_seconds: float = MAX_WAIT_SECONDS,
        max_queue_seconds: float = MAX_QUEUE_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._hasher = argon2.PasswordHasher(
            time_cost=settings.time_cost,
            memory_cost=settings.memory_cost,
            parallelism=settings.parallelism,
            type=argon2.Type.ID,
        )
        self._duration = duration
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="argon2"
        )
        self._dummy_hash: str | None = None
        # The first estimate of a hash's duration is refined by the dummy hash at start.
        self.admission = HashAdmission(
            threads=threads, max_wait=max_wait_seconds, hash_seconds=0.05
        )
        self._max_queue_seconds = max_queue_seconds
        self._monotonic = monotonic

    async def start(self) -> None:
        """Make the dummy hash with the current parameters, so unknown users cost the same."""
        self._dummy_hash = await self.hash(_DUMMY_PASSWORD)

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    async def _run(self, operation: str, function: Callable[[], T]) -> T:
        self.admission.admit()  # HashingBusyError at once when the queue is too long
        loop = asyncio.get_running_loop()
        queued = self._monotonic()
        ran: list[float] = []

        def timed() -> T:
            if self._monotonic() - queued > self._max_queue_seconds:
                raise HashingBusyError(1.0)
            start = time.perf_counter()
            try:
                return function()
            finally:
                ran.append(time.perf_counter() - start)
                self._duration.labels(operation).observe(ran[-1])

        try:
            return await loop.run_in_executor(self._executor, timed)
        finally:
            self.admission.finished(ran[0] if ran else None)

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
