"""OpenTelemetry set-up shared by the services, and W3C trace-context in message headers.

Traces go to `OTEL_EXPORTER_OTLP_ENDPOINT` when it is set; without it the services still create
spans (tests attach an in-memory exporter) but export nothing. The api injects `traceparent` into
each message's headers and the worker continues the trace from there, so one trace runs
api → broker → worker.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

_provider: TracerProvider | None = None


def setup_tracing(
    service_name: str,
    *,
    otlp_endpoint: str | None = None,
    exporter: SpanExporter | None = None,
    processor: SpanProcessor | None = None,
) -> TracerProvider:
    """Install (once per process) a tracer provider for `service_name`.

    `exporter`/`processor` let tests collect spans in memory; `otlp_endpoint` sends them to a
    collector over OTLP/gRPC.
    """
    global _provider
    if _provider is None:
        _provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        trace.set_tracer_provider(_provider)
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint)))
    if exporter is not None:
        _provider.add_span_processor(BatchSpanProcessor(exporter))
    if processor is not None:
        _provider.add_span_processor(processor)
    return _provider


def inject_headers(headers: MutableMapping[str, Any] | None = None) -> dict[str, Any]:
    """Headers carrying the current trace context (`traceparent`, `tracestate`)."""
    carrier: dict[str, Any] = dict(headers or {})
    propagate.inject(carrier)
    return carrier


def extract_context(headers: Mapping[str, Any] | None) -> context.Context:
    """The trace context a message's headers carry (bytes values are decoded)."""
    carrier = {
        key: value.decode() if isinstance(value, bytes) else str(value)
        for key, value in (headers or {}).items()
        if isinstance(value, str | bytes)
    }
    return propagate.extract(carrier)
