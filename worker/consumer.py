"""The broker side: consume, and carry out what `disposition.decide` made of each delivery.

The consumer decides nothing about failures itself: it runs the pipeline, hands the outcome or
the error to `decide` (the policy table is in `imagebatch.worker.disposition`) and carries out
the disposition it gets — ack; retry after a delay (an attempt spent); wait without spending an
attempt (a throttling origin, another delivery holding the job); dead-letter with a code; or
requeue after a pause because a dependency of ours is down. Carrying one out can itself find a
dependency down (PostgreSQL refusing the record, the broker the publish): that is decided again,
as a requeue. A delivery that claimed the job (its row counted an attempt) and then spent none —
a wait, a requeue — gives the count back and shows the job `pending` with why.

Each outcome is recorded in PostgreSQL first and the new copy confirmed by the broker before the
original is acked, so a crash at any point means a redelivery, never a loss. Processing runs in
tasks of our own rather than aiormq's consumer tasks: closing a channel (a broker restart) cancels
those, and a job half-way through should finish and let its ack fail harmlessly instead — the
redelivered copy is then recognised as done.

While a dependency is down — the last delivery that ended in a requeue said so, and none has
been acked since — `dependency_down` says which and why, for `/readyz`.

Stopping (SIGTERM, a scale-down) cancels the consumer, gives the jobs in hand
SHUTDOWN_TIMEOUT_SECONDS to finish, and hands back the ones still downloading or being
thumbnailed then: their claim's attempt is given back and the message nacked to the head of
the queue, so another worker takes it at once and nothing counts against the job.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Coroutine
from typing import Any, assert_never

from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from imagebatch.core.dependencies import BROKER_ERRORS
from imagebatch.core.errors import DependencyDown, ImageBatchError
from imagebatch.core.headers import attempt_of, throttles_of
from imagebatch.core.messages import SAFE_ID, ImageJob, decode_job
from imagebatch.core.topology import declare_topology
from imagebatch.worker.disposition import (
    Ack,
    DeadLetter,
    Disposition,
    Policy,
    Requeue,
    RetryAfter,
    Wait,
    decide,
)
from imagebatch.worker.metrics import WorkerMetrics
from imagebatch.worker.outages import OutageReporter
from imagebatch.worker.pipeline import Outcome, Pipeline
from imagebatch.worker.records import JobRecords
from imagebatch.worker.retry import Redelivery
from imagebatch.worker.settings import WorkerSettings
from imagebatch.worker.timeline import PHASES, Timeline
from imagebatch.worker.tracing import consumer_origin

log = logging.getLogger(__name__)

OUTPUT_DEPENDENCIES = frozenset({"output store", "disk"})
"""Outages that stop a batch's thumbnails from being stored (its Degraded/OutputUnavailable)."""

PUBLISH_TIMEOUT = 30.0
GIVE_BACK_TIMEOUT = 5.0
"""How long stopping waits to give back one unfinished job (its row, its nack); past that the
closing channel returns the message anyway, and the row keeps the attempt."""
DATABASE_GIVE_BACK_SECONDS = 60.0
"""How long a delivery that met PostgreSQL down holds its message, trying to give back the
attempt its claim counted, before it returns the message with the count kept (a restart, even
crash recovery, takes seconds)."""
RETURNED = "returned"
"""The outcome label of a delivery handed back unfinished because the worker is stopping."""


def job_id_hint(body: bytes) -> str | None:
    """The id of a message too broken to decode, when it still names one (to record the
    failure on its row)."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    value = data.get("id") if isinstance(data, dict) else None
    text = str(value) if isinstance(value, int | str) else None
    return text if text is not None and SAFE_ID.fullmatch(text) else None


def _decoded(body: bytes) -> ImageJob | Exception:
    """The job a message carries, or why it cannot be one (decided on like any other error)."""
    try:
        return decode_job(body)
    except Exception as exc:
        if not isinstance(exc, ImageBatchError):
            log.exception("unexpected error decoding a message")
        return exc


class Consumer:
    """Consumes one work queue (at most PREFETCH messages held) and drains it on `stop`."""

    def __init__(
        self,
        settings: WorkerSettings,
        pipeline: Pipeline,
        records: JobRecords,
        metrics: WorkerMetrics,
        tracer: trace.Tracer | None = None,
        outages: OutageReporter | None = None,
    ) -> None:
        self.settings = settings
        self.outages = outages
        """Where a batch's outages of our output store or disk are told to the operator."""
        self.pipeline = pipeline
        self.records = records
        self.metrics = metrics
        self._tasks: set[asyncio.Task[None]] = set()
        self._connection: AbstractRobustConnection | None = None
        self._queue: AbstractQueue | None = None
        self._tag: str | None = None
        self._redelivery: Redelivery | None = None
        self._tracer = tracer
        self._returning = False
        """Set once stopping gave up waiting: cancelled jobs are handed back, not lost."""
        self.policy = Policy.from_settings(settings)
        self.dependency_down: DependencyDown | None = None
        """The last outage of ours a delivery met, until a delivery is acked again."""
        self._rng = random.Random()
        self._phase_seconds = {
            phase: metrics.phase_duration.labels(phase=phase) for phase in PHASES
        }

    @property
    def consuming(self) -> bool:
        """True while deliveries are coming in over a live connection (readiness)."""
        connection = self._connection
        return (
            self._tag is not None
            and connection is not None
            and not connection.is_closed
            and connection.connected.is_set()
        )

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def start(self, connection: AbstractRobustConnection) -> None:
        """Declare the topology (idempotently), set QoS and start consuming. The robust
        channel re-declares, re-applies QoS and re-consumes by itself after a reconnect."""
        self._connection = connection
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        await channel.set_qos(prefetch_count=self.settings.prefetch)
        topology = await declare_topology(channel, self.settings)
        self._queue = topology.work_queue
        self._redelivery = Redelivery(
            channel,
            topology.dead_letter_exchange,
            topology.work_queue.name,
            self.policy.backoff,
            longest=self.policy.retry_after_max,
            queue_type=self.settings.queue_type,
        )
        self._tag = await topology.work_queue.consume(self._on_message)
        log.info(
            "consuming %s (prefetch %d, concurrency %d)",
            topology.work_queue.name,
            self.settings.prefetch,
            self.settings.concurrency,
        )

    async def stop(self, drain_seconds: float) -> None:
        """Stop taking deliveries, then wait up to `drain_seconds` for the ones already taken."""
        queue, tag, self._tag = self._queue, self._tag, None
        if queue is not None and tag is not None:
            try:
                async with asyncio.timeout(5):
                    await queue.cancel(tag)
            except BROKER_ERRORS as exc:
                log.warning("could not cancel the consumer cleanly: %r", exc)
        pending = set(self._tasks)
        if pending:
            log.info("draining %d in-flight messages", len(pending))
            _done, pending = await asyncio.wait(pending, timeout=drain_seconds)
        if not pending:
            return
        log.warning(
            "%d messages not finished after %.0fs: handing them back to the queue",
            len(pending),
            drain_seconds,
        )
        self._returning = True
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        task = asyncio.create_task(self._handle(message, Timeline()))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        await asyncio.shield(task)

    async def _handle(self, message: AbstractIncomingMessage, timeline: Timeline) -> None:
        """Every delivery is handled at once (PREFETCH bounds how many): the pipeline's
        CONCURRENCY slots cover only its download and thumbnail, so a job waiting on
        PostgreSQL or the disk never keeps another from using the CPU."""
        self.metrics.in_flight.inc()
        try:
            outcome = await self._traced(message, timeline)
        finally:
            self.metrics.in_flight.dec()
        self.metrics.task_duration.labels(outcome=outcome).observe(
            time.perf_counter() - timeline.delivered
        )
        if outcome == "completed":
            for phase, seconds in timeline.phases().items():
                self._phase_seconds[phase].observe(seconds)
            self.metrics.held.observe(timeline.held())

    async def _traced(self, message: AbstractIncomingMessage, timeline: Timeline) -> str:
        """The delivery under its consumer span (`consumer_origin` says where it hangs); no
        span without a tracer."""
        job = _decoded(message.body)
        if self._tracer is None:
            return await self._dispatch(message, job, timeline)
        batch = job.batch if isinstance(job, ImageJob) else None
        parent, links = consumer_origin(message.headers, batch=batch)
        attributes: dict[str, Any] = {
            "messaging.system": "rabbitmq",
            "messaging.destination.name": self.settings.queue,
            "messaging.message.id": message.message_id or "",
        }
        if isinstance(job, ImageJob):
            attributes["imagebatch.job.id"] = job.id
        if batch is not None:
            attributes["imagebatch.batch"] = batch
        with self._tracer.start_as_current_span(
            "process_image",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            links=links,
        ) as span:
            outcome = await self._dispatch(message, job, timeline)
            span.set_attribute("imagebatch.outcome", outcome)
            if outcome in ("dead_lettered", "retried"):
                span.set_status(Status(StatusCode.ERROR, outcome))
            return outcome

    async def _dispatch(
        self, message: AbstractIncomingMessage, job: ImageJob | Exception, timeline: Timeline
    ) -> str:
        attempt = attempt_of(message.headers)
        job_id = job.id if isinstance(job, ImageJob) else job_id_hint(message.body)
        batch = job.batch if isinstance(job, ImageJob) else None
        result: Outcome | Exception
        if isinstance(job, ImageJob):
            try:
                result = await self.pipeline.process(
                    job, timeline, redelivered=bool(message.redelivered)
                )
            except asyncio.CancelledError:
                if not self._returning:
                    raise
                await self._hand_back(message, job_id, timeline)
                return RETURNED
            except Exception as exc:
                if not isinstance(exc, ImageBatchError):
                    log.exception("unexpected error on message %s", message.message_id)
                result = exc
        else:
            result = job
        disposition = self._decide(result, message)
        try:
            await self._carry_out(disposition, message, job_id, attempt, timeline)
        except DependencyDown as exc:  # recording or publishing it found one of ours down
            disposition = self._decide(exc, message)
            await self._carry_out(disposition, message, job_id, attempt, timeline)
        if isinstance(disposition, Ack):
            timeline.mark("ack")
        if self.outages is not None:
            await self._tell_outages(batch, disposition)
        return disposition.label

    async def _tell_outages(self, batch: str | None, disposition: Disposition) -> None:
        """The batch waits on our output store or disk (the operator shows it Degraded), or
        that wait is over."""
        assert self.outages is not None
        if isinstance(disposition, Requeue) and disposition.dependency in OUTPUT_DEPENDENCIES:
            await self.outages.down(batch, disposition.dependency, disposition.reason)
        elif isinstance(disposition, Ack):
            await self.outages.up(batch)

    def _decide(self, result: Outcome | Exception, message: AbstractIncomingMessage) -> Disposition:
        return decide(
            result,
            attempt=attempt_of(message.headers),
            throttles=throttles_of(message.headers),
            policy=self.policy,
            rng=self._rng,
        )

    async def _carry_out(
        self,
        disposition: Disposition,
        message: AbstractIncomingMessage,
        job_id: str | None,
        attempt: int,
        timeline: Timeline,
    ) -> None:
        """Do what `disposition` says; raises DependencyDown (nothing acked) when PostgreSQL or
        the broker refuses its part."""
        if isinstance(disposition, Wait | Requeue) and timeline.attempted and job_id is not None:
            await self._give_back(disposition, job_id, timeline)
        match disposition:
            case Ack(status=status):
                (self.metrics.duplicates if status == "duplicate" else self.metrics.processed).inc()
                self.dependency_down = None
                await self._ack(message)
            case RetryAfter(delay=delay, attempt=next_attempt, reason=reason):
                if job_id is not None:
                    await self.records.retrying(job_id, reason)
                await self._publish(
                    "retry", self._deferred(message, attempt=next_attempt, delay=delay)
                )
                log.info(
                    "retrying %s in %.2fs (attempt %d failed: %s)", job_id, delay, attempt, reason
                )
                self.metrics.retried.inc()
                await self._ack(message)
            case Wait(delay=delay, why=why, throttles=throttles, reason=reason):
                await self._publish(
                    "wait",
                    self._deferred(message, attempt=attempt, delay=delay, throttles=throttles),
                )
                if why == "throttled":
                    log.info("job %s throttled (%s); waiting %.1fs", job_id, reason, delay)
                    self.metrics.throttled.inc()
                else:
                    log.info(
                        "job %s is being processed by another delivery; looking again later", job_id
                    )
                await self._ack(message)
            case DeadLetter(code=code, reason=reason):
                if job_id is not None:
                    await self.records.fail(job_id, reason, code)
                assert self._redelivery is not None
                await self._publish(
                    "dead-letter",
                    self._redelivery.dead_letter(
                        message, reason=reason, code=code, attempt=attempt
                    ),
                )
                log.warning("dead-lettered %s (%s): %s", job_id, code, reason)
                self.metrics.failed.labels(code=code).inc()
                await self._ack(message)
            case Requeue(pause=pause, dependency=dependency, reason=reason):
                self.dependency_down = DependencyDown(dependency, reason)
                log.warning(
                    "returning message %s to the queue: %s",
                    message.message_id,
                    self.dependency_down,
                )
                self.metrics.dependency_errors.labels(dependency=dependency).inc()
                self.metrics.requeued.inc()
                await asyncio.sleep(pause)
                try:
                    await message.nack(requeue=True)
                except BROKER_ERRORS as exc:
                    log.info("nack lost (%r); the broker requeues the message itself", exc)
            case _:
                assert_never(disposition)

    async def _hand_back(
        self, message: AbstractIncomingMessage, job_id: str | None, timeline: Timeline
    ) -> None:
        """Stopping cut this job off mid-way: give back the attempt its claim counted (the
        worker stopping is no failure of the job's, nor one that killed the worker) and return
        the message to the head of the queue for another worker, at once."""
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()  # this cancellation is handled: the job goes back
        try:
            async with asyncio.timeout(GIVE_BACK_TIMEOUT):
                if timeline.attempted and job_id is not None:
                    await self.records.unspend(job_id, "returned unfinished: the worker stopped")
                    timeline.attempted = False
                await message.nack(requeue=True)
        except (TimeoutError, DependencyDown, *BROKER_ERRORS) as exc:
            log.warning("could not hand back %s cleanly (%r)", message.message_id, exc)
        self.metrics.returned.inc()

    async def _give_back(
        self, disposition: Wait | Requeue, job_id: str, timeline: Timeline
    ) -> None:
        """The job's row counted an attempt when this delivery claimed it; this one spends
        none, so give it back (and show the job pending, with why). With PostgreSQL down the
        message is held (PostgreSQL down, nothing else could be done with it either) and the
        give-back tried again until PostgreSQL answers, for up to DATABASE_GIVE_BACK_SECONDS;
        only past that does the row keep the count."""
        reason = disposition.reason
        if isinstance(disposition, Requeue):
            reason = str(DependencyDown(disposition.dependency, disposition.reason))
            if disposition.dependency == "database":
                await self._give_back_when_database_returns(job_id, reason, disposition.pause)
                timeline.attempted = False
                return
            with contextlib.suppress(DependencyDown):
                await self.records.unspend(job_id, reason)
        else:
            await self.records.unspend(job_id, reason)
        timeline.attempted = False

    async def _give_back_when_database_returns(
        self, job_id: str, reason: str, pause: float
    ) -> None:
        deadline = time.monotonic() + DATABASE_GIVE_BACK_SECONDS
        while True:
            try:
                await self.records.unspend(job_id, reason)
                return
            except DependencyDown:
                if time.monotonic() + pause > deadline:
                    log.warning("PostgreSQL still down: job %s keeps the attempt", job_id)
                    return
                await asyncio.sleep(pause)

    async def _deferred(
        self,
        message: AbstractIncomingMessage,
        *,
        attempt: int,
        delay: float,
        throttles: int | None = None,
    ) -> None:
        assert self._redelivery is not None
        await self._redelivery.defer(message, attempt=attempt, delay=delay, throttles=throttles)

    async def _publish(self, what: str, publishing: Coroutine[Any, Any, None]) -> None:
        """Wait for a confirmed publish; the broker failing it means the broker is down for us."""
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT):
                await publishing
        except BROKER_ERRORS as exc:
            raise DependencyDown("broker", f"{what} publish failed: {exc!r}") from exc

    async def _ack(self, message: AbstractIncomingMessage) -> None:
        try:
            await message.ack()
        except BROKER_ERRORS as exc:
            log.info("ack lost (%r); the redelivered copy will be seen as done", exc)
