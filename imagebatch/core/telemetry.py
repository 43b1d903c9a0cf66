"""OpenTelemetry set-up shared by the services, and W3C trace-context in message headers.

Traces go where OpenTelemetry's exporter variables say (`imagebatch.core.otlp` decides the
protocol and URL); without an endpoint the services still create spans (tests attach an
in-memory exporter) but export nothing. The api injects `traceparent` into
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

from imagebatch.core.otlp import OtlpTarget

API_SERVICE = "api"
WORKER_SERVICE = "worker"
OPERATOR_SERVICE = "operator"
"""The contract's trace service names (`service.name`) unless `OTEL_SERVICE_NAME` is set."""

_provider: TracerProvider | None = None


def setup_tracing(
    service_name: str,
    *,
    otlp: OtlpTarget | None = None,
    exporter: SpanExporter | None = None,
    processor: SpanProcessor | None = None,
) -> TracerProvider:
    """Install (once per process) a tracer provider for `service_name`.

    `exporter`/`processor` let tests collect spans in memory; `otlp` sends them to a collector.
    """
    global _provider
    if _provider is None:
        _provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        trace.set_tracer_provider(_provider)
    if otlp is not None:
        _provider.add_span_processor(BatchSpanProcessor(otlp_exporter(otlp)))
    if exporter is not None:
        _provider.add_span_processor(BatchSpanProcessor(exporter))
    if processor is not None:
        _provider.add_span_processor(processor)
    return _provider


def otlp_exporter(target: OtlpTarget) -> SpanExporter:
    """The OTLP exporter for `target`'s protocol, sending to exactly its URL.

    Imported here, not at module level: each pulls in its transport (grpcio, requests), which a
    service that exports nothing never needs to load.
    """
    if target.protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HttpExporter,
        )

        return HttpExporter(endpoint=target.url)
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
        OTLPSpanExporter as GrpcExporter,
    )

    return GrpcExporter(endpoint=target.url)


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
