"""A bare aiohttp backend (no middlewares, no database, no access log) that answers every
GET with one fixed JSON body: the orders backend's own answer, recorded by the bench.

Behind it the gateway is the bottleneck, so the through-gateway ÷ direct ratio and the
gateway's CPU per request measure the gateway rather than the backend's database work.

    python -m bench.stub_backend --port N --body-file FILE
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from aiohttp import web


def create_app(body: bytes) -> web.Application:
    async def answer(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    async def ready(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/readyz", ready)
    app.router.add_get("/{tail:.*}", answer)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stub_backend", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--body-file", type=Path, required=True)
    args = parser.parse_args(argv)
    web.run_app(create_app(args.body_file.read_bytes()), host="127.0.0.1", port=args.port,
                print=None, access_log=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
