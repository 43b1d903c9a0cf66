"""Traces as a person sees them in Jaeger (the contract, "⚑ Observability"): the services export
through OpenTelemetry's own variables to a real Jaeger, and its query API — what the Jaeger UI
reads — shows one trace per task, enqueued row and upload, running from the api's request through
its publish to the worker's consumer span and its stages; and a batch item's worker span is a
trace of its own, linked to the operator's publish span of the item's chunk."""

from __future__ import annotations

import asyncio
import json
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from imagebatch.core.settings import CommonSettings
from imagebatch.devservers.jaeger import JaegerServer, JaegerSpan, JaegerTrace
from imagebatch.devservers.operator_process import OperatorProcess
from imagebatch.devservers.service_process import api_process, wait_until, worker_process
from tests.support.api import seed_images
from tests.support.image_server import ImageServer
from tests.support.operator import Batches, OperatorFactory
from tests.support.photos import photos

pytestmark = pytest.mark.slow

STAGES = ("download", "transform", "write", "record")


@pytest.fixture(scope="module")
def jaeger() -> Iterator[JaegerServer]:
    with JaegerServer() as server:
        yield server


def kind(span: JaegerSpan) -> str:
    return str(span.tags.get("span.kind", ""))


async def worker_traces(jaeger: JaegerServer, **tags: str) -> list[JaegerTrace]:
    """The traces with a worker span carrying `tags` (the search box of the Jaeger UI)."""
    return await asyncio.to_thread(
        jaeger.traces, "worker", operation="process_image", tags=json.dumps(tags)
    )


def whole(trace: JaegerTrace) -> bool:
    """Every stage has arrived, and the chain from each to the root too (the two services
    export in batches, so parents may come after their children)."""
    stages = [s for s in trace.spans if s.name in STAGES]
    roots = [s for s in trace.spans if s.parent_id is None]
    return len(stages) == len(STAGES) and all(trace.ancestors(s)[-1:] == roots for s in stages)


async def test_a_task_an_enqueued_row_and_an_upload_are_each_one_trace_from_api_to_worker(
    jaeger: JaegerServer, messaging: CommonSettings, tmp_path: Path
) -> None:
    # The api speaks OTLP/HTTP to the seed's documented form of URL, the worker OTLP/gRPC.
    async with (
        ImageServer() as images,
        api_process(
            messaging, tmp_path, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=jaeger.otlp_http_traces_url
        ) as (base, _api),
        worker_process(messaging, tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=jaeger.otlp_grpc_endpoint),
        httpx.AsyncClient(base_url=base, timeout=10) as client,
    ):
        [row] = await seed_images(messaging.database_url, [images.url("/photo/3.jpg")])
        task = (await client.post("/tasks", json={"url": images.url("/photo/2.jpg")})).json()
        assert (await client.post("/enqueue", params={"limit": 1})).json()["enqueued"] == 1
        photo = photos()[0]
        upload = (
            await client.post("/uploads", files={"file": ("photo.jpg", photo, "image/jpeg")})
        ).json()
        jobs = {"POST /tasks": task["id"], "POST /enqueue": str(row), "POST /uploads": upload["id"]}

        found: dict[str, list[JaegerTrace]] = {}

        async def all_arrived() -> bool:
            for request, job in jobs.items():
                found[request] = await worker_traces(jaeger, **{"imagebatch.job.id": job})
            return all(len(t) == 1 and whole(t[0]) for t in found.values())

        await wait_until(all_arrived, within=60, what="the three traces in Jaeger")

    for request, job in jobs.items():
        [trace] = found[request]
        [root] = [s for s in trace.spans if s.parent_id is None]
        assert (root.service, root.name, kind(root)) == ("api", request, "server")
        [consume] = trace.named("process_image", "worker")
        assert kind(consume) == "consumer"
        assert consume.tags["imagebatch.job.id"] == job
        assert not consume.links
        publish = trace.ancestors(consume)[0]
        assert (publish.service, kind(publish)) == ("api", "producer"), request
        assert trace.ancestors(publish)[-1] == root
        for name in STAGES:
            [stage] = trace.named(name, "worker")
            assert stage.parent_id == consume.span_id, f"{request}: {name}"
        fetched = [s for s in trace.spans if s.service == "worker" and kind(s) == "client"]
        http_gets = [s for s in fetched if s.name == "GET"]
        if request == "POST /uploads":
            assert not http_gets, "an upload is read from the uploads store, not downloaded"
        else:
            assert http_gets, f"{request}: the download's HTTP request is in the trace"
        services = {s.service for s in trace.spans}
        assert services == {"api", "worker"}, request


async def test_a_batch_item_s_worker_span_links_to_its_chunk_s_publish_span_in_the_operator(
    jaeger: JaegerServer,
    start_operator: OperatorFactory,
    connections_secret: str,
    supervisor: object,
    batches: Batches,
    image_server: ImageServer,
    namespace: str,
) -> None:
    operator: OperatorProcess = await start_operator(
        OTEL_EXPORTER_OTLP_ENDPOINT=jaeger.otlp_grpc_endpoint
    )
    assert operator.env["OTEL_EXPORTER_OTLP_ENDPOINT"] == jaeger.otlp_grpc_endpoint
    urls = [image_server.url(f"/photo/{n}.jpg") for n in range(3)]
    workers = {"maxReplicas": 1, "concurrency": 2, "prefetch": 4}
    await batches.create("traced", {"source": {"urls": urls}, "workers": workers})
    await batches.wait_phase("traced", "Succeeded", within=120)

    items: list[JaegerTrace] = []

    async def items_arrived() -> bool:
        nonlocal items
        items = await worker_traces(jaeger, **{"imagebatch.batch": f"{namespace}/traced"})
        return len(items) == 3 and all(whole(t) for t in items)

    await wait_until(items_arrived, within=60, what="the batch items' traces in Jaeger")

    assert len({t.trace_id for t in items}) == 3, "each item is a trace of its own"
    links: list[tuple[str, str]] = []
    for item in items:
        [consume] = item.named("process_image", "worker")
        assert consume.parent_id is None, "an item's trace starts at the worker"
        assert {s.service for s in item.spans} == {"worker"}
        [link] = consume.links
        links.append(link)

    chunks: dict[str, JaegerTrace] = {}

    async def chunks_arrived() -> bool:
        """The operator exports its spans in batches of its own: the chunk's may come later."""
        for chunk_trace, _ in links:
            if chunk_trace not in chunks:
                try:
                    chunks[chunk_trace] = await asyncio.to_thread(jaeger.trace, chunk_trace)
                except urllib.error.HTTPError as exc:
                    if exc.code != 404:
                        raise
                    return False
        return True

    await wait_until(chunks_arrived, within=60, what="the operator's chunk spans in Jaeger")
    for chunk_trace, chunk_span in links:
        [publish] = [s for s in chunks[chunk_trace].spans if s.span_id == chunk_span]
        assert (publish.service, kind(publish)) == ("operator", "producer")
        assert publish.name.endswith("publish")
