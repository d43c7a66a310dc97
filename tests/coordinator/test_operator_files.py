"""Operator files: alert rules, dashboard and metrics, checked by the real promtool/Prometheus."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import Counter, Gauge, Histogram, generate_latest, start_http_server

from coordinator.anomalies import ANOMALY_KINDS, AnomalyMonitor
from coordinator.events import EventBus
from coordinator.metrics import CoordinatorMetrics
from coordinator.store import Store
from tests.support.prometheus import promtool_binary, running

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
ALERT_TESTS = ROOT / "deploy" / "prometheus" / "alerts.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "hefl-dashboard.json"

METRIC_NAME = re.compile(r"\bhefl_[a-z0-9_]+\b")
SELECTOR = re.compile(r"\b(hefl_[a-z0-9_]+)\{([^}]*)\}")
MATCHER_LABEL = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
GROUPING = re.compile(r"\b(?:by|on|ignoring|without)\s*\(([^)]*)\)")
# Labels Prometheus adds (job, instance) or that histograms carry (le).
TARGET_LABELS = {"job", "instance", "le"}
# Realistic values for the metrics' label names; anything else gets "x".
LABEL_VALUES = {
    "outcome": "published",
    "phase": "collecting",
    "stream": "upload",
    "code": "DATA_LOSS",
    "method": "UploadUpdate",
    "target": "update",
    "kind": "aggregate_norm",
}


def _exercised_metrics(tmp_path: Path) -> CoordinatorMetrics:
    """A fresh registry where every metric (and every anomaly kind) has a sample."""
    metrics = CoordinatorMetrics.create()
    store = Store(tmp_path / "state")
    AnomalyMonitor(metrics, store, EventBus(store))  # exports every kind at 0
    for name in CoordinatorMetrics.__dataclass_fields__:
        metric = getattr(metrics, name)
        if name == "registry":
            continue
        labels = [LABEL_VALUES.get(label, "x") for label in metric._labelnames]
        child = metric.labels(*labels) if labels else metric
        if isinstance(metric, Counter):
            child.inc(2)
        elif isinstance(metric, Gauge):
            child.set(1.5)
        elif isinstance(metric, Histogram):
            child.observe(0.2)
        else:
            raise AssertionError(f"unexpected metric type for {name}: {type(metric)}")
    return metrics


def _exported(metrics: CoordinatorMetrics) -> dict[str, set[str]]:
    """Sample name -> label names, for every sample the registry exposes."""
    names: dict[str, set[str]] = {}
    for family in metrics.registry.collect():
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return names


def _dashboard_expressions(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            else:
                yield from _dashboard_expressions(value)
    elif isinstance(node, list):
        for item in node:
            yield from _dashboard_expressions(item)


def _check_references(text: str, exported: dict[str, set[str]], where: str) -> set[str]:
    used = set(METRIC_NAME.findall(text))
    unknown = used - set(exported)
    assert not unknown, f"{where} references metrics the coordinator does not export: {unknown}"
    for name, matchers in SELECTOR.findall(text):
        labels = set(MATCHER_LABEL.findall(matchers))
        stray = labels - exported[name] - TARGET_LABELS
        assert not stray, f"{where}: {name} has no label(s) {stray}"
    every_label = set().union(*exported.values()) | TARGET_LABELS
    for grouping in GROUPING.findall(text):
        labels = {label.strip() for label in grouping.split(",") if label.strip()}
        assert labels <= every_label, f"{where}: grouping by unknown labels {labels - every_label}"
    return used


# --- promtool -----------------------------------------------------------------------------------


def test_alert_rules_pass_promtool_check() -> None:
    promtool = promtool_binary()
    result = subprocess.run(
        [promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 9 rules found" in result.stdout


def test_alert_rule_unit_tests_pass() -> None:
    # alerts.test.yml feeds synthetic series and states when each alert must (not) fire.
    promtool = promtool_binary()
    result = subprocess.run(
        [promtool, "test", "rules", str(ALERT_TESTS)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_exercised_metrics_pass_promtool_check_metrics(tmp_path: Path) -> None:
    promtool = promtool_binary()
    exposition = generate_latest(_exercised_metrics(tmp_path).registry)
    result = subprocess.run(
        [promtool, "check", "metrics"], input=exposition, capture_output=True, timeout=60
    )
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr.decode().strip() == ""
    # The monitor exports every kind from the start; only the exercised one moved.
    for kind in ANOMALY_KINDS:
        value = "2.0" if kind == LABEL_VALUES["kind"] else "0.0"
        assert f'hefl_anomalies_total{{kind="{kind}"}} {value}' in exposition.decode()


# --- references ---------------------------------------------------------------------------------


def test_dashboard_is_a_grafana_model_that_uses_only_exported_metrics(tmp_path: Path) -> None:
    exported = _exported(_exercised_metrics(tmp_path))
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "hefl-coordinator"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert all(target["expr"] for target in panel["targets"])
    used = _check_references(DASHBOARD.read_text(), exported, "the dashboard")
    wanted = {
        "hefl_privacy_epsilon_spent",
        "hefl_privacy_epsilon_remaining",
        "hefl_coordinator_rounds_total",
        "hefl_coordinator_round_phase_duration_seconds_sum",
        "hefl_coordinator_round_contributors",
        "hefl_coordinator_round_dropouts",
        "hefl_coordinator_received_bytes_total",
        "hefl_coordinator_sent_bytes_total",
        "hefl_coordinator_aggregation_duration_seconds_bucket",
        "hefl_coordinator_decryption_duration_seconds_bucket",
        "hefl_anomalies_total",
        "hefl_coordinator_active_workers",
        "hefl_coordinator_key_epoch",
    }
    assert wanted <= used, f"the dashboard lacks panels for {wanted - used}"


def test_alert_rules_use_only_exported_metrics(tmp_path: Path) -> None:
    exported = _exported(_exercised_metrics(tmp_path))
    text = ALERTS.read_text()
    _check_references(text, exported, "alerts.yml")
    alerts = set(re.findall(r"-\s*alert:\s*(\w+)", text))
    assert alerts == {
        "HeflPrivacyBudgetNearlySpent",
        "HeflPrivacyBudgetExhausted",
        "HeflAnomalyBurst",
        "HeflAggregateAnomaly",
        "HeflRoundsStalled",
        "HeflQuorumFailures",
        "HeflNothingPublished",
        "HeflHighDropout",
        "HeflCoordinatorDown",
    }
    # Every anomaly kind the rules name is one the monitor records.
    named = set(re.findall(r'kind=~?"([^"]+)"', text))
    kinds = {kind for pattern in named for kind in pattern.split("|")}
    assert kinds <= set(ANOMALY_KINDS)


def test_reference_check_catches_an_invented_metric(tmp_path: Path) -> None:
    exported = _exported(_exercised_metrics(tmp_path))
    with pytest.raises(AssertionError, match="hefl_coordinator_made_up_total"):
        _check_references("rate(hefl_coordinator_made_up_total[5m])", exported, "x")
    with pytest.raises(AssertionError, match="no label"):
        _check_references('hefl_coordinator_rounds_total{phase="x"}', exported, "x")


# --- a real Prometheus --------------------------------------------------------------------------


def test_real_prometheus_scrapes_the_metrics_loads_the_rules_and_runs_the_dashboard(
    tmp_path: Path,
) -> None:
    metrics = CoordinatorMetrics.create()
    metrics.epsilon_spent.set(1.25)
    metrics.rounds.labels("published").inc(3)
    metrics.rounds.labels("below_quorum").inc()
    metrics.key_epoch.set(2)
    httpd, thread = start_http_server(0, addr="127.0.0.1", registry=metrics.registry)
    try:
        target = f"127.0.0.1:{httpd.server_port}"
        with running(tmp_path / "prometheus", [target], rule_files=[ALERTS]) as prometheus:
            # The first scrape lands about 6 s after launch: poll, never sleep.
            spent = prometheus.wait_for('hefl_privacy_epsilon_spent{job="hefl"}')
            assert float(spent[0]["value"][1]) == 1.25
            assert spent[0]["metric"]["instance"] == target
            rounds = prometheus.query("hefl_coordinator_rounds_total")
            by_outcome = {r["metric"]["outcome"]: float(r["value"][1]) for r in rounds}
            assert by_outcome["published"] == 3.0
            assert by_outcome["below_quorum"] == 1.0
            assert by_outcome["committee_failed"] == 0.0
            assert float(prometheus.query("hefl_coordinator_key_epoch")[0]["value"][1]) == 2.0

            groups = prometheus.get("/api/v1/rules")["data"]["groups"]
            rules = [rule for group in groups for rule in group["rules"]]
            assert {group["name"] for group in groups} == {
                "hefl-privacy",
                "hefl-anomalies",
                "hefl-rounds",
            }
            assert len(rules) == 9
            assert all(rule["health"] in ("ok", "unknown") for rule in rules), rules

            # Every dashboard query parses and evaluates on the real server.
            dashboard = json.loads(DASHBOARD.read_text())
            for expr in _dashboard_expressions(dashboard):
                answer = prometheus.get("/api/v1/query", query=expr.replace("$instance", ".*"))
                assert answer["status"] == "success", (expr, answer)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
