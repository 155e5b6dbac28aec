"""Latency buckets lead to traces: the gateway's OpenMetrics exposition carries the trace id
of a sampled request as the exemplar of the bucket it fell in, and a real Prometheus (with
exemplar storage, scraping as it does by default) keeps it."""

from __future__ import annotations

import re
import secrets
import time

import pytest

from devstack.stack import Stack
from tests.support.http import bearer
from tests.support.observability import PrometheusApi, Traffic, http
from tests.support.polling import poll

pytestmark = pytest.mark.e2e

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def traced_request(stack: Stack, traffic: Traffic) -> str:
    trace_id = secrets.token_hex(16)
    status, _, _ = http(
        "GET",
        f"{stack.gateway_url}/users/me",
        headers={
            **bearer(traffic.access_token),
            "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01",
        },
    )
    assert status == 200
    return trace_id


def bucket_lines(exposition: str, route: str) -> list[str]:
    return [
        line for line in exposition.splitlines()
        if line.startswith("http_server_request_duration_seconds_bucket{")
        and f'route="{route}"' in line
    ]


def test_the_openmetrics_exposition_carries_the_trace_id_of_a_sampled_request(
    obs_stack: Stack, traffic: Traffic
) -> None:
    trace_id = traced_request(obs_stack, traffic)
    metrics_url = obs_stack.url("gateway_admin") + "/metrics"
    status, headers, body = http("GET", metrics_url, headers={"Accept": OPENMETRICS})
    assert status == 200 and headers["Content-Type"].startswith("application/openmetrics-text")
    lines = bucket_lines(body.decode(), "/users/me")
    carrying = [line for line in lines if f'# {{trace_id="{trace_id}"}}' in line]
    assert len(carrying) == 1, f"no bucket names trace {trace_id}: {lines}"
    # The exemplar's value is a duration inside its bucket: le >= value.
    exemplar = r'le="([^"]+)".*\} [0-9.]+ # \{trace_id="[0-9a-f]{32}"\} ([0-9.e+-]+) '
    match = re.search(exemplar, carrying[0])
    assert match is not None, carrying[0]
    assert float(match.group(2)) <= float(match.group(1))
    # The classic text format has no exemplars (it cannot carry them).
    _, _, text = http("GET", metrics_url)
    assert "trace_id" not in text.decode()


def test_prometheus_keeps_the_exemplars_it_scrapes(
    prometheus: PrometheusApi, obs_stack: Stack, traffic: Traffic
) -> None:
    trace_id = traced_request(obs_stack, traffic)
    query = 'http_server_request_duration_seconds_bucket{service="gateway", route="/users/me"}'

    def stored() -> list[str] | None:
        now = time.time()
        status, answer = prometheus.call(
            "/api/v1/query_exemplars",
            {"query": query, "start": str(now - 600), "end": str(now + 60)},
        )
        assert status == 200 and answer["status"] == "success", answer
        ids = [
            exemplar["labels"].get("trace_id")
            for series in answer["data"]
            for exemplar in series["exemplars"]
        ]
        return ids if trace_id in ids else None

    poll(stored, timeout=20, what=f"Prometheus to store the exemplar of trace {trace_id}")
