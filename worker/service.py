"""Putting the worker together, and taking it apart again in the right order.

Start: health server (liveness answers during start-up) → sweep stale temp files → PostgreSQL
(migrations, pool) → shared HTTP client and thread pool → RabbitMQ (robust connection) → consume.
Stop (SIGTERM/SIGINT): not ready → cancel the consumer → finish in-flight jobs → close the
connection, client, threads, pool and health server: whatever start opened, in reverse, through
one exit stack, so a start that failed half-way closes just what it opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor

from aio_pika.abc import AbstractRobustConnection
from opentelemetry.sdk.trace import TracerProvider

from imagebatch.core.broker import connect
from imagebatch.core.db import create_pool, migrate
from imagebatch.core.dependencies import BROKER_ERRORS, DB_ERRORS
from imagebatch.core.locations import BucketLocation, FileLocation
from imagebatch.core.objectstore import Buckets
from imagebatch.core.startup import retry_until
from imagebatch.core.stores import ObjectStore, open_store
from imagebatch.worker.address_guard import AddressGuard
from imagebatch.worker.consumer import Consumer
from imagebatch.worker.download import Downloader, Limits
from imagebatch.worker.group_writer import GroupWriter
from imagebatch.worker.health import HealthServer
from imagebatch.worker.metrics import WorkerMetrics
from imagebatch.worker.outages import OutageReporter
from imagebatch.worker.outputs import FileOutputs, ObjectOutputs, Outputs
from imagebatch.worker.pipeline import Pipeline
from imagebatch.worker.records import JobRecords
from imagebatch.worker.settings import WorkerSettings
from imagebatch.worker.storage import Storage
from imagebatch.worker.tracing import trace_client

log = logging.getLogger(__name__)

FSYNC_THREADS = 16
"""fsyncs of one write group in flight at once; they wait on the disk, not on a core."""


async def _close_connection(connection: AbstractRobustConnection) -> None:
    try:
        async with asyncio.timeout(10):
            await connection.close()
    except BROKER_ERRORS as exc:
        log.warning("broker connection did not close cleanly: %r", exc)


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
        self.output_location = settings.output_location
        self.buckets = Buckets(settings)
        self.storage: Storage | None = None
        """The output folder, for a file output (None for a bucket)."""
        if isinstance(self.output_location, FileLocation):
            self.storage = Storage(self.output_location.root, fsync=settings.fsync)
        self.health = HealthServer(
            host=settings.metrics_host,
            port=settings.metrics_port,
            registry=self.metrics.registry,
            ready=self.ready,
            reason=self.not_ready_because,
        )
        self.metrics.ready.set_function(lambda: float(self.ready()))
        self.consumer: Consumer | None = None
        self._resources = contextlib.AsyncExitStack()
        """What `start` opened, closed by `stop` in reverse: after a partial start, just what
        was opened."""
        self._stopping = False

    def ready(self) -> bool:
        return self.not_ready_because() is None

    def not_ready_because(self) -> str | None:
        """Why the worker is not ready (None: it is)."""
        if self._stopping:
            return "stopping"
        if self.consumer is None:
            return "starting"
        if not self.consumer.consuming:
            return "not consuming: the broker connection is down or being restored"
        if self.consumer.dependency_down is not None:
            return str(self.consumer.dependency_down)
        return None

    async def start(self) -> None:
        settings = self.settings
        resources = self._resources
        await self.health.start()
        resources.push_async_callback(self.health.stop)
        if self.storage is not None:
            self.storage.root.mkdir(parents=True, exist_ok=True)
            swept = await asyncio.to_thread(
                self.storage.sweep, older_than=settings.stale_temp_seconds
            )
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
        pool = await create_pool(
            settings.database_url, min_size=1, max_size=4, reset_on_release=False
        )
        resources.push_async_callback(pool.close)
        records = JobRecords(pool)
        resources.push_async_callback(records.close)
        executor = self._executor(settings.transform_threads, "thumbnail")
        # One thread for the group writer, one for the rare look at an earlier attempt's outputs.
        io_executor = self._executor(2, "write")
        downloader = Downloader(
            Limits.from_settings(settings),
            AddressGuard.from_settings(
                settings.allow_private_sources, settings.allowed_source_networks
            ),
            uploads=open_store(settings.uploads_location, self.buckets, what="uploads"),
            buckets=self.buckets,
            user_agent=settings.user_agent,
        )
        resources.push_async_callback(downloader.aclose)
        tracer = None
        if self.tracer_provider is not None:
            trace_client(downloader.client, self.tracer_provider)
            tracer = self.tracer_provider.get_tracer("imagebatch.worker")
        pipeline = Pipeline(
            downloader=downloader,
            outputs=self._outputs(io_executor),
            records=records,
            executor=executor,
            metrics=self.metrics,
            max_pixels=settings.max_pixels,
            concurrency=settings.concurrency,
            max_attempts=settings.max_attempts,
            tracer=tracer,
        )
        connection = await retry_until(
            "RabbitMQ",
            lambda: connect(settings.rabbit_url),
            BROKER_ERRORS,
            settings.startup_timeout_seconds,
        )
        resources.push_async_callback(_close_connection, connection)
        self.consumer = Consumer(
            settings,
            pipeline,
            records,
            self.metrics,
            tracer=tracer,
            outages=OutageReporter(pool),
        )
        # Unwound first: in-flight jobs finish while the connection, client, pool and
        # threads they use are all still there.
        resources.push_async_callback(self.consumer.stop, settings.shutdown_timeout_seconds)
        await self.consumer.start(connection)

    def _outputs(self, io_executor: ThreadPoolExecutor) -> Outputs:
        """Group-committed files in a folder, or conditional PUTs to a bucket."""
        if isinstance(self.output_location, BucketLocation):
            return ObjectOutputs(ObjectStore(self.output_location, self.buckets), io_executor)
        assert self.storage is not None
        writer = GroupWriter(
            self.storage,
            io_executor,
            fsync_executor=self._executor(FSYNC_THREADS, "fsync"),
            group_files=self.metrics.write_group_files,
        )
        return FileOutputs(self.storage, writer, io_executor)

    def _executor(self, threads: int, name: str) -> ThreadPoolExecutor:
        executor = ThreadPoolExecutor(threads, thread_name_prefix=name)
        self._resources.callback(executor.shutdown, wait=True)
        return executor

    async def stop(self) -> None:
        """Drain and close; safe to call after a failed or partial start."""
        self._stopping = True
        await self._resources.aclose()

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
