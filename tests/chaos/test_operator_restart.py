"""The operator killed with SIGKILL at random moments while it publishes a batch, and started
again each time, loses no item and re-publishes at most the one chunk whose confirms it had not
recorded per kill.

Two sizes: killed once in a 20,000-row batch that workers then process to the end (one output
and one completion per item, exact final counts), and killed 10 times in a 50,000-row batch
whose queue is then read back whole: every item's message is there, the duplicates counted
exactly. Processing the 50,000 too would add many minutes of thumbnails to CI and test nothing
the first case does not (a duplicate is one output and one completion)."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
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


async def messages_by_item(rabbit_url: str, queue: str) -> Counter[str]:
    """Take every message in `queue` (unacknowledged deliveries, the fastest: the test is over)
    and count them by message id (the item's job id)."""
    counts: Counter[str] = Counter()
    connection = await aio_pika.connect(rabbit_url)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        depth = declared.declaration_result.message_count
        async with declared.iterator(no_ack=True) as messages:
            async for message in messages:
                counts[message.message_id or ""] += 1
                if sum(counts.values()) == depth:
                    break
    return counts


async def published_at_least(conn: asyncpg.Connection, batch: str, target: int) -> int:
    deadline = time.monotonic() + 120
    while (now := await published(conn, batch)) < target:
        assert time.monotonic() < deadline, f"publishing stuck at {now} (waiting for {target})"
        await asyncio.sleep(0.01)
    return now


@pytest.mark.timeout(1800)
@pytest.mark.parametrize(
    ("rows", "kills", "process"),
    [
        pytest.param(20_000, 1, True, id="20000-rows-1-kill-processed"),
        pytest.param(50_000, 10, False, id="50000-rows-10-kills-read-back"),
    ],
)
async def test_a_killed_operator_loses_no_item_and_floods_no_more_than_a_chunk_a_kill(
    start_operator: OperatorFactory,
    connections_secret: str,
    batches: Batches,
    kube_cluster: KubeCluster,
    messaging: CommonSettings,
    namespace: str,
    tmp_path: Path,
    rows: int,
    kills: int,
    process: bool,
) -> None:
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

            if process:
                async with supervise(kube_cluster, namespace, tmp_path):
                    done = await batches.wait_phase("big", "Succeeded", within=1200)
            else:
                await operator.kill()  # it would scale workers, and count them
                async with asyncio.timeout(300):
                    by_item = await messages_by_item(messaging.rabbit_url, queue)
            finished = time.monotonic() - began - publishing
        finally:
            await conn.close()

    if process:
        assert (done["total"], done["published"], done["succeeded"], done["failed"]) == (
            rows,
            rows,
            rows,
            0,
        ), "exact final counts"
        completions = await count_completions(messaging.database_url)
        assert len(completions) == rows
        assert set(completions.values()) == {1}, "a duplicate delivery is not a second completion"
        assert len(outputs(tmp_path / "data" / namespace / "big")) == rows
        outcome = f"{rows} completed exactly once in {finished:.0f}s"
    else:
        items = await conn_items(messaging.database_url, batch)
        assert set(by_item) == items, "every item's message is in the queue, and nothing else"
        assert sum(by_item.values()) == depth
        outcome = f"queue read back in {finished:.0f}s: {len(by_item)} items, each there"
    print(
        f"\noperator SIGKILLed {kills} times (seed {seed}) at published = {kills_at}: "
        f"{depth - rows} duplicate messages (bound {kills} x {CHUNK}), 0 lost; publishing "
        f"{publishing:.0f}s; {outcome}"
    )


async def conn_items(database_url: str, batch: str) -> set[str]:
    conn: asyncpg.Connection = await asyncpg.connect(database_url)
    try:
        return {r["id"] for r in await conn.fetch("SELECT id FROM jobs WHERE batch = $1", batch)}
    finally:
        await conn.close()
