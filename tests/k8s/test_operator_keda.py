"""With KEDA installed, a batch is scaled by KEDA itself: the real KEDA operator (the pinned
release, built by `make keda`) accepts the ScaledObject and TriggerAuthentication the operator
makes, reads the batch's queue through them, honours the pause of a suspended batch, and lets a
deleted batch go. No worker runs in these tests: what is asserted is what KEDA does with the
Deployment's replica count (the end-to-end run with workers is tests/e2e/test_operator_keda.py).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aio_pika
import pytest

from imagebatch.core.settings import CommonSettings
from imagebatch.core.topology import batch_queue_name
from imagebatch.devservers.keda import KedaOperator
from imagebatch.devservers.process import http_ok
from tests.support.keda import COOLDOWN_SECONDS, PAUSED, POLLING_SECONDS, KedaObjects, condition
from tests.support.operator import SECRET, Batches, OperatorFactory, eventually

UNREACHABLE = [f"http://127.0.0.1:9/{n}.jpg" for n in range(10)]
"""No worker runs here, so the items are never fetched: they only have to be published."""


def ready(obj: dict[str, Any]) -> bool:
    return condition(obj, "Ready") == "True"


@pytest.mark.parametrize("protocol", ["amqp", "http"])
async def test_keda_accepts_a_batchs_scaled_object_and_trigger_authentication(
    protocol: str,
    keda: KedaOperator,
    start_keda_operator: OperatorFactory,
    keda_batches: Batches,
    keda_objects: KedaObjects,
    keda_namespace: str,
) -> None:
    await start_keda_operator(http=protocol == "http")
    created = await keda_batches.create(
        "scaled",
        {
            "source": {"urls": UNREACHABLE},
            "workers": {"minReplicas": 0, "maxReplicas": 4, "messagesPerReplica": 25},
        },
    )

    scaled = await keda_objects.wait_scaled_object("scaled", ready, what="the ScaledObject Ready")

    spec = scaled["spec"]
    assert spec["scaleTargetRef"]["name"] == "scaled-worker"
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (0, 4)
    trigger = spec["triggers"][0]
    assert (trigger["type"], trigger["metadata"]) == (
        "rabbitmq",
        {
            "protocol": protocol,
            "queueName": batch_queue_name(keda_namespace, "scaled"),
            "mode": "QueueLength",
            "value": "25",
        },
    )
    assert scaled["metadata"]["ownerReferences"][0]["uid"] == created["metadata"]["uid"]
    auth = await keda_objects.trigger_authentication("scaled")
    assert auth is not None
    key = "RABBIT_MANAGEMENT_URL" if protocol == "http" else "RABBIT_URL"
    assert auth["spec"]["secretTargetRef"] == [{"parameter": "host", "name": SECRET, "key": key}]
    assert scaled["status"]["externalMetricNames"], "KEDA made a metric of the queue"
    assert scaled["status"]["hpaName"] == "keda-hpa-scaled-worker"
    # KEDA reached the queue through the TriggerAuthentication: 10 messages make it active.
    active = await keda_objects.wait_scaled_object(
        "scaled", lambda o: condition(o, "Active") == "True", what="the ScaledObject Active"
    )
    assert condition(active, "Ready") == "True"
    deployment = await keda_batches.wait_replicas("scaled", 1)
    managers = {f.manager for f in deployment.metadata.managed_fields if "f:replicas" in str(f)}
    assert "imagebatch-operator" not in managers, "the replica count is KEDA's"
    assert await keda_objects.warnings() == [], "KEDA reported no problem with either object"


async def test_a_keda_scaled_deployment_is_created_at_zero_replicas_so_only_keda_starts_workers(
    keda: KedaOperator,
    start_keda_operator: OperatorFactory,
    keda_batches: Batches,
    keda_objects: KedaObjects,
) -> None:
    keda.stop()
    await start_keda_operator()
    await keda_batches.create("cold", {"source": {"urls": UNREACHABLE}})
    await keda_batches.wait_status("cold", lambda s: s.get("published") == 10, what="published")

    deployment = await keda_batches.deployment("cold")
    assert deployment is not None
    assert deployment.spec.replicas == 0, "not the API's default of 1: KEDA has not scaled it"
    assert await keda_objects.scaled_object("cold") is not None

    keda.start()
    await keda_batches.wait_replicas("cold", 1)


async def test_a_suspended_batch_is_paused_by_keda_and_resuming_restarts_its_scaling(
    keda: KedaOperator,
    start_keda_operator: OperatorFactory,
    keda_batches: Batches,
    keda_objects: KedaObjects,
) -> None:
    await start_keda_operator()
    await keda_batches.create("held", {"source": {"urls": UNREACHABLE}, "suspend": True})

    paused = await keda_objects.wait_scaled_object(
        "held", lambda o: condition(o, "Paused") == "True", what="KEDA's Paused condition"
    )
    assert paused["metadata"]["annotations"][PAUSED] == "0"
    await keda_batches.wait_replicas("held", 0)

    await keda_batches.patch_spec("held", {"suspend": False})

    resumed = await keda_objects.wait_scaled_object(
        "held",
        lambda o: condition(o, "Paused") != "True" and condition(o, "Active") == "True",
        what="the pause lifted and the queue seen",
    )
    assert PAUSED not in (resumed["metadata"].get("annotations") or {})
    await keda_batches.wait_replicas("held", 1)
    assert await keda_objects.warnings() == []


async def test_with_the_management_api_unacked_messages_keep_a_replica(
    keda: KedaOperator,
    start_keda_operator: OperatorFactory,
    keda_batches: Batches,
    keda_objects: KedaObjects,
    keda_namespace: str,
    messaging: CommonSettings,
) -> None:
    """A worker busy with its prefetched messages holds them unacked; the amqp protocol counts
    only ready ones, so only the management API (`protocol: http`) keeps that worker's replica
    while the queue shows none ready."""
    await start_keda_operator(http=True)
    await keda_batches.create("busy", {"source": {"urls": UNREACHABLE}})
    await keda_batches.wait_status("busy", lambda s: s.get("published") == 10, what="10 published")
    await keda_batches.wait_replicas("busy", 1)

    connection = await aio_pika.connect(messaging.rabbit_url)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=100)
        queue = await channel.get_queue(batch_queue_name(keda_namespace, "busy"))
        held: list[aio_pika.abc.AbstractIncomingMessage] = []

        async def hold(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            held.append(message)

        await queue.consume(hold)
        await eventually(lambda: _count(held), lambda n: n == 10, what="10 messages held")

        # Well past KEDA's cooldown, the held messages keep the replica.
        watch_until = time.monotonic() + COOLDOWN_SECONDS + 6 * POLLING_SECONDS
        while time.monotonic() < watch_until:
            deployment = await keda_batches.deployment("busy")
            assert deployment is not None
            assert deployment.spec.replicas == 1, "unacked messages count as work"
            await asyncio.sleep(0.5)
        assert condition(await keda_objects.scaled_object("busy"), "Active") == "True"

        for message in held:
            await message.ack()
        # Nothing ready, nothing unacked: KEDA scales the idle batch to 0 after its cooldown.
        await keda_batches.wait_replicas("busy", 0, within=30)


async def _count(held: list[Any]) -> int:
    return len(held)


async def test_deleting_a_batch_with_keda_running_removes_its_keda_objects(
    keda: KedaOperator,
    start_keda_operator: OperatorFactory,
    keda_batches: Batches,
    keda_objects: KedaObjects,
) -> None:
    await start_keda_operator()
    await keda_batches.create("short", {"source": {"urls": UNREACHABLE}})
    await keda_objects.wait_scaled_object("short", ready, what="Ready")

    await keda_batches.delete("short")

    await eventually(lambda: keda_batches.get("short"), lambda b: b is None, within=60, what="gone")
    await keda_objects.wait_gone("short", why="with the batch (KEDA's finalizers cleared)")


async def test_with_keda_stopped_a_deleted_batch_still_goes_and_its_keda_objects_wait_for_keda(
    keda: KedaOperator,
    start_keda_operator: OperatorFactory,
    keda_batches: Batches,
    keda_objects: KedaObjects,
) -> None:
    """The operator's finalizer does not wait on the children: the garbage collector deletes
    them after the batch is gone, and KEDA's own finalizers hold its two objects (Terminating)
    until a KEDA runs again."""
    operator = await start_keda_operator()
    await keda_batches.create("orphaned", {"source": {"urls": UNREACHABLE}})
    await keda_objects.wait_scaled_object("orphaned", ready, what="Ready")
    keda.stop()

    await keda_batches.delete("orphaned")

    await eventually(
        lambda: keda_batches.get("orphaned"), lambda b: b is None, within=60, what="the batch gone"
    )
    waiting = await keda_objects.wait_scaled_object(
        "orphaned",
        lambda o: bool(o["metadata"].get("deletionTimestamp")),
        what="the ScaledObject Terminating",
    )
    assert waiting["metadata"]["finalizers"], "KEDA's finalizer holds it"
    assert await asyncio.to_thread(http_ok, operator.health_url), "the operator is not stuck"
    await keda_batches.create("next", {"source": {"urls": UNREACHABLE[:3]}})
    await keda_batches.wait_status("next", lambda s: s.get("published") == 3, what="3 published")

    keda.start()
    await keda_objects.wait_gone("orphaned", why="once KEDA is back")
