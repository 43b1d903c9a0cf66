"""Feeding a batch's queue: items are materialized from the source and published from
PostgreSQL's record, so a pump started again after a crash goes on from there.

Two loops run side by side: the materializer makes items a chunk at a time, and the publisher
publishes what is not yet published. The publisher works in half-chunks and overlaps each
half-chunk's publishing with the recording of the previous one, which is what keeps the broker
busy while PostgreSQL records confirms — and never lets more than `PUBLISH_CHUNK_SIZE` confirmed
messages go unrecorded: a half-chunk goes out only once the one before the previous is recorded.
That is the restart guarantee: a kill re-publishes at most one chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aio_pika.abc import AbstractExchange

from imagebatch.core.dependencies import BROKER_ERRORS, failing_as
from imagebatch.core.errors import DependencyDown
from imagebatch.core.imagebatch import RunSpec
from imagebatch.core.jobs import mark_published
from imagebatch.operator import items
from imagebatch.operator.context import OperatorContext
from imagebatch.operator.progress import Problem
from imagebatch.operator.publisher import Outcome, publish_chunk
from imagebatch.operator.queues import ensure_queue
from imagebatch.operator.sources import SourceConnection

log = logging.getLogger(__name__)
MAX_PAUSE_SECONDS = 30.0
UNAVAILABLE: dict[str, str] = {
    "database": "DatabaseUnavailable",
    "broker": "BrokerUnavailable",
}
"""The status condition's reason for each dependency the pump calls (`failing_as`)."""


class Pump:
    def __init__(self, ctx: OperatorContext, batch: str, uid: str, gate: asyncio.Event) -> None:
        self.ctx = ctx
        self.batch = batch
        self.uid = uid
        self.gate = gate
        """Set while publishing may go on (cleared: suspended, failed)."""
        self.published_all = False
        self.problem: Problem | None = None
        """Why publishing is paused right now, if it is."""
        self._made = asyncio.Event()

    async def run(self, spec: RunSpec) -> None:
        """Feed the queue until every item is published, riding out outages with a backoff."""
        pause = 0.5
        while True:
            try:
                await self._feed(spec)
                self.problem = None
                return
            except DependencyDown as exc:
                reason = UNAVAILABLE.get(exc.dependency, "PublishFailed")
                self.problem = Problem(reason, f"publishing paused: {exc}")
            except Exception as exc:  # e.g. the broker refused a message: not a reason to stop
                log.exception("%s: publishing failed", self.batch)
                self.problem = Problem("PublishFailed", f"publishing paused: {exc!r}")
            log.warning("%s: %s; again in %.1fs", self.batch, self.problem.message, pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, MAX_PAUSE_SECONDS)

    async def _feed(self, spec: RunSpec) -> None:
        with failing_as("database"):
            feed = await items.register(self.ctx.pool, spec, self.uid)
            source = (
                None
                if spec.urls is not None
                else await self.ctx.sources.for_namespace(spec.namespace)
            )
        with failing_as("broker"):
            channel = await self.ctx.broker.channel(publisher_confirms=True, on_return_raises=True)
        materializer = asyncio.create_task(
            self._materialize(spec, feed, source), name="materialize"
        )
        try:
            with failing_as("broker"):
                exchange = await ensure_queue(channel, self.ctx.settings, spec)
            while True:
                all_made = materializer.done()
                if all_made:
                    materializer.result()  # its error, if it failed
                self._made.clear()
                if await self._publish_pass(spec, exchange):
                    self.problem = None
                    continue
                if all_made:
                    break
                made = asyncio.create_task(self._made.wait())
                await asyncio.wait([materializer, made], return_when=asyncio.FIRST_COMPLETED)
                made.cancel()
        finally:
            materializer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await materializer
            with contextlib.suppress(*BROKER_ERRORS):
                await channel.close()
        self.published_all = True
        log.info("%s: all items published", self.batch)

    async def _materialize(
        self, spec: RunSpec, feed: items.Feed, source: SourceConnection | None
    ) -> None:
        chunk = self.ctx.settings.publish_chunk_size
        while not feed.materialized_all:
            await self.gate.wait()
            with failing_as("database"):
                feed = await items.materialize_step(self.ctx.pool, source, spec, self.uid, chunk)
            self._made.set()

    async def _publish_pass(self, spec: RunSpec, exchange: AbstractExchange) -> bool:
        """Publish what is unpublished now, in id order; returns whether there was any."""
        pool, half = self.ctx.pool, max(1, self.ctx.settings.publish_chunk_size // 2)
        found = False
        recording: asyncio.Task[None] | None = None
        fetching = asyncio.create_task(items.unpublished(pool, self.batch, after="", limit=half))
        try:
            while True:
                await self.gate.wait()
                with failing_as("database"):
                    fresh, taken = await fetching
                if not fresh and not taken:
                    return found
                found = True
                after = max([*(i.id for i in fresh), *taken])
                fetching = asyncio.create_task(
                    items.unpublished(pool, self.batch, after=after, limit=half)
                )
                if taken:  # published before a crash, and a worker has it: only the record is due
                    with failing_as("database"):
                        await mark_published(pool, taken)
                began = time.perf_counter()
                with failing_as("broker"):
                    outcome = await publish_chunk(exchange, spec, fresh)
                if recording is not None:
                    await recording
                recording = asyncio.create_task(self._record(outcome, began))
                if outcome.error is not None:
                    await recording
                    with failing_as("broker"):
                        raise outcome.error
        finally:
            fetching.cancel()
            if recording is not None and not recording.done():
                await asyncio.wait([recording])

    async def _record(self, outcome: Outcome, began: float) -> None:
        pool, metrics = self.ctx.pool, self.ctx.metrics
        with failing_as("database"):
            await mark_published(pool, outcome.confirmed)
            if outcome.invalid:
                await items.fail(pool, outcome.invalid)
        metrics.items_published.inc(len(outcome.confirmed))
        metrics.publish_seconds.observe(time.perf_counter() - began)
