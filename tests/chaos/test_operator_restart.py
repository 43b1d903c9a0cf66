"""The operator killed with SIGKILL in the middle of publishing a 20,000-row batch and started
again loses no item, re-publishes at most the one chunk whose confirms it had not recorded,
and the batch ends with exactly one output and one completion per item."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aio_pika
import asyncpg

from imagebatch.core.settings import CommonSettings
from imagebatch.core.topology import batch_queue_name
from tests.support.image_server import ImageServer
from tests.support.k8s import KubeCluster
from tests.support.operator import Batches, OperatorFactory, outputs, supervise
from tests.support.worker_process import count_completions, install_completion_counter

ROWS = 20_000
CHUNK = 1_000


async def published(conn: asyncpg.Connection, batch: str) -> int:
    return int(
        await conn.fetchval("SELECT published FROM batch_counts WHERE batch = $1", batch) or 0
    )


async def queue_depth(rabbit_url: str, queue: str) -> int:
    connection = await aio_pika.connect(rabbit_url)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.message_count or 0)


async def test_a_killed_operator_resumes_publishing_without_losing_or_flooding_items(
    start_operator: OperatorFactory,
    connections_secret: str,
    batches: Batches,
    kube_cluster: KubeCluster,
    messaging: CommonSettings,
    namespace: str,
    tmp_path: Path,
) -> None:
    batch = f"{namespace}/big"
    async with ImageServer(photo_size=(320, 240)) as server:
        conn: asyncpg.Connection = await asyncpg.connect(messaging.database_url)
        try:
            await conn.execute(
                "INSERT INTO images (url) SELECT $1 || (g % 10) || '.jpg'"
                " FROM generate_series(1, $2) AS g",
                server.url("/photo/"),
                ROWS,
            )
            await install_completion_counter(messaging.database_url)
            first = await start_operator(PUBLISH_CHUNK_SIZE=str(CHUNK))
            await batches.create(
                "big",
                {
                    "source": {"postgres": {"table": "images", "limit": ROWS}},
                    "workers": {"maxReplicas": 2, "concurrency": 16, "prefetch": 32},
                },
            )
            deadline = time.monotonic() + 120
            while not 2 * CHUNK <= await published(conn, batch) <= ROWS - 5 * CHUNK:
                assert time.monotonic() < deadline, "publishing never got under way"
                await asyncio.sleep(0.01)
            await first.kill()
            at_kill = await published(conn, batch)
            assert at_kill < ROWS, "killed mid-publish"

            await start_operator(PUBLISH_CHUNK_SIZE=str(CHUNK))
            status = await batches.wait_status(
                "big", lambda s: s.get("published") == ROWS, within=120, what="all published"
            )
            assert status["total"] == ROWS
            depth = await queue_depth(messaging.rabbit_url, batch_queue_name(namespace, "big"))
            assert ROWS <= depth <= ROWS + CHUNK, "no item lost, duplicates within one chunk"

            async with supervise(kube_cluster, namespace, tmp_path):
                done = await batches.wait_phase("big", "Succeeded", within=400)
        finally:
            await conn.close()

    assert (done["succeeded"], done["failed"]) == (ROWS, 0)
    completions = await count_completions(messaging.database_url)
    assert len(completions) == ROWS
    assert set(completions.values()) == {1}, "a duplicate delivery is not a second completion"
    assert len(outputs(tmp_path / "data" / namespace / "big")) == ROWS
