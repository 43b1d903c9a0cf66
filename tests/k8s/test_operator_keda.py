"""Where KEDA's CRDs are installed (KEDA v2.21.0's own, tests/fixtures/keda/), a batch gets a
ScaledObject and a TriggerAuthentication instead of the operator's own scaling, and a suspended
or finished batch pauses them at 0 replicas. KEDA itself does not run here (see issue "Real
KEDA in the test ground"); these tests check what the operator asks of it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from imagebatch.core.settings import CommonSettings
from imagebatch.core.topology import batch_queue_name
from imagebatch.devservers.kube import KubeControlPlane
from imagebatch.devservers.operator_process import OperatorProcess
from tests.support.k8s import CRDS, KubeCluster, api_client
from tests.support.operator import SECRET, Batches, eventually, operator_env

KEDA_CRDS = Path(__file__).resolve().parents[1] / "fixtures" / "keda"
PAUSED = "autoscaling.keda.sh/paused-replicas"


@pytest.fixture(scope="module")
def keda_cluster() -> Iterator[KubeCluster]:
    """A control plane of its own: KEDA's CRDs would change how every other test's batches
    are scaled."""
    plane = KubeControlPlane(controller_manager=False)
    try:
        plane.start(CRDS, *sorted(KEDA_CRDS.glob("*.yaml")))
        yield KubeCluster(plane.kubeconfig, plane.kubectl(), started_here=True)
    finally:
        plane.close()


@pytest.fixture(params=["amqp", "http"])
async def keda_operator(
    request: pytest.FixtureRequest,
    keda_cluster: KubeCluster,
    messaging: CommonSettings,
    tmp_path: Path,
) -> AsyncIterator[tuple[str, str]]:
    namespace = f"keda-{request.param}-{uuid.uuid4().hex[:6]}"
    keda_cluster.kubectl("create", "namespace", namespace)
    keda_cluster.kubectl(
        "-n", namespace, "create", "secret", "generic", SECRET,
        f"--from-literal=RABBIT_URL={messaging.rabbit_url}",
        "--from-literal=RABBIT_MANAGEMENT_URL=http://guest:guest@127.0.0.1:15672/%2F",
    )  # fmt: skip
    extra = {"RABBIT_MANAGEMENT_URL": "http://127.0.0.1:15672"} if request.param == "http" else {}
    env = operator_env(keda_cluster, messaging, namespace, **extra)
    process = await OperatorProcess(env, tmp_path / "operator.log").start()
    try:
        yield namespace, request.param
    finally:
        await process.stop()
        keda_cluster.kubectl("delete", "namespace", namespace, "--wait=false")


def keda_object(cluster: KubeCluster, namespace: str, plural: str, name: str) -> Any:
    with api_client(cluster) as api:
        try:
            return client.CustomObjectsApi(api).get_namespaced_custom_object(
                "keda.sh", "v1alpha1", namespace, plural, name
            )
        except client.exceptions.ApiException as exc:
            if exc.status == 404:
                return None
            raise


async def test_a_batch_gets_a_scaled_object_and_trigger_authentication_paused_while_suspended(
    keda_cluster: KubeCluster, keda_operator: tuple[str, str]
) -> None:
    namespace, protocol = keda_operator
    batches = Batches(keda_cluster, namespace)
    try:
        created = await batches.create(
            "scaled",
            {
                "source": {"urls": [f"http://127.0.0.1:9/{n}.jpg" for n in range(10)]},
                "workers": {"minReplicas": 1, "maxReplicas": 4, "messagesPerReplica": 25},
                "suspend": True,
            },
        )

        async def scaled_object() -> Any:
            return await asyncio.to_thread(
                keda_object, keda_cluster, namespace, "scaledobjects", "scaled-worker"
            )

        paused = await eventually(scaled_object, lambda o: o is not None, what="a ScaledObject")
        assert paused["metadata"]["annotations"][PAUSED] == "0", "suspended: held at 0"
        owner = paused["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["uid"]) == ("ImageBatch", created["metadata"]["uid"])
        spec = paused["spec"]
        assert spec["scaleTargetRef"]["name"] == "scaled-worker"
        assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (1, 4)
        trigger = spec["triggers"][0]
        assert trigger["type"] == "rabbitmq"
        assert trigger["metadata"] == {
            "protocol": protocol,
            "queueName": batch_queue_name(namespace, "scaled"),
            "mode": "QueueLength",
            "value": "25",
        }
        auth_name = trigger["authenticationRef"]["name"]
        auth = await asyncio.to_thread(
            keda_object, keda_cluster, namespace, "triggerauthentications", auth_name
        )
        key = "RABBIT_MANAGEMENT_URL" if protocol == "http" else "RABBIT_URL"
        assert auth["spec"]["secretTargetRef"] == [
            {"parameter": "host", "name": SECRET, "key": key}
        ]
        assert auth["metadata"]["ownerReferences"][0]["uid"] == created["metadata"]["uid"]

        deployment = await batches.deployment("scaled")
        assert deployment is not None
        managed = {f.manager: f.fields_v1 for f in deployment.metadata.managed_fields}
        assert "f:replicas" not in str(managed["imagebatch-operator"]), "replicas are KEDA's"

        await batches.patch_spec("scaled", {"suspend": False})
        resumed = await eventually(
            scaled_object,
            lambda o: PAUSED not in (o["metadata"].get("annotations") or {}),
            what="the pause lifted",
        )
        assert resumed["spec"]["maxReplicaCount"] == 4
    finally:
        batches.close()
