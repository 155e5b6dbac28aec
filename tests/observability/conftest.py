"""One real Passgate system with traffic on it, and one real Prometheus scraping it.

Both are shared by every live test here and stopped when they are done. The Prometheus
scrape configuration is the one in deploy/prometheus (the local static job and the
Kubernetes job's relabelling), pointed at the stack's free ports.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from devstack.processes import free_port
from devstack.stack import PortPlan, Stack, StackConfig
from tests.support.http import PASSWORD, bearer
from tests.support.observability import (
    ALERTS,
    COMPONENTS,
    KUBERNETES_CONFIG,
    LOCAL_CONFIG,
    PrometheusApi,
    Traffic,
    http,
    load_yaml,
    require_binary,
)
from tests.support.otlp_receiver import OtlpReceiver, running_receiver
from tests.support.polling import poll
from tests.support.stack import running_stack
from tests.support.stack_settings import CHEAP_ARGON2

ORDER = {"items": [{"sku": "book-1", "quantity": 2, "unit_price_cents": 1250}]}
K8S_NAMESPACE = "passgate"


@pytest.fixture(scope="session")
def promtool() -> str:
    return require_binary("promtool")


@pytest.fixture(scope="session")
def prometheus_binary() -> str:
    return require_binary("prometheus")


def expect(status: int, answer: tuple[int, dict[str, str], bytes], what: str) -> dict[str, Any]:
    code, _, body = answer
    assert code == status, f"{what}: expected {status}, got {code}: {body[:500]!r}"
    return json.loads(body) if body else {}


def drive_traffic(stack: Stack) -> Traffic:
    """register, log in, fail a login, authenticated and unauthenticated GETs, place and
    cancel an order, rotate a refresh token and replay the spent one."""
    gw = stack.gateway_url
    username = f"obs-{uuid.uuid4().hex[:12]}"
    created = expect(
        201,
        http(
            "POST",
            f"{gw}/auth/register",
            json_body={"username": username, "password": PASSWORD, "display_name": "Obs"},
        ),
        "register",
    )
    tokens = expect(
        200,
        http("POST", f"{gw}/auth/login", json_body={"username": username, "password": PASSWORD}),
        "login",
    )
    expect(
        401,
        http(
            "POST",
            f"{gw}/auth/login",
            json_body={"username": username, "password": "not the password at all"},
        ),
        "login with a wrong password",
    )
    auth = bearer(tokens["access_token"])
    expect(200, http("GET", f"{gw}/users/me", headers=auth), "GET /users/me")
    expect(401, http("GET", f"{gw}/orders"), "GET /orders without a token")
    order = expect(201, http("POST", f"{gw}/orders", json_body=ORDER, headers=auth), "POST /orders")
    expect(200, http("GET", f"{gw}/orders", headers=auth), "GET /orders")
    expect(200, http("POST", f"{gw}/orders/{order['id']}/cancel", headers=auth), "cancel")
    rotated = expect(
        200,
        http("POST", f"{gw}/auth/refresh", json_body={"refresh_token": tokens["refresh_token"]}),
        "refresh",
    )
    expect(
        401,
        http("POST", f"{gw}/auth/refresh", json_body={"refresh_token": tokens["refresh_token"]}),
        "replayed refresh token",
    )
    return Traffic(
        username=username,
        user_id=created["id"],
        access_token=tokens["access_token"],
        refresh_token=rotated["refresh_token"],
        refresh_tokens=[tokens["refresh_token"], rotated["refresh_token"]],
        secrets=[
            PASSWORD,
            tokens["access_token"],
            tokens["refresh_token"],
            rotated["access_token"],
            rotated["refresh_token"],
        ],
    )


@pytest.fixture(scope="package")
def otlp() -> Iterator[OtlpReceiver]:
    """The OTLP/HTTP receiver every process of the stack exports its spans to."""
    with running_receiver() as receiver:
        yield receiver


@pytest.fixture(scope="package")
def obs_stack(tmp_path_factory: pytest.TempPathFactory, otlp: OtlpReceiver) -> Iterator[Stack]:
    """The system with tracing on, as an operator turns it on: the standard OTEL_* variables
    (every request sampled; batches sent every 200 ms so the tests need not wait long)."""
    tracing = {"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.url, "OTEL_BSP_SCHEDULE_DELAY": "200"}
    config = StackConfig(
        data_dir=tmp_path_factory.mktemp("observability-stack"),
        ports=PortPlan.free(),
        env={"all": tracing, "auth": dict(CHEAP_ARGON2)},
    )
    with running_stack(config) as stack:
        yield stack


@pytest.fixture(scope="package")
def traffic(obs_stack: Stack) -> Traffic:
    return drive_traffic(obs_stack)


def metrics_urls(stack: Stack) -> dict[str, str]:
    """Where each component's /metrics is: the gateway's on its admin port."""
    return {
        component: stack.url("gateway_admin" if component == "gateway" else component) + "/metrics"
        for component in COMPONENTS
    }


@pytest.fixture(scope="package")
def expositions(obs_stack: Stack, traffic: Traffic) -> dict[str, str]:
    """The text exposition of each of the four processes, after the traffic."""
    texts = {}
    for component, url in metrics_urls(obs_stack).items():
        status, _, body = http("GET", url)
        assert status == 200, f"{component} {url}: {status}"
        texts[component] = body.decode()
    return texts


# -- Prometheus ------------------------------------------------------------------------------


def host_port(url: str) -> str:
    return urlsplit(url).netloc


def fake_pods(stack: Stack) -> list[dict[str, Any]]:
    """Targets shaped like Kubernetes pod discovery (address = pod IP and container port,
    the pod's labels and annotations as __meta_ labels), so the Kubernetes job's own
    relabelling decides what is scraped, where, and with which `service` label."""

    def pod(
        address: str, port: str | None, labels: dict[str, str], scrape: str = "true"
    ) -> dict[str, Any]:
        meta = {
            "__meta_kubernetes_namespace": K8S_NAMESPACE,
            "__meta_kubernetes_pod_name": f"pod-{uuid.uuid4().hex[:8]}",
            "__meta_kubernetes_pod_annotation_prometheus_io_scrape": scrape,
            "__meta_kubernetes_pod_annotation_prometheus_io_path": "/metrics",
        }
        if port is not None:
            meta["__meta_kubernetes_pod_annotation_prometheus_io_port"] = port
        meta.update(
            {f"__meta_kubernetes_pod_label_{name}": value for name, value in labels.items()}
        )
        return {"targets": [address], "labels": meta}

    def port_of(name: str) -> str:
        return str(stack.config.ports.port(name))

    gateway_public = host_port(stack.gateway_url)
    return [
        # The gateway's container port is the public one; its annotation names the admin port.
        pod(gateway_public, port_of("gateway_admin"), {"app_kubernetes_io_name": "gateway"}),
        pod(host_port(stack.url("auth")), port_of("auth"), {"app_kubernetes_io_name": "auth"}),
        # A pod labelled with plain `app` only.
        pod(host_port(stack.url("users")), port_of("users"), {"app": "users"}),
        # Both labels: app.kubernetes.io/name wins.
        pod(
            host_port(stack.url("orders")),
            port_of("orders"),
            {"app_kubernetes_io_name": "orders", "app": "orders-v1"},
        ),
        # Not Passgate, and a Passgate pod that opted out: neither may be scraped.
        pod(f"127.0.0.1:{free_port()}", None, {"app_kubernetes_io_name": "redis"}),
        pod(
            host_port(stack.url("users")),
            port_of("users"),
            {"app_kubernetes_io_name": "users"},
            scrape="false",
        ),
    ]


def prometheus_config(stack: Stack) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml at the stack's ports and a 1 s scrape, plus the
    Kubernetes job of kubernetes-scrape.yaml with pod discovery replaced by fake_pods()."""
    config = load_yaml(LOCAL_CONFIG)
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(ALERTS)]
    (local_job,) = config["scrape_configs"]
    for group in local_job["static_configs"]:
        component = group["labels"]["service"]
        name = "gateway_admin" if component == "gateway" else component
        group["targets"] = [host_port(stack.url(name))]
    (kubernetes_job,) = load_yaml(KUBERNETES_CONFIG)["scrape_configs"]
    del kubernetes_job["kubernetes_sd_configs"]
    kubernetes_job["static_configs"] = fake_pods(stack)
    config["scrape_configs"].append(kubernetes_job)
    return config


@pytest.fixture(scope="package")
def prometheus(
    prometheus_binary: str,
    obs_stack: Stack,
    traffic: Traffic,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[PrometheusApi]:
    """A real Prometheus on a free loopback port, scraping the stack every second."""
    workdir: Path = tmp_path_factory.mktemp("prometheus")
    config_path = workdir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(prometheus_config(obs_stack), sort_keys=False))
    port = free_port()
    log_path = workdir / "prometheus.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                prometheus_binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=1h",
                "--enable-feature=exemplar-storage",  # the latency buckets' trace ids
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    api = PrometheusApi(f"http://127.0.0.1:{port}")
    try:

        def ready() -> bool | None:
            if process.poll() is not None:
                raise AssertionError(
                    f"prometheus exited {process.returncode}:\n{log_path.read_text()[-3000:]}"
                )
            try:
                return True if http("GET", api.base_url + "/-/ready", timeout=1)[0] == 200 else None
            except OSError:
                return None

        poll(ready, timeout=30, what="Prometheus to be ready")
        yield api
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
