"""The identity assertion's cost (issue 16 part 2): the gateway's added CPU per request on
a token-cache hit (target at most 10 µs), its signing cost once per token per half-lifetime,
and the backend's cost per request (cached) and per new assertion (Ed25519 verify)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from bench import assertion_cost
from bench.scenarios import Figures

if TYPE_CHECKING:
    from bench.run import Bench


async def run(ctx: Bench) -> Figures:
    # CPU-bound for a few seconds: off the event loop, nothing else runs meanwhile.
    figures = await asyncio.to_thread(assertion_cost.measure)
    print(f"  assertion: gateway +{figures.gateway_hit_added_us:.2f} µs per cached request "
          f"(+{figures.header_bytes} bytes), sign {figures.gateway_sign_us:.0f} µs per token half-life; "
          f"backend {figures.backend_hit_us:.2f} µs cached, {figures.backend_verify_us:.0f} µs verify", flush=True)
    return figures.as_dict()
