"""Publishing a chunk of items: persistent messages with `mandatory` on a confirm channel, all
of the chunk in flight at once (pipelined confirms), and the ids the broker confirmed back."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractExchange
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from pydantic import ValidationError

from imagebatch.core.broker import item_messages
from imagebatch.core.imagebatch import RunSpec
from imagebatch.core.messages import ImageJob, Operation, item_problem
from imagebatch.core.telemetry import inject_headers
from imagebatch.core.topology import batch_queue_name
from imagebatch.operator.items import Item

CONFIRM_TIMEOUT_SECONDS = 60.0
"""A chunk whose confirms have not all come by then is given up (and published again later):
a broker that went away must not hold the pump forever."""


@dataclass(frozen=True)
class Outcome:
    """What became of a chunk: confirmed ids, ids that can never be a message (with why), and
    how many the broker did not confirm (they stay unpublished and are tried again)."""

    confirmed: list[str]
    invalid: list[tuple[str, str]]
    unconfirmed: int
    error: BaseException | None = None


TEMPLATE_URL = "https://template.invalid/"


def build_messages(
    spec: RunSpec, items: Sequence[Item], headers: dict[str, Any]
) -> tuple[list[aio_pika.Message], list[tuple[str, str]]]:
    """The items' messages, and the items that can never be one (with why). What all items of a
    batch share (ops, batch, output) is validated once, as a model; each item's id and url by
    the same rules."""
    ops = [Operation(thumbnail=t) for t in spec.operations]
    try:
        template = ImageJob(
            url=TEMPLATE_URL, ops=ops, id="template", batch=spec.batch, output=spec.output_prefix
        )
    except ValidationError as exc:
        reason = f"the batch's items cannot be messages: {exc.errors()[0]['msg']}"
        return [], [(item.id, reason) for item in items]
    good: list[tuple[str, str]] = []
    invalid: list[tuple[str, str]] = []
    for item in items:
        problem = item_problem(item.id, item.url)
        if problem is None:
            good.append((item.id, item.url))
        else:
            invalid.append((item.id, f"the item cannot be a message: {problem}"))
    return item_messages(template, good, headers=headers), invalid


async def publish_chunk(
    exchange: AbstractExchange, spec: RunSpec, items: Sequence[Item]
) -> Outcome:
    """Publish `items` with their confirms awaited together."""
    routing_key = batch_queue_name(spec.namespace, spec.name)
    tracer = trace.get_tracer("imagebatch.operator")
    attributes: dict[str, str | int] = {
        "imagebatch.batch": spec.batch,
        "messaging.batch.message_count": len(items),
    }

    async def publish(message: aio_pika.Message) -> None:
        await exchange.publish(message, routing_key=routing_key, mandatory=True)

    with tracer.start_as_current_span(
        f"{routing_key} publish", kind=SpanKind.PRODUCER, attributes=attributes
    ):
        # One span per chunk: each message's traceparent points at it, so the trace of an
        # item starts at the chunk that published it and goes on in the worker.
        messages, invalid = build_messages(spec, items, inject_headers())
        async with asyncio.timeout(CONFIRM_TIMEOUT_SECONDS):
            results = await asyncio.gather(
                *(publish(message) for message in messages), return_exceptions=True
            )
    confirmed = [
        str(message.message_id)
        for message, result in zip(messages, results, strict=True)
        if result is None
    ]
    errors = [r for r in results if isinstance(r, BaseException)]
    return Outcome(confirmed, invalid, len(errors), errors[0] if errors else None)
