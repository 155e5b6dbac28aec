"""An admin listener keeps health and metrics apart from the API, for any process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from common.app import make_base_app
from common.runner import listeners
from common.settings import ServerSettings


def test_admin_port_is_optional_and_read_from_the_environment() -> None:
    plain = ServerSettings.from_env({}, service="users", default_port=8082)
    assert plain.admin_port is None
    assert [port for _, _, port in listeners(make_base_app("users"), plain)] == [8082]

    env = {"PASSGATE_PORT": "18082", "PASSGATE_ADMIN_PORT": "19090", "PASSGATE_HOST": "0.0.0.0"}
    split = ServerSettings.from_env(env, service="users", default_port=8082)
    assert (split.admin_host, split.admin_port) == ("0.0.0.0", 19090)
    assert [port for _, _, port in listeners(make_base_app("users"), split)] == [18082, 19090]


async def test_metrics_only_on_the_admin_app_when_split(aiohttp_client) -> None:
    registry = CollectorRegistry()
    settings = ServerSettings(service="users", admin_port=19090)
    public, admin = (
        app for app, _, _ in listeners(make_base_app("users", registry=registry, expose_metrics=False), settings)
    )
    public_client = await aiohttp_client(public)
    admin_client = await aiohttp_client(admin)
    await public_client.get("/healthz")
    assert (await public_client.get("/metrics")).status == 404
    exposition = await (await admin_client.get("/metrics")).text()
    assert 'http_server_requests_total{method="GET",route="/healthz",status_class="2xx"} 1.0' in exposition
    assert (await admin_client.get("/readyz")).status == 200
