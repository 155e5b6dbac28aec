"""A bare aiohttp proxy (bench.floor_proxy) in front of the same backend: what any aiohttp
proxy costs with no features at all."""

from __future__ import annotations

from devstack.processes import free_port
from typing import TYPE_CHECKING

from bench.scenarios import Figures

if TYPE_CHECKING:
    from bench.run import Bench

RUN = "bare aiohttp proxy → bare"


async def run(ctx: Bench) -> Figures:
    port = free_port()
    args = ["-m", "bench.floor_proxy", "--port", str(port), "--upstream", ctx.bare_url]
    for name, value in ctx.backend_headers().items():
        args += ["--header", f"{name}: {value}"]
    proxy = ctx.start_python("floor-proxy", args, {}, f"http://127.0.0.1:{port}/readyz")
    try:
        await ctx.measure(RUN, f"http://127.0.0.1:{port}/orders",
                          processes={"aiohttp proxy": [ctx.pid_of(proxy)], "backend": [ctx.bare_pid]})
    finally:
        proxy.stop()
    return None
