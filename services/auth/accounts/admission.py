"""Admission of password hashes: a login storm is queued while the queue drains in time,
and refused at once (503 with a truthful Retry-After) beyond that.

A fixed bound on hashes in flight is wrong on any machine but the one it was tuned on, so
the bound is a time: a hash is admitted when the work already queued ahead of it, at the
hash time measured lately, finishes within `max_wait` seconds. That keeps every admitted
login well inside the gateway's route timeout (10 s), so a client hears 200 or 503
promptly and never a 504 after auth has spent the hash anyway.
"""

from __future__ import annotations

import math

# Weight of the newest measurement in the moving average of hash durations: high enough
# to follow a CPU that a neighbour starts or stops using within a few dozen hashes.
SMOOTHING = 0.2


class HashingBusyError(RuntimeError):
    """Too many password hashes are queued to finish in time; retry after `retry_after` s."""

    def __init__(self, retry_after: float) -> None:
        super().__init__("password hashing at capacity")
        self.retry_after = retry_after


class HashAdmission:
    """Counts hashes in flight and estimates, from their measured duration, when a new one
    would finish. Not thread-safe: used from the event loop only."""

    def __init__(self, *, threads: int, max_wait: float, hash_seconds: float) -> None:
        self.threads = threads
        self.max_wait = max_wait
        self.hash_seconds = hash_seconds  # the moving average, in wall-clock seconds
        self.pending = 0

    def wait_for(self, position: int) -> float:
        """Seconds until the hash at `position` (1 = next to start) finishes: every thread
        takes one hash at a time, so the queue goes by in rounds of `threads`."""
        return math.ceil(position / self.threads) * self.hash_seconds

    def admit(self) -> None:
        """Count one more hash in flight, or raise HashingBusyError saying when to retry."""
        if self.pending and self.wait_for(self.pending + 1) > self.max_wait:
            # Retry when the queue ahead has shrunk to what finishes in time: the work in
            # it beyond max_wait must be done first. Truthful as long as the load does not
            # grow meanwhile; a retry that finds it grown is told again.
            excess = self.wait_for(self.pending + 1) - self.max_wait
            raise HashingBusyError(max(1.0, excess))
        self.pending += 1

    def finished(self, seconds: float | None) -> None:
        """One hash left the queue; `seconds` is how long it ran (None: it never ran)."""
        self.pending -= 1
        if seconds is not None:
            self.hash_seconds += SMOOTHING * (seconds - self.hash_seconds)
