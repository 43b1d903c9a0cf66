"""One job, start to finish: claim → download → thumbnail → atomic write → record.

Plain async code with no broker in sight: it returns what happened or raises a Transient- or
PermanentError, and the consumer decides what that means for the message. Each stage has its own
duration histogram, and the job's `Timeline` gets a mark as each stage ends; with a tracer, each
stage is also a child span of the message's consumer span. Without one no span is made at all:
even OpenTelemetry's no-op spans and their context switches cost the event loop a few per cent.

CONCURRENCY is the number of jobs downloading or being thumbnailed at once: a job holds one of
its slots from the start of its download to the end of its thumbnail, and not while it waits
on PostgreSQL (claim, record) or on the disk (write). Those waits cost no CPU and are batched
and bounded elsewhere (PREFETCH bounds the messages held); were they to hold a slot, a few slow
fsyncs would leave the cores idle with work queued. What the slots do bound is what needs
bounding: connections to origins and the memory of originals and decoded images.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Literal

from opentelemetry import trace

from imagebatch.core.messages import ImageJob
from imagebatch.worker.download import Downloader
from imagebatch.worker.metrics import WorkerMetrics
from imagebatch.worker.outputs import OutputFile, Outputs
from imagebatch.worker.poison import delivery_limit
from imagebatch.worker.records import Claim, JobRecords, OutputRecord, SourceRecord
from imagebatch.worker.solo import Solo
from imagebatch.worker.storage import Planned, plan_outputs
from imagebatch.worker.timeline import Timeline
from imagebatch.worker.transform import Rendered, SourceInfo, render


@dataclass(frozen=True)
class Outcome:
    """What processing a job did: `completed` now, `duplicate` of a job already completed, or
    `busy`: another delivery of the same job is being processed right now."""

    status: Literal["completed", "duplicate", "busy"]
    outputs: tuple[OutputRecord, ...] = ()
    written: int = 0


class Pipeline:
    """The stages, wired to the shared client, thread pool, outputs and database.

    Pillow work runs on `executor` (sized to the cores: it is CPU-bound and releases the GIL);
    writes go through `outputs` (worker/outputs.py): a folder's on threads of their own,
    because an fsync waits on the disk and would otherwise hold a thumbnail thread idle while
    other jobs' pixels wait to be decoded; a bucket's as PUTs on the event loop.
    """

    def __init__(
        self,
        *,
        downloader: Downloader,
        outputs: Outputs,
        records: JobRecords,
        executor: ThreadPoolExecutor,
        metrics: WorkerMetrics,
        max_pixels: int,
        concurrency: int,
        max_attempts: int,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self.downloader = downloader
        self.outputs = outputs
        self.records = records
        self.executor = executor
        self.metrics = metrics
        self.max_pixels = max_pixels
        self.max_attempts = max_attempts
        self.solo = Solo()
        self.slots = asyncio.Semaphore(concurrency)
        self._tracer = tracer
        self._stage_seconds = {
            stage: metrics.stage_duration.labels(stage=stage)
            for stage in ("download", "transform", "write", "record")
        }

    @asynccontextmanager
    async def _slot(self, timeline: Timeline) -> AsyncIterator[None]:
        async with self.slots:
            timeline.mark("slot")
            began = time.perf_counter()
            try:
                yield
            finally:
                self.metrics.slot_held.observe(time.perf_counter() - began)

    @contextmanager
    def _stage(self, name: str, job: ImageJob) -> Iterator[trace.Span]:
        began = time.perf_counter()
        try:
            if self._tracer is None:
                yield trace.INVALID_SPAN
            else:
                with self._tracer.start_as_current_span(
                    name, attributes={"imagebatch.job.id": job.id}
                ) as span:
                    yield span
        finally:
            self._stage_seconds[name].observe(time.perf_counter() - began)

    def _transform(
        self, data: bytes, planned: list[Planned], marks: list[int]
    ) -> tuple[SourceInfo, list[Rendered]]:
        """Runs on a thumbnail thread; `marks` gets the stage's start (and end, unless it
        raised), for a span with the thread's own timing rather than the queue wait."""
        marks.append(time.time_ns())
        result = render(data, [p.spec for p in planned], max_pixels=self.max_pixels)
        marks.append(time.time_ns())
        return result

    def _transform_span(self, job: ImageJob, marks: list[int], error: BaseException | None) -> None:
        """The `transform` span (and duration) from the times the thread noted."""
        if not marks:
            return  # never started: the job was cancelled while queued
        ended = marks[1] if len(marks) > 1 else time.time_ns()
        self._stage_seconds["transform"].observe((ended - marks[0]) / 1e9)
        if self._tracer is None:
            return
        span = self._tracer.start_span(
            "transform", start_time=marks[0], attributes={"imagebatch.job.id": job.id}
        )
        if error is not None:
            span.record_exception(error)
            span.set_status(trace.Status(trace.StatusCode.ERROR, str(error)))
        span.end(end_time=ended)

    async def process(
        self, job: ImageJob, timeline: Timeline | None = None, *, redelivered: bool = False
    ) -> Outcome:
        """Process `job` once, marking `timeline` as it goes; raises TransientError or
        PermanentError (causes chained) — `delivery_limit` without processing it when
        `max_attempts` deliveries before this one died processing it (worker/poison.py)."""
        timeline = timeline if timeline is not None else Timeline()
        suspect = redelivered and await self.records.died_before(job.id)
        async with self.solo.alone() if suspect else self.solo.together():
            return await self._claimed(job, timeline)

    async def _claimed(self, job: ImageJob, timeline: Timeline) -> Outcome:
        async with self.records.claim(job) as claim:
            timeline.mark("claim")
            if claim.state == "busy":
                return Outcome(status="busy")
            if claim.state == "completed":
                return Outcome(status="duplicate")
            poisoned = delivery_limit(claim.died, self.max_attempts)
            if poisoned is not None:
                raise poisoned
            timeline.attempted = True
            return await self._make(job, claim, timeline)

    async def _make(self, job: ImageJob, claim: Claim, timeline: Timeline) -> Outcome:
        loop = asyncio.get_running_loop()
        planned = plan_outputs(job)
        if claim.attempts > 1:
            # Only an earlier attempt can have written outputs without recording them (a crash
            # between the rename and the commit): record those instead of downloading again.
            existing = await self.outputs.existing(planned)
            if existing is not None:
                await claim.complete(SourceRecord(None, None, None), existing)
                timeline.mark("record")
                return Outcome(status="completed", outputs=tuple(existing))

        async with self._slot(timeline):
            with self._stage("download", job) as span:
                source = await self.downloader.fetch(job.url)
                span.set_attribute("imagebatch.source.bytes", len(source.data))
            self.metrics.downloaded_bytes.inc(len(source.data))
            timeline.mark("download")

            marks: list[int] = []
            try:
                info, rendered = await loop.run_in_executor(
                    self.executor, self._transform, source.data, planned, marks
                )
            except BaseException as exc:
                self._transform_span(job, marks, exc)
                raise
            self._transform_span(job, marks, None)
            timeline.mark("transform")
        with self._stage("write", job):
            written = await self.outputs.write(
                [
                    OutputFile(p.relative, r.data, r.spec.format)
                    for p, r in zip(planned, rendered, strict=True)
                ]
            )
        timeline.mark("write")
        outputs = [
            OutputRecord(
                path=self.outputs.describe(p.relative),
                width=r.width,
                height=r.height,
                bytes=len(r.data),
                format=r.spec.format,
            )
            for p, r in zip(planned, rendered, strict=True)
        ]
        with self._stage("record", job):
            await claim.complete(SourceRecord(len(source.data), info.width, info.height), outputs)
        timeline.mark("record")
        return Outcome(status="completed", outputs=tuple(outputs), written=written)
