"""One job, start to finish: claim → download → thumbnail → atomic write → record.

Plain async code with no broker in sight: it returns what happened or raises a Transient- or
PermanentError, and the consumer decides what that means for the message. Each stage is a child
span of the message's consumer span and has its own duration histogram.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

from opentelemetry import trace
from PIL import Image

from imagebatch.core.messages import ImageJob
from imagebatch.worker.download import Downloader
from imagebatch.worker.metrics import WorkerMetrics
from imagebatch.worker.records import Claim, JobRecords, OutputRecord, SourceRecord
from imagebatch.worker.storage import Planned, Storage, plan_outputs
from imagebatch.worker.transform import render

FORMAT_NAMES = {"JPEG": "jpeg", "PNG": "png", "WEBP": "webp"}


@dataclass(frozen=True)
class Outcome:
    """What processing a job did: `completed` now, `duplicate` of a job already completed, or
    `busy`: another delivery of the same job is being processed right now."""

    status: Literal["completed", "duplicate", "busy"]
    outputs: tuple[OutputRecord, ...] = ()
    written: int = 0


def _describe_existing(storage: Storage, planned: list[Planned]) -> list[OutputRecord]:
    """Records for outputs already on disk (a redelivery after a crash between write and
    record): read their headers instead of downloading the original again."""
    records = []
    for item in planned:
        path = storage.path(item.relative)
        with Image.open(path) as image:
            width, height, fmt = image.width, image.height, str(image.format)
        records.append(
            OutputRecord(
                path=str(item.relative),
                width=width,
                height=height,
                bytes=path.stat().st_size,
                format=FORMAT_NAMES.get(fmt, fmt.lower()),
            )
        )
    return records


class Pipeline:
    """The stages, wired to the shared client, thread pool, storage and database."""

    def __init__(
        self,
        *,
        downloader: Downloader,
        storage: Storage,
        records: JobRecords,
        executor: ThreadPoolExecutor,
        metrics: WorkerMetrics,
        max_pixels: int,
    ) -> None:
        self.downloader = downloader
        self.storage = storage
        self.records = records
        self.executor = executor
        self.metrics = metrics
        self.max_pixels = max_pixels
        self._tracer = trace.get_tracer("imagebatch.worker")

    @contextmanager
    def _stage(self, name: str, job: ImageJob) -> Iterator[trace.Span]:
        began = time.perf_counter()
        with self._tracer.start_as_current_span(
            name, attributes={"imagebatch.job.id": job.id}
        ) as span:
            try:
                yield span
            finally:
                self.metrics.stage_duration.labels(stage=name).observe(time.perf_counter() - began)

    async def process(self, job: ImageJob) -> Outcome:
        """Process `job` once; raises TransientError/PermanentError (causes chained)."""
        async with self.records.claim(job) as claim:
            if claim is None:
                return Outcome(status="busy")
            with self._stage("begin", job):
                attempts = await claim.start()
            if attempts is None:
                return Outcome(status="duplicate")
            return await self._make(job, claim)

    async def _make(self, job: ImageJob, claim: Claim) -> Outcome:
        loop = asyncio.get_running_loop()
        planned = plan_outputs(job)
        if all(self.storage.exists(p.relative) for p in planned):
            existing = await loop.run_in_executor(
                self.executor, _describe_existing, self.storage, planned
            )
            await claim.complete(SourceRecord(None, None, None), existing)
            return Outcome(status="completed", outputs=tuple(existing))

        with self._stage("download", job) as span:
            source = await self.downloader.fetch(job.url)
            span.set_attribute("imagebatch.source.bytes", len(source.data))
        self.metrics.downloaded_bytes.inc(len(source.data))

        specs = [p.spec for p in planned]
        with self._stage("transform", job):
            info, rendered = await loop.run_in_executor(
                self.executor, lambda: render(source.data, specs, max_pixels=self.max_pixels)
            )

        with self._stage("write", job):
            written = await loop.run_in_executor(
                self.executor,
                lambda: sum(
                    self.storage.write(p.relative, r.data)
                    for p, r in zip(planned, rendered, strict=True)
                ),
            )
        outputs = [
            OutputRecord(
                path=str(p.relative),
                width=r.width,
                height=r.height,
                bytes=len(r.data),
                format=r.spec.format,
            )
            for p, r in zip(planned, rendered, strict=True)
        ]
        with self._stage("record", job):
            await claim.complete(SourceRecord(len(source.data), info.width, info.height), outputs)
        return Outcome(status="completed", outputs=tuple(outputs), written=written)
