"""Operator benchmark: publish rate against raw aio-pika, the operator's memory, status lag and
one status refresh at 1,000,000 items.

    .venv/bin/python bench/operator.py [--rows 100000] [--runs 3] [--skip PART,...]
        [--env NAME=VALUE ...] [--profile .cache/bench/operator-profile.txt]

Starts its own PostgreSQL, RabbitMQ and Kubernetes control plane (envtest binaries from
KUBEBUILDER_ASSETS or the cache `make envtest` fills) on loopback, creates the namespace and its
connections Secret, and runs the operator as a process (`python -m imagebatch.operator`) with the
default settings (STATUS_INTERVAL_SECONDS=2, PUBLISH_CHUNK_SIZE=1000; `--env` overrides). No
workers run: nothing fetches the items' URLs. Parts (leave some out with --skip):

publish  `images` seeded with --rows rows; an ImageBatch with `source.postgres.limit = rows` is
         applied and timed until every item's message is confirmed (`batch_counts.published`
         polled in PostgreSQL every 20 ms; the resource's `status.published == total` polled
         too) → items/s. Baseline in the same run, on the same broker: raw aio-pika publishing
         as many messages of the same size (one body made like the operator's) to a queue
         declared the same way, persistent, mandatory, confirms pipelined in chunks of 1,000.
         The ratio operator/raw is the figure (target ≥ 0.8). Each of --runs runs has the
         contenders take turns, in an order rotated from run to run, queues deleted between
         them; the median run is reported and every run's figures listed. Also: the operator's
         RSS growth during each publish (VmRSS before, VmRSS sampled every 0.2 s, VmHWM reset
         before and read after; target < 100 MB) and CPU per item of the operator, PostgreSQL,
         RabbitMQ and this process. --profile adds one more operator publish under py-spy.
untraced a third contender: raw aio-pika without the `traceparent` header every operator
         message carries (one producer span per chunk): what the trace context costs.
lag      a 5,000-item batch (postgres source) is published, then, after an offset spread over
         one refresh interval, its items are completed the way workers do (UPDATE jobs ...
         status='completed' in batches of 200 over ~2.5 s); seconds from the last commit until
         the resource's status counts them all (polled every 50 ms). Target ≤ 2 s at
         STATUS_INTERVAL_SECONDS=2. Median of --lag-runs.
refresh  1,000,000 jobs rows of one batch, inserted with the batch_counts triggers and, in a
         second database, with them disabled (--insert-pairs pairs in alternating order: the
         triggers' cost on a bulk insert); then what the operator does per status refresh —
         `batch_counts` (with the top 10 of 13 failure reason codes) + a passive queue
         declaration (`queue_stats`) + `progress.decide` —
         median and p95 over --refreshes repetitions (target < 50 ms), next to the naive
         `GROUP BY status` count over the batch's rows.

Writes the JSON to --output (default .cache/bench/operator.json) and prints a short summary.
Not a test: numbers depend on the machine (on a shared 2-core VM, raw aio-pika alone moved
between 2,400 and 5,200 messages/s from one minute to the next).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# Run as `python bench/operator.py`, this folder would come first on sys.path and this file
# would be `import operator` for everything that imports it after start-up: drop the folder.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import AsyncIterator, Awaitable, Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any  # noqa: E402

import aio_pika  # noqa: E402
import aiormq  # noqa: E402
import asyncpg  # noqa: E402
import kubernetes  # noqa: E402
from aio_pika.abc import AbstractRobustConnection  # noqa: E402
from kubernetes.client.exceptions import ApiException  # noqa: E402
from opentelemetry import trace  # noqa: E402

from imagebatch.core.batch_status import MAX_FAILURE_REASONS, BatchStatus  # noqa: E402
from imagebatch.core.broker import connect, job_message, producer_channel  # noqa: E402
from imagebatch.core.db import create_pool, migrate  # noqa: E402
from imagebatch.core.imagebatch import GROUP, PLURAL, VERSION, RunSpec, run_spec  # noqa: E402
from imagebatch.core.jobs import batch_counts  # noqa: E402
from imagebatch.core.messages import ImageJob, Operation  # noqa: E402
from imagebatch.core.settings import CommonSettings  # noqa: E402
from imagebatch.core.telemetry import inject_headers, setup_tracing  # noqa: E402
from imagebatch.core.topology import batch_queue_name, declare_topology  # noqa: E402
from imagebatch.devservers.kube import KubeControlPlane  # noqa: E402
from imagebatch.devservers.operator_process import OperatorProcess  # noqa: E402
from imagebatch.devservers.postgres import PostgresServer  # noqa: E402
from imagebatch.devservers.rabbitmq import RabbitMQServer  # noqa: E402
from imagebatch.operator.kube import Kube, load_client  # noqa: E402
from imagebatch.operator.progress import Observation, decide  # noqa: E402
from imagebatch.operator.queues import ensure_queue, queue_stats  # noqa: E402

NAMESPACE = "bench"
SECRET = "imagebatch-connections"
CRDS = REPO / "crds"
PARTS = ("publish", "untraced", "lag", "refresh")
RAW_CHUNK = 1000
BIG_ITEMS = 1_000_000
BIG_BATCH = "ns/big"
SOURCE_URL = "http://127.0.0.1:9/x/{}.jpg"
"""Nothing listens there and nothing fetches it: no workers run."""


# ---------------------------------------------------------------------------------------------
# Processes: CPU and memory from /proc


def _stat_fields(pid: int, task: int | None = None) -> list[str]:
    path = f"/proc/{pid}/task/{task}/stat" if task is not None else f"/proc/{pid}/stat"
    return Path(path).read_text().rsplit(")", 1)[1].split()


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                tree.setdefault(int(_stat_fields(int(entry.name))[1]), []).append(int(entry.name))
    return tree


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU of `root` and every live descendant, with what their reaped children
    used (cutime/cstime): a whole server's CPU so far."""
    tree, todo, ticks = _children(), [root], 0
    while todo:
        pid = todo.pop()
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = _stat_fields(pid)
            ticks += sum(int(fields[i]) for i in (11, 12, 13, 14))
        todo += tree.get(pid, [])
    return ticks / os.sysconf("SC_CLK_TCK")


def thread_cpu_seconds(pid: int) -> float:
    """CPU of the process's main thread (the operator's event loop)."""
    fields = _stat_fields(pid, pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def vm_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (proc(5): `echo 5 > clear_refs`); False where refused."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


@dataclass
class RssSampler:
    """VmRSS of `pid` every 0.2 s while running; `peak_kib` the highest seen."""

    pid: int
    interval: float = 0.2
    peak_kib: int = 0
    samples: int = 0
    _task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(OSError, KeyError):
                self.peak_kib = max(self.peak_kib, vm_kib(self.pid, "VmRSS"))
                self.samples += 1
            await asyncio.sleep(self.interval)

    def __enter__(self) -> RssSampler:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()


@dataclass
class Servers:
    """What one invocation started, and the clients on it."""

    postgres: PostgresServer
    rabbit: RabbitMQServer
    messaging: CommonSettings
    pool: asyncpg.Pool
    broker: AbstractRobustConnection
    workdir: Path
    kube: KubeControlPlane | None = None
    objects: Any = None
    """kubernetes.client.CustomObjectsApi"""
    core: Any = None
    """kubernetes.client.CoreV1Api"""
    operator: OperatorProcess | None = None
    env_overrides: dict[str, str] = field(default_factory=dict)

    @property
    def operator_pid(self) -> int:
        assert self.operator is not None
        assert self.operator.process is not None
        return self.operator.process.pid

    def cpu_snapshot(self) -> dict[str, float]:
        """CPU seconds so far of each process that takes part in a publish."""
        postgres_pid = int((self.postgres.data / "postmaster.pid").read_text().split()[0])
        snapshot = {
            "postgres": tree_cpu_seconds(postgres_pid),
            "bench_process": time.process_time(),
        }
        rabbit_pid_file = self.rabbit.base / "rabbitmq.pid"
        with contextlib.suppress(OSError, ValueError):
            snapshot["rabbitmq"] = tree_cpu_seconds(int(rabbit_pid_file.read_text().strip()))
        if self.operator is not None and self.operator.process is not None:
            snapshot["operator"] = tree_cpu_seconds(self.operator_pid)
            snapshot["operator_event_loop_thread"] = thread_cpu_seconds(self.operator_pid)
        return snapshot


def cpu_used(
    before: dict[str, float], after: dict[str, float], items_count: int, wall: float
) -> Any:
    return {
        name: {
            "cpu_seconds": round(after[name] - before[name], 2),
            "cores_busy": round((after[name] - before[name]) / wall, 2),
            "cpu_ms_per_1000_items": round((after[name] - before[name]) * 1e6 / items_count, 1),
        }
        for name in before
        if name in after
    }


async def operator_metrics(server: Servers) -> dict[str, float]:
    assert server.operator is not None
    url = server.operator.metrics_url

    def scrape() -> str:
        import urllib.request

        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())

    values: dict[str, float] = {}
    for line in (await asyncio.to_thread(scrape)).splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def histogram_mean(
    before: dict[str, float], after: dict[str, float], name: str
) -> tuple[int, float]:
    """(observations, mean seconds) of histogram `name` between two scrapes."""
    count = after.get(f"{name}_count", 0.0) - before.get(f"{name}_count", 0.0)
    total = after.get(f"{name}_sum", 0.0) - before.get(f"{name}_sum", 0.0)
    return int(count), (total / count if count else 0.0)


# ---------------------------------------------------------------------------------------------
# ImageBatch objects


def batch_body(name: str, limit: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ImageBatch",
        "metadata": {"name": name},
        "spec": {"source": {"postgres": {"table": "images", "limit": limit}}},
    }


async def create_batch(server: Servers, name: str, limit: int) -> None:
    await asyncio.to_thread(
        server.objects.create_namespaced_custom_object,
        GROUP,
        VERSION,
        NAMESPACE,
        PLURAL,
        batch_body(name, limit),
    )


async def batch_status(server: Servers, name: str) -> dict[str, Any] | None:
    """The batch's status ({} before the first report), None once the batch is gone."""
    try:
        obj = await asyncio.to_thread(
            server.objects.get_namespaced_custom_object, GROUP, VERSION, NAMESPACE, PLURAL, name
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return dict(obj.get("status") or {})


async def wait_for(
    probe: Callable[[], Awaitable[Any]],
    check: Callable[[Any], bool],
    *,
    interval: float,
    within: float,
    what: str,
) -> tuple[Any, float]:
    """Poll until `check(probe())`; (the value, perf_counter when it was seen)."""
    deadline = time.perf_counter() + within
    while True:
        value = await probe()
        seen = time.perf_counter()
        if check(value):
            return value, seen
        if seen > deadline:
            raise RuntimeError(f"no {what} within {within:.0f}s; last seen: {value!r}")
        await asyncio.sleep(interval)


async def delete_batch(server: Servers, name: str) -> None:
    """Delete the batch and wait until its finalizer (queues, items) has run."""
    await asyncio.to_thread(
        server.objects.delete_namespaced_custom_object, GROUP, VERSION, NAMESPACE, PLURAL, name
    )
    await wait_for(
        lambda: batch_status(server, name),
        lambda s: s is None,
        interval=0.2,
        within=300,
        what=f"deletion of {name}",
    )
    await server.pool.execute("VACUUM (ANALYZE) jobs")


async def queue_absent(server: Servers, queue: str) -> bool:
    channel = await server.broker.channel()
    try:
        await channel.declare_queue(queue, passive=True)
    except aiormq.exceptions.ChannelNotFoundEntity:
        return True
    finally:
        if not channel.is_closed:
            await channel.close()
    return False


# ---------------------------------------------------------------------------------------------
# Part 1: publish rate (operator vs raw aio-pika) and the operator's RSS


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


def _frame(frame: str) -> str:
    """`func (path/to/file.py:123)` → `func (file.py)`: one entry per function."""
    name, _, where = frame.partition(" (")
    return f"{name} ({Path(where.rsplit(':', 1)[0]).name})" if where else name


GENERIC_FRAMES = (
    "(base_events.py)",
    "(events.py)",
    "(runners.py)",
    "(<frozen runpy>)",
    "(__main__.py)",
    "(threading.py)",
)
"""Frames under which everything runs: left out of the inclusive ranking."""


def collapsed_profile(path: Path, top: int = 25) -> dict[str, Any]:
    """The functions taking most samples in py-spy's collapsed stacks (`--format raw`): by
    their own samples, and including their callees (the event loop's frames left out)."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in (path.read_text() if path.exists() else "").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count, frames = int(count_text), [_frame(f) for f in stack.split(";")]
        total += count
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            if not frame.endswith(GENERIC_FRAMES) and not frame.startswith("<module>"):
                inclusive[frame] = inclusive.get(frame, 0) + count

    def ranked(table: dict[str, int]) -> list[tuple[str, float]]:
        best = sorted(table.items(), key=lambda kv: -kv[1])[:top]
        return [(frame, round(n / total, 3)) for frame, n in best]

    if not total:
        return {"samples": 0}
    return {"samples": total, "top_self": ranked(own), "top_inclusive": ranked(inclusive)}


@contextlib.asynccontextmanager
async def py_spy(pid: int, output: Path) -> AsyncIterator[dict[str, Any]]:
    """py-spy recording `pid` (on-CPU samples, 100/s, without pausing it) while inside; the
    dict yielded is filled with the top frames afterwards."""
    binary = os.environ.get("PY_SPY") or shutil.which("py-spy")
    if binary is None:
        raise RuntimeError("--profile needs py-spy: pip install py-spy, or set PY_SPY")
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.with_suffix(".log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            binary,
            "record",
            "--pid",
            str(pid),
            "--rate",
            "100",
            "--format",
            "raw",
            "--nonblocking",
            "--output",
            str(output),
            stdout=log,
            stderr=log,
        )
    found: dict[str, Any] = {}
    try:
        await asyncio.sleep(1.0)  # attached
        yield found
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
        await process.wait()
    found.update(collapsed_profile(output))
    found["collapsed_stacks"] = str(output)


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


# ---------------------------------------------------------------------------------------------
# Part 2: status lag


COMPLETE_SQL = """
UPDATE jobs SET status = 'completed', completed_at = now(), updated_at = now()
 WHERE id = ANY($1::text[])
"""


async def lag_once(
    server: Servers, name: str, size: int, spread: float, offset: float
) -> dict[str, Any]:
    batch = f"{NAMESPACE}/{name}"
    await create_batch(server, name, size)
    await wait_for(
        lambda: batch_status(server, name),
        lambda s: bool(s) and s.get("published") == s.get("total") == size,
        interval=0.2,
        within=120,
        what=f"{name} published",
    )
    ids = [r["id"] for r in await server.pool.fetch("SELECT id FROM jobs WHERE batch = $1", batch)]
    step = 200
    groups = [ids[i : i + step] for i in range(0, len(ids), step)]
    pause = spread / max(len(groups) - 1, 1)
    # The status was just seen, i.e. just after a refresh: without an offset every run would
    # end its completions at the same point of the operator's refresh cycle.
    await asyncio.sleep(offset)
    first = time.perf_counter()
    for n, group in enumerate(groups):
        await server.pool.execute(COMPLETE_SQL, group)
        if n < len(groups) - 1:
            await asyncio.sleep(pause)
    last_commit = time.perf_counter()
    status, seen = await wait_for(
        lambda: batch_status(server, name),
        lambda s: bool(s) and int(s.get("succeeded", 0)) + int(s.get("failed", 0)) == size,
        interval=0.05,
        within=60,
        what=f"{name} all done in the status",
    )
    await delete_batch(server, name)
    return {
        "lag_seconds": round(seen - last_commit, 3),
        "start_offset_seconds": round(offset, 2),
        "completion_spread_seconds": round(last_commit - first, 2),
        "phase_then": status.get("phase"),
    }


async def lag_part(server: Servers, size: int, runs: int) -> dict[str, Any]:
    interval = float(server.env_overrides.get("STATUS_INTERVAL_SECONDS", 2))
    # Offsets spread evenly over one refresh interval, in a shuffled (but fixed) order.
    offsets = [interval * (n + 0.5) / runs for n in range(runs)]
    random.Random(runs).shuffle(offsets)
    every = [
        await lag_once(server, f"lag-{n}", size, spread=2.5, offset=offsets[n]) for n in range(runs)
    ]
    lags = [r["lag_seconds"] for r in every]
    return {
        "items": size,
        "status_interval_seconds": interval,
        "start_offsets_seconds": [round(o, 2) for o in offsets],
        "completion_statements": f"{-(-size // 200)} UPDATEs of 200 rows",
        "poll_interval_seconds": 0.05,
        "median_lag_seconds": round(statistics.median(lags), 3),
        "max_lag_seconds": max(lags),
        "lag_seconds_every_run": lags,
        "phase_every_run": [r["phase_then"] for r in every],
        "target": "<= 2 s",
    }


# ---------------------------------------------------------------------------------------------
# Part 3: one status refresh at 1,000,000 items; the triggers' cost on a bulk insert


BIG_INSERT_SQL = f"""
INSERT INTO jobs (id, kind, url, batch, status, error_code)
SELECT 'b-' || g, 'batch', 'http://x/' || g, '{BIG_BATCH}',
       CASE WHEN g % 3 = 0 THEN 'completed' WHEN g % 10 = 1 THEN 'failed' ELSE 'pending' END,
       CASE WHEN g % 3 <> 0 AND g % 10 = 1 THEN 'http_' || (400 + (g / 10) % 13) END
  FROM generate_series(1, {BIG_ITEMS}) g
"""
"""A third of the items completed, ~6 % failed under 13 reason codes (the status names the top
10), the rest pending."""
WARM_UP = 10
NAIVE_SQL = "SELECT status, count(*) FROM jobs WHERE batch = $1 GROUP BY status"
COUNTS_ONLY_SQL = "SELECT * FROM batch_counts WHERE batch = $1"
"""The refresh's read before `failureReasons` (for the ratio in the same run)."""


def percentile(values: list[float], fraction: float) -> float:
    ranked = sorted(values)
    return ranked[min(len(ranked) - 1, int(fraction * len(ranked)))]


def summary_ms(values: list[float]) -> dict[str, float]:
    return {
        "median_ms": round(statistics.median(values) * 1000, 3),
        "p95_ms": round(percentile(values, 0.95) * 1000, 3),
        "max_ms": round(max(values) * 1000, 3),
    }


async def timed_insert(dsn: str, *, triggers: bool) -> float:
    """Seconds to insert the 1M rows into an empty `jobs` (triggers on, or disabled)."""
    conn: asyncpg.Connection = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"ALTER TABLE jobs {'ENABLE' if triggers else 'DISABLE'} TRIGGER USER")
        await conn.execute("TRUNCATE jobs CASCADE")  # TRUNCATE fires no row/statement trigger
        await conn.execute("DELETE FROM batch_counts")
        await conn.execute("VACUUM jobs")
        await conn.execute("CHECKPOINT")
        began = time.perf_counter()
        await conn.execute(BIG_INSERT_SQL)
        seconds = time.perf_counter() - began
        await conn.execute("VACUUM (ANALYZE) jobs")
    finally:
        await conn.close()
    return seconds


async def kube_secret_lookups(server: Servers, repetitions: int) -> list[float]:
    """Seconds per `Kube.secret_exists`, which every tick also does (not part of the refresh
    proper, but the operator's refresh histogram includes it). Empty without a control plane."""
    if server.kube is None:
        return []
    kube = Kube(load_client(server.kube.kubeconfig))
    try:
        times: list[float] = []
        for n in range(repetitions + WARM_UP):
            t0 = time.perf_counter()
            if not await kube.secret_exists(NAMESPACE, SECRET):
                raise RuntimeError(f"Secret {SECRET} missing")
            if n >= WARM_UP:
                times.append(time.perf_counter() - t0)
    finally:
        kube.close()
    return times


async def refresh_part(
    server: Servers, repetitions: int, naive_repetitions: int, insert_pairs: int
) -> dict[str, Any]:
    dsns = {}
    for label in ("plain", "triggers"):
        await server.pool.execute(f"CREATE DATABASE big_{label}")
        dsns[label] = server.postgres.dsn(f"big_{label}")
        await migrate(dsns[label])
    inserts: dict[str, list[float]] = {"plain": [], "triggers": []}
    for pair in range(max(insert_pairs, 1)):
        order = ("plain", "triggers") if pair % 2 == 0 else ("triggers", "plain")
        for label in order:
            inserts[label].append(await timed_insert(dsns[label], triggers=label == "triggers"))
    insert = {label: statistics.median(values) for label, values in inserts.items()}
    print(f"  1M-row inserts (s): {inserts}", file=sys.stderr)
    namespace, name = BIG_BATCH.split("/")
    spec: RunSpec = run_spec(
        namespace, name, {"source": {"postgres": {"table": "images", "limit": BIG_ITEMS}}}
    )
    pool = await create_pool(dsns["triggers"], min_size=1, max_size=10)
    connection = await connect(server.messaging.rabbit_url)
    try:
        channel = await connection.channel()
        await ensure_queue(channel, server.messaging, spec)
        parts: dict[str, list[float]] = {"batch_counts": [], "queue_stats": [], "decide": []}
        totals: list[float] = []
        previous = BatchStatus()
        await pool.execute("CHECKPOINT")  # the inserts' dirty pages written before timing
        await asyncio.sleep(1.0)
        counts = await batch_counts(pool, spec.batch)
        parts["counts_without_reasons"] = []
        for n in range(repetitions + WARM_UP):
            t = time.perf_counter()
            await pool.fetchrow(COUNTS_ONLY_SQL, spec.batch)
            t0 = time.perf_counter()
            counts = await batch_counts(pool, spec.batch)
            t1 = time.perf_counter()
            queue = await queue_stats(connection, spec)
            t2 = time.perf_counter()
            decision = decide(spec, previous, Observation(1, counts, queue, True))
            t3 = time.perf_counter()
            previous = decision.status
            if n >= WARM_UP:
                parts["counts_without_reasons"].append(t0 - t)
                parts["batch_counts"].append(t1 - t0)
                parts["queue_stats"].append(t2 - t1)
                parts["decide"].append(t3 - t2)
                totals.append(t3 - t0)
        # For comparison: the same passive declaration on one channel kept open (the plain
        # aiormq channel: aio-pika's robust one would answer from its cache).
        kept = await (await connection.channel()).get_underlay_channel()
        on_kept_channel: list[float] = []
        for n in range(repetitions + WARM_UP):
            t0 = time.perf_counter()
            await kept.queue_declare(batch_queue_name(namespace, name), passive=True)
            if n >= WARM_UP:
                on_kept_channel.append(time.perf_counter() - t0)
        secret_lookups = await kube_secret_lookups(server, repetitions // 4)
        naive: list[float] = []
        naive_counts: dict[str, int] = {}
        for _ in range(naive_repetitions):
            t0 = time.perf_counter()
            rows = await pool.fetch(NAIVE_SQL, spec.batch)
            naive.append(time.perf_counter() - t0)
            naive_counts = {r["status"]: int(r["count"]) for r in rows}
        plan = await pool.fetch("EXPLAIN (ANALYZE, BUFFERS) " + NAIVE_SQL, spec.batch)
        await channel.queue_delete(batch_queue_name(namespace, name))
        await channel.close()
    finally:
        await connection.close()
        await pool.close()
    if (counts.total, counts.completed, counts.failed) != (
        BIG_ITEMS,
        naive_counts.get("completed"),
        naive_counts.get("failed"),
    ) or len(counts.failure_codes) != MAX_FAILURE_REASONS:
        raise RuntimeError(f"batch_counts {counts} disagree with the rows: {naive_counts}")
    for label in ("plain", "triggers"):
        await server.pool.execute(f"DROP DATABASE big_{label}")
    return {
        "items": BIG_ITEMS,
        "insert_seconds_with_triggers": round(insert["triggers"], 2),
        "insert_seconds_triggers_disabled": round(insert["plain"], 2),
        "insert_slowdown_from_triggers": round(insert["triggers"] / insert["plain"], 3),
        "insert_slowdown_every_pair": [
            round(t / p, 3) for t, p in zip(inserts["triggers"], inserts["plain"], strict=True)
        ],
        "insert_seconds_every_run": {k: [round(x, 2) for x in v] for k, v in inserts.items()},
        "refresh_repetitions": repetitions,
        "refresh_total": summary_ms(totals),
        "refresh_per_step": {k: summary_ms(v) for k, v in parts.items()},
        "passive_declaration_on_a_kept_channel": summary_ms(on_kept_channel),
        **(
            {"also_per_tick_kube_secret_lookup": summary_ms(secret_lookups)}
            if secret_lookups
            else {}
        ),
        "counts_read": {
            "total": counts.total,
            "completed": counts.completed,
            "failed": counts.failed,
            "failure_reasons": len(counts.failure_codes),
        },
        "batch_counts_vs_counts_without_reasons_median": round(
            statistics.median(parts["batch_counts"])
            / statistics.median(parts["counts_without_reasons"]),
            2,
        ),
        "naive_group_by_repetitions": naive_repetitions,
        "naive_group_by": summary_ms(naive),
        "naive_vs_refresh_median": round(statistics.median(naive) / statistics.median(totals), 1),
        "naive_plan": [str(r[0]) for r in plan],
        "target": "refresh < 50 ms",
    }


# ---------------------------------------------------------------------------------------------
# Servers


@contextlib.asynccontextmanager
async def servers(
    rows: int, workdir: Path, *, with_operator: bool, env_overrides: dict[str, str]
) -> AsyncIterator[Servers]:
    async with contextlib.AsyncExitStack() as stack:
        postgres = stack.enter_context(PostgresServer())
        rabbit = stack.enter_context(RabbitMQServer(management=False))
        messaging = CommonSettings(rabbit_url=rabbit.url, database_url=postgres.url)
        await migrate(postgres.url)
        pool = await create_pool(postgres.url, min_size=1, max_size=4)
        stack.push_async_callback(pool.close)
        broker = await connect(rabbit.url)
        stack.push_async_callback(broker.close)
        await pool.execute(
            "INSERT INTO images (url) SELECT 'http://127.0.0.1:9/x/' || g || '.jpg'"
            " FROM generate_series(1, $1::int) g",
            rows,
        )
        await pool.execute("VACUUM (ANALYZE) images")
        server = Servers(
            postgres, rabbit, messaging, pool, broker, workdir, env_overrides=env_overrides
        )
        if with_operator:
            kube = KubeControlPlane()
            stack.enter_context(contextlib.closing(kube))
            kube.start(CRDS)
            server.kube = kube
            client = kubernetes.config.new_client_from_config(config_file=str(kube.kubeconfig))  # type: ignore[no-untyped-call]
            stack.callback(client.close)
            server.objects = kubernetes.client.CustomObjectsApi(client)
            server.core = kubernetes.client.CoreV1Api(client)
            server.core.create_namespace({"metadata": {"name": NAMESPACE}})
            server.core.create_namespaced_secret(
                NAMESPACE,
                {
                    "metadata": {"name": SECRET},
                    "stringData": {"RABBIT_URL": rabbit.url, "DATABASE_URL": postgres.url},
                },
            )
            env = {
                "DATABASE_URL": postgres.url,
                "RABBIT_URL": rabbit.url,
                "KUBECONFIG": str(kube.kubeconfig),
                "WATCH_NAMESPACE": NAMESPACE,
                **env_overrides,
            }
            operator = OperatorProcess(env, workdir / "operator.log")
            server.operator = operator
            stack.push_async_callback(operator.stop)
            await operator.start()
        try:
            yield server
        except BaseException:
            log = workdir / "operator.log"
            if log.exists():
                tail = log.read_text(errors="replace")[-3000:]
                print(f"--- operator log (tail) ---\n{tail}", file=sys.stderr)
            raise


# ---------------------------------------------------------------------------------------------


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "aio_pika": aio_pika.__version__,
            "postgres_fsync": "off (imagebatch.devservers default)",
            "operator_env_overrides": args.env,
        },
    }
    parts = [p for p in PARTS if p not in args.skip]
    # Spans are real here as in the operator (which sets a tracer provider up at start): the
    # raw baseline's traceparent is a real span's, like the operator's. Nothing is exported.
    setup_tracing("imagebatch-bench")
    with_operator = "publish" in parts or "lag" in parts
    with tempfile.TemporaryDirectory(prefix="imagebatch-bench-operator-") as tmp:
        async with servers(
            args.rows, Path(tmp), with_operator=with_operator, env_overrides=args.env
        ) as server:
            report["startup_seconds"] = {
                "postgres": round(server.postgres.startup_seconds, 1),
                "rabbitmq": round(server.rabbit.startup_seconds, 1),
                "kube": round(server.kube.startup_seconds, 1) if server.kube else None,
            }
            if "publish" in parts:
                print("publish rate (operator, raw aio-pika) ...", file=sys.stderr)
                report["publish"] = await publish_part(
                    server,
                    args.rows,
                    args.runs,
                    untraced="untraced" in parts,
                    profile=args.profile,
                )
            if "lag" in parts:
                print("status lag ...", file=sys.stderr)
                report["lag"] = await lag_part(server, args.lag_items, args.lag_runs)
            if "refresh" in parts:
                print("status refresh at 1,000,000 items ...", file=sys.stderr)
                report["refresh"] = await refresh_part(
                    server, args.refreshes, args.naive, args.insert_pairs
                )
    report["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return report


def summary(report: dict[str, Any]) -> list[str]:
    lines = [f"load average at start: {report['load_average_at_start']}"]
    if "publish" in report:
        p = report["publish"]
        run = p["median_run"]
        op, raw = run["operator"], run["raw"]
        lines += [
            f"publish {p['rows']} items (median of {len(p['ratio_operator_vs_raw_every_run'])}"
            f" runs): operator {op['items_per_second']}/s (apply → all confirmed"
            f" {op['seconds_apply_to_all_published']} s), raw aio-pika"
            f" {raw['messages_per_second']}/s → ratio {run['ratio_operator_vs_raw']}"
            f" (target ≥ 0.8; every run {p['ratio_operator_vs_raw_every_run']})",
            f"  first chunk confirmed {op['seconds_apply_to_first_chunk_confirmed']} s after"
            f" apply; first → last chunk {op['items_per_second_first_to_last_chunk']}/s;"
            f" status showed it after {op['seconds_until_status_shows_it']} s",
            f"  operator CPU {op['cpu'].get('operator', {}).get('cores_busy')} cores,"
            f" postgres {op['cpu']['postgres']['cores_busy']},"
            f" rabbitmq {op['cpu'].get('rabbitmq', {}).get('cores_busy')};"
            f" raw: bench {raw['cpu']['bench_process']['cores_busy']},"
            f" rabbitmq {raw['cpu'].get('rabbitmq', {}).get('cores_busy')}",
            f"  raw with the traceparent header vs raw without: every run"
            f" {p['ratio_raw_vs_raw_untraced_every_run']}",
            f"  client CPU per message, raw vs operator: every run"
            f" {p['client_cpu_ratio_raw_vs_operator_every_run']}",
            f"operator RSS growth during a publish: at most"
            f" {max(p['operator_rss_growth_mib_every_run'])} MiB (target < 100; every run"
            f" {p['operator_rss_growth_mib_every_run']}, the first from"
            f" {p['operator_rss_mib_before_first_run']} MiB)",
        ]
        profiled = p.get("profiled_operator_run", {}).get("profile", {})
        if profiled.get("top_inclusive"):
            top = ", ".join(f"{f} {share}" for f, share in profiled["top_inclusive"][:12])
            lines.append(f"operator under py-spy (inclusive share of on-CPU samples): {top}")
    if "lag" in report:
        lag = report["lag"]
        lines.append(
            f"status lag ({lag['items']} items, interval {lag['status_interval_seconds']} s):"
            f" median {lag['median_lag_seconds']} s, max {lag['max_lag_seconds']} s"
            f" (target ≤ 2 s; every run {lag['lag_seconds_every_run']})"
        )
    if "refresh" in report:
        r = report["refresh"]
        lines += [
            f"status refresh at 1M items: median {r['refresh_total']['median_ms']} ms,"
            f" p95 {r['refresh_total']['p95_ms']} ms (target < 50 ms); naive GROUP BY"
            f" median {r['naive_group_by']['median_ms']} ms; per step"
            f" { {k: v['median_ms'] for k, v in r['refresh_per_step'].items()} } ms",
            f"1M-row insert: median {r['insert_seconds_with_triggers']} s with the"
            f" batch_counts triggers, {r['insert_seconds_triggers_disabled']} s without"
            f" (x{r['insert_slowdown_from_triggers']}; every pair"
            f" {r['insert_slowdown_every_pair']})",
        ]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="items of the publish batch")
    parser.add_argument(
        "--runs", type=int, default=3, help="publish runs (contenders rotate in order); median"
    )
    parser.add_argument("--lag-items", type=int, default=5000, help="items of each lag batch")
    parser.add_argument("--lag-runs", type=int, default=5, help="status lag repetitions")
    parser.add_argument("--refreshes", type=int, default=200, help="status refresh repetitions")
    parser.add_argument("--naive", type=int, default=20, help="naive GROUP BY repetitions")
    parser.add_argument(
        "--insert-pairs",
        type=int,
        default=2,
        help="1M-row inserts with and without the triggers, each pair in alternating order",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="PATH",
        help="record the operator with py-spy (on PATH or PY_SPY) during the first publish;"
        " collapsed stacks to PATH, the top frames into the JSON",
    )
    parser.add_argument(
        "--skip",
        default="",
        type=lambda s: [p.strip() for p in s.split(",") if p.strip()],
        help=f"comma-separated parts to leave out, of: {', '.join(PARTS)}",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="operator setting, e.g. --env PUBLISH_CHUNK_SIZE=2000 (repeatable)",
    )
    parser.add_argument("--output", type=Path, default=REPO / ".cache" / "bench" / "operator.json")
    args = parser.parse_args()
    unknown = [p for p in args.skip if p not in PARTS]
    if unknown:
        parser.error(f"unknown parts {unknown}; parts are {', '.join(PARTS)}")
    args.env = dict(item.split("=", 1) for item in args.env)
    report = asyncio.run(main_async(args))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print("\n".join(summary(report)))
    print(f"(full figures in {args.output})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
