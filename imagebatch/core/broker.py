"""Connecting to RabbitMQ and publishing job messages the way every producer must.

Producers (api, operator, the dlq replay command) publish persistent JSON with a stable
`message_id` and the trace context in headers, on a channel with publisher confirms, so a publish
that returned is on the broker.
"""

from __future__ import annotations

from typing import Any

import aio_pika
from aio_pika.abc import AbstractExchange, AbstractRobustConnection

from imagebatch.core.messages import ImageJob, encode_job
from imagebatch.core.telemetry import inject_headers


async def connect(url: str) -> AbstractRobustConnection:
    """A robust connection: it reconnects by itself and restores channels, queues and consumers."""
    connection: AbstractRobustConnection = await aio_pika.connect_robust(url)
    return connection


def job_message(job: ImageJob, *, headers: dict[str, Any] | None = None) -> aio_pika.Message:
    """The persistent message for `job`, carrying the current trace context."""
    return aio_pika.Message(
        body=encode_job(job),
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=job.id,
        headers=inject_headers(headers),
    )


async def publish_job(
    exchange: AbstractExchange,
    job: ImageJob,
    routing_key: str,
    *,
    headers: dict[str, Any] | None = None,
) -> None:
    """Publish one job; on a confirm channel this returns once the broker has it (mandatory:
    an unroutable job raises instead of vanishing)."""
    await exchange.publish(
        job_message(job, headers=headers), routing_key=routing_key, mandatory=True
    )
