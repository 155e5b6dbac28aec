"""Bytes per authenticated request and the signature algorithm's costs (issue 14, item 9):
the bench user's real access token against a session id, its claims and their readers, and
RS256, ES256 and EdDSA compared on token size and PyJWT verify cost on a cache miss."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from bench import token_costs
from bench.scenarios import Figures

if TYPE_CHECKING:
    from bench.run import Bench


async def run(ctx: Bench) -> Figures:
    audience = ctx.stack.process("auth-1").env.get("PASSGATE_AUDIENCE", "passgate")
    host = ctx.stack.gateway_url.removeprefix("http://")
    # CPU-bound for about two seconds: off the event loop, nothing else runs meanwhile.
    figures = await asyncio.to_thread(token_costs.measure, ctx.token, audience=audience, host=host)
    print(f"  token {figures.token_chars} chars against a {figures.session_id_chars}-char session id; "
          + ", ".join(f"{alg} {f['token_chars']:.0f} chars, verify {f['verify_us']:.0f} µs"
                      for alg, f in figures.algorithms.items()), flush=True)
    return figures.as_dict()
