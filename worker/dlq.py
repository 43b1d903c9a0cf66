"""`imagebatch dlq replay`: send dead letters back to the queue they failed in, after a fix.

Each replayed copy keeps its body and trace context, loses the failure headers, starts again at
attempt 1 with no throttling waits and counts how often it was replayed. A dead letter is acked
only once the broker confirmed its replayed copy, so a replay interrupted at any point loses
nothing (at worst a message is replayed twice, which the worker handles as a duplicate). Only
the messages present when the replay starts are taken, so a message that fails again at once is
not replayed in a loop.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from aio_pika.abc import AbstractIncomingMessage

from imagebatch.core import headers as h
from imagebatch.core.broker import connect, producer_channel
from imagebatch.core.settings import CommonSettings
from imagebatch.core.topology import declare_topology
from imagebatch.worker.retry import carried_headers, copy_message

log = logging.getLogger(__name__)


def origin_queue(headers: Mapping[str, Any], default: str) -> str:
    """The work queue a dead letter came from: our header, else the broker's `x-death`."""
    queue = headers.get(h.QUEUE)
    if isinstance(queue, bytes):
        queue = queue.decode()
    if isinstance(queue, str) and queue:
        return queue
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], Mapping):
        first = deaths[0].get("queue")
        if isinstance(first, bytes):
            first = first.decode()
        if isinstance(first, str) and first:
            return first
    return default


def replay_headers(message: AbstractIncomingMessage) -> dict[str, Any]:
    carried = carried_headers(message)
    carried.pop(h.ATTEMPT, None)
    carried.pop(h.THROTTLES, None)
    carried.pop(h.QUEUE, None)
    previous = carried.get(h.REPLAYS, 0)
    carried[h.REPLAYS] = (previous if isinstance(previous, int) else 0) + 1
    return carried


async def replay(settings: CommonSettings, *, limit: int | None = None) -> int:
    """Republish up to `limit` dead letters (all present now, by default); returns how many."""
    connection = await connect(settings.rabbit_url)
    async with connection:
        channel = await producer_channel(connection)
        topology = await declare_topology(channel, settings)
        dead_letters = topology.dead_letter_queue
        present = int(dead_letters.declaration_result.message_count or 0)
        budget = present if limit is None else min(limit, present)
        replayed = 0
        while replayed < budget:
            message = await dead_letters.get(no_ack=False, fail=False)
            if message is None:
                break
            target = origin_queue(message.headers or {}, settings.queue)
            try:
                await channel.default_exchange.publish(
                    copy_message(message, replay_headers(message)),
                    routing_key=target,
                    mandatory=True,
                )
            except Exception:
                await message.nack(requeue=True)
                raise
            await message.ack()
            replayed += 1
            log.info("replayed %s to %s", message.message_id or "a message", target)
    return replayed
