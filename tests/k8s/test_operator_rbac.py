"""The operator runs on exactly the RBAC of manifests/base/operator.yaml: started with a token of a
ServiceAccount bound to that ClusterRole (and nothing else), it runs a batch through publishing,
children, Events, suspension, its TTL deletion and the finalizer."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml

from imagebatch.core.settings import CommonSettings
from tests.support.k8s import REPO, KubeCluster
from tests.support.operator import Batches, OperatorFactory, eventually


def operator_role() -> dict[str, Any]:
    docs = yaml.safe_load_all((REPO / "manifests" / "base" / "operator.yaml").read_text())
    (role,) = [doc for doc in docs if doc and doc["kind"] == "ClusterRole"]
    return dict(role)


@pytest.fixture
def operator_kubeconfig(
    kube_cluster: KubeCluster, namespace: str, tmp_path: Path
) -> Iterator[Path]:
    """A kubeconfig with the token of a ServiceAccount that has the operator's ClusterRole."""
    suffix = uuid.uuid4().hex[:8]
    role = operator_role()
    role["metadata"] = {"name": f"imagebatch-operator-{suffix}"}
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": f"imagebatch-operator-{suffix}"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": role["metadata"]["name"],
        },
        "subjects": [
            {"kind": "ServiceAccount", "name": "imagebatch-operator", "namespace": namespace}
        ],
    }
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "imagebatch-operator", "namespace": namespace},
    }
    manifest = tmp_path / "rbac.json"
    manifest.write_text(
        json.dumps({"apiVersion": "v1", "kind": "List", "items": [account, role, binding]})
    )
    kube_cluster.kubectl("apply", "-f", str(manifest))
    token = kube_cluster.kubectl(
        "create", "token", "imagebatch-operator", "-n", namespace, "--duration=1h"
    ).stdout.strip()
    admin = yaml.safe_load(kube_cluster.kubeconfig.read_text())
    cluster = admin["clusters"][0]["cluster"]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "envtest", "cluster": cluster}],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "envtest", "context": {"cluster": "envtest", "user": "operator"}}],
        "current-context": "envtest",
    }
    path = tmp_path / "operator.kubeconfig"
    path.write_text(json.dumps(config))
    assert base64.b64decode(cluster["certificate-authority-data"])
    yield path
    kube_cluster.kubectl("delete", "-f", str(manifest), "--wait=false", check=False)


async def test_the_operator_does_its_whole_job_with_the_manifests_rbac(
    start_operator: OperatorFactory,
    connections_secret: str,
    operator_kubeconfig: Path,
    batches: Batches,
    messaging: CommonSettings,
    namespace: str,
) -> None:
    process = await start_operator(KUBECONFIG=str(operator_kubeconfig))
    urls = [f"http://127.0.0.1:9/{n}.jpg" for n in range(20)]
    await batches.create("rbac", {"source": {"urls": urls}, "ttlSecondsAfterFinished": 0})

    running = await batches.wait_status("rbac", lambda s: s.get("published") == 20)
    assert running["phase"] == "Running"
    assert not [c for c in running["conditions"] if c["type"] == "Degraded"], "it sees the Secret"
    deployment = await eventually(lambda: batches.deployment("rbac"), lambda d: d is not None)
    assert deployment is not None
    assert "Published" in [reason for reason, _ in await batches.events("rbac")]

    await batches.patch_spec("rbac", {"suspend": True})
    await batches.wait_phase("rbac", "Suspended")
    await batches.patch_spec("rbac", {"suspend": False})
    await batches.wait_phase("rbac", "Running")

    conn: asyncpg.Connection = await asyncpg.connect(messaging.database_url)
    try:
        await conn.execute(
            "UPDATE jobs SET status = 'completed' WHERE batch = $1", f"{namespace}/rbac"
        )
        await eventually(lambda: batches.get("rbac"), lambda b: b is None, what="TTL deletion")
        left = await conn.fetchval(
            "SELECT count(*) FROM jobs WHERE batch = $1", f"{namespace}/rbac"
        )
    finally:
        await conn.close()
    assert left == 0, "the finalizer ran"
    log = process.log.read_text()
    assert "Forbidden" not in log, log[-3000:]
    assert "403" not in log, log[-3000:]
