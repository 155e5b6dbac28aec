"""uvloop against asyncio's own loop (issue 14, item 4): the same gateway on the same bare
backend, once as every process runs by default (uvloop when installed) and once with
PASSGATE_EVENT_LOOP=asyncio, measured in turn in the same run: default, asyncio, default
again, so that a drift of the machine's load over the three windows shows and averages out."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench import procstat
from bench.scenarios import Figures

if TYPE_CHECKING:
    from bench.run import Bench

DEFAULT_RUN = "gateway → bare"  # measured by the gateway scenario just before this one
ASYNCIO_RUN = "gateway → bare, asyncio event loop"
DEFAULT_AGAIN_RUN = "gateway → bare, default event loop again"


async def run(ctx: Bench) -> Figures:
    default_pid = ctx.pid("gateway-bare")
    pid = ctx.spawn_gateway("gateway-asyncio", ctx.bare_gateway_env(PASSGATE_EVENT_LOOP="asyncio"))
    try:
        loops = {"default": procstat.runs_uvloop(default_pid), "asyncio": procstat.runs_uvloop(pid)}
        if loops["asyncio"]:
            raise RuntimeError("PASSGATE_EVENT_LOOP=asyncio still runs uvloop")
        if not loops["default"]:
            ctx.note("uvloop is not installed: both event-loop runs use asyncio's loop")
        await ctx.measure(ASYNCIO_RUN, f"{ctx.stack.process_url('gateway-asyncio')}/orders",
                          processes={"gateway": [pid], "backend": [ctx.bare_pid]},
                          headers=ctx.bearer(ctx.token))
        await ctx.measure(DEFAULT_AGAIN_RUN, f"{ctx.stack.process_url('gateway-bare')}/orders",
                          processes={"gateway": [default_pid], "backend": [ctx.bare_pid]},
                          headers=ctx.bearer(ctx.token))
    finally:
        ctx.stop_process("gateway-asyncio")
    return {"default_runs_uvloop": loops["default"], "asyncio_run_runs_uvloop": loops["asyncio"]}
