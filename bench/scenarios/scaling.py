"""Two SO_REUSEPORT gateway processes against one (issue 14, item 8).

Throughput cannot show scaling on two cores that also carry the load generator and the
backend, so this measures what can be: the CPU per request of each process. Every layout
runs with the placement of every other run (the gateway processes and the backend on the
core under test, the load generator on the other), so the only change is the second
process sharing the port. Each process's requests come from its own request counter (admin
/metrics), read at the start and end of the measured window; its CPU from /proc. One
process is measured before and after the two (the second stopped in between), and the
two are held against the mean of both, so that a drift of the machine's load shows.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from bench import procstat
from bench.prometheus import sample_total, scrape
from bench.scenarios import Figures
from devstack.processes import free_port

if TYPE_CHECKING:
    from bench.run import Bench

REQUESTS = "http_server_requests_total"
ONE = "1 gateway process, SO_REUSEPORT port"
TWO = "2 gateway processes, SO_REUSEPORT port"
ONE_AGAIN = "1 gateway process again, SO_REUSEPORT port"


def per_process(cpu_seconds: dict[str, float], requests: dict[str, float]) -> dict[str, float]:
    """CPU µs per request of each process that answered any."""
    return {name: cpu_seconds[name] / n * 1e6 for name, n in requests.items() if n > 0}


async def measure_layout(ctx: Bench, layout: str, url: str, pids: dict[str, int],
                         admin: dict[str, int]) -> dict[str, dict[str, float]]:
    """One measured window with the processes `pids`: each one's requests and CPU over it.
    The run's own figures (in the runs table) are for the processes together."""
    readings: dict[str, dict[str, tuple[float, float]]] = {}

    async def window(moment: str) -> None:
        readings[moment] = {n: (procstat.cpu_seconds(pid), sample_total(await scrape(ctx.session, admin[n]), REQUESTS))
                            for n, pid in pids.items()}

    await ctx.measure(layout, url, processes={"gateway": list(pids.values()), "backend": [ctx.bare_pid]},
                      headers=ctx.bearer(ctx.token), window=window)
    seconds = {n: readings["end"][n][0] - readings["start"][n][0] for n in pids}
    requests = {n: readings["end"][n][1] - readings["start"][n][1] for n in pids}
    return {"requests": requests, "cpu_seconds": seconds, "cpu_us_per_request": per_process(seconds, requests)}


def each_over_one(figures: dict[str, dict[str, dict[str, float]]]) -> dict[str, float]:
    """Each of the two processes' CPU per request ÷ one process's (the mean of its runs)."""
    ones = [figures[layout]["cpu_us_per_request"]["gateway 1"] for layout in (ONE, ONE_AGAIN) if layout in figures]
    one = sum(ones) / len(ones)
    return {n: v / one for n, v in figures[TWO]["cpu_us_per_request"].items()}


async def run(ctx: Bench) -> Figures:
    port = free_port()
    env = ctx.bare_gateway_env(PASSGATE_REUSE_PORT="true", PASSGATE_PORT=str(port))
    admin = {"gateway 1": free_port(), "gateway 2": free_port()}
    url = f"http://127.0.0.1:{port}/orders"

    def spawn(name: str) -> int:
        return ctx.spawn_gateway(f"gateway-rp-{name[-1]}", env | {"PASSGATE_ADMIN_PORT": str(admin[name])})

    figures: dict[str, Any] = {}
    try:
        pids = {"gateway 1": spawn("gateway 1")}
        figures[ONE] = await measure_layout(ctx, ONE, url, pids, admin)
        pids["gateway 2"] = spawn("gateway 2")
        figures[TWO] = await measure_layout(ctx, TWO, url, pids, admin)
        ctx.stop_process("gateway-rp-2")  # returns once it has exited: its socket is closed
        del pids["gateway 2"]
        figures[ONE_AGAIN] = await measure_layout(ctx, ONE_AGAIN, url, pids, admin)
    finally:
        for name in ("gateway-rp-2", "gateway-rp-1"):
            with contextlib.suppress(KeyError):
                ctx.stop_process(name)
    figures["each_of_two_over_one"] = each_over_one(figures)
    print("  CPU per request, each of two ÷ one: "
          + ", ".join(f"{n} {v:.2f}×" for n, v in figures["each_of_two_over_one"].items()), flush=True)
    return figures
