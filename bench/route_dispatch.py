"""What matching in the live route table costs (issue 19, item 2), against aiohttp's router.

Before live reload, each route of the routes file was a resource of the app's own router.
Now the app's router holds health, /openapi.json and the live table's resource, which
matches the request in the table in service (its own frozen UrlDispatcher). This measures
both ways of finding a route's handler for the same requests, with the packaged routes
file:

  router   an app router with one resource per route (the design before);
  live     the gateway's own app router (create_app's, started): health, /openapi.json,
           then the live table's resource, which matches in the table in service.

Figures are process CPU per request (best of interleaved rounds), `python -m
bench.route_dispatch`; `--callgrind MODE N` runs one finder alone, for instruction counts.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from prometheus_client import CollectorRegistry

from gateway.app import create_app
from common.scopes import default_scope_policy
from gateway.routes import load_routes
from gateway.settings import DEFAULT_ROUTES_FILE, GatewaySettings

REQUESTS = [
    ("GET", "/orders"),
    ("GET", "/orders/0b3c8f5e-1f4a-4c7e-9d2b-6a5f4e3d2c1b"),
    ("POST", "/orders/0b3c8f5e-1f4a-4c7e-9d2b-6a5f4e3d2c1b/cancel"),
    ("GET", "/users/me"),
    ("POST", "/auth/login"),
]


async def _handler(request: web.Request) -> web.StreamResponse:
    return web.Response()


def _run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Drive a coroutine that never suspends (a router's resolve) without an event loop."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    raise RuntimeError("the coroutine suspended")


def _per_route() -> Callable[[web.Request], Any]:
    router = web.UrlDispatcher()
    for path in ("/healthz", "/readyz", "/openapi.json"):
        router.add_get(path, _handler)
    resources: dict[str, web.Resource] = {}
    for route in load_routes(DEFAULT_ROUTES_FILE, default_scope_policy().issuable).routes:
        resource = resources.get(route.router_path)
        if resource is None:
            resource = resources[route.router_path] = router.add_resource(route.router_path)
        for method in route.methods:
            resource.add_route(method, _handler)
    router.freeze()
    return lambda request: _run(router.resolve(request))


def _live() -> Callable[[web.Request], Any]:
    """The gateway's own app router and table, as create_app and a start prepare them."""
    loop = asyncio.new_event_loop()
    app = create_app(GatewaySettings(routes_watch_seconds=0), registry=CollectorRegistry())
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())  # runs the contexts: the first table installed
    router = app.router

    def find(request: web.Request) -> Any:
        match = _run(router.resolve(request))
        assert match.route.resource is not None, "matched a route of the table"
        return match

    find.close = lambda: (loop.run_until_complete(runner.cleanup()), loop.close())  # type: ignore[attr-defined]
    return find


def _cpu_per_request(
    finders: dict[str, Callable[[web.Request], Any]], *, rounds: int, calls: int
) -> dict[str, float]:
    """Best CPU time per request of each finder, their rounds interleaved so that other
    work on the machine weighs on both alike."""
    requests = [make_mocked_request(method, path) for method, path in REQUESTS]
    best = dict.fromkeys(finders, float("inf"))
    for _ in range(rounds):
        for name, find in finders.items():
            start = time.process_time()
            for _ in range(calls):
                for request in requests:
                    find(request)
            best[name] = min(best[name], (time.process_time() - start) / (calls * len(requests)))
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.route_dispatch", description=__doc__)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument(
        "--callgrind", nargs=2, metavar=("MODE", "N"),
        help="only run N rounds of one finder (router or live), for instruction counts: "
        "valgrind --tool=callgrind python -m bench.route_dispatch --callgrind live 20000, "
        "minus the same with N=0, divided by N times the 5 requests",
    )
    args = parser.parse_args(argv)
    if args.callgrind:
        mode, count = args.callgrind[0], int(args.callgrind[1])
        live = _live()  # in both modes: the same objects alive, so the same garbage collection
        find = live if mode == "live" else _per_route()
        requests = [make_mocked_request(method, path) for method, path in REQUESTS]
        for _ in range(count):
            for request in requests:
                find(request)
        return
    live = _live()
    try:
        best = _cpu_per_request({"router": _per_route(), "live": live}, rounds=args.rounds, calls=args.calls)
    finally:
        live.close()  # type: ignore[attr-defined]
    router, live_cost = best["router"], best["live"]
    print(f"router (a resource per route): {router * 1e6:.2f} us per request")
    print(f"live table (the gateway's router): {live_cost * 1e6:.2f} us per request")
    print(f"added by live matching: {(live_cost - router) * 1e6:.2f} us per request")


if __name__ == "__main__":
    main()
