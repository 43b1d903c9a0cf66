"""OpenTelemetry for the worker: the shared provider plus the instrumentation packages.

aio-pika's instrumentation opens a consumer span per delivery, continuing the producer's
`traceparent` (and traces the retry and dead-letter publishes); httpx's traces each download
request of the worker's own client; asyncpg's traces the queries. The worker adds its own
`process_image` span with `download`, `transform`, `write` and `record` children. Without an
OTLP endpoint nothing is installed and the worker makes no spans of its own: OpenTelemetry's
no-op spans are cheap, not free, and at a few hundred images a second they added up.
"""

from __future__ import annotations

from typing import Any

import httpx
from opentelemetry.instrumentation.aio_pika import AioPikaInstrumentor
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

from imagebatch.core.otlp import OtlpTarget
from imagebatch.core.telemetry import WORKER_SERVICE, setup_tracing


def _instrumentors() -> tuple[Any, ...]:
    return (AioPikaInstrumentor(), AsyncPGInstrumentor())  # type: ignore[no-untyped-call]


def enable_tracing(
    *,
    otlp: OtlpTarget | None,
    service_name: str | None = None,
    processor: SpanProcessor | None = None,
) -> TracerProvider:
    """Install the tracer provider and instrument aio-pika and asyncpg (process-wide)."""
    provider = setup_tracing(service_name or WORKER_SERVICE, otlp=otlp, processor=processor)
    for instrumentor in _instrumentors():
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument(tracer_provider=provider)
    return provider


def disable_tracing() -> None:
    """Undo `enable_tracing`'s instrumentation (tests)."""
    for instrumentor in _instrumentors():
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()


def trace_client(client: httpx.AsyncClient, provider: TracerProvider) -> None:
    """Trace each request of this one client."""
    HTTPXClientInstrumentor.instrument_client(client, tracer_provider=provider)
