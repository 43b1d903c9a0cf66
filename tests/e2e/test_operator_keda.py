"""A batch end to end with the real KEDA doing the scaling: KEDA scales the batch's worker
Deployment from 0 to 1 once its items are published, the local worker supervisor runs that
replica, the batch completes, and KEDA brings the Deployment back to 0.

(KEDA's own 1 → N goes through an HPA and KEDA's metrics adapter, an aggregated API the local
API server cannot route to: it is not exercised here.)
"""

from __future__ import annotations

from typing import Any

from imagebatch.devservers.keda import KedaOperator
from tests.support.image_server import ImageServer
from tests.support.keda import KedaObjects
from tests.support.operator import Batches, OperatorFactory, eventually

WORKERS = "photos-worker"
"""The batch's worker Deployment, whose replicas the supervisor runs as local processes."""
GENTLE = {"minReplicas": 0, "maxReplicas": 2, "messagesPerReplica": 50, "concurrency": 8}


async def test_keda_scales_a_batch_from_zero_to_one_worker_and_back_when_it_is_done(
    keda: KedaOperator,
    start_keda_operator: OperatorFactory,
    keda_supervisor: Any,
    keda_batches: Batches,
    keda_objects: KedaObjects,
    keda_namespace: str,
    image_server: ImageServer,
) -> None:
    await start_keda_operator()
    urls = [image_server.url(f"/photo/{n}.jpg") for n in range(60)]
    # The Deployment is created at 0 replicas (tests/k8s/test_operator_keda.py): the first
    # worker is KEDA's doing.
    await keda_batches.create("photos", {"source": {"urls": urls}, "workers": GENTLE})

    await keda_batches.wait_replicas("photos", 1, within=60)
    await eventually(
        lambda: _running(keda_supervisor, keda_namespace, WORKERS),
        lambda n: n == 1,
        what="KEDA's replica running as a local worker",
    )
    status = await keda_batches.wait_phase("photos", "Succeeded", within=180)
    assert (status["succeeded"], status["failed"]) == (60, 0)
    await keda_batches.wait_replicas("photos", 0, within=60)
    ran = await eventually(
        lambda: _workers(keda_supervisor, keda_namespace, WORKERS),
        lambda found: all(state == "exited" for state, _ in found),
        within=60,
        what="the worker stopped",
    )
    assert ran == [("exited", 0)], "one worker, drained cleanly"
    assert await keda_objects.warnings() == []


async def _running(supervisor: Any, namespace: str, name: str) -> int:
    return int(supervisor.running(namespace, name))


async def _workers(supervisor: Any, namespace: str, name: str) -> list[tuple[str, int | None]]:
    """(state, exit code) of every worker process the Deployment has had."""
    return [(w.state, w.returncode) for w in supervisor.workers(namespace, name)]
