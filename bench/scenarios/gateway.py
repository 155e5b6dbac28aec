"""The same pair with the bare backend (bench.stub_backend): the gateway is then the
bottleneck, so its CPU per request is its own cost."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench.scenarios import Figures

if TYPE_CHECKING:
    from bench.run import Bench

DIRECT = "direct to bare backend"
THROUGH = "gateway → bare"


async def run(ctx: Bench) -> Figures:
    await ctx.measure(DIRECT, f"{ctx.bare_url}/orders",
                      processes={"backend": [ctx.bare_pid]}, headers=ctx.backend_headers())
    await ctx.measure(THROUGH, f"{ctx.stack.process_url('gateway-bare')}/orders",
                      processes={"gateway": [ctx.pid("gateway-bare")], "backend": [ctx.bare_pid]},
                      headers=ctx.bearer(ctx.token))
    return None
