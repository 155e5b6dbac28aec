"""Password hashing under a storm: a bounded number admitted, the rest refused at once."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, Histogram

from services.auth.passwords import MAX_PENDING_HASHES, HashingBusyError, Passwords
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
