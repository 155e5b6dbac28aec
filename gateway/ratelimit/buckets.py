"""GCRA rate-limit arithmetic and the in-process bucket store.

A limit of `requests` per `per` seconds with bursts up to `burst` is a token bucket. GCRA
(the generic cell rate algorithm) keeps the same bucket as one number per caller: the
theoretical arrival time (TAT), the moment the bucket will be full again. With
`interval = per / requests` seconds per token, the tokens available at `now` are
`burst - max(0, TAT - now) / interval`; taking one moves TAT one interval later. So every
answer (allowed, tokens left, Retry-After) equals the token bucket's, with half the state.
The Redis script in gateway.ratelimit.shared computes exactly the same.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from common.timestamps import EpochClock
from gateway.routes import RateLimit

MAX_MEMORY_BUCKETS = 100_000
# Clock readings near 2e9 s are exact to about 2e-7 s, so a client that waits exactly
# Retry-After may arrive a few rounding steps "early". Ten microseconds of slack is no
# capacity worth having, and refusing it then would make Retry-After a lie.
CLOCK_TOLERANCE = 1e-5
# A 60-bit key digest is an int of 32 bytes (a full 64-bit one takes 40).
_DIGEST_MASK = (1 << 60) - 1


class Decision(NamedTuple):
    """One request's outcome. (A NamedTuple: one is made per request, and a frozen
    dataclass's __init__ costs several times a tuple's.)"""

    allowed: bool
    tokens: float  # left after this request
    limit: RateLimit

    @property
    def retry_after(self) -> float:
        """Seconds until a token is available again."""
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.limit.rate

    def headers(self, policy: RatePolicy) -> dict[str, str]:
        """RateLimit and RateLimit-Policy fields (draft-ietf-httpapi-ratelimit-headers)."""
        remaining = int(self.tokens)
        limit = self.limit
        reset = self.retry_after if remaining == 0 else (limit.burst - self.tokens) / limit.rate
        return {
            "RateLimit-Policy": policy.text,
            "RateLimit": f"{policy.name};r={remaining};t={math.ceil(reset)}",
        }


class RatePolicy(NamedTuple):
    """A route's RateLimit-Policy field and the policy name its RateLimit field repeats,
    made when its route table loads."""

    text: str  # '"orders-list";q=100;w=60'
    name: str  # '"orders-list"'


def gcra(tat: float | None, now: float, limit: RateLimit) -> tuple[bool, float, float]:
    """One request against the bucket whose theoretical arrival time is `tat` (None: a
    bucket never seen, which is a full one). Returns (allowed, new TAT, tokens left)."""
    interval = limit.interval
    if tat is None or tat < now:
        tat = now
    tokens = limit.burst - (tat - now) / interval
    if tat - now <= (limit.burst - 1) * interval + CLOCK_TOLERANCE:
        return True, tat + interval, max(0.0, tokens - 1)
    return False, tat, max(0.0, tokens)


class MemoryBuckets:
    """Buckets in this process, at most `max_buckets`; the least recently used go first.

    The longest idle bucket has most likely refilled, so forgetting it loses nothing: a
    fresh bucket is a full one. Each bucket is one entry of a plain dict, keyed by a
    60-bit digest of the "route:caller" key, holding its TAT (about 90-110 bytes a caller
    against about 250 for an OrderedDict of key strings and [tokens, time] lists; measured
    with tracemalloc, see bench/minting.py). The digest is Python's str hash, SipHash keyed
    by a per-process random secret (PEP 456): two of 100,000 keys share a bucket with
    probability about 4e-9, and callers do not choose their keys (subjects are issued by
    auth, addresses are the connection's).

    The dict's insertion order is the recency order: a bucket taken from is re-inserted
    at the end. Deleting leaves holes in the dict's entry table, so the oldest entries are
    forgotten in batches (each look for the oldest walks the holes before it once), and
    the dict is rebuilt when holes outnumber half its entries, before it grows its table
    for them.
    """

    def __init__(self, clock: EpochClock, max_buckets: int = MAX_MEMORY_BUCKETS) -> None:
        self._clock = clock
        self._max = max_buckets
        self._evict_batch = max(1, max_buckets // 256)
        self._buckets: dict[int, float] = {}
        self._holes = 0

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str, limit: RateLimit) -> Decision:
        now = self._clock()
        digest = hash(key) & _DIGEST_MASK
        buckets = self._buckets
        tat = buckets.pop(digest, None)
        if tat is None:
            if len(buckets) >= self._max:
                self._forget_least_recent()
        else:
            self._holes += 1
        allowed, buckets[digest], tokens = gcra(tat, now, limit)
        if self._holes > (len(buckets) >> 1) + 64:
            self._compact()
        return Decision(allowed, tokens, limit)

    def _forget_least_recent(self) -> None:
        buckets = self._buckets
        oldest = []
        for digest in buckets:  # oldest first
            oldest.append(digest)
            if len(oldest) >= self._evict_batch:
                break
        for digest in oldest:
            del buckets[digest]
        self._holes += len(oldest)

    def _compact(self) -> None:
        # dict(d) of a dict with holes inserts every live entry afresh into a table sized
        # for them, in the same order.
        self._buckets = dict(self._buckets)
        self._holes = 0
