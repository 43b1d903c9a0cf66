"""RabbitMQ topology every component declares the same way, idempotently.

Exchange `images` (direct) routes jobs; each work queue dead-letters into `images.dlx`, whose
queue `images.dlx.q` keeps what could not be processed. A batch gets its own queue, bound to the
same exchange under its own routing key, so its depth is the batch's backlog (what KEDA scales on).
"""

from __future__ import annotations

from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue
from pamqp.common import FieldTable

from imagebatch.core.settings import CommonSettings

DEAD_LETTER_ROUTING_KEY = "dead"
"""Everything dead-lettered lands under this key, whatever queue it came from."""


@dataclass(frozen=True)
class Topology:
    """The declared exchanges and queues a component works with."""

    exchange: AbstractExchange
    dead_letter_exchange: AbstractExchange
    dead_letter_queue: AbstractQueue
    work_queue: AbstractQueue


def work_queue_arguments(settings: CommonSettings) -> FieldTable:
    """Arguments of every work queue; all declarations must agree or RabbitMQ refuses them."""
    return {
        "x-dead-letter-exchange": settings.dlx,
        "x-dead-letter-routing-key": DEAD_LETTER_ROUTING_KEY,
    }


async def declare_topology(
    channel: AbstractChannel,
    settings: CommonSettings,
    *,
    queue: str | None = None,
    routing_key: str | None = None,
) -> Topology:
    """Declare exchange, dead-letter pair and one work queue (default: the settings' main queue)."""
    exchange = await channel.declare_exchange(
        settings.exchange, aio_pika.ExchangeType.DIRECT, durable=True
    )
    dlx = await channel.declare_exchange(settings.dlx, aio_pika.ExchangeType.DIRECT, durable=True)
    dlq = await channel.declare_queue(settings.dlq, durable=True)
    await dlq.bind(dlx, routing_key=DEAD_LETTER_ROUTING_KEY)
    work = await channel.declare_queue(
        queue or settings.queue, durable=True, arguments=work_queue_arguments(settings)
    )
    await work.bind(exchange, routing_key=routing_key or settings.routing_key)
    return Topology(
        exchange=exchange, dead_letter_exchange=dlx, dead_letter_queue=dlq, work_queue=work
    )


def batch_queue_name(namespace: str, name: str) -> str:
    """The queue (and routing key) of one ImageBatch."""
    return f"images.batch.{namespace}.{name}"
