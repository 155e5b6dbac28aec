"""Helpers of the observability tests: deploy/ artifacts, plain HTTP, PromQL names, Prometheus."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.servers import REQUIRE_SERVICES

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yaml"
ALERTS_TEST = DEPLOY / "prometheus" / "alerts.test.yaml"
LOCAL_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
KUBERNETES_CONFIG = DEPLOY / "prometheus" / "kubernetes-scrape.yaml"
DASHBOARD = DEPLOY / "grafana" / "passgate.json"
GUIDE = DEPLOY / "OBSERVABILITY.md"

COMPONENTS = ("gateway", "auth", "users", "orders")

# Series Prometheus itself adds to every scrape; no process exposes them.
SCRAPE_SERIES = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})

# What Grafana substitutes before a query reaches Prometheus, with values that parse.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$__range": "1h",
    "${service:regex}": ".*",
    "${service}": ".*",
    "$service": ".*",
}


@dataclasses.dataclass
class Traffic:
    """What the traffic left behind, for the tests that look for it."""

    username: str
    user_id: str
    access_token: str
    refresh_token: str
    refresh_tokens: list[str]
    secrets: list[str]


def require_binary(name: str) -> str:
    """The path of a Prometheus binary; skip without it (fail where CI requires it)."""
    path = shutil.which(name)
    if path is not None:
        return path
    message = f"{name} is not installed (Debian: apt-get install prometheus)"
    if REQUIRE_SERVICES:
        pytest.fail(message + "; required because PASSGATE_REQUIRE_SERVICES=1")
    pytest.skip(message)


def run(
    args: list[str], *, cwd: Path | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, input=stdin, capture_output=True, text=True, timeout=60, check=False
    )


# -- artifacts ---------------------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def rules() -> list[dict[str, Any]]:
    """Every rule of alerts.yaml: the alerts and the recording rules they build on."""
    return [rule for group in load_yaml(ALERTS)["groups"] for rule in group["rules"]]


def alert_rules() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


def dashboard_panels(dashboard: dict[str, Any]) -> Iterable[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # panels inside a collapsed row


def dashboard_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target of the dashboard."""
    return [
        (f"panel {panel['title']!r} target {target['refId']}", target["expr"])
        for panel in dashboard_panels(dashboard)
        for target in panel.get("targets", [])
    ]


def all_queries() -> list[tuple[str, str]]:
    """Every PromQL expression the deploy/ artifacts hold: dashboard panels, then alert rules."""
    return dashboard_queries(load_dashboard()) + [
        (f"alert {rule['alert']}" if "alert" in rule else f"rule {rule['record']}", rule["expr"])
        for rule in rules()
    ]


def grafana_to_promql(expr: str) -> str:
    """The query as Prometheus receives it once Grafana has replaced its variables."""
    for variable, value in sorted(GRAFANA_VARIABLES.items(), key=lambda item: -len(item[0])):
        expr = expr.replace(variable, value)
    return expr


# -- PromQL metric names -------------------------------------------------------------------

_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_SELECTOR = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_LABEL_VALUES = re.compile(r"label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)")
_KEYWORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "offset",
        "inf",
        "nan",
    }
)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: identifiers that are not functions,
    keywords, label names (inside {} or a by/on list), durations or numbers."""
    text = _STRING.sub('""', grafana_to_promql(expr))
    text = _SELECTOR.sub("", text)
    text = _RANGE.sub("", text)
    text = _GROUPING.sub("", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        before = text[match.start() - 1] if match.start() else " "
        if before.isdigit() or before == ".":  # the exponent of 1e3, the tail of 0x1f
            continue
        if text[match.end() :].lstrip().startswith("("):  # a function call
            continue
        if match.group().lower() in _KEYWORDS:
            continue
        names.add(match.group())
    return names


def variable_query_metrics(dashboard: dict[str, Any]) -> set[str]:
    """Metric names the dashboard's query variables (label_values(metric, label)) read."""
    names = set()
    for variable in dashboard["templating"]["list"]:
        if variable.get("type") == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            names.update(_LABEL_VALUES.findall(text))
    return names


# -- expositions ---------------------------------------------------------------------------


def exposed_names(exposition: str) -> set[str]:
    """Every sample name an exposition declares, derived from each family's TYPE, so a
    labelled counter that has not been incremented yet still counts as exported."""
    names = set()
    for family in text_string_to_metric_families(exposition):
        names.update(sample.name for sample in family.samples)
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names.update(family.name + suffix for suffix in ("_bucket", "_sum", "_count"))
        elif family.type == "summary":
            names.update((family.name, family.name + "_sum", family.name + "_count"))
        else:
            names.add(family.name)
    return names


# -- plain HTTP ------------------------------------------------------------------------------


def http(
    method: str,
    url: str,
    *,
    json_body: Any = None,
    headers: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[int, dict[str, str], bytes]:
    """One request; any status comes back as (status, headers, body), never as an exception."""
    data = None
    headers = dict(headers or {})
    if json_body is not None:
        data = json.dumps(json_body).encode()
        headers.setdefault("Content-Type", "application/json")
    elif form is not None:
        data = urllib.parse.urlencode(form).encode()
        headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers), error.read()


# -- Prometheus ------------------------------------------------------------------------------


class PrometheusApi:
    """The HTTP query API of one Prometheus server."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def call(self, path: str, params: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        if params is None:
            status, _, body = http("GET", self.base_url + path)
        else:
            status, _, body = http("POST", self.base_url + path, form=params)
        return status, json.loads(body)

    def query(self, expr: str) -> list[dict[str, Any]]:
        status, answer = self.call("/api/v1/query", {"query": expr})
        assert status == 200 and answer["status"] == "success", f"{expr}: {answer}"
        return list(answer["data"]["result"])

    def values(self, expr: str) -> dict[str, float]:
        """An instant vector as {value of its `service` label (or ''): sample value}."""
        return {
            item["metric"].get("service", ""): float(item["value"][1]) for item in self.query(expr)
        }
