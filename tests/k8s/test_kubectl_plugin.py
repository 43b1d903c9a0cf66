"""`kubectl imagebatch` as a person runs it: the real kubectl finds the installed
`kubectl-imagebatch` on the PATH and runs it against the suite's API server. The batches' status
is written the way the operator writes it (a patch of the status subresource); the commands
against a real operator and api are in tests/e2e/test_operator_retry.py."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.k8s import KubeCluster
from tests.support.kubectl_plugin import kubectl_imagebatch, plugin_env

pytestmark = pytest.mark.k8s


def create_batch(cluster: KubeCluster, namespace: str, name: str, status: dict[str, Any]) -> None:
    manifest = {
        "apiVersion": "imagejobs.io/v1alpha1",
        "kind": "ImageBatch",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"source": {"urls": ["https://a.test/x.jpg"]}},
    }
    path = Path(cluster.kubeconfig).with_name(f"{namespace}-{name}.json")
    path.write_text(json.dumps(manifest))
    cluster.kubectl("create", "-f", str(path))
    set_status(cluster, namespace, name, status)


def set_status(cluster: KubeCluster, namespace: str, name: str, status: dict[str, Any]) -> None:
    cluster.kubectl(
        "patch", "ib", name, "-n", namespace, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status}),
    )  # fmt: skip


def with_context_namespace(cluster: KubeCluster, namespace: str, path: Path) -> Path:
    """The cluster's kubeconfig with `namespace` as its current context's namespace."""
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    current = config["current-context"]
    for context in config["contexts"]:
        if context["name"] == current:
            context["context"]["namespace"] = namespace
    path.write_text(yaml.safe_dump(config))
    return path


DONE = {"phase": "Succeeded", "total": 6, "published": 6, "succeeded": 6, "failed": 0}


def test_watch_exits_0_when_the_batch_succeeded(kube_cluster: KubeCluster, namespace: str) -> None:
    create_batch(kube_cluster, namespace, "done", DONE)

    result = kubectl_imagebatch(kube_cluster, "watch", "done", "-n", namespace)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(
        "[##############################] 6/6 (6 ok, 0 failed, 0 queued, 0 workers)  Succeeded"
    )


def test_watch_follows_a_running_batch_and_exits_1_when_it_fails(
    kube_cluster: KubeCluster, namespace: str
) -> None:
    running = {"phase": "Running", "total": 10, "published": 10, "succeeded": 2, "failed": 1}
    create_batch(kube_cluster, namespace, "doomed", running)
    env = plugin_env(kube_cluster)
    with subprocess.Popen(
        [kube_cluster.kubectl_binary, "imagebatch", "-n", namespace, "watch", "doomed"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as watching:
        assert watching.stdout is not None
        first = watching.stdout.readline()
        set_status(kube_cluster, namespace, "doomed", {**running, "phase": "Failed", "failed": 8})
        rest, errors = watching.communicate(timeout=60)

    assert "3/10 (2 ok, 1 failed" in first
    assert first.rstrip().endswith("Running")
    assert watching.returncode == 1, errors
    last = rest.rstrip().splitlines()[-1]
    assert re.fullmatch(
        r"\[#{30}\] 10/10 \(2 ok, 8 failed, 0 queued, 0 workers\)( \S+ images/s)?  Failed", last
    )


def test_retry_sets_the_annotation_in_the_context_s_namespace(
    kube_cluster: KubeCluster, namespace: str, tmp_path: Path
) -> None:
    create_batch(kube_cluster, namespace, "photos", {**DONE, "succeeded": 5, "failed": 1})
    kubeconfig = with_context_namespace(kube_cluster, namespace, tmp_path / "kubeconfig")

    result = kubectl_imagebatch(kube_cluster, "retry", "photos", kubeconfig=kubeconfig)

    assert result.returncode == 0, result.stderr
    seen = json.loads(
        kube_cluster.kubectl("get", "ib", "photos", "-n", namespace, "-o", "json").stdout
    )
    value = seen["metadata"]["annotations"]["imagejobs.io/retry-failed"]
    assert f"imagejobs.io/retry-failed={value}" in result.stdout
    assert "(1 failed now)" in result.stdout


def test_failures_prints_the_reasons_with_their_counts(
    kube_cluster: KubeCluster, namespace: str
) -> None:
    reasons = [{"reason": "http_404", "count": 30}, {"reason": "decode_error", "count": 2}]
    create_batch(
        kube_cluster,
        namespace,
        "photos",
        {**DONE, "total": 300, "succeeded": 268, "failed": 32, "failureReasons": reasons},
    )

    result = kubectl_imagebatch(kube_cluster, "failures", "photos", "-n", namespace)

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "imagebatch photos: 32 failed of 300 (Succeeded)",
        "REASON         COUNT",
        "http_404       30",
        "decode_error   2",
    ]


def test_manifest_names_where_it_is_and_a_missing_batch_is_an_error(
    kube_cluster: KubeCluster, namespace: str
) -> None:
    where = "s3://bucket/thumbnails/photos/manifest.jsonl"
    create_batch(kube_cluster, namespace, "photos", {**DONE, "manifest": where})
    create_batch(kube_cluster, namespace, "running", {"phase": "Running", "total": 6})

    found = kubectl_imagebatch(kube_cluster, "manifest", "photos", "-n", namespace)
    not_yet = kubectl_imagebatch(kube_cluster, "manifest", "running", "-n", namespace)
    missing = kubectl_imagebatch(kube_cluster, "watch", "nope", "-n", namespace)

    assert (found.returncode, found.stdout) == (0, where + "\n")
    assert not_yet.returncode == 1
    assert "no manifest yet" in not_yet.stderr
    assert missing.returncode == 2
    assert (
        missing.stderr.strip() == f'error: imagebatch "nope" not found in namespace "{namespace}"'
    )
