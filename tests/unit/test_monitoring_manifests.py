"""The prometheus-operator objects (manifests/monitoring/) say what deploy/ says and select what
the workloads really are: the PrometheusRule is exactly deploy/prometheus/rules.yaml, the
dashboard ConfigMap exactly the dashboard JSON, labelled for Grafana's sidecar, and each
PodMonitor's selector and port match the pods the manifests and the operator make. Server-side
validation against prometheus-operator's own CRDs: tests/k8s/test_monitoring_manifests.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from imagebatch.core.imagebatch import run_spec
from imagebatch.operator.children import deployment
from imagebatch.operator.settings import OperatorSettings
from tests.support.monitoring import DASHBOARD, RULES

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "manifests/monitoring"


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def pod_monitors() -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in documents(MONITORING / "podmonitors.yaml")}


def test_the_prometheus_rule_carries_exactly_the_alerting_rules() -> None:
    [rule] = documents(MONITORING / "prometheusrule.yaml")
    assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]


def test_the_dashboard_config_map_is_the_dashboard_labelled_for_grafana_s_sidecar() -> None:
    [config_map] = documents(MONITORING / "grafana-dashboard.yaml")
    assert config_map["kind"] == "ConfigMap"
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["data"] == {DASHBOARD.name: DASHBOARD.read_text()}


def test_the_generated_files_are_what_the_script_writes_now() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "hack/render_monitoring.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_the_kustomization_lists_every_file() -> None:
    kustomization = yaml.safe_load((MONITORING / "kustomization.yaml").read_text())
    files = {p.name for p in MONITORING.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files


def relabelled(endpoint: dict[str, Any]) -> dict[str, str]:
    """target label → the fixed value or `<source label>` each relabeling gives it."""
    return {
        r["targetLabel"]: r.get("replacement", "<" + ",".join(r.get("sourceLabels", [])) + ">")
        for r in endpoint.get("relabelings", [])
    }


@pytest.mark.parametrize(
    ("monitor", "job"),
    [
        ("imagebatch-operator", "operator"),
        ("imagebatch-api", "api"),
        ("imagebatch-batch-workers", "worker"),
        ("imagebatch-worker", "worker"),
        ("imagebatch-rabbitmq", "rabbitmq"),
    ],
)
def test_every_target_gets_the_job_label_the_rules_use(monitor: str, job: str) -> None:
    [endpoint] = pod_monitors()[monitor]["spec"]["podMetricsEndpoints"]
    assert relabelled(endpoint)["job"] == job


def workloads() -> dict[str, dict[str, Any]]:
    rendered: list[dict[str, Any]] = []
    for name in ("operator.yaml", "api.yaml", "worker.yaml", "rabbitmq.yaml"):
        rendered += documents(REPO / "manifests" / "base" / name)
    return {
        doc["metadata"]["name"]: doc
        for doc in rendered
        if doc["kind"] in {"Deployment", "StatefulSet"}
    }


def the_operator_s_batch_workers() -> dict[str, Any]:
    spec = run_spec("photos", "holiday", {"source": {"urls": ["https://example.com/a.jpg"]}})
    return deployment(spec, "uid-1", OperatorSettings(), replicas=1)


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "Exists", "only Exists is read here"
        if expression["key"] not in labels:
            return False
    return True


@pytest.mark.parametrize(
    ("monitor", "workload"),
    [
        ("imagebatch-operator", "operator"),
        ("imagebatch-api", "api"),
        ("imagebatch-worker", "worker"),
        ("imagebatch-rabbitmq", "rabbitmq"),
        ("imagebatch-batch-workers", "a batch's workers"),
    ],
)
def test_each_pod_monitor_selects_its_pods_and_a_port_they_name(
    monitor: str, workload: str
) -> None:
    pods = workloads() | {"a batch's workers": the_operator_s_batch_workers()}
    template = pods[workload]["spec"]["template"]
    spec = pod_monitors()[monitor]["spec"]
    assert selects(spec["selector"], template["metadata"]["labels"])
    others = [name for name, obj in pods.items() if name != workload]
    for other in others:
        labels = pods[other]["spec"]["template"]["metadata"]["labels"]
        assert not selects(spec["selector"], labels), f"{monitor} also selects {other}"
    ports = {p["name"] for c in template["spec"]["containers"] for p in c.get("ports", [])}
    [endpoint] = spec["podMetricsEndpoints"]
    assert endpoint["port"] in ports


def test_batch_workers_are_found_in_every_namespace_and_labelled_with_their_batch() -> None:
    spec = pod_monitors()["imagebatch-batch-workers"]["spec"]
    assert spec["namespaceSelector"] == {"any": True}
    [endpoint] = spec["podMetricsEndpoints"]
    assert relabelled(endpoint)["batch"] == "<__meta_kubernetes_pod_label_imagejobs_io_batch>"
    labels = the_operator_s_batch_workers()["spec"]["template"]["metadata"]["labels"]
    assert labels["imagejobs.io/batch"] == "holiday"


def test_rabbitmq_is_scraped_per_queue() -> None:
    [endpoint] = pod_monitors()["imagebatch-rabbitmq"]["spec"]["podMetricsEndpoints"]
    assert endpoint["path"] == "/metrics/per-object"
    container = workloads()["rabbitmq"]["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "prometheus", "containerPort": 15692} in container["ports"]
