"""A span really reaches a collector the way the OTel variables point to it: OTLP/HTTP (the seed's
`…:4318/v1/traces`, or a base URL with `http/protobuf`) and OTLP/gRPC (a base URL, the default),
each to a receiver on loopback that decodes what arrives."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from imagebatch.core.otlp import OtlpProtocol
from imagebatch.core.settings import CommonSettings
from imagebatch.core.telemetry import otlp_exporter
from tests.support.otlp_receiver import otlp_receiver


@dataclass
class HttpReceived:
    """What an OTLP/HTTP receiver was sent: (path, service name, span name) per span."""

    port: int = 0
    spans: list[tuple[str, str, str]] = field(default_factory=list)


@contextmanager
def otlp_http_receiver() -> Iterator[HttpReceived]:
    """An OTLP/HTTP (protobuf) receiver on 127.0.0.1 answering every path it is sent to."""
    received = HttpReceived()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
            for resource_spans in request.resource_spans:
                service = next(
                    a.value.string_value
                    for a in resource_spans.resource.attributes
                    if a.key == "service.name"
                )
                for scope_spans in resource_spans.scope_spans:
                    received.spans.extend(
                        (self.path, service, span.name) for span in scope_spans.spans
                    )
            reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the test reports what it needs."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    received.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield received
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def send_one_span(settings: CommonSettings, service: str, name: str) -> None:
    """Export one span the way a service configured by `settings` would, and wait for it."""
    target = settings.otlp()
    assert target is not None
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(otlp_exporter(target)))
    with provider.get_tracer("test").start_as_current_span(name):
        pass
    provider.shutdown()


@pytest.mark.parametrize(
    ("protocol", "path", "configured"),
    [
        (None, "/v1/traces", "{base}/v1/traces"),  # the seed's documented value
        ("http/protobuf", "/v1/traces", "{base}"),  # an OTel base URL
        ("http/protobuf", "/v1/traces", "{base}/"),
    ],
)
def test_a_span_reaches_an_otlp_http_collector(
    protocol: OtlpProtocol | None, path: str, configured: str
) -> None:
    with otlp_http_receiver() as collector:
        base = f"http://127.0.0.1:{collector.port}"
        settings = CommonSettings(
            otel_exporter_otlp_protocol=protocol,
            otel_exporter_otlp_endpoint=configured.format(base=base),
        )
        send_one_span(settings, "api", "POST /tasks")
    assert collector.spans == [(path, "api", "POST /tasks")]


def test_a_traces_endpoint_is_used_as_it_is() -> None:
    with otlp_http_receiver() as collector:
        settings = CommonSettings(
            otel_exporter_otlp_protocol="http/protobuf",
            otel_exporter_otlp_endpoint="http://127.0.0.1:9/unused",
            otel_exporter_otlp_traces_endpoint=f"http://127.0.0.1:{collector.port}/gateway/traces",
        )
        send_one_span(settings, "worker", "process_image")
    assert collector.spans == [("/gateway/traces", "worker", "process_image")]


async def test_a_span_reaches_an_otlp_grpc_collector_at_a_base_url() -> None:
    async with otlp_receiver() as receiver:
        settings = CommonSettings(otel_exporter_otlp_endpoint=receiver.endpoint)
        await asyncio.to_thread(send_one_span, settings, "operator", "publish")
        assert [(s.service, s.name) for s in receiver.spans] == [("operator", "publish")]
