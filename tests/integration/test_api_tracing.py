"""Tracing in the api: a server span per request, a producer span per publish, and the
message's `traceparent` naming that producer span, so the worker's spans join the same trace."""

from __future__ import annotations

import httpx
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from tests.support.api import Inbox


async def test_a_task_s_publish_is_a_producer_span_under_the_request_span(
    api: httpx.AsyncClient, job_inbox: Inbox, spans: InMemorySpanExporter
) -> None:
    response = await api.post("/tasks", json={"url": "http://example.test/a.jpg"})
    [message] = await job_inbox.take(1)

    assert response.status_code == 202
    finished = spans.get_finished_spans()
    [server] = [s for s in finished if s.kind == SpanKind.SERVER]
    [producer] = [s for s in finished if s.kind == SpanKind.PRODUCER]
    assert server.name == "POST /tasks"
    assert producer.parent is not None
    assert producer.parent.span_id == server.context.span_id
    assert producer.context.trace_id == server.context.trace_id
    assert producer.attributes is not None
    assert producer.attributes["messaging.message.id"] == response.json()["id"]
    assert producer.attributes["messaging.system"] == "rabbitmq"

    traceparent = (message.headers or {})["traceparent"]
    assert isinstance(traceparent, str)
    version, trace_id, parent_id, _flags = traceparent.split("-")
    assert version == "00"
    assert int(trace_id, 16) == server.context.trace_id
    assert int(parent_id, 16) == producer.context.span_id


async def test_probes_and_metrics_are_not_traced(
    api: httpx.AsyncClient, spans: InMemorySpanExporter
) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        assert (await api.get(path)).status_code == 200

    assert [s.name for s in spans.get_finished_spans() if s.kind == SpanKind.SERVER] == []
