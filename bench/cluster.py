"""Quorum against classic queues on a 3-node RabbitMQ cluster: the operator's publish rate
against raw aio-pika, and the worker's images/s, in one run.

    .venv/bin/python bench/cluster.py [--rows 20000] [--images 600] [--runs 2]
        [--output .cache/bench/cluster.json]

Starts PostgreSQL and a 3-node RabbitMQ cluster (imagebatch.devservers) on loopback; every
client's RABBIT_URL names the three nodes, so each connects to the first (`a`), where its queues
are declared and led. Parts, each run for QUEUE_TYPE=classic and QUEUE_TYPE=quorum, the contenders
taking turns in an order rotated from run to run (a shared 2-core VM is noisy), the median run
reported and every run listed:

publish  the operator's pump (imagebatch.operator.pump, in this process on the operator's own
         context; no Kubernetes: the pump does not use it) publishing a batch of --rows items
         made from `images` — materialize, publish in chunks with pipelined confirms, record the
         confirms — timed from its start to its end → items/s. Baseline on the same cluster and
         queue type: raw aio-pika publishing as many persistent, mandatory messages of the same
         size (a body made like the operator's, a `traceparent` header) to a queue declared the
         same way, confirms pipelined in chunks of 1,000. `operator_over_raw` per queue type
         (target ≥ 0.8) and each contender's quorum/classic ratio.
worker   --images photos (1024x768 JPEG, from a bare loopback origin) published to a work queue
         of the type, then one worker process (`python -m imagebatch.worker`, CONCURRENCY 8,
         PREFETCH 16) takes them: images/s from the first job started to the last completed.
         `quorum_over_classic` (target ≥ 0.9). The three broker nodes share the cores with
         the worker here, so each run also says where the CPU went per image (processes grouped
         by command name: run it on a machine without other brokers or databases busy):
         `worker_cpu_quorum_over_classic` near 1 says the worker does the same work on both
         queue types and the rate's gap is the brokers' Raft work taking the worker's cores, a
         cost that broker nodes on their own machines do not pass on.
         `cpu_bound_ceiling_without_brokers` is a projection, not a measurement: the images/s
         the cores would allow at each queue type's measured CPU per image with the brokers' part
         taken out, and its quorum/classic ratio. `--pin` measures that case instead: for the
         worker part the broker nodes run on the last CPU and the worker on the others
         (`taskset -a`), so the brokers' Raft work no longer takes the worker's core.

    .venv/bin/python bench/cluster.py --pin [--images 2000 --runs 3]

Writes the JSON to --output and prints it. Not a test: numbers depend on the machine.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# As `python bench/cluster.py` this folder would come first on sys.path, where a benchmark named
# like a stdlib module (an `operator.py`) would shadow it: drop the folder, and append the repo so
# that `bench` and `tests` import.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from typing import Any, cast  # noqa: E402

import aio_pika  # noqa: E402
import asyncpg  # noqa: E402
from opentelemetry import trace  # noqa: E402

from bench.cpu_accounting import CpuSnapshot, cpu_report  # noqa: E402
from bench.photo_origin import PhotoOrigin  # noqa: E402
from imagebatch.core.broker import connect, producer_channel  # noqa: E402
from imagebatch.core.db import create_pool, migrate  # noqa: E402
from imagebatch.core.imagebatch import RunSpec, run_spec  # noqa: E402
from imagebatch.core.settings import CommonSettings  # noqa: E402
from imagebatch.core.telemetry import inject_headers, setup_tracing  # noqa: E402
from imagebatch.core.topology import batch_queue_name, declare_topology  # noqa: E402
from imagebatch.devservers.postgres import PostgresServer  # noqa: E402
from imagebatch.devservers.rabbitmq_cluster import RabbitMQCluster  # noqa: E402
from imagebatch.devservers.worker_process import WorkerProcess  # noqa: E402
from imagebatch.operator.items import Item  # noqa: E402
from imagebatch.operator.publisher import build_messages  # noqa: E402
from imagebatch.operator.pump import Pump  # noqa: E402
from imagebatch.operator.settings import OperatorSettings  # noqa: E402
from imagebatch.worker.settings import WorkerSettings  # noqa: E402
from tests.support.photos import photos  # noqa: E402
from tests.support.pump_context import pump_context  # noqa: E402
from tests.support.worker_fixtures import publish  # noqa: E402

QUEUE_TYPES = ("classic", "quorum")
NAMESPACE = "bench"
RAW_CHUNK = 1000
SOURCE_URL = "http://127.0.0.1:9/x/{}.jpg"
"""The items' URLs: nothing fetches them in the publish part."""
PHOTO_SIZE = (1024, 768)
WORKER_SETTING = {"concurrency": 8, "prefetch": 16}


async def fresh_database(admin_url: str) -> str:
    """A new database on the server with the migrations applied; its URL."""
    name = f"bench_{uuid.uuid4().hex[:10]}"
    conn: asyncpg.Connection = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = f"{admin_url.rpartition('/')[0]}/{name}"
    await migrate(url)
    return url


def messaging(cluster: RabbitMQCluster, database_url: str, queue_type: str) -> CommonSettings:
    suffix = uuid.uuid4().hex[:8]
    return CommonSettings(
        rabbit_url=cluster.url,
        database_url=database_url,
        exchange=f"images.{suffix}",
        queue=f"images.{suffix}.q",
        dlx=f"images.{suffix}.dlx",
        dlq=f"images.{suffix}.dlx.q",
        queue_type=cast(Any, queue_type),
    )


async def delete_queues(settings: CommonSettings, *queues: str) -> None:
    connection = await connect(settings.rabbit_url)
    async with connection:
        channel = await connection.channel()
        for name in (*queues, settings.dlq):
            await channel.queue_delete(name)


# ---------------------------------------------------------------------------------------------
# publish: the operator's pump against raw aio-pika


def batch_spec(name: str, rows: int) -> RunSpec:
    return run_spec(NAMESPACE, name, {"source": {"postgres": {"table": "images", "limit": rows}}})


async def operator_publish(settings: CommonSettings, rows: int) -> float:
    """Seconds the pump takes to publish (and record) a batch of `rows` items."""
    spec = batch_spec(f"pub-{uuid.uuid4().hex[:8]}", rows)
    operator_settings = OperatorSettings(**settings.model_dump())
    pool = await create_pool(settings.database_url, min_size=1, max_size=10)
    broker = await connect(settings.rabbit_url)
    context = pump_context(operator_settings, pool, broker)
    try:
        gate = asyncio.Event()
        gate.set()
        pump = Pump(context, spec.batch, str(uuid.uuid4()), gate)
        began = time.perf_counter()
        await pump.run(spec)
        took = time.perf_counter() - began
        published = await pool.fetchval(
            "SELECT count(*) FROM jobs WHERE batch = $1 AND published_at IS NOT NULL", spec.batch
        )
        if published != rows or pump.problem is not None:
            raise RuntimeError(f"the pump published {published}/{rows}: {pump.problem}")
    finally:
        await context.sources.close()  # the source pool the pump opened for the batch
        await broker.close()
        await pool.close()
    await delete_queues(settings, batch_queue_name(spec.namespace, spec.name))
    return took


async def raw_publish(settings: CommonSettings, rows: int) -> float:
    """Seconds raw aio-pika takes to publish `rows` messages like the operator's, confirmed."""
    spec = batch_spec(f"raw-{uuid.uuid4().hex[:8]}", rows)
    queue = batch_queue_name(spec.namespace, spec.name)
    with trace.get_tracer("imagebatch.bench").start_as_current_span("raw publish"):
        headers = inject_headers()
    messages, _ = build_messages(spec, [Item(f"0123456789ab-{rows // 2}", SOURCE_URL)], headers)
    body = messages[0].body
    connection = await connect(settings.rabbit_url)
    async with connection:
        channel = await producer_channel(connection)
        topology = await declare_topology(channel, settings, queue=queue, routing_key=queue)
        began = time.perf_counter()
        for start in range(0, rows, RAW_CHUNK):
            await asyncio.gather(
                *(
                    topology.exchange.publish(
                        aio_pika.Message(
                            body,
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
        took = time.perf_counter() - began
    await delete_queues(settings, queue)
    return took


async def publish_part(
    cluster: RabbitMQCluster, admin_url: str, rows: int, runs: int
) -> dict[str, Any]:
    database_url = await fresh_database(admin_url)
    conn: asyncpg.Connection = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "INSERT INTO images (url) SELECT replace($2, '{}', g::text)"
            " FROM generate_series(1, $1) AS g",
            rows,
            SOURCE_URL,
        )
    finally:
        await conn.close()
    contenders = [(kind, queue_type) for queue_type in QUEUE_TYPES for kind in ("operator", "raw")]
    rates: dict[str, list[float]] = {f"{k}_{q}": [] for k, q in contenders}
    for run in range(runs):
        shift = run % len(contenders)
        for kind, queue_type in contenders[shift:] + contenders[:shift]:
            settings = messaging(cluster, database_url, queue_type)
            publish = operator_publish if kind == "operator" else raw_publish
            seconds = await publish(settings, rows)
            rates[f"{kind}_{queue_type}"].append(round(rows / seconds, 1))
            print(f"publish run {run + 1}: {kind} on {queue_type}: {rows / seconds:.0f}/s")
    medians = {name: statistics.median(values) for name, values in rates.items()}
    return {
        "rows": rows,
        "items_per_second_median": medians,
        "items_per_second_runs": rates,
        "operator_over_raw": {
            q: round(medians[f"operator_{q}"] / medians[f"raw_{q}"], 3) for q in QUEUE_TYPES
        },
        "operator_over_raw_by_run": {
            q: [
                round(o / r, 3)
                for o, r in zip(rates[f"operator_{q}"], rates[f"raw_{q}"], strict=True)
            ]
            for q in QUEUE_TYPES
        },
        "quorum_over_classic": {
            kind: round(medians[f"{kind}_quorum"] / medians[f"{kind}_classic"], 3)
            for kind in ("operator", "raw")
        },
    }


# ---------------------------------------------------------------------------------------------
# worker: images/s at 8/16 on quorum against classic


def pin(pid: int, cpus: str) -> None:
    """Keep every thread of `pid` (and those it starts later) on `cpus` (taskset's list)."""
    subprocess.run(["taskset", "-a", "-p", "-c", cpus, str(pid)], check=True, capture_output=True)


async def worker_run(
    cluster: RabbitMQCluster,
    admin_url: str,
    queue_type: str,
    count: int,
    workdir: Path,
    worker_cpus: str | None = None,
) -> tuple[float, dict[str, float]]:
    """Images/s of one worker process taking `count` photos from a `queue_type` work queue,
    and the CPU milliseconds per image of each process group from the worker's readiness to
    the last completion."""
    database_url = await fresh_database(admin_url)
    settings = messaging(cluster, database_url, queue_type)
    async with PhotoOrigin(photos(PHOTO_SIZE)) as origin:
        await publish(
            settings,
            [
                json.dumps({"url": origin.url(i), "id": f"w-{i:05d}", "output": "bench"}).encode()
                for i in range(count)
            ],
            window=count,
        )
        worker_settings = WorkerSettings(
            **{
                **settings.model_dump(),
                "output_dir": workdir / f"data-{uuid.uuid4().hex[:8]}",
                "allow_private_sources": True,
                "metrics_host": "127.0.0.1",
                "metrics_port": 0,
                **WORKER_SETTING,
            }
        )
        worker = WorkerProcess(worker_settings, workdir / f"worker-{queue_type}.log")
        await worker.start()
        if worker_cpus is not None:
            assert worker.process is not None
            pin(worker.process.pid, worker_cpus)
        conn: asyncpg.Connection = await asyncpg.connect(database_url)
        try:
            await worker.wait_ready(within=60)
            assert worker.process is not None
            cpu_before = CpuSnapshot.take(worker.process.pid)
            began = time.perf_counter()
            while (
                await conn.fetchval("SELECT count(*) FROM jobs WHERE status = 'completed'")
            ) < count:
                if time.perf_counter() - began > 600:
                    raise RuntimeError(f"{queue_type}: not all {count} completed after 600 s")
                await asyncio.sleep(0.05)
            cpu_after = CpuSnapshot.take(worker.process.pid)
            span = await conn.fetchval(
                "SELECT extract(epoch FROM max(completed_at) - min(started_at)) FROM jobs"
            )
        finally:
            await conn.close()
            worker.signal(signal.SIGTERM)
            await worker.wait()
            await worker.close()
    await delete_queues(settings, settings.queue)
    ms_per_image = cast(dict[str, float], cpu_report(cpu_before, cpu_after, count)["ms_per_image"])
    return count / float(span), {
        group: ms_per_image.get(group, 0.0)
        for group in ("worker", "rabbitmq", "postgres", "bench_and_origin", "machine_total")
    }


async def worker_part(
    cluster: RabbitMQCluster,
    admin_url: str,
    count: int,
    runs: int,
    workdir: Path,
    pinned: bool = False,
) -> dict[str, Any]:
    cores = os.cpu_count() or 1
    worker_cpus = None
    if pinned:
        if cores < 2:
            raise SystemExit("--pin needs at least 2 CPUs")
        for node in cluster.nodes.values():
            assert node.node_pid is not None
            pin(node.node_pid, str(cores - 1))
        worker_cpus = f"0-{cores - 2}"
    rates: dict[str, list[float]] = {q: [] for q in QUEUE_TYPES}
    cpu: dict[str, list[dict[str, float]]] = {q: [] for q in QUEUE_TYPES}
    for run in range(runs):
        order = QUEUE_TYPES if run % 2 == 0 else tuple(reversed(QUEUE_TYPES))
        for queue_type in order:
            rate, ms = await worker_run(cluster, admin_url, queue_type, count, workdir, worker_cpus)
            rates[queue_type].append(round(rate, 1))
            cpu[queue_type].append(ms)
            print(
                f"worker run {run + 1}: {queue_type}: {rate:.1f} images/s; CPU ms/image "
                f"worker {ms['worker']:.2f}, rabbitmq {ms['rabbitmq']:.2f}"
            )
    medians = {q: statistics.median(values) for q, values in rates.items()}
    cpu_medians = {
        q: {group: round(statistics.median(run[group] for run in runs_), 3) for group in runs_[0]}
        for q, runs_ in cpu.items()
    }
    ceilings = {
        q: round(cores * 1000 / (ms["machine_total"] - ms["rabbitmq"]), 1)
        for q, ms in cpu_medians.items()
    }
    return {
        "pinned": {"brokers": str(cores - 1), "worker": worker_cpus} if pinned else None,
        "images": count,
        "photo_size": list(PHOTO_SIZE),
        "worker_settings": WORKER_SETTING,
        "images_per_second_median": medians,
        "images_per_second_runs": rates,
        "quorum_over_classic": round(medians["quorum"] / medians["classic"], 3),
        "quorum_over_classic_by_run": [
            round(q / c, 3) for q, c in zip(rates["quorum"], rates["classic"], strict=True)
        ],
        "cpu_ms_per_image_median": cpu_medians,
        "worker_cpu_quorum_over_classic": round(
            cpu_medians["quorum"]["worker"] / cpu_medians["classic"]["worker"], 3
        ),
        "rabbitmq_cpu_quorum_over_classic": round(
            cpu_medians["quorum"]["rabbitmq"] / cpu_medians["classic"]["rabbitmq"], 3
        ),
        "cpu_bound_ceiling_without_brokers": ceilings,
        "cpu_bound_ceiling_without_brokers_quorum_over_classic": round(
            ceilings["quorum"] / ceilings["classic"], 3
        ),
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    began = time.monotonic()
    # Spans are real here as in the operator (which sets a tracer provider up at start): every
    # message of both contenders carries a real span's traceparent. Nothing is exported.
    setup_tracing("imagebatch-bench")
    with (
        tempfile.TemporaryDirectory(prefix="imagebatch-bench-cluster-") as tmp,
        PostgresServer() as postgres,
        RabbitMQCluster() as cluster,
    ):
        report: dict[str, Any] = {
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "load_average_before": [round(x, 2) for x in os.getloadavg()],
            },
            "cluster": {
                "nodes": [node.node for node in cluster.nodes.values()],
                "startup_seconds": round(cluster.startup_seconds, 1),
            },
            "runs": args.runs,
        }
        report["publish"] = await publish_part(cluster, postgres.url, args.rows, args.runs)
        report["worker"] = await worker_part(
            cluster, postgres.url, args.images, args.runs, Path(tmp), args.pin
        )
        report["targets"] = {
            "operator_over_raw_at_least_0_8": {
                q: report["publish"]["operator_over_raw"][q] >= 0.8 for q in QUEUE_TYPES
            },
            "worker_quorum_over_classic_at_least_0_9": report["worker"]["quorum_over_classic"]
            >= 0.9,
        }
        report["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
        report["seconds"] = round(time.monotonic() - began, 1)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument(
        "--pin",
        action="store_true",
        help="worker part: brokers on the last CPU, worker on the rest",
    )
    parser.add_argument("--output", type=Path, default=REPO / ".cache" / "bench" / "cluster.json")
    args = parser.parse_args()
    report = asyncio.run(main_async(args))
    text = json.dumps(report, indent=2)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text + "\n")
    print(text)
    with contextlib.suppress(Exception):
        print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
