"""OpenTelemetry for the worker: the shared provider plus the instrumentation packages.

The worker opens each delivery's consumer span (`process_image`) itself, with `download`,
`transform`, `write` and `record` children, and `consumer_origin` decides where it hangs (the
contract, "⚑ Observability"): a task or an upload continues its producer's trace (the api's
publish span), while a batch item starts a trace of its own with a span link to the operator's
publish span of its chunk — each item's `traceparent` names that span, and as a parent it would
make a 1,000,000-item batch one trace. aio-pika's instrumentation is therefore installed for
publishes only (retries, waits, dead letters); its consume side would open a `receive` span as a
child of the `traceparent` before the worker could read which kind of job the message is.
httpx's instrumentation traces each download request of the worker's own client; asyncpg's the
queries. Without an OTLP endpoint nothing is installed and the worker makes no spans of its own:
OpenTelemetry's no-op spans are cheap, not free, and at a few hundred images a second they added
up.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import httpx
from opentelemetry import context, trace
from opentelemetry.instrumentation.aio_pika import AioPikaInstrumentor
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.trace import Link

from imagebatch.core.otlp import OtlpTarget
from imagebatch.core.telemetry import WORKER_SERVICE, extract_context, setup_tracing


class PublishInstrumentor(AioPikaInstrumentor):
    """aio-pika's instrumentation of `Exchange.publish` only (see the module's docstring)."""

    _instance: ClassVar[Any] = None
    """Its own singleton slot: BaseInstrumentor keeps one instance per class in `_instance`,
    and a subclass would otherwise share its parent's."""

    @staticmethod
    def _instrument_queue(tracer: trace.Tracer) -> None:
        """The worker opens its consumer spans itself."""

    @staticmethod
    def _uninstrument_queue() -> None:
        """Nothing was wrapped."""


def consumer_origin(
    headers: Mapping[str, Any] | None, *, batch: str | None
) -> tuple[context.Context, tuple[Link, ...]]:
    """The parent context and the links of a delivery's consumer span.

    A job without a batch (a task, an upload) continues the trace its `traceparent` names. A
    batch item starts a new trace (an empty context), linked to the span its `traceparent`
    names: its chunk's publish span in the operator. No valid `traceparent`, no link.
    """
    carried = extract_context(headers)
    if batch is None:
        return carried, ()
    producer = trace.get_current_span(carried).get_span_context()
    return context.Context(), (Link(producer),) if producer.is_valid else ()


def _instrumentors() -> tuple[Any, ...]:
    return (PublishInstrumentor(), AsyncPGInstrumentor())  # type: ignore[no-untyped-call]


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
