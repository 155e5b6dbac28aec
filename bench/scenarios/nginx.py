"""nginx (bench.nginx) as a plain reverse proxy to the same backend: it authenticates
nobody, so the identity headers are set statically. The floor of a C proxy's cost."""

from __future__ import annotations

from bench import procstat
from bench.peer import installed
from bench.nginx import Nginx, install_nginx, render_config
from devstack.processes import free_port
from typing import TYPE_CHECKING

from bench.scenarios import Figures

if TYPE_CHECKING:
    from bench.run import Bench

RUN = "nginx → bare"


async def run(ctx: Bench) -> Figures:
    binary = installed(install_nginx, "nginx")
    nginx = Nginx(binary, ctx.data_dir / "nginx", free_port())
    static = {k: v for k, v in ctx.backend_headers().items() if k.startswith("X-User-")}
    config = render_config(nginx.directory, port=nginx.port, upstream=ctx.bare_url, set_headers=static)
    with ctx.on_sut():
        nginx.start(config)
    try:
        pids = procstat.descendants(nginx.pid)
        await ctx.measure(RUN, f"{nginx.url}/orders", processes={"nginx": pids, "backend": [ctx.bare_pid]})
    finally:
        nginx.stop()
    return {"binary": binary, "processes": len(pids), "config": config}
