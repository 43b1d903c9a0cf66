"""The operator's lifecycle rules against a real API server, PostgreSQL and RabbitMQ, without
workers: what it makes for a batch, how it scales it by itself, and how a batch ends when it
cannot run, runs out of time, or is deleted."""

from __future__ import annotations

import asyncio
import urllib.request

import aio_pika
import aiormq
import asyncpg
import pytest

from imagebatch.core.settings import CommonSettings
from imagebatch.core.topology import batch_queue_name
from imagebatch.devservers.operator_process import OperatorProcess
from tests.support.k8s import KubeCluster
from tests.support.operator import (
    SECRET,
    Batches,
    OperatorFactory,
    eventually,
)

URLS = [f"http://127.0.0.1:9/never/{n}.jpg" for n in range(200)]
"""Nothing fetches them here: no workers run in these tests."""


def condition(status: dict[str, object], kind: str) -> dict[str, str]:
    found = [c for c in status.get("conditions") or [] if c["type"] == kind]  # type: ignore[attr-defined]
    assert found, f"no {kind} condition in {status}"
    return found[0]  # type: ignore[no-any-return]


async def complete(database_url: str, batch: str, count: int) -> None:
    """Finish `count` pending items the way a worker records them."""
    conn: asyncpg.Connection = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "UPDATE jobs SET status = 'completed', attempts = 1, completed_at = now()"
            " WHERE id IN (SELECT id FROM jobs WHERE batch = $1 AND status = 'pending'"
            " ORDER BY id LIMIT $2)",
            batch,
            count,
        )
    finally:
        await conn.close()


async def queue_exists(rabbit_url: str, name: str) -> bool:
    connection = await aio_pika.connect(rabbit_url)
    async with connection:
        channel = await connection.channel()
        try:
            await channel.declare_queue(name, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return False
        return True


async def test_a_batch_gets_its_worker_deployment_owned_by_it(
    operator: OperatorProcess, batches: Batches, namespace: str, messaging: CommonSettings
) -> None:
    created = await batches.create(
        "owned",
        {
            "source": {"urls": URLS[:10]},
            "workers": {"concurrency": 4, "prefetch": 12, "maxReplicas": 3},
            "retry": {"maxAttempts": 5, "backoffSeconds": 0},
        },
    )
    deployment = await eventually(
        lambda: batches.deployment("owned"), lambda d: d is not None, what="a Deployment"
    )
    assert deployment is not None
    owner = deployment.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.uid) == (
        "ImageBatch",
        "owned",
        created["metadata"]["uid"],
    )
    assert owner.controller
    assert owner.block_owner_deletion
    assert deployment.metadata.labels["imagejobs.io/batch"] == "owned"
    container = deployment.spec.template.spec.containers[0]
    env = {e.name: e.value for e in container.env}
    queue = batch_queue_name(namespace, "owned")
    assert (env["QUEUE"], env["ROUTING_KEY"], env["EXCHANGE"]) == (queue, queue, messaging.exchange)
    assert (env["CONCURRENCY"], env["PREFETCH"]) == ("4", "12")
    assert (env["MAX_ATTEMPTS"], env["BACKOFF_SECONDS"]) == ("5", "0")
    assert env["OUTPUT_URL"] == "file:///data"
    assert container.env_from[0].secret_ref.name == SECRET
    assert container.volume_mounts[0].mount_path == "/data"
    assert deployment.spec.template.spec.security_context.run_as_non_root

    # A spec change to workers/retry reaches the Deployment.
    await batches.patch_spec("owned", {"workers": {"concurrency": 2}, "retry": {"maxAttempts": 2}})

    def env_of(d: object) -> dict[str, str]:
        return {e.name: e.value for e in d.spec.template.spec.containers[0].env}  # type: ignore[attr-defined]

    patched = await eventually(
        lambda: batches.deployment("owned"),
        lambda d: d is not None and env_of(d)["CONCURRENCY"] == "2",
        what="the new concurrency in the Deployment",
    )
    assert env_of(patched)["MAX_ATTEMPTS"] == "2"
    status = await batches.wait_status("owned", lambda s: s.get("observedGeneration") == 2)
    assert status["total"] == 10

    metrics = await asyncio.to_thread(read_text, operator.metrics_url)
    assert "imagebatch_operator_items_published_total 10.0" in metrics
    assert 'imagebatch_operator_batches{phase="Running"} 1.0' in metrics
    assert "imagebatch_operator_status_refresh_seconds_count" in metrics
    assert await asyncio.to_thread(read_text, operator.health_url) != ""


def read_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


async def test_without_keda_the_operator_scales_workers_with_the_backlog_and_back_to_zero(
    operator: OperatorProcess, batches: Batches, namespace: str, messaging: CommonSettings
) -> None:
    await batches.create(
        "scaled",
        {"source": {"urls": URLS}, "workers": {"maxReplicas": 3, "messagesPerReplica": 50}},
    )

    await batches.wait_replicas("scaled", 3)  # 200 left: 4 wanted, 3 at most
    await complete(messaging.database_url, f"{namespace}/scaled", 110)
    await batches.wait_replicas("scaled", 2)  # 90 left
    await complete(messaging.database_url, f"{namespace}/scaled", 90)
    await batches.wait_replicas("scaled", 0)  # done
    status = await batches.wait_phase("scaled", "Succeeded")
    assert (status["succeeded"], status["progress"]) == (200, "200/200")


async def test_a_missing_table_fails_the_batch_with_the_reason(
    operator: OperatorProcess, batches: Batches, messaging: CommonSettings
) -> None:
    await batches.create("no-table", {"source": {"postgres": {"table": "nowhere"}}})

    status = await batches.wait_phase("no-table", "Failed")

    failed = condition(status, "Failed")
    assert failed["reason"] == "SourceInvalid"
    assert "'nowhere' does not exist" in failed["message"]
    # kopf posts Events from a queue of its own: one may land just after the status it follows.
    await eventually(
        lambda: batches.events("no-table"),
        lambda events: ("SourceInvalid", failed["message"]) in events,
        what="the SourceInvalid Event",
    )
    assert operator.process is not None
    assert operator.process.returncode is None


async def test_a_table_without_a_url_column_fails_the_batch(
    operator: OperatorProcess, batches: Batches, messaging: CommonSettings
) -> None:
    conn: asyncpg.Connection = await asyncpg.connect(messaging.database_url)
    try:
        await conn.execute("CREATE TABLE photos (id bigint PRIMARY KEY, link text)")
    finally:
        await conn.close()
    await batches.create("no-url", {"source": {"postgres": {"table": "photos"}}})
    failed = condition(await batches.wait_phase("no-url", "Failed"), "Failed")
    assert (failed["reason"], "no url column" in failed["message"]) == ("SourceInvalid", True)


async def test_a_missing_secret_degrades_the_batch_until_it_exists(
    start_operator: OperatorFactory,
    batches: Batches,
    kube_cluster: KubeCluster,
    namespace: str,
    messaging: CommonSettings,
) -> None:
    await start_operator()
    await batches.create("no-secret", {"source": {"urls": URLS[:5]}})

    status = await batches.wait_status(
        "no-secret",
        lambda s: (
            s.get("published") == 5
            and any(c["type"] == "Degraded" for c in s.get("conditions") or [])
        ),
        what="a Degraded condition, with the items published all the same",
    )
    degraded = condition(status, "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "SecretMissing")
    assert SECRET in degraded["message"]
    assert status["published"] == 5, "the queue keeps the items until workers can start"

    kube_cluster.kubectl(
        "-n", namespace, "create", "secret", "generic", SECRET,
        f"--from-literal=RABBIT_URL={messaging.rabbit_url}",
    )  # fmt: skip
    recovered = await batches.wait_status(
        "no-secret", lambda s: condition(s, "Degraded")["status"] == "False", what="recovery"
    )
    assert condition(recovered, "Degraded")["reason"] == "Recovered"


async def test_a_batch_past_its_deadline_fails_and_its_workers_go(
    operator: OperatorProcess, batches: Batches
) -> None:
    await batches.create("late", {"source": {"urls": URLS[:20]}, "activeDeadlineSeconds": 2})

    status = await batches.wait_phase("late", "Failed", within=30)

    failed = condition(status, "Failed")
    assert failed["reason"] == "DeadlineExceeded"
    assert status["succeeded"] == 0
    await batches.wait_replicas("late", 0)


async def test_a_suspended_batch_publishes_nothing_until_resumed(
    operator: OperatorProcess, batches: Batches, messaging: CommonSettings, namespace: str
) -> None:
    await batches.create("held", {"source": {"urls": URLS[:30]}, "suspend": True})

    status = await batches.wait_phase("held", "Suspended")
    assert condition(status, "Suspended")["status"] == "True"
    assert status.get("published", 0) == 0
    assert "startTime" not in status, "a suspended batch's deadline clock does not run"
    deployment = await eventually(
        lambda: batches.deployment("held"), lambda d: d is not None, what="a Deployment"
    )
    assert deployment is not None
    assert deployment.spec.replicas == 0

    await batches.patch_spec("held", {"suspend": False})
    running = await batches.wait_status(
        "held", lambda s: s.get("published") == 30 and s.get("phase") == "Running"
    )
    assert condition(running, "Suspended") == {
        **condition(running, "Suspended"),
        "status": "False",
        "reason": "Resumed",
    }
    assert "startTime" in running
    reasons = [reason for reason, _ in await batches.events("held")]
    assert reasons.count("Suspended") == 1
    assert reasons.count("Resumed") == 1


async def test_deleting_a_batch_removes_its_queue_items_and_children_and_a_new_one_starts_from_zero(
    operator: OperatorProcess, batches: Batches, messaging: CommonSettings, namespace: str
) -> None:
    await batches.create("again", {"source": {"urls": URLS[:50]}})
    first = await batches.wait_status("again", lambda s: s.get("published") == 50)
    queue = batch_queue_name(namespace, "again")
    assert await queue_exists(messaging.rabbit_url, queue)
    await complete(messaging.database_url, f"{namespace}/again", 20)
    await batches.wait_status("again", lambda s: s.get("succeeded") == 20)

    await batches.delete("again")

    await eventually(lambda: batches.get("again"), lambda b: b is None, what="the batch gone")
    assert not await queue_exists(messaging.rabbit_url, queue)
    await eventually(
        lambda: batches.deployment("again"), lambda d: d is None, what="the Deployment collected"
    )
    conn: asyncpg.Connection = await asyncpg.connect(messaging.database_url)
    try:
        left = await conn.fetchval(
            "SELECT count(*) FROM jobs WHERE batch = $1", f"{namespace}/again"
        )
    finally:
        await conn.close()
    assert left == 0

    await batches.create("again", {"source": {"urls": URLS[:50]}})
    second = await batches.wait_status("again", lambda s: s.get("published") == 50)
    assert (second["total"], second["succeeded"]) == (50, 0), "nothing carried over"
    assert second["startTime"] >= first["startTime"]


@pytest.mark.parametrize("ttl", [1])
async def test_a_finished_batch_is_deleted_after_its_ttl(
    operator: OperatorProcess, batches: Batches, messaging: CommonSettings, namespace: str, ttl: int
) -> None:
    await batches.create("brief", {"source": {"urls": URLS[:5]}, "ttlSecondsAfterFinished": ttl})
    await batches.wait_status("brief", lambda s: s.get("published") == 5)
    await complete(messaging.database_url, f"{namespace}/brief", 5)
    await batches.wait_phase("brief", "Succeeded")

    await eventually(lambda: batches.get("brief"), lambda b: b is None, within=30, what="deletion")
