"""Publishing a chunk of items: persistent messages with `mandatory` on a confirm channel, all
of the chunk in flight at once (pipelined confirms), and the ids the broker confirmed back."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from aio_pika.abc import AbstractExchange
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from pydantic import ValidationError

from imagebatch.core.broker import job_message
from imagebatch.core.imagebatch import RunSpec
from imagebatch.core.messages import ImageJob, Operation
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


def build_jobs(
    spec: RunSpec, items: Sequence[Item]
) -> tuple[list[ImageJob], list[tuple[str, str]]]:
    ops = [Operation(thumbnail=t) for t in spec.operations]
    jobs: list[ImageJob] = []
    invalid: list[tuple[str, str]] = []
    for item in items:
        try:
            jobs.append(
                ImageJob(
                    url=item.url, ops=ops, id=item.id, batch=spec.batch, output=spec.output_prefix
                )
            )
        except ValidationError as exc:
            invalid.append((item.id, f"the item cannot be a message: {exc.errors()[0]['msg']}"))
    return jobs, invalid


async def publish_chunk(
    exchange: AbstractExchange, spec: RunSpec, items: Sequence[Item]
) -> Outcome:
    """Publish `items` with their confirms awaited together."""
    jobs, invalid = build_jobs(spec, items)
    routing_key = batch_queue_name(spec.namespace, spec.name)
    tracer = trace.get_tracer("imagebatch.operator")
    attributes: dict[str, str | int] = {
        "imagebatch.batch": spec.batch,
        "messaging.batch.message_count": len(jobs),
    }

    async def publish(job: ImageJob, headers: dict[str, object]) -> None:
        await exchange.publish(
            job_message(job, headers=headers), routing_key=routing_key, mandatory=True
        )

    with tracer.start_as_current_span(
        f"{routing_key} publish", kind=SpanKind.PRODUCER, attributes=attributes
    ):
        # One span per chunk: each message's traceparent points at it, so the trace of an
        # item starts at the chunk that published it and goes on in the worker.
        headers = inject_headers()
        async with asyncio.timeout(CONFIRM_TIMEOUT_SECONDS):
            results = await asyncio.gather(
                *(publish(job, headers) for job in jobs), return_exceptions=True
            )
    confirmed = [job.id for job, result in zip(jobs, results, strict=True) if result is None]
    errors = [r for r in results if isinstance(r, BaseException)]
    return Outcome(confirmed, invalid, len(errors), errors[0] if errors else None)
