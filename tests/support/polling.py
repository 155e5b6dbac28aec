"""Waiting for a condition with a bound: a failure names what never happened (no timed assertions)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def poll(probe: Callable[[], T | None], *, timeout: float, interval: float = 0.25, what: str) -> T:
    """Call `probe` until it returns something other than None, for at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result is not None:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


async def wait_for(
    condition: Callable[[], Awaitable[bool]], what: str, timeout: float = 30.0, interval: float = 0.1
) -> None:
    """Poll until the condition holds; fail with `what` after the bound (never a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await condition():
            return
        await asyncio.sleep(interval)
    raise AssertionError(f"gave up after {timeout:.0f} s waiting for {what}")
