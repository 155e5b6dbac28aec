"""Two SO_REUSEPORT gateway processes against one (issue 14, item 8).

Throughput cannot show scaling on two cores that also carry the load generator and the
backend, so this measures what can be: the CPU per request of each process. Both layouts
run with the placement of every other run (the gateway processes and the backend on the
core under test, the load generator on the other), so the only change is the second
process sharing the port. Each process's requests come from its own request counter (admin
/metrics), read at the start and end of the measured window; its CPU from /proc.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench import procstat
from bench.prometheus import sample_total, scrape
from bench.scenarios import Figures
from devstack.processes import free_port

if TYPE_CHECKING:
    from bench.run import Bench

REQUESTS = "http_server_requests_total"
ONE = "1 gateway process, SO_REUSEPORT port"
TWO = "2 gateway processes, SO_REUSEPORT port"


def per_process(cpu_seconds: dict[str, float], requests: dict[str, float]) -> dict[str, float]:
    """CPU µs per request of each process that answered any."""
    return {name: cpu_seconds[name] / n * 1e6 for name, n in requests.items() if n > 0}


async def run(ctx: Bench) -> Figures:
    port = free_port()
    env = ctx.bare_gateway_env(PASSGATE_REUSE_PORT="true", PASSGATE_PORT=str(port))
    admin = {"gateway 1": free_port(), "gateway 2": free_port()}
    url = f"http://127.0.0.1:{port}/orders"
    figures: dict[str, dict[str, float]] = {}
    pids: dict[str, int] = {}
    try:
        for layout, names in ((ONE, ["gateway 1"]), (TWO, ["gateway 1", "gateway 2"])):
            for name in names:
                if name not in pids:
                    pids[name] = ctx.spawn_gateway(f"gateway-rp-{name[-1]}",
                                                   env | {"PASSGATE_ADMIN_PORT": str(admin[name])})
            counted: dict[str, dict[str, float]] = {}
            cpu: dict[str, dict[str, float]] = {}

            async def window(moment: str, names: list[str] = names, counted: dict = counted,
                             cpu: dict = cpu) -> None:
                cpu[moment] = {n: procstat.cpu_seconds(pids[n]) for n in names}
                counted[moment] = {n: sample_total(await scrape(ctx.session, admin[n]), REQUESTS)
                                   for n in names}

            # The run's own figures are for the processes together; each one's come from
            # the window readings.
            await ctx.measure(layout, url, processes={"gateway": [pids[n] for n in names],
                                                      "backend": [ctx.bare_pid]},
                              headers=ctx.bearer(ctx.token), window=window)
            requests = {n: counted["end"][n] - counted["start"][n] for n in names}
            seconds = {n: cpu["end"][n] - cpu["start"][n] for n in names}
            figures[layout] = {"requests": requests, "cpu_seconds": seconds,
                               "cpu_us_per_request": per_process(seconds, requests)}
    finally:
        for name in ("gateway-rp-2", "gateway-rp-1"):
            try:
                ctx.stop_process(name)
            except KeyError:
                pass
    one = figures[ONE]["cpu_us_per_request"]["gateway 1"]
    each = figures[TWO]["cpu_us_per_request"]
    figures["each_of_two_over_one"] = {n: v / one for n, v in each.items()}
    print("  CPU per request, each of two ÷ one: "
          + ", ".join(f"{n} {v:.2f}×" for n, v in figures["each_of_two_over_one"].items()), flush=True)
    return figures
