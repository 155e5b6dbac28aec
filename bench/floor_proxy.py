"""The floor of any aiohttp proxy here: no middlewares, no token, no access log, no metrics;
one shared client session, the body read whole and returned. What the gateway costs above
it is what its features cost; what it costs above nginx is what aiohttp costs.

    python -m bench.floor_proxy --port N --upstream URL [--header 'K: V' ...]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

SESSION = web.AppKey("session", aiohttp.ClientSession)


def create_app(upstream: str, headers: dict[str, str]) -> web.Application:
    async def client(app: web.Application) -> AsyncIterator[None]:
        app[SESSION] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1000))
        yield
        await app[SESSION].close()

    async def forward(request: web.Request) -> web.Response:
        async with request.app[SESSION].get(upstream + request.path_qs, headers=headers) as answer:
            body = await answer.read()
            return web.Response(body=body, status=answer.status, content_type=answer.content_type)

    async def ready(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.cleanup_ctx.append(client)
    app.router.add_get("/readyz", ready)
    app.router.add_get("/{tail:.*}", forward)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floor_proxy", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--header", action="append", default=[])
    args = parser.parse_args(argv)
    headers = {k.strip(): v.strip() for k, v in (h.split(":", 1) for h in args.header)}
    web.run_app(create_app(args.upstream.rstrip("/"), headers), host="127.0.0.1", port=args.port,
                print=None, access_log=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
