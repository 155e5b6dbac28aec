"""The gateway with its verified-token cache off: every request pays the signature check."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench.scenarios import Figures

if TYPE_CHECKING:
    from bench.run import Bench

RUN = "gateway → bare, token cache off"


async def run(ctx: Bench) -> Figures:
    pid = ctx.spawn_gateway("gateway-nocache", ctx.bare_gateway_env(PASSGATE_TOKEN_CACHE_SIZE="0"))
    try:
        await ctx.measure(RUN, f"{ctx.stack.process_url('gateway-nocache')}/orders",
                          processes={"gateway": [pid], "backend": [ctx.bare_pid]},
                          headers=ctx.bearer(ctx.token))
    finally:
        ctx.stop_process("gateway-nocache")
    return None
