"""An OTLP/HTTP trace sink for the bench: accepts every POST /v1/traces and answers the empty
ExportTraceServiceResponse (zero bytes of protobuf), so the gateway pays its whole export
cost (batching, encoding, the HTTP call) while the sink does as little as a collector's
receiver can. Counts the exports and bytes it took (GET /stats).

    python -m bench.otlp_sink --port N
"""

from __future__ import annotations

import argparse
import sys

from aiohttp import web


def create_app() -> web.Application:
    stats = {"exports": 0, "bytes": 0}

    async def traces(request: web.Request) -> web.Response:
        stats["bytes"] += len(await request.read())
        stats["exports"] += 1
        return web.Response(body=b"", content_type="application/x-protobuf")

    async def ready(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def report(request: web.Request) -> web.Response:
        return web.json_response(stats)

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/traces", traces)
    app.router.add_get("/readyz", ready)
    app.router.add_get("/stats", report)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.otlp_sink", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    web.run_app(create_app(), host="127.0.0.1", port=args.port, print=None, access_log=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
