"""Where the time goes: py-spy on the saturated gateway, then (shorter) on the orders
backend under direct load. The gateway's collapsed stacks are kept with the results."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.profile import PySpy, summarise_raw
from bench.scenarios import Figures

if TYPE_CHECKING:
    from bench.run import Bench


async def record_under_load(ctx: Bench, spy: PySpy, pid: int, url: str, headers: dict[str, str],
                            out: Path, seconds: float) -> None:
    """Load the process for the whole recording (starting a second before it)."""
    load = asyncio.create_task(ctx.loadgen.run(url, concurrency=ctx.o.concurrency, duration=seconds + 2,
                                               headers=headers))
    await asyncio.sleep(1.0)
    await spy.record(pid, out, seconds=seconds, cores=ctx.load_cores)
    await load


async def run(ctx: Bench) -> Figures:
    spy = PySpy.find()
    if spy is None:
        raise RuntimeError("py-spy is not installed (pip install '.[bench]')")
    pid = ctx.pid("gateway-bare")
    out = ctx.data_dir / "gateway-profile.txt"
    print(f"- profiling the gateway (pid {pid}) with py-spy for {ctx.o.profile_seconds:.0f} s", flush=True)
    await record_under_load(ctx, spy, pid, f"{ctx.stack.process_url('gateway-bare')}/orders",
                            ctx.bearer(ctx.token), out, ctx.o.profile_seconds)
    figures: dict[str, Any] = {"gateway": summarise_raw(out.read_text()), "raw_path": str(out)}
    # The orders backend too, for a shorter time: it decides the gateway → orders figures.
    orders_out = ctx.data_dir / "orders-profile.txt"
    await record_under_load(ctx, spy, ctx.pid("orders-1"), f"{ctx.stack.url('orders')}/orders",
                            ctx.backend_headers(), orders_out, max(2.0, ctx.o.profile_seconds / 2))
    figures["orders"] = summarise_raw(orders_out.read_text(), top=10)
    return figures
