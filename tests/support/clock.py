"""Injected clocks: tests move time forward instead of sleeping.

Two shapes because the product has two: the services read a timezone-aware datetime
(common.timestamps.Clock), the gateway reads wall-clock seconds (token exp/nbf arithmetic).
"""

from __future__ import annotations

import datetime as dt
import time

# Where the auth tests' clock starts: a fixed instant, so stored timestamps are predictable.
START = dt.datetime(2030, 1, 1, 12, 0, 0, tzinfo=dt.UTC)


class FakeClock:
    """A datetime clock that moves only when a test says so (advance), never by sleeping."""

    def __init__(self, now: dt.datetime = START) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


class StepClock:
    """A datetime clock that moves one step each time it is read: distinct, ordered timestamps."""

    def __init__(
        self,
        start: dt.datetime = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        step: dt.timedelta = dt.timedelta(milliseconds=1),
    ) -> None:
        self.now = start
        self.step = step

    def __call__(self) -> dt.datetime:
        self.now += self.step
        return self.now


class FakeEpochClock:
    """Wall-clock seconds for the gateway, starting now, moving only when a test says so."""

    def __init__(self, start: float | None = None) -> None:
        self.now = start if start is not None else float(int(time.time()))

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
