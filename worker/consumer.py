"""The broker side: consume, and the one place that maps an outcome to ack, retry or dead-letter.

- completed, or a duplicate of a job already done: acked;
- another delivery of the same job is being processed: deferred through a delay queue (no
  attempt spent), to be acked as a duplicate later;
- PermanentError (malformed, 4xx, not an image, bomb, blocked address): dead-lettered at once, with
  reason, code and attempt in the headers;
- TransientError with attempts left: re-published to a delay queue as attempt n+1, then acked;
- TransientError with the attempts used up: dead-lettered (`retries_exhausted`);
- an unexpected exception (a bug): treated as transient, so it cannot loop forever;
- the database did not answer: requeued after a pause, no attempt spent.

Each outcome is recorded in PostgreSQL first and the new copy confirmed by the broker before the
original is acked, so a crash at any point means a redelivery, never a loss. Processing runs in
tasks of our own rather than aiormq's consumer tasks: closing a channel (a broker restart) cancels
those, and a job half-way through should finish and let its ack fail harmlessly instead — the
redelivered copy is then recognised as done.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from typing import Any

from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from aio_pika.exceptions import CONNECTION_EXCEPTIONS
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from imagebatch.core.delays import Backoff
from imagebatch.core.errors import PermanentError, TransientError
from imagebatch.core.headers import attempt_of
from imagebatch.core.messages import SAFE_ID, decode_job
from imagebatch.core.telemetry import extract_context
from imagebatch.core.topology import declare_topology
from imagebatch.worker.metrics import WorkerMetrics
from imagebatch.worker.pipeline import Pipeline
from imagebatch.worker.records import JobRecords, RecordError
from imagebatch.worker.retry import Redelivery
from imagebatch.worker.settings import WorkerSettings
from imagebatch.worker.timeline import PHASES, Timeline

log = logging.getLogger(__name__)

BROKER_ERRORS = (*CONNECTION_EXCEPTIONS, TimeoutError)
PUBLISH_TIMEOUT = 30.0
MIN_REQUEUE_PAUSE = 0.05


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


class Consumer:
    """Consumes one work queue (at most PREFETCH messages held) and drains it on `stop`."""

    def __init__(
        self,
        settings: WorkerSettings,
        pipeline: Pipeline,
        records: JobRecords,
        metrics: WorkerMetrics,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.records = records
        self.metrics = metrics
        self._tasks: set[asyncio.Task[None]] = set()
        self._connection: AbstractRobustConnection | None = None
        self._queue: AbstractQueue | None = None
        self._tag: str | None = None
        self._redelivery: Redelivery | None = None
        self._tracer = tracer
        # A database outage is not the job's fault and says nothing about the backoff the batch
        # asked for: even `BACKOFF_SECONDS=0` pauses a little rather than spin on redeliveries.
        self.requeue_pause = min(5.0, max(settings.backoff_seconds, MIN_REQUEUE_PAUSE))
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
            Backoff(base=self.settings.backoff_seconds, cap=self.settings.backoff_max_seconds),
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
        for task in pending:
            task.cancel()
        if pending:
            log.warning(
                "gave up on %d messages after %.0fs; they will be redelivered",
                len(pending),
                drain_seconds,
            )
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
        """A consumer span continuing the producer's trace (or the instrumentation's span);
        none without a tracer."""
        if self._tracer is None:
            return await self._dispatch(message, timeline)
        current = trace.get_current_span().get_span_context()
        parent = None if current.is_valid else extract_context(message.headers)
        attributes: dict[str, Any] = {
            "messaging.system": "rabbitmq",
            "messaging.destination.name": self.settings.queue,
            "messaging.message.id": message.message_id or "",
        }
        with self._tracer.start_as_current_span(
            "process_image", context=parent, kind=SpanKind.CONSUMER, attributes=attributes
        ) as span:
            outcome = await self._dispatch(message, timeline)
            span.set_attribute("imagebatch.outcome", outcome)
            if outcome in ("dead_lettered", "retried"):
                span.set_status(Status(StatusCode.ERROR, outcome))
            return outcome

    async def _dispatch(self, message: AbstractIncomingMessage, timeline: Timeline) -> str:
        attempt = attempt_of(message.headers)
        job_id = job_id_hint(message.body)
        try:
            job = decode_job(message.body)
            job_id = job.id
            trace.get_current_span().set_attribute("imagebatch.job.id", job.id)
            outcome = await self.pipeline.process(job, timeline)
        except RecordError as exc:
            return await self._requeue(message, exc)
        except PermanentError as exc:
            return await self._dead_letter(message, job_id, exc.reason, exc.code, attempt)
        except TransientError as exc:
            return await self._retry_or_give_up(message, job_id, exc.reason, exc.delay, attempt)
        except Exception as exc:
            log.exception("unexpected error on message %s", message.message_id)
            reason = f"internal error: {type(exc).__name__}: {exc}"
            return await self._retry_or_give_up(message, job_id, reason, None, attempt)
        if outcome.status == "busy":
            return await self._defer_busy(message, job_id, attempt)
        if outcome.status == "duplicate":
            self.metrics.duplicates.inc()
        else:
            self.metrics.processed.inc()
        await self._ack(message)
        timeline.mark("ack")
        return outcome.status

    async def _defer_busy(
        self, message: AbstractIncomingMessage, job_id: str | None, attempt: int
    ) -> str:
        """Another delivery of this job is being processed: look again later (no attempt is
        spent), when it will most likely be done and this copy acked as a duplicate."""
        assert self._redelivery is not None
        delay = self._redelivery.backoff.delay(1, rng=self._rng)
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT):
                await self._redelivery.defer(message, attempt=attempt, delay=delay)
        except BROKER_ERRORS as exc:
            return await self._return(message, f"defer publish failed: {exc!r}")
        log.info("job %s is being processed by another delivery; looking again later", job_id)
        await self._ack(message)
        return "busy"

    async def _retry_or_give_up(
        self,
        message: AbstractIncomingMessage,
        job_id: str | None,
        reason: str,
        delay: float | None,
        attempt: int,
    ) -> str:
        if attempt >= self.settings.max_attempts:
            return await self._dead_letter(
                message,
                job_id,
                f"gave up after {attempt} attempts: {reason}",
                "retries_exhausted",
                attempt,
            )
        assert self._redelivery is not None
        try:
            if job_id is not None:
                await self.records.retrying(job_id, reason)
            async with asyncio.timeout(PUBLISH_TIMEOUT):
                chosen = await self._redelivery.retry(message, attempt, at_least=delay)
        except RecordError as exc:
            return await self._requeue(message, exc)
        except BROKER_ERRORS as exc:
            return await self._return(message, f"retry publish failed: {exc!r}")
        log.info("retrying %s in %.2fs (attempt %d failed: %s)", job_id, chosen, attempt, reason)
        self.metrics.retried.inc()
        await self._ack(message)
        return "retried"

    async def _dead_letter(
        self,
        message: AbstractIncomingMessage,
        job_id: str | None,
        reason: str,
        code: str,
        attempt: int,
    ) -> str:
        assert self._redelivery is not None
        try:
            if job_id is not None:
                await self.records.fail(job_id, reason)
            async with asyncio.timeout(PUBLISH_TIMEOUT):
                await self._redelivery.dead_letter(
                    message, reason=reason, code=code, attempt=attempt
                )
        except RecordError as exc:
            return await self._requeue(message, exc)
        except BROKER_ERRORS as exc:
            return await self._return(message, f"dead-letter publish failed: {exc!r}")
        log.warning("dead-lettered %s (%s): %s", job_id, code, reason)
        self.metrics.failed.labels(code=code).inc()
        await self._ack(message)
        return "dead_lettered"

    async def _requeue(self, message: AbstractIncomingMessage, exc: RecordError) -> str:
        log.warning("database unavailable, requeueing: %s", exc.reason)
        self.metrics.requeued.inc()
        await self._return(message, exc.reason)
        return "requeued"

    async def _return(self, message: AbstractIncomingMessage, why: str) -> str:
        """Give the message back to the broker after a pause, so a failing dependency is not
        hammered; if the channel is gone the broker requeues it anyway."""
        log.warning("returning message %s to the queue: %s", message.message_id, why)
        await asyncio.sleep(self.requeue_pause)
        try:
            await message.nack(requeue=True)
        except BROKER_ERRORS as exc:
            log.info("nack lost (%r); the broker requeues the message itself", exc)
        return "requeued"

    async def _ack(self, message: AbstractIncomingMessage) -> None:
        try:
            await message.ack()
        except BROKER_ERRORS as exc:
            log.info("ack lost (%r); the redelivered copy will be seen as done", exc)
