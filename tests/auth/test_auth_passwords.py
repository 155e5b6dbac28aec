"""Password hashing under a storm: a bounded number admitted, the rest refused at once."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, Histogram

from services.auth.passwords import (
    MAX_HASHING_THREADS,
    MAX_PENDING_HASHES,
    HashingBusyError,
    Passwords,
)
from services.auth.settings import Argon2Settings
from tests.auth.helpers import CHEAP_ARGON2


async def test_hashes_beyond_the_admission_bound_are_refused_not_queued() -> None:
    histogram = Histogram("hash_seconds", "test", ["operation"], registry=CollectorRegistry())
    passwords = Passwords(CHEAP_ARGON2, histogram)
    await passwords.start()
    try:
        stored = await passwords.hash("correct horse battery staple")
        storm = 3 * MAX_PENDING_HASHES
        results = await asyncio.gather(
            *(passwords.verify(stored, "correct horse battery staple") for _ in range(storm)),
            return_exceptions=True,
        )
        refused = [r for r in results if isinstance(r, HashingBusyError)]
        verified = [r for r in results if not isinstance(r, BaseException) and r.ok]
        assert len(verified) == MAX_PENDING_HASHES
        assert len(refused) == storm - MAX_PENDING_HASHES
        # Once the storm has passed, hashing is admitted again.
        assert (await passwords.verify(stored, "correct horse battery staple")).ok
    finally:
        passwords.close()


async def test_a_hash_that_waited_too_long_for_a_thread_is_not_started() -> None:
    """Work queued behind busy threads is dropped once its caller has likely given up."""
    histogram = Histogram("hash_seconds", "test", ["operation"], registry=CollectorRegistry())
    # Argon2's real cost (RFC 9106 low-memory profile): each hash takes far longer than the
    # 10 ms a queued one may wait here.
    passwords = Passwords(Argon2Settings(), histogram, max_queue_seconds=0.01)
    await passwords.start()
    try:
        stored = await passwords.hash("correct horse battery staple")
        results = await asyncio.gather(
            *(
                passwords.verify(stored, "correct horse battery staple")
                for _ in range(MAX_HASHING_THREADS + 2)
            ),
            return_exceptions=True,
        )
        assert sum(isinstance(r, HashingBusyError) for r in results) == 2
        assert sum(not isinstance(r, BaseException) and r.ok for r in results) == MAX_HASHING_THREADS
    finally:
        passwords.close()
