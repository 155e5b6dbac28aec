"""A real Prometheus scrapes the running stack: every dashboard and alert query parses and reads
only metrics the processes really export, and request rates and auth failures come back
through its query API."""

from __future__ import annotations

import json
import uuid

import pytest

from devstack.stack import Stack
from tests.support.observability import (
    COMPONENTS,
    SCRAPE_SERIES,
    PrometheusApi,
    Traffic,
    all_queries,
    dashboard_panels,
    exposed_names,
    grafana_to_promql,
    http,
    load_dashboard,
    metric_names,
    rules,
    variable_query_metrics,
)
from tests.support.polling import poll

pytestmark = pytest.mark.e2e

SERVED = 'route!~"/metrics|/healthz|/readyz"'


def test_every_query_parses_in_prometheus(prometheus: PrometheusApi) -> None:
    errors = []
    for where, expr in all_queries():
        status, answer = prometheus.call("/api/v1/query", {"query": grafana_to_promql(expr)})
        if status != 200 or answer.get("status") != "success":
            errors.append(f"{where}: {answer.get('errorType')}: {answer.get('error')}\n  {expr}")
    assert not errors, "\n".join(errors)


def test_every_metric_a_query_reads_is_exported(expositions: dict[str, str]) -> None:
    exported = set().union(*(exposed_names(text) for text in expositions.values()))
    exported |= {rule["record"] for rule in rules() if "record" in rule}  # what the rules record
    missing = {}
    for where, expr in all_queries():
        unknown = metric_names(expr) - exported - SCRAPE_SERIES
        if unknown:
            missing[where] = sorted(unknown)
    unknown = variable_query_metrics(load_dashboard()) - exported
    if unknown:
        missing["dashboard variables"] = sorted(unknown)
    assert not missing, f"queries read metrics no process exports: {missing}"


def test_prometheus_scrapes_all_four_with_the_service_label(prometheus: PrometheusApi) -> None:
    def all_up() -> dict[str, float] | None:
        up = prometheus.values('up{job="passgate"}')
        return up if set(up) == set(COMPONENTS) and all(v == 1 for v in up.values()) else None

    poll(all_up, timeout=20, what="the four local targets to be up")


def test_kubernetes_relabelling_scrapes_the_annotated_ports(
    prometheus: PrometheusApi, obs_stack: Stack
) -> None:
    """Pods found as Kubernetes would find them: only the four Passgate pods that ask to be
    scraped are, each on its annotated port (the gateway's admin port), with its `service`."""
    status, answer = prometheus.call("/api/v1/targets")
    assert status == 200, answer
    active = [t for t in answer["data"]["activeTargets"] if t["scrapePool"] == "passgate-pods"]
    dropped = [
        t
        for t in answer["data"]["droppedTargets"]
        if t["discoveredLabels"].get("job") == "passgate-pods"
    ]
    urls = {target["labels"]["service"]: target["scrapeUrl"] for target in active}
    assert urls == {
        component: obs_stack.url("gateway_admin" if component == "gateway" else component)
        + "/metrics"
        for component in COMPONENTS
    }
    assert len(active) == 4 and len(dropped) == 2, (active, dropped)
    for target in active:
        assert target["labels"]["namespace"] == "passgate" and target["labels"]["pod"], target

    def pods_up() -> dict[str, float] | None:
        up = prometheus.values('up{job="passgate-pods"} == 1')
        return up if set(up) == set(COMPONENTS) else None

    poll(pods_up, timeout=20, what="the Kubernetes-style targets to be scraped")


def test_request_rate_and_auth_failures_via_the_query_api(
    prometheus: PrometheusApi, obs_stack: Stack, traffic: Traffic
) -> None:
    gw = obs_stack.gateway_url
    auth = {"Authorization": f"Bearer {traffic.access_token}"}

    def rates() -> dict[str, float] | None:
        # Traffic keeps coming while we look, so a rate over the last seconds is never 0.
        http("GET", f"{gw}/users/me", headers=auth)
        http("GET", f"{gw}/orders", headers=auth)
        http("GET", f"{gw}/orders")
        http(
            "POST",
            f"{gw}/auth/login",
            json_body={"username": traffic.username, "password": "wrong wrong wrong"},
        )
        served = f'http_server_requests_total{{job="passgate", {SERVED}}}'
        values = prometheus.values(f"sum by (service) (rate({served}[10s])) > 0")
        return values if set(values) == set(COMPONENTS) else None

    rate = poll(rates, timeout=30, interval=0.5, what="a request rate on all four services")
    assert all(value > 0 for value in rate.values()), rate

    failures = prometheus.values(
        'sum(gateway_auth_failures_total{job="passgate", reason="missing_token"})'
    )
    assert failures.get("", 0) >= 1, failures
    logins = prometheus.values(
        'sum(auth_logins_total{job="passgate", result="invalid_credentials"})'
    )
    assert logins.get("", 0) >= 1, logins


def test_alert_rules_are_loaded_and_evaluate_cleanly(prometheus: PrometheusApi) -> None:
    expected = {rule.get("alert") or rule["record"] for rule in rules()}  # SLO records too

    def evaluated() -> list[dict] | None:
        status, answer = prometheus.call("/api/v1/rules")
        assert status == 200, answer
        found = [rule for group in answer["data"]["groups"] for rule in group["rules"]]
        return found if found and all(rule["health"] != "unknown" for rule in found) else None

    loaded = poll(evaluated, timeout=20, what="every alert rule to be evaluated")
    assert {rule["name"] for rule in loaded} == expected
    unhealthy = {rule["name"]: rule.get("lastError") for rule in loaded if rule["health"] != "ok"}
    assert not unhealthy


# Panels the test traffic (register, logins, a refresh and its replay, GETs with and without a
# token, an order placed and cancelled) must have put data on.
PANELS_THE_TRAFFIC_FILLS = (
    "Targets up",
    "Healthy replicas by upstream",
    "JWKS key-set age",
    "Requests per second by route",
    "Latency p50 / p95 / p99",
    "Requests in flight",
    "Upstream latency p95 by upstream",
    "Upstream outcomes",
    "Auth failures by reason",
    "JWKS key-set age and keys",
    "JWKS refresh results",
    "Login outcomes",
    "Refresh reuse detections",
    "Tokens issued by grant type",
    "Registrations",
    "Password-hash duration p95",
    "Orders placed and cancelled",
    "Profiles created and updated",
    "CPU",
    "Resident memory",
)


def test_panels_show_the_traffic(prometheus: PrometheusApi, traffic: Traffic) -> None:
    panels = {panel["title"]: panel for panel in dashboard_panels(load_dashboard())}
    queries = [
        (title, target["expr"])
        for title in PANELS_THE_TRAFFIC_FILLS
        for target in panels[title]["targets"]
    ]

    def empty() -> list[str] | None:
        blank = [
            f"{title}: {expr}"
            for title, expr in queries
            if not prometheus.query(grafana_to_promql(expr))
        ]
        return None if blank else []

    try:
        poll(empty, timeout=20, interval=0.5, what="every panel to show data")
    except AssertionError:
        blank = [
            f"{title}: {expr}"
            for title, expr in queries
            if not prometheus.query(grafana_to_promql(expr))
        ]
        raise AssertionError("panels without data:\n" + "\n".join(blank)) from None


def test_refresh_reuse_alert_fires_on_the_live_stack(
    prometheus: PrometheusApi, obs_stack: Stack
) -> None:
    """The alert rules work on the real series, not only on promtool's: replaying a spent
    refresh token makes PassgateRefreshTokenReuse fire."""
    gw = obs_stack.gateway_url
    username = f"obs-reuse-{uuid.uuid4().hex[:8]}"
    password = "reuse horse battery staple"
    body = {"username": username, "password": password}
    assert http("POST", f"{gw}/auth/register", json_body=body)[0] == 201
    status, _, raw = http("POST", f"{gw}/auth/login", json_body=body)
    assert status == 200, raw[:300]
    spent = json.loads(raw)["refresh_token"]
    assert http("POST", f"{gw}/auth/refresh", json_body={"refresh_token": spent})[0] == 200

    def firing() -> set[str] | None:
        # Replayed until Prometheus has scraped the counter both before and after a reuse.
        assert http("POST", f"{gw}/auth/refresh", json_body={"refresh_token": spent})[0] == 401
        alerts = prometheus.query('ALERTS{alertstate="firing"}')
        names = {alert["metric"]["alertname"] for alert in alerts}
        return names if "PassgateRefreshTokenReuse" in names else None

    names = poll(firing, timeout=20, interval=0.5, what="PassgateRefreshTokenReuse to fire")
    # Every other alert waits a minute or more (`for:`), longer than this stack has lived.
    assert names == {"PassgateRefreshTokenReuse"}
