"""The GCRA buckets: the token bucket's answers with one timestamp per caller, in memory
and in Redis alike, with a Retry-After a client can rely on."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.ratelimit import MemoryBuckets
from gateway.ratelimit.shared import SharedBuckets
from gateway.routes import RateLimit

limits = st.builds(
    RateLimit,
    requests=st.integers(1, 1000),
    per=st.sampled_from([0.5, 1.0, 7.0, 60.0, 3600.0]),
    burst=st.integers(1, 200),
)
# Gaps between requests, in seconds: many at once, and some long enough to refill.
gaps = st.lists(
    st.one_of(st.just(0.0), st.floats(0, 5), st.floats(0, 4000)), min_size=1, max_size=60
)


class ReferenceBucket:
    """The token bucket as the rate limits are specified: `burst` tokens, refilled at
    `requests / per` a second, one taken per allowed request."""

    def __init__(self, limit: RateLimit, now: float) -> None:
        self.limit, self.tokens, self.at = limit, float(limit.burst), now

    def take(self, now: float) -> tuple[float, bool, float]:
        """(tokens before, allowed, tokens after)."""
        self.tokens = before = min(
            self.limit.burst, self.tokens + (now - self.at) * self.limit.rate
        )
        self.at = now
        if self.tokens >= 1:
            self.tokens = max(0.0, self.tokens - 1)
            return before, True, self.tokens
        return before, False, self.tokens


# Clock readings near 2e9 s are exact to about 2e-7 s; at 2,000 tokens a second that is
# 5e-4 of a token. Both sides round, so token counts agree to this, and decisions agree
# unless the bucket held within it of exactly one token.
TOKENS_TOLERANCE = 1e-3


@settings(max_examples=200, deadline=None)
@given(limit=limits, gaps=gaps, start=st.floats(0, 2e9))
def test_memory_buckets_answer_like_the_token_bucket(
    limit: RateLimit, gaps: list[float], start: float
) -> None:
    now = [start]
    buckets = MemoryBuckets(lambda: now[0])
    reference = ReferenceBucket(limit, start)
    for gap in gaps:
        now[0] += gap
        decision = buckets.take("route:caller", limit)
        before, allowed, tokens = reference.take(now[0])
        if abs(before - 1) > TOKENS_TOLERANCE:
            assert decision.allowed == allowed
            assert decision.tokens == pytest.approx(tokens, abs=TOKENS_TOLERANCE)


@settings(max_examples=200, deadline=None)
@given(limit=limits, taken=st.integers(1, 400), start=st.floats(0, 2e9))
def test_waiting_retry_after_is_enough(limit: RateLimit, taken: int, start: float) -> None:
    """A client refused and waiting exactly Retry-After gets through, not a second 429."""
    now = [start]
    buckets = MemoryBuckets(lambda: now[0])
    decision = buckets.take("route:caller", limit)
    for _ in range(taken):
        if not decision.allowed:
            break
        decision = buckets.take("route:caller", limit)
    if decision.allowed:
        return
    assert decision.retry_after > 0
    now[0] += decision.retry_after
    assert buckets.take("route:caller", limit).allowed


def test_memory_buckets_forget_the_least_recently_used_first() -> None:
    limit = RateLimit(1, 3600.0, 1)
    buckets = MemoryBuckets(lambda: 0.0, max_buckets=3)
    for key in ("a", "b", "c"):
        assert buckets.take(key, limit).allowed
    assert not buckets.take("a", limit).allowed  # "a" is now the most recent
    assert buckets.take("d", limit).allowed  # forgets "b", the least recently used
    assert len(buckets) == 3
    assert not buckets.take("a", limit).allowed
    assert not buckets.take("c", limit).allowed
    assert buckets.take("b", limit).allowed  # forgotten: a fresh bucket is a full one


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations=st.lists(st.tuples(st.integers(0, 40), st.booleans()), max_size=400))
def test_memory_buckets_stay_within_their_cap_through_any_churn(
    operations: list[tuple[int, bool]],
) -> None:
    """Callers coming back and new ones arriving in any order never push past the cap,
    and a caller used since the last one forgotten keeps its state."""
    limit = RateLimit(1, 3600.0, 1)
    buckets = MemoryBuckets(lambda: 0.0, max_buckets=8)
    recent: list[int] = []
    for caller, _ in operations:
        decision = buckets.take(f"c{caller}", limit)
        if caller in recent[-8:]:
            assert not decision.allowed  # still remembered: its one token is gone
        recent = [c for c in recent if c != caller] + [caller]
        assert len(buckets) <= 8


def test_memory_buckets_keep_working_past_many_compactions() -> None:
    """Every take of a known caller leaves a hole in the dict; the store rebuilds it
    without losing or reordering a bucket."""
    limit = RateLimit(1, 3600.0, 5)
    buckets = MemoryBuckets(lambda: 0.0, max_buckets=100)
    for index in range(100):
        buckets.take(f"c{index}", limit)
    for _ in range(3):
        for index in range(100):
            assert buckets.take(f"c{index}", limit).allowed
    assert all(buckets.take(f"c{index}", limit).tokens == 0 for index in range(100))
    assert len(buckets) == 100


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(limit=limits, gaps=gaps, start=st.floats(1e9, 2e9))
def test_redis_script_answers_like_the_memory_buckets(
    redis_url: str, limit: RateLimit, gaps: list[float], start: float
) -> None:
    """The Lua script and MemoryBuckets are one algorithm: on one clock, same answers."""

    async def compare() -> None:
        shared = SharedBuckets(redis_url)
        key = f"test:{uuid.uuid4().hex}"
        now = [start]
        memory = MemoryBuckets(lambda: now[0])
        try:
            for gap in gaps:
                now[0] += gap
                expected = memory.take(key, limit)
                got = await shared.take(key, limit, now=now[0])
                assert (got.allowed, got.tokens) == (
                    expected.allowed,
                    pytest.approx(expected.tokens, rel=1e-9, abs=1e-9),
                )
        finally:
            await shared.close()

    asyncio.run(compare())
