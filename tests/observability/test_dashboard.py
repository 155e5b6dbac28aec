"""The Grafana dashboard as data: importable anywhere (datasource chosen on import), laid
out without overlaps, every query readable by the checks that run it against Prometheus."""

from __future__ import annotations

import re

from tests.support.observability import (
    GRAFANA_VARIABLES,
    GUIDE,
    dashboard_panels,
    dashboard_queries,
    load_dashboard,
    metric_names,
    variable_query_metrics,
)

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
GRAFANA_BUILTINS = {"__rate_interval", "__interval", "__range"}


def test_datasource_is_a_template_variable() -> None:
    dashboard = load_dashboard()
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in dashboard_panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"] == DATASOURCE, variable["name"]


def test_every_variable_a_query_uses_is_defined() -> None:
    dashboard = load_dashboard()
    defined = {variable["name"] for variable in dashboard["templating"]["list"]} | GRAFANA_BUILTINS
    for where, expr in dashboard_queries(dashboard):
        used = set(re.findall(r"\$\{?(\w+)", expr))
        assert used <= defined, f"{where}: undefined {used - defined}"
        # And the test substitutes every one of them before sending the query to Prometheus.
        assert all(f"${name}" in GRAFANA_VARIABLES for name in used), where


def test_panel_ids_are_unique_and_panels_do_not_overlap() -> None:
    panels = list(dashboard_panels(load_dashboard()))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    taken: dict[tuple[int, int], str] = {}
    for panel in panels:
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in taken, f"{panel['title']!r} overlaps {taken[(x, y)]!r}"
                taken[(x, y)] = panel["title"]


def test_every_panel_has_a_query_and_a_description() -> None:
    for panel in dashboard_panels(load_dashboard()):
        if panel["type"] == "row":
            continue
        assert panel["targets"] and all(target["expr"].strip() for target in panel["targets"])
        assert panel["description"], panel["title"]
        assert metric_names(panel["targets"][0]["expr"]), panel["title"]


def test_the_guide_explains_every_panel_and_every_metric_the_dashboard_reads() -> None:
    dashboard = load_dashboard()
    guide = GUIDE.read_text()
    for panel in dashboard_panels(dashboard):
        if panel["type"] != "row":
            assert panel["title"] in guide, f"panel {panel['title']!r} is not in {GUIDE.name}"
    names = variable_query_metrics(dashboard)
    for _, expr in dashboard_queries(dashboard):
        names |= metric_names(expr)
    for name in sorted(names):
        family = re.sub(r"_(bucket|sum|count|total)$", "", name)
        assert family in guide, f"{name} is not explained in {GUIDE.name}"


def test_metric_names_are_read_from_promql() -> None:
    """The name extraction the live check relies on, on the shapes the dashboard uses."""
    expr = (
        "histogram_quantile(0.99, sum by (service, le) (rate("
        'http_server_request_duration_seconds_bucket{service=~"$service", route!~"/metrics"}'
        "[$__rate_interval]))) > 1e3 and on (service) "
        'sum without (instance) (up{job="x"} offset 5m) / ignoring(le) group_left foo:bar'
    )
    assert metric_names(expr) == {"http_server_request_duration_seconds_bucket", "up", "foo:bar"}
