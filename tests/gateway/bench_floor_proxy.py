"""A bare aiohttp reverse proxy, the floor for any aiohttp gateway on the same machine.

`BENCH_COMMAND=tests/gateway/bench_floor_proxy.py python tests/gateway/bench_proxy.py`
measures it exactly as the gateway is measured.
"""
import os
import warnings

import aiohttp
from aiohttp import web

UP = os.environ["UPSTREAM"]
async def ctx(app):
    app["s"] = aiohttp.ClientSession()
    yield
    await app["s"].close()
async def handle(request):
    async with request.app["s"].get(UP + request.path) as r:
        body = await r.read()
    return web.Response(body=body, content_type="application/json")
warnings.simplefilter("ignore")  # str app keys, fine for a throwaway floor
app = web.Application(); app.cleanup_ctx.append(ctx); app.router.add_get("/users/me", handle)
web.run_app(app, host="127.0.0.1", port=int(os.environ["PASSGATE_PORT"]), access_log=None, print=None)
