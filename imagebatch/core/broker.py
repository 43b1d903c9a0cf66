"""Connecting to RabbitMQ and publishing job messages the way every producer must.

Producers (api, operator, the dlq replay command) publish persistent JSON with a stable
`message_id` and the trace context in headers, on a channel with publisher confirms, so a publish
that returned is on the broker.

`RABBIT_URL` may name several nodes of one cluster, comma-separated. aio-pika's robust connection
reconnects only to the URL it was given (mosquito/aio-pika#141 is open; a round-robin class was
proposed in #680 and not merged), so `ClusterConnection` moves to the next node after every
failed attempt or lost connection, and `connect` tries each node in turn for the first one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
)
from aio_pika.connection import make_url
from yarl import URL

from imagebatch.core.messages import ImageJob, encode_items, encode_job
from imagebatch.core.telemetry import inject_headers


def broker_urls(setting: str) -> tuple[str, ...]:
    """The nodes `RABBIT_URL` names, in its order: comma-separated AMQP URLs, blanks ignored
    (a comma inside a password must be percent-encoded, as any reserved character)."""
    urls = tuple(part.strip() for part in setting.split(",") if part.strip())
    if not urls:
        raise ValueError("RABBIT_URL names no broker")
    for url in urls:
        if URL(url).scheme not in ("amqp", "amqps"):
            raise ValueError(f"RABBIT_URL: {URL(url).with_password(None)!s} is not an amqp URL")
    return urls


def in_turn(urls: Sequence[str], first: int) -> tuple[str, ...]:
    """`urls` starting from index `first` and wrapping around: the order in which a connection
    that begins at node `first` tries the others."""
    start = first % len(urls)
    return tuple(urls[start:]) + tuple(urls[:start])


class ClusterConnection(aio_pika.RobustConnection):
    """A robust connection to one of several nodes: every close — of a failed attempt or of a
    live connection — points it at the next node, so the reconnect loop (one attempt every
    `reconnect_interval`) goes round the cluster instead of waiting on a dead node."""

    def __init__(self, urls: Sequence[str], **kwargs: Any) -> None:
        self.nodes = tuple(make_url(url) for url in urls)
        self._node = 0
        super().__init__(self.nodes[0], **kwargs)

    async def _on_connection_close(self, closing: asyncio.Future[Any]) -> None:
        # aio-pika calls this for a connection lost and for an attempt that failed (and the
        # transport's next attempt reads `self.url`).
        if len(self.nodes) > 1 and not self._close_called:
            self._node = (self._node + 1) % len(self.nodes)
            self.url = self.nodes[self._node]
        await super()._on_connection_close(closing)


async def connect(setting: str) -> ClusterConnection:
    """A robust connection to the first node of `setting` (`RABBIT_URL`) that answers: it
    reconnects by itself, to the next node when one goes away, and restores channels, queues
    and consumers. Raises the last node's error when none answers.

    An attempt that fails (or is cancelled, as a startup deadline does) is closed here. Left to
    the garbage collector, aio-pika's finalizer schedules the close on whatever thread collects
    it, and from a thread without the event loop that close is never awaited."""
    urls = broker_urls(setting)
    for first in range(len(urls)):
        connection = ClusterConnection(in_turn(urls, first))
        try:
            await connection.connect()
        except Exception:
            with contextlib.suppress(Exception):
                await connection.close()
            if first == len(urls) - 1:
                raise
            continue
        except BaseException:
            with contextlib.suppress(Exception):
                await connection.close()
            raise
        return connection
    raise AssertionError("broker_urls returns at least one URL")


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
