"""The operator killed with SIGKILL 10 times at random moments while it publishes a 50,000-row
batch, and started again each time, loses no item and re-publishes at most the one chunk whose
confirms it had not recorded per kill; workers then process the batch to exact final counts, each
item completed (and so written) once."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import aio_pika
import asyncpg
import pytest

from imagebatch.core.settings import CommonSettings
from imagebatch.core.topology import batch_queue_name
from tests.support.completions import count_completions, install_completion_counter
from tests.support.image_server import ImageServer
from tests.support.k8s import KubeCluster
from tests.support.operator import Batches, OperatorFactory, outputs, supervise

CHUNK = 1_000
ROWS = 50_000
KILLS = 10


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


async def published_at_least(conn: asyncpg.Connection, batch: str, target: int) -> int:
    deadline = time.monotonic() + 120
    while (now := await published(conn, batch)) < target:
        assert time.monotonic() < deadline, f"publishing stuck at {now} (waiting for {target})"
        await asyncio.sleep(0.01)
    return now


@pytest.mark.timeout(1800)
async def test_an_operator_killed_10_times_loses_no_item_and_floods_no_more_than_a_chunk_a_kill(
    start_operator: OperatorFactory,
    connections_secret: str,
    batches: Batches,
    kube_cluster: KubeCluster,
    messaging: CommonSettings,
    namespace: str,
    tmp_path: Path,
) -> None:
    rows, kills = ROWS, KILLS
    batch = f"{namespace}/big"
    queue = batch_queue_name(namespace, "big")
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    kills_at: list[int] = []
    async with ImageServer(photo_size=(64, 48)) as server:
        conn: asyncpg.Connection = await asyncpg.connect(messaging.database_url)
        try:
            await conn.execute(
                "INSERT INTO images (url) SELECT $1 || (g % 10) || '.jpg'"
                " FROM generate_series(1, $2) AS g",
                server.url("/photo/"),
                rows,
            )
            await install_completion_counter(messaging.database_url)
            operator = await start_operator(PUBLISH_CHUNK_SIZE=str(CHUNK))
            await batches.create(
                "big",
                {
                    "source": {"postgres": {"table": "images", "limit": rows}},
                    "workers": {"maxReplicas": 2, "concurrency": 16, "prefetch": 32},
                },
            )
            began = time.monotonic()
            for kill in range(kills):
                # A random moment after this operator got going, leaving room for the kills
                # still to come before the last row is published.
                now = await published(conn, batch)
                room = (rows - now) // (kills - kill + 1)
                target = now + rng.randint(1, max(1, room))
                kills_at.append(await published_at_least(conn, batch, target))
                await operator.kill()
                operator = await start_operator(PUBLISH_CHUNK_SIZE=str(CHUNK))
            assert max(kills_at) < rows, "every kill came mid-publish"

            status = await batches.wait_status(
                "big", lambda s: s.get("published") == rows, within=300, what="all published"
            )
            publishing = time.monotonic() - began
            assert status["total"] == rows
            depth = await queue_depth(messaging.rabbit_url, queue)
            assert rows <= depth <= rows + kills * CHUNK, "no item lost, a chunk a kill at most"

            async with supervise(kube_cluster, namespace, tmp_path):
                done = await batches.wait_phase("big", "Succeeded", within=1200)
            finished = time.monotonic() - began - publishing
        finally:
            await conn.close()

    assert (done["total"], done["published"], done["succeeded"], done["failed"]) == (
        rows,
        rows,
        rows,
        0,
    ), "exact final counts"
    completions = await count_completions(messaging.database_url)
    assert len(completions) == rows, "0 lost"
    assert set(completions.values()) == {1}, "a duplicate delivery is not a second completion"
    assert len(outputs(tmp_path / "data" / namespace / "big")) == rows
    outcome = f"{rows} completed exactly once in {finished:.0f}s"
    print(
        f"\noperator SIGKILLed {kills} times (seed {seed}) at published = {kills_at}: "
        f"{depth - rows} duplicate messages (bound {kills} x {CHUNK}), 0 lost; publishing "
        f"{publishing:.0f}s; {outcome}"
    )
