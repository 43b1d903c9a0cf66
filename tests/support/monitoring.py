"""What the monitoring files refer to, for the tests that keep them honest: the PromQL of the
alerting rules and the Grafana dashboard, and the metric names the services really export."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry

from imagebatch.api.metrics import ApiMetrics
from imagebatch.operator.metrics import OperatorMetrics
from imagebatch.worker.metrics import WorkerMetrics

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy/prometheus/rules.yaml"
RULE_TESTS = REPO / "deploy/prometheus/tests"
DASHBOARD = REPO / "deploy/grafana/dashboards/imagebatch.json"

RABBITMQ_PER_OBJECT = frozenset(
    [
        "rabbitmq_queue_consumer_capacity",
        "rabbitmq_queue_consumer_utilisation",
        "rabbitmq_queue_consumers",
        "rabbitmq_queue_disk_reads_total",
        "rabbitmq_queue_disk_writes_total",
        "rabbitmq_queue_head_message_timestamp",
        "rabbitmq_queue_messages",
        "rabbitmq_queue_messages_bytes",
        "rabbitmq_queue_messages_paged_out",
        "rabbitmq_queue_messages_paged_out_bytes",
        "rabbitmq_queue_messages_persistent",
        "rabbitmq_queue_messages_persistent_bytes",
        "rabbitmq_queue_messages_ram",
        "rabbitmq_queue_messages_ram_bytes",
        "rabbitmq_queue_messages_ready",
        "rabbitmq_queue_messages_ready_bytes",
        "rabbitmq_queue_messages_ready_ram",
        "rabbitmq_queue_messages_unacked",
        "rabbitmq_queue_messages_unacked_bytes",
        "rabbitmq_queue_messages_unacked_ram",
        "rabbitmq_queue_process_memory_bytes",
        "rabbitmq_queue_process_reductions_total",
    ]
)
"""The queue-labelled series of RabbitMQ 3.10.8's rabbitmq_prometheus plugin at
`/metrics/per-object` (Debian's package, read off a node the test ground started)."""

PROMETHEUS_OWN = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})
"""Series Prometheus itself writes for every target."""

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("_sum", "_count", "_created"),
}
_KEYWORDS = frozenset(
    [
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "inf",
        "nan",
    ]
)


def _series_names(registry: CollectorRegistry) -> set[str]:
    """Every sample name a scrape can show, also of labelled families with no child yet."""
    return {
        family.name + suffix
        for family in registry.collect()
        for suffix in _SUFFIXES.get(family.type, ("",))
    }


def exported_metric_names() -> set[str]:
    """What the operator, the workers and the api expose on /metrics."""
    names: set[str] = set()
    for registry in (
        OperatorMetrics().registry,
        WorkerMetrics().registry,
        ApiMetrics().registry,
    ):
        names |= _series_names(registry)
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (a rough parser, enough for our queries)."""
    names: set[str] = set()
    for alternatives in re.findall(r'__name__\s*=~?\s*"([^"]*)"', expr):
        names |= set(alternatives.split("|"))
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", text):
        name, call = match.groups()
        if call is None and name not in _KEYWORDS:
            names.add(name)
    return names


def rule_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = yaml.safe_load(RULES.read_text())["groups"]
    return groups


def alert_rules() -> Iterator[dict[str, Any]]:
    for group in rule_groups():
        yield from (rule for rule in group["rules"] if "alert" in rule)


def dashboard_queries() -> Iterator[tuple[str, str]]:
    """(panel title, PromQL) of every panel target of the shipped dashboard."""
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            if "expr" in target:
                yield panel.get("title", "?"), target["expr"]


def prometheus_operator_crds() -> list[Path]:
    """prometheus-operator's own CRDs as `hack/prometheus-operator/crds.sh` cached them (from its
    Go module): from `PROMETHEUS_OPERATOR_DIR`, which `make test` sets, else the default cache."""
    folder = os.environ.get("PROMETHEUS_OPERATOR_DIR")
    if not folder:
        versions = (REPO / "hack/envtest/versions.env").read_text()
        [version] = re.findall(r"^PROMETHEUS_OPERATOR_VERSION=(\S+)$", versions, re.MULTILINE)
        cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        folder = str(cache / "imagebatch" / "prometheus-operator" / version)
    crds = sorted(Path(folder, "crds").glob("monitoring.coreos.com_*.yaml"))
    if not crds:
        raise FileNotFoundError(
            f"no prometheus-operator CRDs in {folder}/crds: run `make monitoring-crds`"
        )
    return crds
