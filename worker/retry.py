"""Retrying later and dead-lettering: the two ways a message leaves the worker unsuccessfully.

Debian's RabbitMQ 3.10 has no delayed-message exchange, so a retry is a re-publish of the original
body into a *delay queue*: a queue nobody consumes, whose messages expire after the delay and are
then dead-lettered (by the broker) straight back to the work queue they came from through the
default exchange. One delay queue per delay tier (base·2ⁿ, capped) keeps RabbitMQ's
expire-at-the-head rule harmless: within a queue every message waits at most the queue's TTL, and
each message additionally carries its own jittered, shorter expiration. Idle delay queues delete
themselves (`x-expires`, always longer than their TTL and reset by the declaration made before
every retry publish, so a queue never disappears with a message in it).

The attempt number travels in our own header (`imagebatch.core.headers.ATTEMPT`); a dead-lettered
message carries the reason, a machine-readable code, the attempt count, the work queue to replay
it into and the time it failed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractIncomingMessage

from imagebatch.core import headers as h
from imagebatch.core.delays import Backoff, delay_queue_name, ttl_ms_of
from imagebatch.core.topology import DEAD_LETTER_ROUTING_KEY, QueueType, delay_queue_arguments

MAX_REASON_LENGTH = 1000
DELAY_QUEUE_IDLE_MS = 3_600_000
"""How long an unused delay queue outlives its TTL before the broker deletes it."""


def carried_headers(message: AbstractIncomingMessage) -> dict[str, Any]:
    """The original headers, minus what describes an earlier failure (ours or the broker's)."""
    return {
        k: v
        for k, v in (message.headers or {}).items()
        if k not in h.DEAD_LETTER_ONLY and not k.startswith(("x-first-death", "x-last-death"))
    }


def copy_message(
    message: AbstractIncomingMessage, headers: Mapping[str, Any], **extra: Any
) -> aio_pika.Message:
    """A persistent message with the original body bytes (never re-encoded: re-encoding would
    change what the producer sent, e.g. the seed's short form) and properties."""
    return aio_pika.Message(
        body=message.body,
        headers=dict(headers),
        content_type=message.content_type or "application/json",
        content_encoding=message.content_encoding,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        timestamp=message.timestamp,
        type=message.type,
        app_id=message.app_id,
        **extra,
    )


class Redelivery:
    """Publishes delayed copies and dead letters on the consumer's confirm channel, so each
    returns only once the broker holds the new copy (and the caller may then ack the original).
    How long to wait and with which attempt number is decided elsewhere
    (`imagebatch.worker.disposition`); this only carries it out."""

    def __init__(
        self,
        channel: AbstractChannel,
        dead_letter_exchange: AbstractExchange,
        work_queue: str,
        backoff: Backoff,
        *,
        longest: float | None = None,
        queue_type: QueueType = "classic",
    ) -> None:
        self._channel = channel
        self._queue_type: QueueType = queue_type
        self._dlx = dead_letter_exchange
        self._work_queue = work_queue
        self.backoff = backoff
        self.longest = longest
        """The longest wait beyond the backoff's cap (a throttling origin's Retry-After)."""

    async def defer(
        self,
        message: AbstractIncomingMessage,
        *,
        attempt: int,
        delay: float,
        throttles: int | None = None,
    ) -> None:
        """Send the message back to the work queue after `delay` seconds, as attempt `attempt`
        (the same number when nothing was tried, e.g. another delivery held the job), with
        `throttles` throttling waits recorded (unchanged when None)."""
        ttl_ms = ttl_ms_of(self.backoff.tier(delay, longest=self.longest))
        name = delay_queue_name(self._work_queue, ttl_ms)
        await self._channel.declare_queue(
            name,
            durable=True,
            arguments=delay_queue_arguments(
                self._queue_type,
                ttl_ms=ttl_ms,
                work_queue=self._work_queue,
                idle_ms=ttl_ms + DELAY_QUEUE_IDLE_MS,
            ),
        )
        carried = carried_headers(message)
        carried[h.ATTEMPT] = attempt
        carried[h.QUEUE] = self._work_queue
        if throttles is not None:
            carried[h.THROTTLES] = throttles
        copy = copy_message(message, carried, expiration=max(0.001, min(delay, ttl_ms / 1000)))
        await self._channel.default_exchange.publish(copy, routing_key=name, mandatory=True)

    async def dead_letter(
        self, message: AbstractIncomingMessage, *, reason: str, code: str, attempt: int
    ) -> None:
        """Send the message to the dead-letter queue with why, how often and from where."""
        carried = carried_headers(message)
        carried.update(
            {
                h.REASON: reason[:MAX_REASON_LENGTH],
                h.CODE: code,
                h.ATTEMPT: attempt,
                h.QUEUE: self._work_queue,
                h.FAILED_AT: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            }
        )
        await self._dlx.publish(
            copy_message(message, carried), routing_key=DEAD_LETTER_ROUTING_KEY, mandatory=True
        )
