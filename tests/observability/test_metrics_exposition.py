"""The real /metrics of the four running processes, after real traffic: promtool-clean, bounded
labels, no secrets, and only on the ports meant for it."""

from __future__ import annotations

import re

import pytest
from prometheus_client.parser import text_string_to_metric_families

from devstack.stack import Stack
from tests.support.observability import COMPONENTS, Traffic, http, run

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)
HEX_ID = re.compile(r"[0-9a-f]{16,}", re.IGNORECASE)


@pytest.mark.e2e
@pytest.mark.parametrize("component", COMPONENTS)
def test_promtool_check_metrics(promtool: str, expositions: dict[str, str], component: str) -> None:
    result = run([promtool, "check", "metrics"], stdin=expositions[component])
    assert result.returncode == 0, f"{component}:\n{result.stdout}{result.stderr}"


@pytest.mark.e2e
@pytest.mark.parametrize("component", COMPONENTS)
def test_request_metrics_are_labelled_by_route_template(
    expositions: dict[str, str], component: str
) -> None:
    families = {
        family.name: family for family in text_string_to_metric_families(expositions[component])
    }
    requests = families["http_server_requests"]
    assert requests.type == "counter"
    assert families["http_server_request_duration_seconds"].type == "histogram"
    assert families["http_server_requests_in_flight"].type == "gauge"
    assert "process_cpu_seconds" in families and "process_resident_memory_bytes" in families
    served = [
        s for s in requests.samples if s.labels["route"] not in ("/metrics", "/healthz", "/readyz")
    ]
    assert served, f"{component} counted no request but scrapes and probes"
    for sample in requests.samples:
        assert set(sample.labels) == {"route", "method", "status_class"}, sample
        assert re.fullmatch(r"[1-5]xx", sample.labels["status_class"]), sample


@pytest.mark.e2e
@pytest.mark.parametrize("component", COMPONENTS)
def test_no_label_carries_an_id_and_nothing_carries_a_secret(
    expositions: dict[str, str], traffic: Traffic, component: str
) -> None:
    text = expositions[component]
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            for name, value in sample.labels.items():
                assert not UUID.search(value) and not HEX_ID.search(value), (
                    f"{component} {sample.name}{{{name}={value!r}}}: a raw path or id in a label"
                )
    assert traffic.user_id not in text and traffic.username not in text
    for secret in traffic.secrets:
        assert secret not in text


@pytest.mark.e2e
def test_gateway_metrics_are_on_the_admin_port_only(obs_stack: Stack) -> None:
    status, _, body = http("GET", obs_stack.gateway_url + "/metrics")
    assert status == 404, body[:300]
    assert b"http_server_requests_total" not in body
    status, _, body = http("GET", obs_stack.url("gateway_admin") + "/metrics")
    assert status == 200 and b"gateway_auth_failures_total" in body
