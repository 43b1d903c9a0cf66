"""Connecting to RabbitMQ and publishing job messages the way every producer must.

Producers (api, operator, the dlq replay command) publish persistent JSON with a stable
`message_id` and the trace context in headers, on a channel with publisher confirms, so a publish
that returned is on the broker.
"""

from __future__ import annotations

import contextlib
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractRobustConnection,
)
from aio_pika.connection import make_url

from imagebatch.core.messages import ImageJob, encode_items, encode_job
from imagebatch.core.telemetry import inject_headers


async def connect(url: str) -> AbstractRobustConnection:
    """A robust connection: it reconnects by itself and restores channels, queues and consumers.

    An attempt that fails (or is cancelled, as a startup deadline does) is closed here. Left to
    the garbage collector, aio-pika's finalizer schedules the close on whatever thread collects
    it, and from a thread without the event loop that close is never awaited."""
    connection = aio_pika.RobustConnection(make_url(url))
    try:
        await connection.connect()
    except BaseException:
        with contextlib.suppress(Exception):
            await connection.close()
        raise
    return connection


async def producer_channel(connection: AbstractConnection) -> AbstractChannel:
    """A channel with publisher confirms on which a returned (unroutable) message raises
    `aio_pika.exceptions.DeliveryError` instead of being dropped."""
    channel: AbstractChannel = await connection.channel(
        publisher_confirms=True, on_return_raises=True
    )
    return channel


def job_message(job: ImageJob, *, headers: dict[str, Any] | None = None) -> aio_pika.Message:
    """The persistent message for `job`, carrying the current trace context."""
    return aio_pika.Message(
        body=encode_job(job),
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=job.id,
        headers=inject_headers(headers),
    )


def item_messages(
    template: ImageJob, items: list[tuple[str, str]], *, headers: dict[str, Any]
) -> list[aio_pika.Message]:
    """The messages `job_message` makes for jobs equal to `template` but for their (id, url),
    all carrying `headers` (one trace context for the lot): a batch's items, cheaply."""
    return [
        aio_pika.Message(
            body=body,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=job_id,
            headers=headers,
        )
        for (job_id, _url), body in zip(items, encode_items(template, items), strict=True)
    ]


async def publish_job(
    exchange: AbstractExchange,
    job: ImageJob,
    routing_key: str,
    *,
    headers: dict[str, Any] | None = None,
) -> None:
    """Publish one job. On a `producer_channel` this returns once the broker has it, and an
    unroutable job (mandatory) raises instead of vanishing."""
    await exchange.publish(
        job_message(job, headers=headers), routing_key=routing_key, mandatory=True
    )
