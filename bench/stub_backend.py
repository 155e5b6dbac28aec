"""A bare aiohttp backend (no middlewares, no database, no access log) that answers every
GET with one fixed JSON body: the orders backend's own answer, recorded by the bench.

Behind it the gateway is the bottleneck, so the through-gateway ÷ direct ratio and the
gateway's CPU per request measure the gateway rather than the backend's database work.

    python -m bench.stub_backend --port N --body-file FILE [--server low-level] [--loop uvloop]

The bench runs it as a `web.Application` on asyncio's loop. The other server and loop are
for counting what aiohttp's layers cost on their own (`bench.instructions --backend`):
the low-level server (`web.Server`) has no router, middlewares or signals.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from aiohttp import web

from common.runner import event_loop_factory

APPLICATION, LOW_LEVEL = "application", "low-level"


def create_app(body: bytes) -> web.Application:
    async def answer(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    async def ready(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/readyz", ready)
    app.router.add_get("/{tail:.*}", answer)
    return app


async def serve_low_level(body: bytes, port: int) -> None:
    """The same answers from aiohttp's low-level server, until the process is stopped."""

    async def answer(request: web.BaseRequest) -> web.Response:
        if request.path == "/readyz":
            return web.Response(text="ok")
        return web.Response(body=body, content_type="application/json")

    runner = web.ServerRunner(web.Server(answer, access_log=None))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stub_backend", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--body-file", type=Path, required=True)
    parser.add_argument("--server", choices=(APPLICATION, LOW_LEVEL), default=APPLICATION)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    args = parser.parse_args(argv)
    body = args.body_file.read_bytes()
    loop_factory = event_loop_factory(args.loop)
    if args.loop == "uvloop" and loop_factory is None:
        parser.error("uvloop is not installed")
    if args.server == LOW_LEVEL:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(serve_low_level(body, args.port))
        return 0
    web.run_app(create_app(body), host="127.0.0.1", port=args.port, print=None, access_log=None,
                loop=loop_factory() if loop_factory else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
