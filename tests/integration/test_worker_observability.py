"""What the worker tells the outside: health, readiness, Prometheus metrics and traces."""

from __future__ import annotations

from collections.abc import Iterator

import aiohttp
import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from imagebatch.core.telemetry import inject_headers
from imagebatch.worker.service import WorkerService
from imagebatch.worker.settings import WorkerSettings
from imagebatch.worker.tracing import disable_tracing, enable_tracing
from tests.support.image_server import ImageServer
from tests.support.worker_fixtures import (
    count_status,
    image_server,
    job_body,
    publish,
    running_worker,
    settings,
    wait_for,
)

__all__ = ["image_server", "settings"]


async def completed(database_url: str, n: int) -> bool:
    return await count_status(database_url, "completed") >= n


async def get(port: int, path: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}") as response,
    ):
        return response.status, await response.text()


async def test_health_readiness_and_metrics_are_served(
    settings: WorkerSettings, image_server: ImageServer
) -> None:
    service = WorkerService(settings)
    assert not service.ready(), "not ready before it consumes"
    assert service.metrics.sample("worker_ready") == 0.0
    async with running_worker(settings) as worker:
        port = worker.health.port
        assert await get(port, "/healthz") == (200, '{"ok": true}')
        assert (await get(port, "/readyz"))[0] == 200
        assert "worker_ready 1.0" in (await get(port, "/metrics"))[1].splitlines()
        await publish(settings, [job_body(image_server.url("/photo/1.jpg"), "m-1")])
        await publish(settings, [job_body(image_server.url("/status/404"), "m-2")])
        await wait_for(lambda: completed(settings.database_url, 1))
        await wait_for(lambda: _failed_once(worker))
        status, text = await get(port, "/metrics")
    assert status == 200
    for line in (
        "worker_tasks_processed_total 1.0",
        'worker_tasks_failed_total{code="http_404"} 1.0',
        "worker_tasks_retried_total 0.0",
        "worker_tasks_in_flight 0.0",
        'worker_task_duration_seconds_count{outcome="completed"} 1.0',
        'worker_task_duration_seconds_count{outcome="dead_lettered"} 1.0',
        'worker_stage_duration_seconds_count{stage="download"} 2.0',
        'worker_stage_duration_seconds_count{stage="transform"} 1.0',
        'worker_stage_duration_seconds_count{stage="write"} 1.0',
    ):
        assert line in text.splitlines(), line
    assert not worker.ready(), "not ready once stopped"
    assert worker.metrics.sample("worker_ready") == 0.0, "the metric says what /readyz says"


async def _failed_once(worker: WorkerService) -> bool:
    return worker.metrics.sample("worker_tasks_failed_total", code="http_404") >= 1


class Switchable(SpanProcessor):
    """Forwards ended spans to an in-memory exporter only while this test runs (a tracer
    provider cannot drop a processor once added)."""

    def __init__(self, exporter: InMemorySpanExporter) -> None:
        self.exporter = exporter
        self.enabled = True

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        if self.enabled:
            self.exporter.export((span,))


@pytest.fixture
def tracing() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    processor = Switchable(exporter)
    provider = enable_tracing(otlp=None, processor=processor)
    yield provider, exporter
    processor.enabled = False
    disable_tracing()


async def test_a_message_is_traced_as_one_trace_with_its_producer(
    settings: WorkerSettings,
    image_server: ImageServer,
    tracing: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, spans = tracing
    with trace.get_tracer("test.producer").start_as_current_span("api request") as producer:
        await publish(settings, [job_body(image_server.url("/photo/2.jpg"), "traced")])
    trace_id = producer.get_span_context().trace_id
    service = WorkerService(settings, tracer_provider=provider)
    try:
        await service.start()
        await wait_for(lambda: completed(settings.database_url, 1))
    finally:
        await service.stop()

    ours = [s for s in spans.get_finished_spans() if s.context.trace_id == trace_id]
    by_name = {s.name: s for s in ours}
    process = by_name["process_image"]
    assert process.kind.name == "CONSUMER"
    assert process.attributes is not None
    assert process.attributes["imagebatch.job.id"] == "traced"
    for stage in ("download", "transform", "write", "record"):
        parent = by_name[stage].parent
        assert parent is not None
        assert parent.span_id == process.context.span_id, stage
    http = [s for s in ours if s.name == "GET"]
    assert http, "httpx's instrumentation traced the download request"
    assert http[0].parent is not None
    assert http[0].parent.span_id == by_name["download"].context.span_id
    [send] = [s for s in ours if s.name.endswith("send")]
    assert process.parent is not None
    assert process.parent.span_id == send.context.span_id, "consumed under the producer's publish"
    assert not process.links


async def test_a_batch_item_starts_its_own_trace_linked_to_its_chunk_s_publish(
    settings: WorkerSettings,
    image_server: ImageServer,
    tracing: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, spans = tracing
    with trace.get_tracer("test.operator").start_as_current_span("chunk publish") as chunk:
        body = job_body(image_server.url("/photo/2.jpg"), "item-1", batch="ns/photos")
        await publish(settings, [body], headers=inject_headers())
    service = WorkerService(settings, tracer_provider=provider)
    try:
        await service.start()
        await wait_for(lambda: completed(settings.database_url, 1))
    finally:
        await service.stop()

    [process] = [s for s in spans.get_finished_spans() if s.name == "process_image"]
    assert process.parent is None, "an item is the root of its own trace"
    assert process.context.trace_id != chunk.get_span_context().trace_id
    # In this process aio-pika's instrumentation traces the test's own publish too, so the
    # message's traceparent names that `send` span, under the chunk's span.
    chunk_trace = chunk.get_span_context().trace_id
    [send] = [
        s
        for s in spans.get_finished_spans()
        if s.context.trace_id == chunk_trace and s.name.endswith("send")
    ]
    assert send.parent is not None
    assert send.parent.span_id == chunk.get_span_context().span_id
    [link] = process.links
    assert (link.context.trace_id, link.context.span_id) == (chunk_trace, send.context.span_id)
    stages = [s for s in spans.get_finished_spans() if s.name in {"download", "write", "record"}]
    assert {s.context.trace_id for s in stages} == {process.context.trace_id}
