"""Part `publish` (and `untraced`): the operator's publish rate against raw aio-pika, and its RSS.

`images` is seeded with --rows rows; an ImageBatch with `source.postgres.limit = rows` is applied
and timed until every item's message is confirmed (`batch_counts.published` polled in PostgreSQL
every 20 ms; the resource's `status.published == total` polled too) → items/s. Baseline in the same
run, on the same broker: raw aio-pika publishing as many messages of the same size (one body made
like the operator's) to a queue declared the same way, persistent, mandatory, confirms pipelined in
chunks of 1,000. The ratio operator/raw is the figure (target ≥ 0.8). Each of --runs runs has the
contenders take turns, in an order rotated from run to run, queues deleted between them; the
median run is reported and every run's figures listed. Also: the operator's RSS growth during each
publish (VmRSS before, VmRSS sampled every 0.2 s, VmHWM reset before and read after; target
< 100 MB) and CPU per item of the operator, PostgreSQL, RabbitMQ and this process. `untraced` adds
a third contender: raw aio-pika without the `traceparent` header every operator message carries
(one producer span per chunk): what the trace context costs.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import aio_pika
from opentelemetry import trace

from bench.cpu_accounting import RssSampler, reset_peak_rss, vm_kib
from bench.operator_measures.batches import (
    batch_body,
    batch_status,
    create_batch,
    delete_batch,
    queue_absent,
    wait_for,
)
from bench.operator_measures.profiling import py_spy
from bench.operator_measures.servers import (
    NAMESPACE,
    Servers,
    cpu_used,
    histogram_mean,
    operator_metrics,
)
from imagebatch.core.broker import connect, job_message, producer_channel
from imagebatch.core.imagebatch import run_spec
from imagebatch.core.messages import ImageJob, Operation
from imagebatch.core.telemetry import inject_headers
from imagebatch.core.topology import batch_queue_name, declare_topology

RAW_CHUNK = 1000
SOURCE_URL = "http://127.0.0.1:9/x/{}.jpg"
"""Nothing listens there and nothing fetches it: no workers run."""


def sample_job(name: str, index: int) -> ImageJob:
    """A job as the operator makes it for item `index` of batch `name` (same field lengths)."""
    spec = run_spec(NAMESPACE, name, batch_body(name, 1)["spec"])
    return ImageJob(
        url=SOURCE_URL.format(index),
        ops=[Operation(thumbnail=t) for t in spec.operations],
        id=f"0123456789ab-{index}",
        batch=spec.batch,
        output=spec.output_prefix,
    )


def trace_headers() -> dict[str, Any]:
    """Headers as the operator's messages carry them: the `traceparent` of a producer span
    (one per chunk there; this process has a tracer provider too, see `main_async`)."""
    with trace.get_tracer("imagebatch.bench").start_as_current_span("raw publish"):
        return inject_headers()


async def raw_publish(
    server: Servers, rows: int, name: str, *, traced: bool = True
) -> dict[str, Any]:
    """The baseline: aio-pika alone, same broker, same queue declaration, same message size
    (body and headers; `traced=False`: no headers at all, what a message without the trace
    context costs)."""
    queue = batch_queue_name(NAMESPACE, name)
    template = job_message(sample_job(name, rows // 2))
    headers = trace_headers() if traced else {}
    connection = await connect(server.messaging.rabbit_url)
    try:
        channel = await producer_channel(connection)
        topology = await declare_topology(channel, server.messaging, queue=queue, routing_key=queue)
        exchange = topology.exchange
        before = server.cpu_snapshot()
        began = time.perf_counter()
        for start in range(0, rows, RAW_CHUNK):
            await asyncio.gather(
                *(
                    exchange.publish(
                        aio_pika.Message(
                            template.body,
                            content_type="application/json",
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                            message_id=f"0123456789ab-{i}",
                            headers=headers,
                        ),
                        routing_key=queue,
                        mandatory=True,
                    )
                    for i in range(start, min(start + RAW_CHUNK, rows))
                )
            )
        wall = time.perf_counter() - began
        after = server.cpu_snapshot()
        # A new channel: a robust channel answers a passive declaration of a queue it declared
        # itself from its cache, with the message count of that first declaration.
        counter = await connection.channel()
        declared = await counter.declare_queue(queue, passive=True)
        in_queue = int(declared.declaration_result.message_count or 0)
        await counter.close()
        await topology.work_queue.delete(if_unused=False, if_empty=False)
        await channel.close()
    finally:
        await connection.close()
    if in_queue != rows:
        raise RuntimeError(f"raw publish: {in_queue} of {rows} messages in the queue")
    return {
        "messages": rows,
        "body_bytes": len(template.body),
        "headers": sorted(headers),
        "seconds": round(wall, 3),
        "messages_per_second": round(rows / wall, 1),
        "cpu": cpu_used(before, after, rows, wall),
    }


async def operator_publish(
    server: Servers, rows: int, name: str, *, profile: Path | None = None
) -> dict[str, Any]:
    """Apply a batch of `rows` items and time it until every item's message is confirmed
    (recorded by py-spy into `profile` if given)."""
    if profile is None:
        return await _operator_publish(server, rows, name)
    async with py_spy(server.operator_pid, profile) as found:
        result = await _operator_publish(server, rows, name)
    result["profile"] = found
    return result


PUBLISHED_SPAN_SQL = """
SELECT extract(epoch FROM min(published_at)) AS first,
       extract(epoch FROM max(published_at)) AS last, count(*) AS items,
       count(*) FILTER (
         WHERE published_at = (SELECT min(published_at) FROM jobs WHERE batch = $1)
       ) AS first_items,
       (SELECT extract(epoch FROM created_at) FROM batches WHERE batch = $1) AS registered
  FROM jobs WHERE batch = $1
"""
"""When the first and the last recorded chunk were confirmed, and the first one's size (one
`mark_published` statement: one `now()`). The subqueries are uncorrelated (computed once
whatever the plan: a join on the first aggregate, planned on the statistics of an empty
`jobs`, re-ran it for every row)."""


async def _operator_publish(server: Servers, rows: int, name: str) -> dict[str, Any]:
    pid, batch = server.operator_pid, f"{NAMESPACE}/{name}"
    hwm_reset = reset_peak_rss(pid)
    rss_before = vm_kib(pid, "VmRSS")
    hwm_before = vm_kib(pid, "VmHWM")
    metrics_before = await operator_metrics(server)
    cpu_before = server.cpu_snapshot()
    wall_applied = time.time()
    with RssSampler(pid) as sampler:
        began = time.perf_counter()
        await create_batch(server, name, rows)

        async def published() -> int:
            value = await server.pool.fetchval(
                "SELECT published FROM batch_counts WHERE batch = $1", batch
            )
            return int(value or 0)

        _, db_done = await wait_for(
            published, lambda n: n >= rows, interval=0.02, within=900, what="all published"
        )
        cpu_after = server.cpu_snapshot()
        status, status_done = await wait_for(
            lambda: batch_status(server, name),
            lambda s: bool(s) and s.get("published") == s.get("total") == rows,
            interval=0.2,
            within=60,
            what="status.published == total",
        )
    hwm_after = vm_kib(pid, "VmHWM")
    metrics_after = await operator_metrics(server)
    span = await server.pool.fetchrow(PUBLISHED_SPAN_SQL, batch)
    assert span is not None
    wall = db_done - began
    chunks, chunk_mean = histogram_mean(
        metrics_before, metrics_after, "imagebatch_operator_publish_chunk_seconds"
    )
    refreshes, refresh_mean = histogram_mean(
        metrics_before, metrics_after, "imagebatch_operator_status_refresh_seconds"
    )
    steady_items = int(span["items"]) - int(span["first_items"])
    steady_seconds = float(span["last"]) - float(span["first"])
    return {
        "items": int(span["items"]),
        "seconds_apply_to_all_published": round(wall, 3),
        "items_per_second": round(rows / wall, 1),
        "seconds_apply_to_registered": round(float(span["registered"]) - wall_applied, 3),
        "seconds_apply_to_first_chunk_confirmed": round(float(span["first"]) - wall_applied, 3),
        "items_per_second_first_to_last_chunk": (
            round(steady_items / steady_seconds, 1) if steady_seconds > 0 else None
        ),
        "seconds_until_status_shows_it": round(status_done - began, 3),
        "status_phase_then": status.get("phase"),
        "operator_publish_chunks": chunks,
        "operator_mean_seconds_per_chunk": round(chunk_mean, 4),
        "operator_status_refreshes": refreshes,
        "operator_mean_refresh_seconds": round(refresh_mean, 4),
        "cpu": cpu_used(cpu_before, cpu_after, rows, wall),
        "rss": {
            "vmrss_before_mib": round(rss_before / 1024, 1),
            "vmhwm_reset_before_apply": hwm_reset,
            "vmhwm_before_mib": round(hwm_before / 1024, 1),
            "vmhwm_after_mib": round(hwm_after / 1024, 1),
            "vmrss_peak_sampled_mib": round(sampler.peak_kib / 1024, 1),
            "samples": sampler.samples,
            "peak_growth_mib": round((max(hwm_after, sampler.peak_kib) - rss_before) / 1024, 1),
        },
    }


CONTENDERS = ("operator", "raw", "raw_untraced")
"""Taking turns in each publish run, rotated from run to run: the operator process, raw
aio-pika, and raw aio-pika without the traceparent header."""


def rate(result: dict[str, Any]) -> float:
    return float(result.get("items_per_second") or result["messages_per_second"])


async def publish_part(
    server: Servers, rows: int, runs: int, *, untraced: bool, profile: Path | None
) -> dict[str, Any]:
    contenders = [c for c in CONTENDERS if untraced or c != "raw_untraced"]
    every: list[dict[str, Any]] = []
    for run in range(runs):
        shift = run % len(contenders)
        order = contenders[shift:] + contenders[:shift]
        result: dict[str, Any] = {"order": order}
        for which in order:
            if which == "operator":
                name = f"publish-{run}"
                result["operator"] = await operator_publish(server, rows, name)
                await delete_batch(server, name)
                if not await queue_absent(server, batch_queue_name(NAMESPACE, name)):
                    raise RuntimeError(f"the queue of {name} outlived the batch")
            elif which == "raw":
                result["raw"] = await raw_publish(server, rows, f"raw-{run}")
            else:
                result["raw_untraced"] = await raw_publish(
                    server, rows, f"raw-untraced-{run}", traced=False
                )
        raw = rate(result["raw"])
        result["ratio_operator_vs_raw"] = round(rate(result["operator"]) / raw, 3)
        op_cpu = result["operator"]["cpu"]["operator"]["cpu_ms_per_1000_items"]
        raw_cpu = result["raw"]["cpu"]["bench_process"]["cpu_ms_per_1000_items"]
        result["client_cpu_ratio_raw_vs_operator"] = round(raw_cpu / op_cpu, 3)
        if "raw_untraced" in result:
            result["ratio_raw_vs_raw_untraced"] = round(raw / rate(result["raw_untraced"]), 3)
        every.append(result)
        print(
            f"  publish run {run + 1}/{runs} ({', '.join(order)}):"
            f" operator {rate(result['operator'])}/s, raw {raw}/s"
            + (
                f", raw untraced {rate(result['raw_untraced'])}/s"
                if "raw_untraced" in result
                else ""
            )
            + f"; ratio {result['ratio_operator_vs_raw']},"
            f" RSS +{result['operator']['rss']['peak_growth_mib']} MiB",
            file=sys.stderr,
        )
    ranked = sorted(every, key=lambda r: float(r["ratio_operator_vs_raw"]))
    median = ranked[len(ranked) // 2]
    profiled = None
    if profile is not None:  # one more operator publish, under py-spy: not among the runs
        print("  one more operator publish under py-spy ...", file=sys.stderr)
        profiled = await operator_publish(server, rows, "publish-profiled", profile=profile)
        await delete_batch(server, "publish-profiled")

    def each(key: str) -> list[Any]:
        return [r.get(key) for r in every]

    return {
        "rows": rows,
        "median_ratio_operator_vs_raw": median["ratio_operator_vs_raw"],
        "median_run": median,
        "ratio_operator_vs_raw_every_run": each("ratio_operator_vs_raw"),
        "client_cpu_ratio_raw_vs_operator_every_run": each("client_cpu_ratio_raw_vs_operator"),
        "operator_items_per_second_every_run": [rate(r["operator"]) for r in every],
        "raw_messages_per_second_every_run": [rate(r["raw"]) for r in every],
        "raw_untraced_messages_per_second_every_run": [
            rate(r["raw_untraced"]) for r in every if "raw_untraced" in r
        ],
        "ratio_raw_vs_raw_untraced_every_run": [
            r["ratio_raw_vs_raw_untraced"] for r in every if "raw_untraced" in r
        ],
        "operator_rss_growth_mib_every_run": [
            r["operator"]["rss"]["peak_growth_mib"] for r in every
        ],
        "operator_rss_mib_before_first_run": every[0]["operator"]["rss"]["vmrss_before_mib"],
        "targets": {"ratio_operator_vs_raw": ">= 0.8", "operator_rss_growth_mib": "< 100"},
        **({"profiled_operator_run": profiled} if profiled is not None else {}),
    }
