"""The key ring of a running replica: loaded at start, followed while it serves."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from common.app_keys import READINESS
from services.auth.app_keys import CLOCK, KEY_RING, SETTINGS
from services.auth.keyring.signing_keys import ensure_key_set

_LOGGER = logging.getLogger(__name__)


async def key_ring_ctx(app: web.Application) -> AsyncIterator[None]:
    """Load the shared key set (creating it only where allowed) and follow its changes."""
    settings, ring, clock = app[SETTINGS], app[KEY_RING], app[CLOCK]
    loop = asyncio.get_running_loop()
    generated = await loop.run_in_executor(
        None,
        lambda: ensure_key_set(settings.signing_keys_dir, clock(), generate=settings.generate_keys),
    )
    await loop.run_in_executor(None, ring.load)
    if generated:
        _LOGGER.info("generated the first signing key", extra={"kids": [k.kid for k in ring.keys]})

    async def signing_key_ready() -> None:
        ring.signing_key(clock())

    app[READINESS].add("signing_keys", signing_key_ready)

    async def follow() -> None:
        # Rotations and Secret updates reach every replica within one interval.
        while True:
            await asyncio.sleep(settings.key_reload_interval)
            try:
                if await loop.run_in_executor(None, ring.changed):
                    await loop.run_in_executor(None, ring.load)
                    _LOGGER.info(
                        "signing keys reloaded", extra={"kids": [k.kid for k in ring.keys]}
                    )
            except Exception as error:  # keep serving with the keys we have
                _LOGGER.error("signing keys not reloaded: %s", error)

    task = asyncio.create_task(follow())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
