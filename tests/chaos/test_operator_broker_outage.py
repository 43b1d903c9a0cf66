"""RabbitMQ goes away while the operator publishes a batch and comes back: the batch says so
(`Degraded`/`BrokerUnavailable`) instead of the operator crashing, publishing resumes by itself,
and every item reaches the queue."""

from __future__ import annotations

import asyncio
import uuid

import aio_pika
import asyncpg
import pytest

from imagebatch.core.settings import CommonSettings
from imagebatch.core.topology import batch_queue_name
from imagebatch.devservers.rabbitmq import RabbitMQServer
from tests.support.operator import Batches, OperatorFactory

ROWS = 6_000
CHUNK = 200


def degraded(status: dict[str, object]) -> dict[str, str] | None:
    for c in status.get("conditions") or []:  # type: ignore[attr-defined]
        if c["type"] == "Degraded":
            return c  # type: ignore[no-any-return]
    return None


@pytest.mark.parametrize("outage", ["stop", "kill"])
async def test_a_broker_outage_mid_publish_degrades_the_batch_and_publishing_resumes(
    own_broker: RabbitMQServer,
    start_operator: OperatorFactory,
    connections_secret: str,
    batches: Batches,
    messaging: CommonSettings,
    namespace: str,
    outage: str,
) -> None:
    name = f"outage-{outage}"
    conn: asyncpg.Connection = await asyncpg.connect(messaging.database_url)
    try:
        await conn.execute(
            "INSERT INTO images (url) SELECT 'http://127.0.0.1:9/' || g || '.jpg'"
            " FROM generate_series(1, $1) AS g",
            ROWS,
        )
    finally:
        await conn.close()
    suffix = uuid.uuid4().hex[:8]
    operator = await start_operator(
        RABBIT_URL=own_broker.url, EXCHANGE=f"images.{suffix}", PUBLISH_CHUNK_SIZE=str(CHUNK)
    )
    await batches.create(
        name, {"source": {"postgres": {"table": "images", "limit": ROWS}}, "suspend": True}
    )
    await batches.wait_phase(name, "Suspended")
    await batches.patch_spec(name, {"suspend": False})
    await batches.wait_status(name, lambda s: int(s.get("published") or 0) >= CHUNK)

    await asyncio.to_thread(own_broker.stop if outage == "stop" else own_broker.kill)
    down = await batches.wait_status(
        name,
        lambda s: (degraded(s) or {}).get("reason") == "BrokerUnavailable",
        what="Degraded/BrokerUnavailable",
    )
    assert down["published"] < ROWS, "the outage really was mid-publish"
    assert operator.process is not None
    assert operator.process.returncode is None, "the operator stays up"

    await asyncio.to_thread(own_broker.start)
    done = await batches.wait_status(
        name, lambda s: s.get("published") == ROWS, within=120, what="every item published"
    )
    recovered = await batches.wait_status(
        name, lambda s: (degraded(s) or {}).get("status") == "False", what="recovery"
    )
    assert degraded(recovered) is not None
    assert done["total"] == ROWS
    connection = await aio_pika.connect(own_broker.url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(batch_queue_name(namespace, name), passive=True)
        depth = int(queue.declaration_result.message_count or 0)
    assert ROWS <= depth <= ROWS + CHUNK, "nothing lost; at most the chunk in flight again"
