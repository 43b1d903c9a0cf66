"""Putting the worker together, and taking it apart again in the right order.

Start: health server (liveness answers during start-up) → sweep stale temp files → PostgreSQL
(migrations, pool) → shared HTTP client and thread pool → RabbitMQ (robust connection) → consume.
Stop (SIGTERM/SIGINT): not ready → cancel the consumer → finish in-flight jobs → close the
connection, client, pool, threads and health server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor

import asyncpg
from aio_pika.abc import AbstractRobustConnection
from aio_pika.exceptions import CONNECTION_EXCEPTIONS
from opentelemetry.sdk.trace import TracerProvider

from imagebatch.core.broker import connect
from imagebatch.core.db import create_pool, migrate
from imagebatch.core.startup import retry_until
from imagebatch.worker.address_guard import AddressGuard
from imagebatch.worker.consumer import Consumer
from imagebatch.worker.download import Downloader, Limits
from imagebatch.worker.group_writer import GroupWriter
from imagebatch.worker.health import HealthServer
from imagebatch.worker.metrics import WorkerMetrics
from imagebatch.worker.pipeline import Pipeline
from imagebatch.worker.records import DB_ERRORS, JobRecords
from imagebatch.worker.settings import WorkerSettings
from imagebatch.worker.storage import Storage
from imagebatch.worker.tracing import trace_client

log = logging.getLogger(__name__)

FSYNC_THREADS = 16
"""fsyncs of one write group in flight at once; they wait on the disk, not on a core."""


class WorkerService:
    """One worker process's resources and their lifecycle."""

    def __init__(
        self,
        settings: WorkerSettings,
        *,
        metrics: WorkerMetrics | None = None,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        self.settings = settings
        self.tracer_provider = tracer_provider
        self.metrics = metrics or WorkerMetrics()
        self.storage = Storage(settings.output_dir, fsync=settings.fsync)
        self.health = HealthServer(
            host=settings.metrics_host,
            port=settings.metrics_port,
            registry=self.metrics.registry,
            ready=self.ready,
        )
        self.downloader: Downloader | None = None
        self.consumer: Consumer | None = None
        self._pool: asyncpg.Pool | None = None
        self._records: JobRecords | None = None
        self._connection: AbstractRobustConnection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._io_executor: ThreadPoolExecutor | None = None
        self._fsync_executor: ThreadPoolExecutor | None = None
        self._stopping = False

    def ready(self) -> bool:
        return not self._stopping and self.consumer is not None and self.consumer.consuming

    async def start(self) -> None:
        settings = self.settings
        await self.health.start()
        settings.output_dir.mkdir(parents=True, exist_ok=True)
        swept = await asyncio.to_thread(self.storage.sweep, older_than=settings.stale_temp_seconds)
        if swept:
            log.info("removed %d stale temp files", swept)
        await retry_until(
            "PostgreSQL",
            lambda: migrate(settings.database_url),
            DB_ERRORS,
            settings.startup_timeout_seconds,
        )
        # Claims and completions go through one lock session (records.py); the other
        # connections only record failures and retries, and leave no session state behind, so
        # the pool needs no server-side reset round trip on every release.
        self._pool = await create_pool(
            settings.database_url, min_size=1, max_size=4, reset_on_release=False
        )
        self._records = JobRecords(self._pool)
        records = self._records
        self._executor = ThreadPoolExecutor(
            settings.transform_threads, thread_name_prefix="thumbnail"
        )
        # One thread for the group writer, one for the rare look at an earlier attempt's outputs.
        self._io_executor = ThreadPoolExecutor(2, thread_name_prefix="write")
        self._fsync_executor = ThreadPoolExecutor(FSYNC_THREADS, thread_name_prefix="fsync")
        self.downloader = Downloader(
            Limits.from_settings(settings),
            AddressGuard.from_settings(
                settings.allow_private_sources, settings.allowed_source_networks
            ),
            uploads_dir=settings.uploads_dir,
            user_agent=settings.user_agent,
        )
        tracer = None
        if self.tracer_provider is not None:
            trace_client(self.downloader.client, self.tracer_provider)
            tracer = self.tracer_provider.get_tracer("imagebatch.worker")
        pipeline = Pipeline(
            downloader=self.downloader,
            storage=self.storage,
            writer=GroupWriter(
                self.storage,
                self._io_executor,
                fsync_executor=self._fsync_executor,
                group_files=self.metrics.write_group_files,
            ),
            records=records,
            executor=self._executor,
            io_executor=self._io_executor,
            metrics=self.metrics,
            max_pixels=settings.max_pixels,
            concurrency=settings.concurrency,
            tracer=tracer,
        )
        self.consumer = Consumer(settings, pipeline, records, self.metrics, tracer=tracer)
        self._connection = await retry_until(
            "RabbitMQ",
            lambda: connect(settings.rabbit_url),
            CONNECTION_EXCEPTIONS,
            settings.startup_timeout_seconds,
        )
        await self.consumer.start(self._connection)

    async def stop(self) -> None:
        """Drain and close; safe to call after a failed or partial start."""
        self._stopping = True
        if self.consumer is not None:
            await self.consumer.stop(self.settings.shutdown_timeout_seconds)
        if self._connection is not None:
            try:
                async with asyncio.timeout(10):
                    await self._connection.close()
            except (*CONNECTION_EXCEPTIONS, TimeoutError) as exc:
                log.warning("broker connection did not close cleanly: %r", exc)
        if self.downloader is not None:
            await self.downloader.aclose()
        if self._records is not None:
            await self._records.close()
        if self._pool is not None:
            await self._pool.close()
        for executor in (self._executor, self._io_executor, self._fsync_executor):
            if executor is not None:
                executor.shutdown(wait=True)
        await self.health.stop()

    async def run(self, stop: asyncio.Event) -> None:
        """Start, work until `stop` is set, then stop (also when `stop` comes mid-start)."""
        starting = asyncio.create_task(self.start())
        stopped = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if starting.done():
                starting.result()
                log.info("worker ready; health on port %d", self.health.port)
                await stopped
            else:
                starting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await starting
            log.info("stopping: finishing in-flight jobs")
        finally:
            stopped.cancel()
            await self.stop()
