"""Live route reload: a valid file switches the routes, a broken one is refused while the old
routes serve, requests in flight finish on their table, unchanged upstreams keep their pools."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path
from typing import Any

import yaml

from gateway.app_keys import RELOADER, ROUTING, SETTINGS
from gateway.reload import APPLIED, REFUSED, UNCHANGED
from tests.support.gateway_under_test import MISBEHAVE, write_routes
from tests.support.polling import wait_for

ORDER = "00000000-0000-4000-8000-000000000001"


def routes_file(stack: Any) -> Path:
    return stack.app[SETTINGS].routes_file


def rewrite(stack: Any, path: Path | None = None, **overrides: Any) -> Path:
    """Write the packaged routes with the stack's upstreams and `overrides` (write_routes')."""
    return write_routes(path or routes_file(stack), stack.upstreams, **overrides)


def without_route(path: Path, name: str) -> None:
    document = yaml.safe_load(path.read_text())
    document["routes"] = [route for route in document["routes"] if route["name"] != name]
    path.write_text(yaml.safe_dump(document))


async def reload(stack: Any) -> str:
    return await stack.app[RELOADER].reload("test")


def reloads(stack: Any, result: str) -> float:
    return stack.metric("gateway_route_reloads_total", {"result": result})


async def test_a_valid_file_switches_the_routes(make_gateway) -> None:
    stack = await make_gateway()
    assert (await stack.client.get("/users/me", headers=stack.bearer())).status == 200
    assert "get" in (await (await stack.client.get("/openapi.json")).json())["paths"]["/orders"]
    path = rewrite(stack, users_me_read={"scopes": ["admin"]})
    without_route(path, "orders-list")
    before = stack.app[ROUTING].current
    assert await reload(stack) == APPLIED
    # The public OpenAPI document follows the routes in service.
    assert "get" not in (await (await stack.client.get("/openapi.json")).json())["paths"]["/orders"]
    assert stack.app[ROUTING].current is not before
    assert (await stack.client.get("/users/me", headers=stack.bearer())).status == 403
    # GET /orders is gone; POST /orders is still routed, so GET is now a 405, not a 404.
    gone = await stack.client.get("/orders", headers=stack.bearer())
    assert gone.status == 405
    assert gone.headers["Allow"] == "POST"
    assert reloads(stack, APPLIED) == 1
    digest = stack.app[ROUTING].current.digest[:12]
    assert stack.metric("gateway_route_table_info", {"sha256": digest}) == 1
    assert stack.metric("gateway_route_table_info", {"sha256": before.digest[:12]}) == 0
    assert stack.metric("gateway_route_table_loaded_timestamp_seconds") > 0


async def test_the_same_bytes_are_not_reloaded(make_gateway) -> None:
    stack = await make_gateway()
    before = stack.app[ROUTING].current
    assert await reload(stack) == UNCHANGED
    assert stack.app[ROUTING].current is before
    assert reloads(stack, UNCHANGED) == 1


async def test_a_broken_file_is_refused_and_the_old_routes_serve(make_gateway, caplog) -> None:
    stack = await make_gateway()
    before = stack.app[ROUTING].current
    path = routes_file(stack)
    dangling, unknown_scope = yaml.safe_load(path.read_text()), yaml.safe_load(path.read_text())
    dangling["routes"][-1]["upstream"] = "nowhere"
    unknown_scope["routes"][-1]["scopes"] = ["orders:everything"]  # lint's error
    for broken in (
        "routes: [\n",  # not YAML
        yaml.safe_dump({"scopes": [], "upstreams": {}, "routes": []}),  # not a table
        yaml.safe_dump(dangling),
        yaml.safe_dump(unknown_scope),
    ):
        path.write_text(broken)
        with caplog.at_level(logging.ERROR, logger="gateway.reload"):
            assert await reload(stack) == REFUSED
        assert "refused; the routes in service stay" in caplog.text
        caplog.clear()
        assert stack.app[ROUTING].current is before
        assert (await stack.client.get("/orders", headers=stack.bearer())).status == 200
    assert reloads(stack, REFUSED) == 4
    assert stack.metric("gateway_route_table_info", {"sha256": before.digest[:12]}) == 1


async def test_a_request_in_flight_finishes_on_the_table_it_started_with(make_gateway) -> None:
    stack = await make_gateway()
    slow = asyncio.create_task(
        stack.client.get(f"/orders/{MISBEHAVE['slow']}", headers=stack.bearer())
    )
    await wait_for(lambda: _logged(stack, MISBEHAVE["slow"]), "the slow request to reach orders")
    path = rewrite(stack)
    without_route(path, "orders-get")
    assert await reload(stack) == APPLIED
    assert (await stack.client.get(f"/orders/{ORDER}", headers=stack.bearer())).status == 404
    answered = await slow
    assert answered.status == 200
    assert (await answered.json())["backend"] == "orders-0"


async def _logged(stack: Any, fragment: str) -> bool:
    return any(fragment in entry["raw_path"] for entry in stack.log)


async def test_unchanged_upstreams_keep_their_pools_and_changed_ones_drain(make_gateway) -> None:
    stack = await make_gateway()
    before = stack.app[ROUTING].current
    assert (await stack.client.get("/orders", headers=stack.bearer())).status == 200
    old_orders = before.pools["orders"]
    connections = old_orders.replicas[0].connections
    assert connections.open_connections == 1  # kept alive after the answer
    path = rewrite(stack)
    document = yaml.safe_load(path.read_text())
    document["upstreams"]["orders"]["connect_timeout"] = 1.5
    path.write_text(yaml.safe_dump(document))
    assert await reload(stack) == APPLIED
    after = stack.app[ROUTING].current
    assert after.pools["users"] is before.pools["users"]
    assert after.pools["auth"] is before.pools["auth"]
    assert after.pools["orders"] is not old_orders
    assert after.pools["orders"].config.connect_timeout == 1.5
    # The replaced pool drained: its idle connection closed, the new pool serves.
    await wait_for(_closed(connections), "the replaced pool's idle connection to close")
    assert (await stack.client.get("/orders", headers=stack.bearer())).status == 200
    assert after.pools["orders"].replicas[0].connections.open_connections == 1


def _closed(connections: Any) -> Any:
    async def closed() -> bool:
        return connections.open_connections == 0

    return closed


async def test_a_changed_file_is_reloaded_without_a_signal(make_gateway) -> None:
    """A ConfigMap update: the mounted name links into `..data`, which the kubelet swaps to a
    new directory; neither the mounted name nor the link it names changes."""
    stack = await make_gateway(routes_watch_seconds=0.05)
    mounted = routes_file(stack)
    here = mounted.parent
    first, second = here / "..2026_01", here / "..2026_02"
    first.mkdir()
    second.mkdir()
    os.replace(mounted, first / "routes.yaml")
    (here / "..data").symlink_to(first.name)
    mounted.symlink_to("..data/routes.yaml")
    rewrite(stack, second / "routes.yaml", users_me_read={"scopes": ["admin"]})
    assert (await stack.client.get("/users/me", headers=stack.bearer())).status == 200
    swap = here / "..data_tmp"
    swap.symlink_to(second.name)
    os.replace(swap, here / "..data")  # the kubelet's atomic rename of the link
    await wait_for(lambda: _serves(stack, "/users/me", 403), "the swapped file to be served")
    assert reloads(stack, APPLIED) == 1


async def _serves(stack: Any, path: str, status: int) -> bool:
    return (await stack.client.get(path, headers=stack.bearer())).status == status


async def test_sighup_reloads(make_gateway) -> None:
    stack = await make_gateway(routes_watch_seconds=0)
    rewrite(stack, users_me_read={"scopes": ["admin"]})
    os.kill(os.getpid(), signal.SIGHUP)
    await wait_for(lambda: _serves(stack, "/users/me", 403), "the reload SIGHUP asks for")
    assert reloads(stack, APPLIED) == 1
