"""The alert rules and scrape configs in deploy/prometheus, checked by promtool and read as data."""

from __future__ import annotations

import re

import yaml

from tests.support.observability import (
    ALERTS,
    ALERTS_TEST,
    COMPONENTS,
    DEPLOY,
    GUIDE,
    KUBERNETES_CONFIG,
    LOCAL_CONFIG,
    alert_rules,
    load_yaml,
    run,
)

KUSTOMIZATION = DEPLOY / "k8s" / "base" / "kustomization.yaml"

ALERTS_THE_BRIEF_ASKS_FOR = {
    "PassgateHigh5xxRatio",
    "PassgateHighLatencyP99",
    "PassgateJwksStale",
    "PassgateRefreshTokenReuse",
    "PassgateUpstreamNoHealthyReplica",
    "PassgateTargetDown",
}


def test_promtool_check_rules(promtool: str) -> None:
    result = run([promtool, "check", "rules", str(ALERTS)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_test_rules(promtool: str) -> None:
    result = run([promtool, "test", "rules", ALERTS_TEST.name], cwd=ALERTS_TEST.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in load_yaml(ALERTS_TEST)["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names >= ALERTS_THE_BRIEF_ASKS_FOR
    assert names - firing == set(), "alerts never tested firing"
    assert names - quiet == set(), "alerts never tested staying quiet"


def test_every_alert_has_severity_annotations_and_a_runbook_section() -> None:
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", heading.lower()).replace(" ", "-")
        for heading in re.findall(r"^#+ (.+)$", GUIDE.read_text(), flags=re.MULTILINE)
    }
    for rule in alert_rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), name
        runbook = rule["annotations"]["runbook"]
        assert runbook == f"deploy/OBSERVABILITY.md#{name.lower()}", name
        assert name.lower() in anchors, f"{name}: no '## {name}' section in {GUIDE.name}"


def test_local_scrape_config_is_valid_and_covers_the_make_run_ports(promtool: str) -> None:
    result = run([promtool, "check", "config", LOCAL_CONFIG.name], cwd=LOCAL_CONFIG.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    (job,) = load_yaml(LOCAL_CONFIG)["scrape_configs"]
    targets = {group["labels"]["service"]: group["targets"] for group in job["static_configs"]}
    assert targets == {
        "gateway": ["127.0.0.1:9080"],  # the admin port: /metrics is not on the public port
        "auth": ["127.0.0.1:8081"],
        "users": ["127.0.0.1:8082"],
        "orders": ["127.0.0.1:8083"],
    }
    assert set(targets) == set(COMPONENTS)


def test_kubernetes_scrape_config_is_valid(promtool: str, tmp_path) -> None:
    """Debian's Prometheus is built without Kubernetes discovery, so promtool checks the job
    with its discovery swapped for a static target; the relabelling itself is exercised
    against real processes in test_prometheus_scrape.py."""
    config = load_yaml(KUBERNETES_CONFIG)
    (job,) = config["scrape_configs"]
    (discovery,) = job["kubernetes_sd_configs"]
    kustomization = load_yaml(KUSTOMIZATION)
    assert discovery["role"] == "pod"
    assert discovery["namespaces"]["names"] == [kustomization["namespace"]]
    job.pop("kubernetes_sd_configs")
    job["static_configs"] = [{"targets": ["10.0.0.1:8080"]}]
    config["rule_files"] = [str(ALERTS)]
    path = tmp_path / "kubernetes-static.yaml"
    path.write_text(yaml.safe_dump(config))
    result = run([promtool, "check", "config", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr
