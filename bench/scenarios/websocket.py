"""The WebSocket relay's cost per message (issue 19): CPU per message the gateway relays,
against the same echo reached directly.

A bare echo backend (this module run as `python -m bench.scenarios.websocket --port N`)
answers every message on /orders/stream with the same bytes. A gateway whose orders
upstream is that echo relays the packaged `orders-stream` route (websocket: true). The
bench client holds SOCKETS sockets, each sending WINDOW messages and then reading their
echoes, for the bench's duration: once straight to the echo, once through the gateway.
Figures are CPU seconds of each process over the window divided by the messages it
handled; through the gateway every echo is two relayed messages (one each way).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from bench import procstat
from bench.scenarios import Figures
from devstack.processes import free_port

if TYPE_CHECKING:
    from bench.run import Bench

PATH = "/orders/stream"
SOCKETS = 16
WINDOW = 32  # messages in flight per socket
SIZES = (64, 4096)  # payload bytes: the per-message overhead, and a mid-sized message


async def run(ctx: Bench) -> Figures:
    port = free_port()
    echo_url = f"http://127.0.0.1:{port}"
    echo = ctx.start_python("ws-echo", ["-m", "bench.scenarios.websocket", "--port", str(port)], {},
                            f"{echo_url}/readyz")
    gateway_pid = ctx.spawn_gateway("gateway-ws", {"PASSGATE_UPSTREAM_ORDERS": echo_url})
    echo_pid = ctx.pid_of(echo)
    figures: dict[str, Any] = {"sockets": SOCKETS, "window": WINDOW}
    try:
        for size in SIZES:
            direct = await _window(ctx, f"{echo_url}{PATH}", {}, size, {"echo": echo_pid})
            through = await _window(
                ctx, f"{ctx.stack.process_url('gateway-ws')}{PATH}", ctx.bearer(ctx.token), size,
                {"echo": echo_pid, "gateway": gateway_pid},
            )
            relayed = 2 * through["echoes"]
            gateway_us = through["cpu_s"]["gateway"] / relayed * 1e6
            figures[f"{size}B"] = {
                "direct": direct,
                "through_gateway": through,
                "gateway_cpu_us_per_message": round(gateway_us, 2),
                "echo_cpu_us_per_echo_direct": round(direct["cpu_s"]["echo"] / direct["echoes"] * 1e6, 2),
            }
            print(f"  websocket {size} B: gateway {gateway_us:.1f} µs CPU per relayed message; "
                  f"echo {figures[f'{size}B']['echo_cpu_us_per_echo_direct']:.1f} µs per echo direct; "
                  f"{direct['echoes_per_s']:.0f} echoes/s direct, {through['echoes_per_s']:.0f} through the gateway",
                  flush=True)
    finally:
        ctx.stop_process("gateway-ws")
        echo.stop()
    return figures


async def _window(ctx: Bench, url: str, headers: dict[str, str], size: int,
                  processes: dict[str, int]) -> dict[str, Any]:
    """Warm up, then echo for the bench's duration; CPU of each process over the window."""
    ws_url = "ws" + url.removeprefix("http")
    sockets = [await ctx.session.ws_connect(ws_url, headers=headers, max_msg_size=0) for _ in range(SOCKETS)]
    try:
        payload = b"m" * size
        await _echo_for(sockets, payload, ctx.o.warmup)
        before = {name: procstat.cpu_seconds(pid) for name, pid in processes.items()}
        started = time.perf_counter()
        echoes = await _echo_for(sockets, payload, ctx.o.duration)
        elapsed = time.perf_counter() - started
        cpu = {name: procstat.cpu_seconds(pid) - before[name] for name, pid in processes.items()}
    finally:
        for socket in sockets:
            await socket.close()
    return {"echoes": echoes, "seconds": round(elapsed, 3), "echoes_per_s": round(echoes / elapsed, 1),
            "cpu_s": {name: round(value, 4) for name, value in cpu.items()}}


async def _echo_for(sockets: list[aiohttp.ClientWebSocketResponse], payload: bytes, seconds: float) -> int:
    """Every socket sends WINDOW messages, reads their echoes, and again, until `seconds` pass."""
    deadline = time.perf_counter() + seconds

    async def one(socket: aiohttp.ClientWebSocketResponse) -> int:
        count = 0
        while time.perf_counter() < deadline:
            for _ in range(WINDOW):
                await socket.send_bytes(payload)
            for _ in range(WINDOW):
                message = await socket.receive()
                if message.type is not aiohttp.WSMsgType.BINARY:
                    raise RuntimeError(f"echo ended: {message.type.name} {message.data}")
            count += WINDOW
        return count

    return sum(await asyncio.gather(*(one(socket) for socket in sockets)))


# -- the echo backend, run as its own process ------------------------------------------------

async def _echo(request: web.Request) -> web.WebSocketResponse:
    socket = web.WebSocketResponse(max_msg_size=0, compress=False)
    await socket.prepare(request)
    async for message in socket:
        if message.type is aiohttp.WSMsgType.BINARY:
            await socket.send_bytes(message.data)
        elif message.type is aiohttp.WSMsgType.TEXT:
            await socket.send_str(message.data)
    return socket


async def _ready(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def main() -> None:
    parser = argparse.ArgumentParser(description="a bare WebSocket echo for the bench")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application()
    app.router.add_get(PATH, _echo)
    app.router.add_get("/readyz", _ready)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
