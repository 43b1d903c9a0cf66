"""The RabbitMQ node that leads a batch's quorum queue dies (SIGKILL) mid-batch on a 3-node
cluster: the queue elects a new leader on the two nodes left, the workers (RABBIT_URL naming all
three nodes) go on, and the batch completes with nothing lost, every image completed exactly once
and no thumbnail written twice. The node is started again and a second batch runs.

The batch's 2,000 messages are published by the test the way every producer publishes (persistent,
mandatory, confirmed, one per job, the confirms awaited together) to a work queue of its own; no
Kubernetes is involved.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import pytest

from imagebatch.core.settings import CommonSettings
from imagebatch.devservers.rabbitmq_cluster import RabbitMQCluster
from imagebatch.devservers.worker_process import WorkerProcess
from imagebatch.worker.settings import WorkerSettings
from tests.support.completions import count_completions, install_completion_counter
from tests.support.image_server import ImageServer
from tests.support.worker_fixtures import (
    count_status,
    files_under,
    job_body,
    job_rows,
    publish,
    queue_depth,
    wait_for,
    worker_settings,
)

pytestmark = pytest.mark.slow

BATCH = 2_000
SECOND_BATCH = 200
WORKERS = 2
KILL_AFTER = 400
"""Completed images before the leader is killed: well into the batch, far from its end."""


def snapshot(root: Path) -> dict[Path, tuple[int, int]]:
    """Each file's (inode, mtime): a file written again has a new inode or mtime."""
    found = {}
    for path in files_under(root):
        stat = path.stat()
        found[path] = (stat.st_ino, stat.st_mtime_ns)
    return found


async def test_the_queue_leader_killed_mid_batch_loses_nothing_and_duplicates_nothing(
    rabbit_cluster: RabbitMQCluster, database_url: str, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:8]
    messaging = CommonSettings(
        rabbit_url=rabbit_cluster.url,
        database_url=database_url,
        exchange=f"images.{suffix}",
        queue=f"images.batch.chaos.{suffix}",
        routing_key=f"images.batch.chaos.{suffix}",
        dlx=f"images.{suffix}.dlx",
        dlq=f"images.{suffix}.dlx.q",
        queue_type="quorum",
    )
    settings: WorkerSettings = worker_settings(messaging, tmp_path / "data")
    await install_completion_counter(database_url)
    first = [f"a-{i:05d}" for i in range(BATCH)]
    second = [f"b-{i:05d}" for i in range(SECOND_BATCH)]

    async with ImageServer(photo_size=(160, 120)) as source, AsyncExitStack() as stack:

        async def publish_batch(ids: list[str], prefix: str) -> float:
            began = time.monotonic()
            bodies = [
                job_body(source.url(f"/photo/{i}.jpg"), job_id, output=prefix)
                for i, job_id in enumerate(ids)
            ]
            await publish(settings, bodies, message_ids=ids, window=len(bodies))
            return time.monotonic() - began

        published_in = await publish_batch(first, "first")
        workers = []
        for n in range(WORKERS):
            worker = await WorkerProcess(settings, tmp_path / f"worker-{n}.log").start()
            stack.push_async_callback(worker.close)
            workers.append(worker)
        for worker in workers:
            await worker.wait_ready()

        async def completed(n: int) -> bool:
            return await count_status(database_url, "completed") >= n

        await wait_for(lambda: completed(KILL_AFTER), within=120)
        leader = await asyncio.to_thread(rabbit_cluster.queue_leader, settings.queue)
        killed_at = time.monotonic()
        await asyncio.to_thread(rabbit_cluster.kill, leader)
        done_at_kill = await count_status(database_url, "completed")
        written_before = snapshot(settings.output_dir)
        new_leader = await _leader_once_elected(rabbit_cluster, settings.queue, leader)

        await wait_for(lambda: completed(BATCH), within=240, interval=0.5)
        finished_in = time.monotonic() - killed_at

        restarted_at = time.monotonic()
        await asyncio.to_thread(rabbit_cluster.restart, leader)
        restart_seconds = time.monotonic() - restarted_at
        await publish_batch(second, "second")
        await wait_for(lambda: completed(BATCH + SECOND_BATCH), within=120, interval=0.5)

        duplicates = sum([await duplicate_deliveries(worker) for worker in workers])
        for worker in workers:
            worker.signal(signal.SIGTERM)
        exits = [await worker.wait() for worker in workers]

    rows = await job_rows(database_url)
    redelivered = sum(1 for row in rows.values() if row["attempts"] > 1)
    print(
        f"\n{BATCH} images published in {published_in:.1f}s; leader {leader} SIGKILLed at "
        f"{done_at_kill} completed; new leader {new_leader}; the batch finished "
        f"{finished_in:.1f}s after the kill; deliveries of jobs already completed (acked without "
        f"work): {duplicates}; jobs with more than one attempt: {redelivered}; "
        f"node restarted in {restart_seconds:.1f}s; second batch of {SECOND_BATCH} completed"
    )
    assert done_at_kill < BATCH, "the kill really was mid-batch"
    assert exits == [0] * WORKERS
    completions = await count_completions(database_url)
    assert completions == dict.fromkeys(first + second, 1), "every image completed exactly once"
    assert {row["status"] for row in rows.values()} == {"completed"}
    outputs = files_under(settings.output_dir)
    assert len(outputs) == len(first) + len(second), "one thumbnail per image, no debris"
    after = snapshot(settings.output_dir)
    rewritten = [p for p, seen in written_before.items() if after.get(p) != seen]
    assert rewritten == [], "no thumbnail written at the kill was written again"
    assert await queue_depth(settings, settings.queue) == 0
    assert await queue_depth(settings, settings.dlq) == 0


async def duplicate_deliveries(worker: WorkerProcess) -> int:
    """The worker's count of deliveries of jobs already completed (`worker_tasks_duplicate`)."""
    url = f"http://127.0.0.1:{worker.settings.metrics_port}/metrics"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        text = await response.text()
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in text.splitlines()
        if line.startswith("worker_tasks_duplicate_total")
    )


async def _leader_once_elected(cluster: RabbitMQCluster, queue: str, dead: str) -> str:
    """The queue's leader once the survivors have elected one other than `dead`."""
    deadline = time.monotonic() + 60
    while True:
        try:
            leader = await asyncio.to_thread(cluster.queue_leader, queue)
        except (RuntimeError, KeyError):
            leader = dead
        if leader != dead:
            return leader
        if time.monotonic() > deadline:
            raise AssertionError(f"{queue}: no leader other than {dead} within 60s")
        await asyncio.sleep(0.5)
