"""One trace from the api to the worker: `POST /tasks` (api process) and the worker's handling of
that task (worker process) export to one OTLP receiver, share one trace id, and the worker's
download, transform and write spans hang under the api's producer span."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.trace.v1 import trace_pb2

from imagebatch.core.settings import CommonSettings
from imagebatch.devservers.service_process import api_process, wait_until, worker_process
from tests.support.image_server import ImageServer
from tests.support.otlp_receiver import CollectedSpan, otlp_receiver

pytestmark = pytest.mark.slow

SERVER = trace_pb2.Span.SpanKind.SPAN_KIND_SERVER
PRODUCER = trace_pb2.Span.SpanKind.SPAN_KIND_PRODUCER


def ancestors(span: CollectedSpan, spans: list[CollectedSpan]) -> list[CollectedSpan]:
    """The chain of parents of `span` within `spans`, nearest first."""
    by_id = {s.span_id: s for s in spans}
    chain = []
    while span.parent_id and span.parent_id in by_id:
        span = by_id[span.parent_id]
        chain.append(span)
    return chain


async def test_a_task_and_the_worker_s_handling_of_it_share_one_trace(
    messaging: CommonSettings, tmp_path: Path
) -> None:
    async with otlp_receiver() as receiver, ImageServer() as images:
        tracing = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}
        async with (
            api_process(messaging, tmp_path, **tracing) as (base, _api),
            worker_process(messaging, tmp_path, **tracing),
            httpx.AsyncClient(base_url=base, timeout=10) as client,
        ):
            accepted = await client.post("/tasks", json={"url": images.url("/photo/2.jpg")})
            task_id = accepted.json()["id"]

            def request_span() -> CollectedSpan | None:
                return next(
                    (s for s in receiver.spans if s.service == "api" and s.name == "POST /tasks"),
                    None,
                )

            async def whole_trace_arrived() -> bool:
                """Every stage and every span between it and the api's request: the two
                processes export in batches, so a parent can arrive after its children."""
                root = request_span()
                if root is None:
                    return False
                trace = receiver.by_trace(root.trace_id)
                stages = [s for s in trace if s.name in {"download", "transform", "write"}]
                return len(stages) == 3 and all(root in ancestors(s, trace) for s in stages)

            await wait_until(whole_trace_arrived, within=30, what="the worker's spans")
            assert (await client.get(f"/tasks/{task_id}")).json()["status"] == "completed"

    root = request_span()
    assert root is not None
    assert root.kind == SERVER
    trace = receiver.by_trace(root.trace_id)
    [producer] = [s for s in trace if s.kind == PRODUCER and s.service == "api"]
    assert producer.parent_id == root.span_id
    worker_spans = [s for s in trace if s.service == "worker"]
    assert worker_spans, "no worker span joined the api's trace"
    for name in ("download", "transform", "write"):
        [stage] = [s for s in worker_spans if s.name == name]
        chain = ancestors(stage, trace)
        assert producer in chain, f"{name} is not under the api's publish span"
        assert chain[-1] == root
        assert any(s.name == "process_image" for s in chain)
