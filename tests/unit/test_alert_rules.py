"""The alerting rules a platform team loads (`deploy/prometheus/rules.yaml`): Prometheus' own
`promtool` accepts them and their unit tests pass, every alert is tested both firing and quiet,
and neither the rules nor the Grafana dashboard query a metric nothing exports."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest
import yaml

from tests.support.monitoring import (
    PROMETHEUS_OWN,
    RABBITMQ_PER_OBJECT,
    RULE_TESTS,
    RULES,
    alert_rules,
    dashboard_queries,
    exported_metric_names,
    metric_names,
)

RULE_TEST_FILES = sorted(RULE_TESTS.glob("*.yaml"))


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, "promtool is missing: `make provision` installs Debian's prometheus package"
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120, check=False)


def test_promtool_accepts_the_rules() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rules_unit_tests_pass() -> None:
    assert RULE_TEST_FILES, "no promtool tests"
    result = promtool("test", "rules", *map(str, RULE_TEST_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


def _cases() -> list[dict[str, Any]]:
    return [
        case
        for path in RULE_TEST_FILES
        for test in yaml.safe_load(path.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    ]


@pytest.mark.parametrize("alert", [rule["alert"] for rule in alert_rules()])
def test_every_alert_is_tested_firing_and_quiet(alert: str) -> None:
    cases = [case for case in _cases() if case["alertname"] == alert]
    assert any(case.get("exp_alerts") for case in cases), f"{alert} is never expected to fire"
    assert any(not case.get("exp_alerts") for case in cases), f"{alert} is never expected quiet"


@pytest.mark.parametrize("alert", [rule["alert"] for rule in alert_rules()])
def test_every_alert_says_what_to_look_at(alert: str) -> None:
    [rule] = [rule for rule in alert_rules() if rule["alert"] == alert]
    assert rule["labels"]["severity"] in {"warning", "critical"}
    assert rule["annotations"]["summary"]
    assert rule["annotations"]["description"]
    assert rule.get("for"), "an alert without `for` pages on a single scrape"


def known_names() -> set[str]:
    return exported_metric_names() | RABBITMQ_PER_OBJECT | PROMETHEUS_OWN


@pytest.mark.parametrize(
    ("where", "expr"),
    [(rule["alert"], rule["expr"]) for rule in alert_rules()] + list(dashboard_queries()),
)
def test_rules_and_dashboard_query_only_metrics_that_exist(where: str, expr: str) -> None:
    names = metric_names(expr)
    assert names, f"{where}: no metric found in {expr!r}"
    assert names <= known_names(), f"{where}: {sorted(names - known_names())} exported by nothing"


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            'sum(rate(worker_tasks_processed_total{job="worker"}[1m]))',
            {"worker_tasks_processed_total"},
        ),
        ("histogram_quantile(0.95, sum by (le, stage) (rate(x_bucket[1m])))", {"x_bucket"}),
        ('a > 0 and on (vhost, queue) b == 0 or up{job="w"} offset 5m', {"a", "b", "up"}),
        ('label_replace(q{queue=~"images\\\\.b\\\\..+"}, "batch", "$1", "queue", "x")', {"q"}),
        ('increase({__name__=~"m_total|n_total", batch!=""}[15m])', {"m_total", "n_total"}),
        ('absent(up{job="operator"} == 1)', {"up"}),
    ],
)
def test_the_metric_name_reader_reads_what_the_queries_use(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names
