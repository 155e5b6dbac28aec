"""The orders backend as issue 9 item 1 wrote it: GET /orders straight to the orders
service (with the identity headers the gateway would add), then through the gateway."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench.scenarios import Figures

if TYPE_CHECKING:
    from bench.run import Bench

DIRECT = "direct to orders"
THROUGH = "gateway → orders"


async def run(ctx: Bench) -> Figures:
    orders = ctx.pid("orders-1")
    await ctx.measure(DIRECT, f"{ctx.stack.url('orders')}/orders",
                      processes={"orders": [orders]}, headers=ctx.backend_headers())
    await ctx.measure(THROUGH, f"{ctx.stack.gateway_url}/orders",
                      processes={"gateway": [ctx.pid("gateway-1")], "orders": [orders]},
                      headers=ctx.bearer(ctx.token))
    return None
