"""A RabbitMQ node dies (SIGKILL) while 10,000 messages are being published to a quorum queue
on a 3-node cluster — by the api (`POST /enqueue` over rows of `images`) and by the operator's
publisher (its pump: items made from `images`, published in chunks, confirms recorded): every
message a producer saw confirmed (its job's `published_at` is set) is in the queue, and
publishing goes on by itself to the last row.

The node killed is the queue's leader, which is also the node both producers are connected to
(the first of RABBIT_URL, where the queue was declared). The operator's pump runs in the test's
process on the operator's own context (no Kubernetes: the pump does not use it).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import cast

import asyncpg
import pytest

from imagebatch.core.broker import connect
from imagebatch.core.imagebatch import run_spec
from imagebatch.core.settings import CommonSettings
from imagebatch.core.topology import batch_queue_name
from imagebatch.devservers.rabbitmq_cluster import RabbitMQCluster
from imagebatch.operator.pump import Pump
from imagebatch.operator.settings import OperatorSettings
from tests.support.api import api_settings, running_api
from tests.support.pump_context import pump_context

pytestmark = pytest.mark.slow

ROWS = 10_000
KILL_AT = 3_000
"""Messages confirmed before the node is killed."""
ENQUEUE_LIMIT = 1_000


async def seed_images(database_url: str) -> None:
    conn: asyncpg.Connection = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "INSERT INTO images (url) SELECT 'http://127.0.0.1:9/' || g || '.jpg'"
            " FROM generate_series(1, $1) AS g",
            ROWS,
        )
    finally:
        await conn.close()


async def confirmed_ids(database_url: str) -> set[str]:
    """Jobs whose message a producer saw confirmed."""
    conn: asyncpg.Connection = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT id FROM jobs WHERE published_at IS NOT NULL")
    finally:
        await conn.close()
    return {row["id"] for row in rows}


async def delivered_ids(rabbit_url: str, queue: str) -> list[str]:
    """The message ids of everything in `queue`, consumed (auto-ack) until it is empty."""
    connection = await connect(rabbit_url)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        expected = int(declared.declaration_result.message_count or 0)
        seen: list[str] = []
        done = asyncio.Event()

        async def take(message: object) -> None:
            seen.append(str(getattr(message, "message_id", "")))
            if len(seen) >= expected:
                done.set()

        if expected:
            await channel.set_qos(prefetch_count=2_000)
            tag = await declared.consume(take, no_ack=True)
            await asyncio.wait_for(done.wait(), timeout=120)
            await declared.cancel(tag)
    return seen


async def kill_leader_once(
    cluster: RabbitMQCluster,
    queue: str,
    published: Callable[[], Awaitable[int]],
    killed: dict[str, object],
) -> None:
    """Kill `queue`'s leader once `published()` reaches KILL_AT."""
    while (count := await published()) < KILL_AT:  # noqa: ASYNC110 (polls PostgreSQL)
        await asyncio.sleep(0.05)
    leader = await asyncio.to_thread(cluster.queue_leader, queue)
    await asyncio.to_thread(cluster.kill, leader)
    killed.update(node=leader, confirmed_before=count, at=time.monotonic())


async def published_count(database_url: str) -> int:
    conn: asyncpg.Connection = await asyncpg.connect(database_url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM jobs WHERE published_at IS NOT NULL"))
    finally:
        await conn.close()


async def publish_through_the_api(
    messaging: CommonSettings, tmp_path: Path, on_started: Callable[[], None]
) -> dict[str, int]:
    """POST /enqueue until every row is published; how many calls answered what."""
    answers: dict[str, int] = {}
    settings = api_settings(messaging, tmp_path, enqueue_max=ENQUEUE_LIMIT)
    async with running_api(settings) as client:
        on_started()
        while await published_count(messaging.database_url) < ROWS:
            response = await client.post("/enqueue", params={"limit": ENQUEUE_LIMIT})
            answers[str(response.status_code)] = answers.get(str(response.status_code), 0) + 1
            if response.status_code != 200:
                await asyncio.sleep(0.2)
    return answers


async def publish_through_the_operator(
    messaging: CommonSettings, queue_name: str, on_started: Callable[[], None]
) -> dict[str, int]:
    """The operator's pump, run until every item is published."""
    settings = OperatorSettings(**messaging.model_dump())
    namespace, name = queue_name.split(".")[-2:]
    spec = run_spec(namespace, name, {"source": {"postgres": {"table": "images", "limit": ROWS}}})
    pool = await asyncpg.create_pool(messaging.database_url, min_size=1, max_size=4)
    broker = await connect(messaging.rabbit_url)
    context = pump_context(settings, pool, broker)
    try:
        gate = asyncio.Event()
        gate.set()
        on_started()
        problems: dict[str, int] = {}
        pump = Pump(context, spec.batch, str(uuid.uuid4()), gate)
        run = asyncio.create_task(pump.run(spec))
        while not run.done():
            if pump.problem is not None:
                problems[pump.problem.reason] = problems.get(pump.problem.reason, 0) + 1
            await asyncio.sleep(0.1)
        await run
        return problems
    finally:
        await context.sources.close()
        await broker.close()
        await pool.close()


@pytest.mark.parametrize("producer", ["api", "operator"])
async def test_a_node_killed_during_10000_publishes_loses_no_confirmed_message(
    rabbit_cluster: RabbitMQCluster, database_url: str, tmp_path: Path, producer: str
) -> None:
    suffix = uuid.uuid4().hex[:8]
    queue = (
        f"images.{suffix}.q" if producer == "api" else batch_queue_name("chaos", f"pub-{suffix}")
    )
    messaging = CommonSettings(
        rabbit_url=rabbit_cluster.url,
        database_url=database_url,
        exchange=f"images.{suffix}",
        queue=queue,
        dlx=f"images.{suffix}.dlx",
        dlq=f"images.{suffix}.dlx.q",
        queue_type="quorum",
    )
    await seed_images(database_url)
    killed: dict[str, object] = {}
    killer: list[asyncio.Task[None]] = []

    def start_killer() -> None:
        killer.append(
            asyncio.create_task(
                kill_leader_once(
                    rabbit_cluster, queue, lambda: published_count(database_url), killed
                )
            )
        )

    began = time.monotonic()
    if producer == "api":
        seen = await publish_through_the_api(messaging, tmp_path, start_killer)
    else:
        seen = await publish_through_the_operator(messaging, queue, start_killer)
    took = time.monotonic() - began
    await killer[0]
    letter = str(killed["node"])
    restart = asyncio.create_task(asyncio.to_thread(rabbit_cluster.restart, letter))
    try:
        confirmed = await confirmed_ids(database_url)
        delivered = await delivered_ids(rabbit_cluster.url, queue)
    finally:
        await restart  # the next test finds all three nodes up

    missing = confirmed - set(delivered)
    print(
        f"\n[{producer}] {ROWS} messages published in {took:.1f}s; node {letter} (the queue's "
        f"leader) SIGKILLed after {killed['confirmed_before']} confirmed; {seen}; confirmed "
        f"{len(confirmed)}, in the queue {len(delivered)} ({len(delivered) - len(set(delivered))}"
        f" duplicates), confirmed but missing {len(missing)}"
    )
    assert int(cast(int, killed["confirmed_before"])) < ROWS, "the kill was mid-publish"
    assert len(confirmed) == ROWS, "publishing went on to the last row"
    assert missing == set(), "every confirmed message is delivered"
