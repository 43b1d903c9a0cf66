"""manifests/monitoring/ as a cluster with prometheus-operator takes it: prometheus-operator's own
CRDs (from its Go module, not hand-written copies) installed in the test API server, then
`kubectl apply --dry-run=server -k manifests/monitoring/` passes their schemas and admission —
and a field their schemas do not know is refused, so the check is real."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.k8s import KubeCluster
from tests.support.monitoring import prometheus_operator_crds

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "manifests/monitoring"
NAMESPACE = "imagebatch"
USED = ("podmonitors", "prometheusrules", "servicemonitors")


@pytest.fixture(scope="module")
def monitoring_crds(kube_cluster: KubeCluster) -> Iterator[list[str]]:
    """The CRDs manifests/monitoring/ needs, installed for this module and removed afterwards
    unless they were there before."""
    crds = [p for p in prometheus_operator_crds() if p.stem.split("_", 1)[1] in USED]
    assert len(crds) == len(USED), [p.name for p in crds]
    names = [f"{plural}.monitoring.coreos.com" for plural in USED]
    existed = kube_cluster.kubectl("get", "crd", *names, check=False).returncode == 0
    kube_cluster.kubectl("apply", "--server-side", *(f"--filename={p}" for p in crds))
    kube_cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", *(f"crd/{n}" for n in names)
    )
    yield names
    if not existed:
        kube_cluster.kubectl("delete", "crd", *names, "--wait=false")


@pytest.fixture(scope="module")
def namespace(kube_cluster: KubeCluster) -> Iterator[str]:
    """The manifests' namespace, as tests/k8s/test_manifests.py makes it; that module may have
    just deleted it, and nothing can be created in a namespace that is terminating."""
    phase = kube_cluster.kubectl(
        "get", "namespace", NAMESPACE, "-o", "jsonpath={.status.phase}", check=False
    ).stdout
    if phase == "Terminating":
        kube_cluster.kubectl("wait", "--for=delete", "--timeout=120s", f"namespace/{NAMESPACE}")
        phase = ""
    existed = phase != ""
    kube_cluster.kubectl("apply", "-f", str(REPO / "manifests/base/namespace.yaml"))
    yield NAMESPACE
    if not existed:
        kube_cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false")


def test_the_monitoring_objects_pass_server_side_validation(
    kube_cluster: KubeCluster, monitoring_crds: list[str], namespace: str
) -> None:
    rendered = [
        doc
        for doc in yaml.safe_load_all(kube_cluster.kubectl("kustomize", str(MONITORING)).stdout)
        if doc
    ]
    result = kube_cluster.kubectl("apply", "--dry-run=server", "-k", str(MONITORING), check=False)

    assert result.returncode == 0, result.stderr
    accepted = [line for line in result.stdout.splitlines() if line.endswith("(server dry run)")]
    assert len(accepted) == len(rendered) == 7
    assert {doc["kind"] for doc in rendered} == {"PodMonitor", "PrometheusRule", "ConfigMap"}


def test_a_field_prometheus_operator_does_not_know_is_refused(
    kube_cluster: KubeCluster, monitoring_crds: list[str], namespace: str, tmp_path: Path
) -> None:
    copy = tmp_path / "monitoring"
    shutil.copytree(MONITORING, copy)
    monitors = list(yaml.safe_load_all((copy / "podmonitors.yaml").read_text()))
    monitors[0]["spec"]["podMetricsEndpoints"][0]["scrapeEvery"] = "30s"
    (copy / "podmonitors.yaml").write_text(yaml.safe_dump_all(monitors))

    result = kube_cluster.kubectl("apply", "--dry-run=server", "-k", str(copy), check=False)

    assert result.returncode != 0
    assert "scrapeEvery" in result.stderr
