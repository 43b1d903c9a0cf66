"""The batch's queue on the broker: declared before anything is published, watched for the
status (depth and consumers), deleted with the batch together with its workers' delay queues."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange

from imagebatch.core.delays import (
    DEFAULT_BACKOFF_MAX_SECONDS,
    DEFAULT_RETRY_AFTER_MAX_SECONDS,
    delay_queue_names,
)
from imagebatch.core.imagebatch import RunSpec
from imagebatch.core.settings import CommonSettings
from imagebatch.core.topology import batch_queue_name, declare_topology
from imagebatch.operator.progress import QueueStats


async def ensure_queue(
    channel: AbstractChannel, settings: CommonSettings, spec: RunSpec
) -> AbstractExchange:
    """Declare the exchange, dead-letter pair and the batch's queue (bound under its own name as
    routing key) exactly as the workers declare them; returns the exchange to publish to."""
    queue = batch_queue_name(spec.namespace, spec.name)
    topology = await declare_topology(channel, settings, queue=queue, routing_key=queue)
    return topology.exchange


@contextlib.asynccontextmanager
async def own_channel(connection: AbstractConnection) -> AsyncIterator[AbstractChannel]:
    """A channel for one question the broker may answer by closing it (a queue that does not
    exist), so that the channel publishing is never the one closed."""
    channel = await connection.channel()
    try:
        yield channel
    finally:
        if not channel.is_closed:
            await channel.close()


async def queue_stats(connection: AbstractConnection, spec: RunSpec) -> QueueStats | None:
    """Ready messages and consumers of the batch's queue (None if it does not exist)."""
    name = batch_queue_name(spec.namespace, spec.name)
    async with own_channel(connection) as channel:
        try:
            queue = await channel.declare_queue(name, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return None
    result = queue.declaration_result
    return QueueStats(
        messages=int(result.message_count or 0), consumers=int(result.consumer_count or 0)
    )


def queues_of(spec: RunSpec) -> list[str]:
    """The batch's queue and every delay queue its workers may have made (throttling waits
    included)."""
    queue = batch_queue_name(spec.namespace, spec.name)
    delays = delay_queue_names(
        queue,
        spec.backoff_seconds,
        DEFAULT_BACKOFF_MAX_SECONDS,
        longest=DEFAULT_RETRY_AFTER_MAX_SECONDS,
    )
    return [queue, *delays]


async def delete_queues(connection: AbstractConnection, spec: RunSpec) -> None:
    """Delete the batch's queues (missing ones are fine)."""

    async def delete(name: str) -> None:
        async with own_channel(connection) as channel:
            with contextlib.suppress(aiormq.exceptions.ChannelNotFoundEntity):
                await channel.queue_delete(name)

    await asyncio.gather(*(delete(name) for name in queues_of(spec)))
