"""RabbitMQ topology every component declares the same way, idempotently.

Exchange `images` (direct) routes jobs; each work queue dead-letters into `images.dlx`, whose
queue `images.dlx.q` keeps what could not be processed. A batch gets its own queue, bound to the
same exchange under its own routing key, so its depth is the batch's backlog (what KEDA scales on).

`QUEUE_TYPE` chooses the type of every queue (`classic`, the default, or `quorum`). A quorum queue
that dead-letters (work and retry-delay queues) does so at least once — `x-dead-letter-strategy:
at-least-once`, which RabbitMQ honours only with `x-overflow: reject-publish` (otherwise it falls
back to at-most-once without a word) — so nothing moving between a work queue, its delay queues
and the DLQ is lost if a node fails on the way. Classic queues are declared with exactly the
arguments they always had, so existing queues keep redeclaring cleanly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue
from pamqp.common import FieldTable

from imagebatch.core.settings import CommonSettings

QueueType = Literal["classic", "quorum"]

DEAD_LETTER_ROUTING_KEY = "dead"
"""Everything dead-lettered lands under this key, whatever queue it came from."""


@dataclass(frozen=True)
class Topology:
    """The declared exchanges and queues a component works with."""

    exchange: AbstractExchange
    dead_letter_exchange: AbstractExchange
    dead_letter_queue: AbstractQueue
    work_queue: AbstractQueue


def type_arguments(queue_type: QueueType, *, dead_letters: bool) -> FieldTable:
    """The arguments that make a queue of `queue_type` (none for classic, as before); a quorum
    queue that dead-letters does it at least once."""
    if queue_type == "classic":
        return {}
    arguments: FieldTable = {"x-queue-type": "quorum"}
    if dead_letters:
        arguments["x-dead-letter-strategy"] = "at-least-once"
        arguments["x-overflow"] = "reject-publish"
    return arguments


def work_queue_arguments(settings: CommonSettings) -> FieldTable:
    """Arguments of every work queue; all declarations must agree or RabbitMQ refuses them."""
    return {
        "x-dead-letter-exchange": settings.dlx,
        "x-dead-letter-routing-key": DEAD_LETTER_ROUTING_KEY,
        **type_arguments(settings.queue_type, dead_letters=True),
    }


def delay_queue_arguments(
    queue_type: QueueType, *, ttl_ms: int, work_queue: str, idle_ms: int
) -> FieldTable:
    """A retry-delay queue: its messages expire after `ttl_ms` (or their own shorter expiration)
    into `work_queue` through the default exchange; the queue deletes itself after `idle_ms`
    unused."""
    return {
        "x-message-ttl": ttl_ms,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": work_queue,
        "x-expires": idle_ms,
        **type_arguments(queue_type, dead_letters=True),
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
    dlq = await channel.declare_queue(
        settings.dlq,
        durable=True,
        arguments=type_arguments(settings.queue_type, dead_letters=False),
    )
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
