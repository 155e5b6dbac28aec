"""CPU per authenticated proxied request: `python tests/gateway/bench_proxy.py [requests]`.

BENCH_COMMAND replaces `-m gateway` (e.g. tests/gateway/bench_floor_proxy.py, a bare
aiohttp proxy, to see what any aiohttp gateway costs on the same machine).

Starts the real gateway process (`python -m gateway`, token cache on, rate limits off for
the measured route), with a trivial backend and a JWKS endpoint in this process, sends
requests with one valid token from 16 concurrent workers, and reads the gateway
process's CPU time (utime + stime from /proc) around the measured batch.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

PROJECT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(PROJECT))

from tests.gateway.support import (  # noqa: E402
    AUDIENCE, ISSUER, FakeClock, JwksServer, mint, new_key, write_routes,
)

CONCURRENCY = 16


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


async def backend(request: web.Request) -> web.Response:
    return web.json_response({"id": request.headers.get("X-User-Id")})


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


async def load(session: aiohttp.ClientSession, url: str, headers: dict[str, str], n: int) -> None:
    async def worker(count: int) -> None:
        for _ in range(count):
            async with session.get(url, headers=headers) as response:
                assert response.status == 200, response.status
                await response.read()

    await asyncio.gather(*(worker(n // CONCURRENCY) for _ in range(CONCURRENCY)))


async def main(n: int, log_level: str) -> None:
    key = new_key("k1")
    jwks = JwksServer([key])
    jwks_runner, jwks_url = await serve(jwks.app)
    back = web.Application()
    back.router.add_get("/users/me", backend)
    back_runner, back_url = await serve(back)
    routes = write_routes(Path(tempfile.mkdtemp()) / "routes.yaml",
                          {"auth": [back_url], "users": [back_url], "orders": [back_url]},
                          users_me_read={"rate_limit": "off"})
    port = free_port()
    env = {
        **os.environ,
        "PASSGATE_PORT": str(port),
        "PASSGATE_ADMIN_PORT": str(free_port()),
        "PASSGATE_ROUTES_FILE": str(routes),
        "PASSGATE_JWKS_URL": f"{jwks_url}/jwks.json",
        "PASSGATE_ISSUER": ISSUER,
        "PASSGATE_AUDIENCE": AUDIENCE,
        "PASSGATE_LOG_LEVEL": log_level,
        "UPSTREAM": back_url,
    }
    process = subprocess.Popen([sys.executable, *os.environ.get("BENCH_COMMAND", "-m gateway").split()], cwd=PROJECT, env=env,
                               stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/users/me"
    headers = {"Authorization": f"Bearer {mint(key, FakeClock(time.time()))}"}
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(100):  # wait until it answers
                try:
                    async with session.get(url, headers=headers) as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
            await load(session, url, headers, 800)  # warm up
            before = cpu_seconds(process.pid)
            started = time.perf_counter()
            await load(session, url, headers, n)
            after = cpu_seconds(process.pid)
            user, system = after[0] - before[0], after[1] - before[1]
            wall = time.perf_counter() - started
    finally:
        process.terminate()
        process.wait(10)
        await back_runner.cleanup()
        await jwks_runner.cleanup()
    print(f"log level {log_level}: {n} requests, {n / wall:,.0f} req/s, gateway CPU "
          f"{(user + system) / n * 1e6:.0f} us/request (user {user / n * 1e6:.0f}, "
          f"kernel {system / n * 1e6:.0f})")


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    for level in ("WARNING", "INFO"):
        asyncio.run(main(count, level))
