"""Worker benchmark: the thumbnail stage alone, the download stage alone, and end to end.

    .venv/bin/python bench/worker.py [--images 2000] [--runs 1] [--setting 8/16 ...]
        [--store file] [--store s3] [--output PATH]

(a) thumbnail stage: 1024x768 JPEG photos → 256 px JPEG, images/s on one thread and on two,
    for the worker's `render` (DCT-scaled decode, one resize) next to a naive Pillow baseline
    (full decode + LANCZOS resize) and Pillow's default `Image.thumbnail`, in the same run, taking
    turns in quarter-second blocks so that all three see the same machine;
(c) download stage: the same photos fetched over loopback at concurrency 16 through httpx's
    default transport and through the aiohttp transport the worker uses;
    (b) and (c) fetch from `photo_origin.PhotoOrigin`, a bare asyncio server that takes as little
    of the two cores as it can: in production the origin is another machine;
(b) end to end: N images served on loopback through one worker process — publish → download →
    thumbnail → atomic write (fsync) → PostgreSQL → ack — with RabbitMQ and PostgreSQL started
    from imagebatch.devservers; images/s from the first job started to the last completed, for
    the contract's defaults (CONCURRENCY=8, PREFETCH=16) next to other settings (--setting),
    which take turns run by run so that all see the same machine. Each run also reports the
    message timeline from the worker's /metrics: median and 90th percentile of every phase
    (claim, slot, download, transform, write, record, ack, waits included), the time from
    delivery to ack and the time a job held a CONCURRENCY slot. With --runs N, the median of N
    runs per setting (every run's figure is listed too, in run order: a shared 2-core VM is noisy).
    `cpu_while_running` (bench/cpu_accounting.py) says how busy the cores were from the first
    claim to the last completion, what each image cost the worker, PostgreSQL, RabbitMQ and
    the origin, how busy the worker's event-loop thread was (near 1: that thread sets the
    pace), and the images/s that total cost allows on fully busy cores: no setting of the
    worker can beat that ceiling on the machine the run shares.
    `--store s3` runs the same settings with the thumbnails going to a bucket (OUTPUT_URL=
    s3://bench/thumbs: one conditional PUT per thumbnail) on a local S3 server (versitygw, started
    per run like PostgreSQL and RabbitMQ, its CPU counted as `s3_server`); with `--store file
    --store s3` the two take turns run by run, and `b_object_storage` gives, per setting, the
    bucket's images/s divided by the folder's (the medians', and round by round), the worker's
    and the servers' CPU per image for both, and whether the issue's 0.8 was reached.
    `--s3-client` picks the worker's object client for `--store s3`: obstore (the worker as
    shipped, the default) or aiobotocore (the worker started through bench/worker_aiobotocore.py,
    which swaps the client and changes nothing else; `aiobotocore_when_required` without the
    CRC32 botocore adds to every PUT). Given more than one, they take turns like the stores and
    `b_s3_clients` gives, per setting, each client's images/s, worker and versitygw CPU per image,
    aiobotocore's figures divided by obstore's, and whether every recorded thumbnail is in the
    bucket (each s3 run lists the bucket and compares it with the rows' outputs).
`comparison` gives the defaults divided by the fastest setting, every setting divided by the
two-thread figure of (a), the fastest setting's CPU-bound ceiling divided by that figure too,
and whether the issue's targets were met.

Prints the JSON and writes it to --output. Not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import platform
import re
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))  # appended: the repo's `operator/` folder must not shadow stdlib

import aio_pika  # noqa: E402
import asyncpg  # noqa: E402
import httpx  # noqa: E402
import PIL  # noqa: E402
from httpx_aiohttp import AiohttpTransport  # noqa: E402
from PIL import Image  # noqa: E402

from bench.cpu_accounting import CpuSnapshot, cpu_report, process_stat  # noqa: E402
from bench.photo_origin import PhotoOrigin  # noqa: E402
from imagebatch.core.broker import connect, producer_channel  # noqa: E402
from imagebatch.core.db import migrate  # noqa: E402
from imagebatch.core.messages import Thumbnail  # noqa: E402
from imagebatch.core.settings import CommonSettings  # noqa: E402
from imagebatch.core.topology import declare_topology  # noqa: E402
from imagebatch.devservers.postgres import PostgresServer  # noqa: E402
from imagebatch.devservers.rabbitmq import RabbitMQServer  # noqa: E402
from imagebatch.devservers.s3 import S3Server  # noqa: E402
from imagebatch.devservers.worker_process import WorkerProcess, settings_env  # noqa: E402
from imagebatch.worker.address_guard import AddressGuard, GuardedResolver  # noqa: E402
from imagebatch.worker.settings import WorkerSettings  # noqa: E402
from imagebatch.worker.timeline import PHASES  # noqa: E402
from imagebatch.worker.transform import render  # noqa: E402
from tests.support.photos import photos  # noqa: E402

SIZE = (1024, 768)
CONTRACT_DEFAULTS = {"concurrency": 8, "prefetch": 16}
OTHER_SETTINGS = ({"concurrency": 16, "prefetch": 32}, {"concurrency": 48, "prefetch": 96})
"""What (b) runs next to the contract's defaults unless --setting says otherwise: the settings
that came out fastest side by side; which of them wins changes from run to run (the figures are
in the README, not here)."""
SPEC = Thumbnail(width=256, height=256, format="jpeg", quality=85)
STORES = ("file", "s3")
S3_CLIENTS = ("obstore", "aiobotocore", "aiobotocore_when_required")
BUCKET = "bench"
AIOBOTOCORE_WORKER = REPO / "bench" / "worker_aiobotocore.py"


def ours(data: bytes) -> bytes:
    _info, [rendered] = render(data, [SPEC], max_pixels=50_000_000)
    return rendered.data


def naive(data: bytes) -> bytes:
    image = Image.open(io.BytesIO(data))
    image.load()
    thumb = image.resize((256, 192), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    thumb.save(out, "JPEG", quality=85)
    return out.getvalue()


def pillow_thumbnail(data: bytes) -> bytes:
    image = Image.open(io.BytesIO(data))
    image.thumbnail((256, 256))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


BLOCK_SECONDS = 0.25


def _run_until(func: Callable[[bytes], bytes], inputs: list[bytes], deadline: float) -> int:
    """Call `func` over `inputs` (cycled) until `deadline`; how many calls finished."""
    done = 0
    while time.perf_counter() < deadline:
        for data in inputs:
            func(data)
        done += len(inputs)
    return done


def rates(
    funcs: dict[str, Callable[[bytes], bytes]], inputs: list[bytes], threads: int, seconds: float
) -> dict[str, float]:
    """Images/s of each of `funcs` over `inputs` on `threads` threads, about `seconds` each.

    Each thread loops over the inputs itself (handing every image to a pool instead cost the
    fastest function ~8 % in thread switches, the slowest ~3 %). The functions take turns in
    blocks of BLOCK_SECONDS, so all of them see the same machine: measured one after the other,
    a shared VM's slow minutes landed on one function and not the other and moved their ratio
    by ±5 %."""
    for func in funcs.values():
        for data in inputs:
            func(data)  # warm-up
    done = dict.fromkeys(funcs, 0)
    spent = dict.fromkeys(funcs, 0.0)
    with ThreadPoolExecutor(threads) as pool:
        while min(spent.values()) < seconds:
            for name, func in funcs.items():
                began = time.perf_counter()
                deadline = began + BLOCK_SECONDS
                runs = [pool.submit(_run_until, func, inputs, deadline) for _ in range(threads)]
                done[name] += sum(run.result() for run in runs)
                spent[name] += time.perf_counter() - began
    return {name: done[name] / spent[name] for name in funcs}


def thumbnail_stage(seconds: float) -> dict[str, Any]:
    inputs = list(photos(SIZE))
    result: dict[str, Any] = {"input": "1024x768 JPEG q90 photos", "output": "256 px JPEG q85"}
    funcs: dict[str, Callable[[bytes], bytes]] = {
        "worker": ours,
        "pillow_thumbnail": pillow_thumbnail,
        "naive": naive,
    }
    one = rates(funcs, inputs, 1, seconds)
    two = rates(funcs, inputs, 2, seconds)
    for name in funcs:
        result[name] = {"one_thread": round(one[name], 1), "two_threads": round(two[name], 1)}
    result["worker_vs_pillow_thumbnail_one_thread"] = round(
        one["worker"] / one["pillow_thumbnail"], 2
    )
    result["worker_vs_naive_one_thread"] = round(one["worker"] / one["naive"], 2)
    return result


async def download_rate(client: httpx.AsyncClient, urls: list[str], concurrency: int) -> float:
    slots = asyncio.Semaphore(concurrency)

    async def one(url: str) -> None:
        async with slots:
            response = await client.get(url)
            response.raise_for_status()

    await asyncio.gather(*(one(u) for u in urls[:50]))
    began = time.perf_counter()
    await asyncio.gather(*(one(u) for u in urls))
    return len(urls) / (time.perf_counter() - began)


async def download_stage(count: int) -> dict[str, Any]:
    import aiohttp

    async with PhotoOrigin(photos(SIZE)) as origin:
        urls = [origin.url(i) for i in range(count)]
        default = httpx.AsyncClient(limits=httpx.Limits(max_connections=100))
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(resolver=GuardedResolver(AddressGuard(True)))
        )
        via_aiohttp = httpx.AsyncClient(transport=AiohttpTransport(client=session))
        try:
            httpx_default = await download_rate(default, urls, 16)
            httpx_aiohttp = await download_rate(via_aiohttp, urls, 16)
        finally:
            await default.aclose()
            await via_aiohttp.aclose()
            await session.close()
    return {
        "body_bytes": len(photos(SIZE)[0]),
        "concurrency": 16,
        "httpx_default_transport": round(httpx_default, 1),
        "httpx_aiohttp_transport": round(httpx_aiohttp, 1),
    }


def process_cpu_seconds(worker: WorkerProcess) -> tuple[float, float]:
    """User + system CPU the worker process used so far: (all threads, the event-loop thread).
    Figures that other load on the machine disturbs much less than images/s."""
    assert worker.process is not None
    pid = worker.process.pid
    stats = (Path(f"/proc/{pid}/stat"), Path(f"/proc/{pid}/task/{pid}/stat"))
    process, event_loop = (process_stat(path.read_text())[1] for path in stats)
    return process, event_loop


def parse_metrics(text: str) -> dict[str, float]:
    """Sample name with labels → value, from Prometheus' text format."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


LABEL = re.compile(r'(\w+)="([^"]*)"')


def quantile(values: dict[str, float], histogram: str, labels: str, q: float) -> float:
    """The q-quantile of a histogram, interpolated within its bucket as Prometheus'
    `histogram_quantile` does (0 when it has no observations)."""
    wanted = dict(LABEL.findall(labels))
    buckets: list[tuple[float, float]] = []
    for name, count in values.items():
        metric, _, label_text = name.partition("{")
        if metric != f"{histogram}_bucket":
            continue
        found = dict(LABEL.findall(label_text))
        bound = found.pop("le")
        if found == wanted:
            buckets.append((float(bound), count))  # float("+Inf") is infinity
    buckets.sort()
    if not buckets or buckets[-1][1] == 0:
        return 0.0
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * (rank - below) / max(count - below, 1e-9)
        lower, below = bound, count
    return lower


async def worker_figures(metrics_port: int) -> dict[str, Any]:
    """From the worker's /metrics: the message timeline's phases (median and 90th percentile,
    waits included), the stages' own mean times and thumbnails per shared folder fsync."""
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
    values = parse_metrics(text)

    def mean(histogram: str, labels: str) -> float:
        count = values.get(f"{histogram}_count{{{labels}}}")
        total = values.get(f"{histogram}_sum{{{labels}}}")
        return round(total / count, 4) if count and total is not None else 0.0

    def ms(histogram: str, labels: str, q: float) -> float:
        return round(quantile(values, histogram, labels, q) * 1000, 2)

    stages = {
        stage: mean("worker_stage_duration_seconds", f'stage="{stage}"')
        for stage in ("download", "transform", "write", "record")
    }
    phases = {
        phase: {
            "median_ms": ms("worker_message_phase_seconds", f'phase="{phase}"', 0.5),
            "p90_ms": ms("worker_message_phase_seconds", f'phase="{phase}"', 0.9),
        }
        for phase in PHASES
    }
    groups = values.get("worker_write_group_files_count", 0.0)
    files = values.get("worker_write_group_files_sum", 0.0)
    return {
        "median_ms_held_delivery_to_ack": ms("worker_message_held_seconds", "", 0.5),
        "p90_ms_held_delivery_to_ack": ms("worker_message_held_seconds", "", 0.9),
        "median_ms_slot_held": ms("worker_slot_held_seconds", "", 0.5),
        "timeline_phases": phases,
        "mean_stage_seconds_own_time": stages,
        "files_per_folder_fsync": round(files / groups, 2) if groups else 0.0,
    }


class AiobotocoreWorker(WorkerProcess):
    """The same worker with aiobotocore as its object client (bench/worker_aiobotocore.py)."""

    def __init__(self, settings: WorkerSettings, log: Path, client: str) -> None:
        super().__init__(settings, log)
        self.checksum = "when_required" if client.endswith("_when_required") else "when_supported"

    async def start(self) -> WorkerProcess:
        env = {
            **os.environ,
            **settings_env(self.settings),
            "PYTHONUNBUFFERED": "1",
            "BENCH_AIOBOTOCORE_CHECKSUM": self.checksum,
        }
        with self.log.open("ab") as output:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                str(AIOBOTOCORE_WORKER),
                env=env,
                cwd=self.log.parent,
                stdout=output,
                stderr=asyncio.subprocess.STDOUT,
            )
        return self


def start_worker(settings: WorkerSettings, log: Path, client: str) -> WorkerProcess:
    if client == "obstore":
        return WorkerProcess(settings, log)
    return AiobotocoreWorker(settings, log, client)


def variant(store: str, client: str) -> str:
    """What a run is called after its store and client: `file`, `s3` (obstore, as shipped),
    `s3-aiobotocore`."""
    if store == "file":
        return "file"
    return "s3" if client == "obstore" else f"s3-{client}"


async def recorded_outputs(conn: asyncpg.Connection) -> list[str]:
    """Every output path the completed rows record."""
    rows = await conn.fetch(
        "SELECT o->>'path' AS path FROM jobs, jsonb_array_elements(outputs) AS o"
        " WHERE status = 'completed'"
    )
    return [str(row["path"]) for row in rows]


def bucket_check(s3: S3Server, recorded: list[str]) -> dict[str, Any]:
    """Whether the bucket holds exactly the thumbnails the rows record, with their type."""
    keys = s3.object_keys(BUCKET)
    expected = {path.removeprefix(f"s3://{BUCKET}/") for path in recorded}
    sample = s3.request("HEAD", f"/{BUCKET}/{keys[0]}") if keys else None
    return {
        "objects_in_bucket": len(keys),
        "outputs_recorded": len(recorded),
        "every_recorded_output_in_bucket": expected <= set(keys),
        "bucket_holds_only_recorded_outputs": set(keys) <= expected,
        "content_type_of_first_object": sample.headers.get("Content-Type") if sample else None,
    }


async def _completed(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM jobs WHERE status='completed'"))


def output_settings(store: str, s3: S3Server | None) -> dict[str, Any]:
    """The worker settings that send its thumbnails to `store`."""
    if store == "file" or s3 is None:
        return {}
    aws = {key.lower(): value for key, value in s3.aws_env().items()}
    return {**aws, "output_url": f"s3://{BUCKET}/thumbs"}


def server_roots(
    postgres: PostgresServer, rabbit: RabbitMQServer, s3: S3Server | None
) -> dict[int, str]:
    """The root process of each server this run started → its group in `cpu_while_running`,
    so that other PostgreSQL, RabbitMQ and versitygw instances on the machine are not counted
    as this run's."""
    postmaster = int((postgres.data / "postmaster.pid").read_text().split()[0])
    rabbit_process = rabbit._process  # the session leader of the broker's process tree
    roots = {postmaster: "postgres"}
    if rabbit_process is not None:
        roots[rabbit_process.pid] = "rabbitmq"
    if s3 is not None and s3.pid is not None:
        roots[s3.pid] = "s3_server"
    return roots


async def end_to_end(
    count: int,
    workdir: Path,
    overrides: dict[str, Any],
    store: str = "file",
    client: str = "obstore",
) -> dict[str, Any]:
    with contextlib.ExitStack() as servers:
        postgres = servers.enter_context(PostgresServer())
        rabbit = servers.enter_context(RabbitMQServer(management=False))
        s3 = servers.enter_context(S3Server()) if store == "s3" else None
        if s3 is not None:
            s3.create_bucket(BUCKET)
        database_url = postgres.url
        await migrate(database_url)
        messaging = CommonSettings(rabbit_url=rabbit.url, database_url=database_url)
        async with PhotoOrigin(photos(SIZE)) as origin:
            bodies = [
                json.dumps({"url": origin.url(i), "id": f"e2e-{i:05d}", "output": "bench"}).encode()
                for i in range(count)
            ]
            connection = await connect(messaging.rabbit_url)
            async with connection:
                channel = await producer_channel(connection)
                topology = await declare_topology(channel, messaging)
                pending = [
                    topology.exchange.publish(
                        aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                        routing_key=messaging.routing_key,
                    )
                    for body in bodies
                ]
                await asyncio.gather(*pending)

            settings = WorkerSettings(
                **{
                    **messaging.model_dump(),
                    "output_dir": workdir / "data",
                    "allow_private_sources": True,
                    "metrics_host": "127.0.0.1",
                    "metrics_port": 0,
                    **output_settings(store, s3),
                    **overrides,
                }
            )
            worker = start_worker(settings, workdir / "worker.log", client)
            began = time.perf_counter()
            await worker.start()
            conn: asyncpg.Connection = await asyncpg.connect(database_url)
            try:
                # The CPU window opens once the first job is claimed (start-up's imports are
                # not the images' cost) and closes as the last one completes.
                while not await conn.fetchval("SELECT count(*) FROM jobs"):  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
                assert worker.process is not None
                roots = server_roots(postgres, rabbit, s3)
                cpu_before = CpuSnapshot.take(worker.process.pid, roots)
                done_before = await _completed(conn)
                while (done := await _completed(conn)) < count:
                    if time.perf_counter() - began > 600:
                        raise RuntimeError(f"only {done}/{count} completed after 600 s")
                    await asyncio.sleep(0.05)
                cpu_after = CpuSnapshot.take(worker.process.pid, roots)
                wall = time.perf_counter() - began
                span = await conn.fetchval(
                    "SELECT extract(epoch FROM max(completed_at) - min(started_at)) FROM jobs"
                )
                recorded = await recorded_outputs(conn)
            finally:
                await conn.close()
            cpu, loop_cpu = process_cpu_seconds(worker)
            figures = await worker_figures(worker.settings.metrics_port)
            worker.signal(__import__("signal").SIGTERM)
            code = await worker.wait()
            bucket = bucket_check(s3, recorded) if s3 is not None else {}
            if s3 is not None:
                said = f"object client: {client}" in worker.log.read_text(errors="replace")
                bucket["worker_said_which_client"] = said or client == "obstore"
    return {
        "images": count,
        "store": store,
        **({"s3_client": client} if s3 is not None else {}),
        **bucket,
        "worker_settings": {
            "concurrency": settings.concurrency,
            "prefetch": settings.prefetch,
            "transform_threads": settings.transform_threads,
            "fsync": settings.fsync,
        },
        "images_per_second": round(count / float(span), 1),
        "seconds_first_start_to_last_completion": round(float(span), 2),
        "wall_seconds_including_worker_start": round(wall, 2),
        "worker_cpu_ms_per_image": round(cpu * 1000 / count, 2),
        "event_loop_thread_cpu_ms_per_image": round(loop_cpu * 1000 / count, 2),
        "cpu_while_running": cpu_report(cpu_before, cpu_after, count - done_before),
        **figures,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "worker_exit_code": code,
    }


def setting_name(setting: dict[str, Any], store: str = "file") -> str:
    """`8/16` for a folder (as before there was a choice), `8/16 s3` for a bucket, `8/16
    s3-aiobotocore` for a bucket written through aiobotocore."""
    name = f"{setting['concurrency']}/{setting['prefetch']}"
    return name if store == "file" else f"{name} {store}"


def parse_setting(text: str) -> dict[str, Any]:
    concurrency, prefetch = text.split("/")
    return {"concurrency": int(concurrency), "prefetch": int(prefetch)}


def compare(report: dict[str, Any], settings: list[dict[str, Any]]) -> dict[str, Any]:
    """The contract's defaults against the fastest setting of this run, and the targets
    (the folder's runs; with --store s3 alone, the bucket's)."""
    ends = report["b_end_to_end"]
    by_name = {name: run["images_per_second"] for name, run in ends.items() if " " not in name}
    by_name = by_name or {name: run["images_per_second"] for name, run in ends.items()}
    best = max(by_name, key=lambda name: float(by_name[name]))
    default = setting_name(CONTRACT_DEFAULTS)
    result: dict[str, Any] = {"best_setting": best}
    if default in by_name:
        ratio = round(float(by_name[default]) / float(by_name[best]), 3)
        run = report["b_end_to_end"][default]
        result["defaults_divided_by_best"] = ratio
        result["target_defaults_at_least_0_9_of_best"] = ratio >= 0.9
        result["defaults_median_ms_slot_held"] = run["median_ms_slot_held"]
        result["defaults_median_ms_held_delivery_to_ack"] = run["median_ms_held_delivery_to_ack"]
        result["target_defaults_median_ms_per_job_under_20"] = {
            "slot_held": run["median_ms_slot_held"] < 20,
            "delivery_to_ack": run["median_ms_held_delivery_to_ack"] < 20,
        }
    if "a_thumbnail_stage" in report:
        two = report["a_thumbnail_stage"]["worker"]["two_threads"]
        result["a_two_threads_images_per_second"] = two
        result["b_divided_by_a_two_threads"] = {
            name: round(float(rate) / two, 3) for name, rate in by_name.items()
        }
        result["target_best_at_least_0_5_of_a"] = float(by_name[best]) / two >= 0.5
        ceiling = report["b_end_to_end"][best]["cpu_while_running"][
            "cpu_bound_ceiling_images_per_second"
        ]
        result["best_setting_cpu_bound_ceiling"] = ceiling
        result["cpu_bound_ceiling_divided_by_a_two_threads"] = round(float(ceiling) / two, 3)
    return result


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def cpu(each: list[dict[str, Any]]) -> dict[str, float]:
    """CPU ms per image of every process group (worker, servers), medians of the runs."""
    groups = sorted({g for run in each for g in run["cpu_while_running"]["ms_per_image"]})
    return {
        group: round(
            median([r["cpu_while_running"]["ms_per_image"].get(group, 0.0) for r in each]), 3
        )
        for group in groups
    }


def object_storage(
    runs: dict[str, list[dict[str, Any]]], settings: list[dict[str, Any]]
) -> dict[str, Any]:
    """Per setting, the bucket against the folder in the same invocation: images/s (medians of
    the runs, and the ratio round by round, the two runs of a round being neighbours in time),
    the worker's CPU per image and what each image cost every server, medians of the runs."""
    result: dict[str, Any] = {}
    for setting in settings:
        files, objects = runs[setting_name(setting)], runs[setting_name(setting, "s3")]
        file_rate = median([float(r["images_per_second"]) for r in files])
        s3_rate = median([float(r["images_per_second"]) for r in objects])
        ratio = round(s3_rate / file_rate, 3)
        result[setting_name(setting)] = {
            "images_per_second": {"file": round(file_rate, 1), "s3": round(s3_rate, 1)},
            "s3_divided_by_file": ratio,
            "s3_divided_by_file_round_by_round": [
                round(float(o["images_per_second"]) / float(f["images_per_second"]), 3)
                for f, o in zip(files, objects, strict=True)
            ],
            # From the first claim to the last completion, start-up excluded.
            "worker_cpu_ms_per_image": {
                "file": cpu(files)["worker"],
                "s3": cpu(objects)["worker"],
            },
            "s3_server_cpu_ms_per_image": cpu(objects).get("s3_server", 0.0),
            "cpu_ms_per_image_by_process": {"file": cpu(files), "s3": cpu(objects)},
            "mean_write_seconds_own_time": {
                "file": median([r["mean_stage_seconds_own_time"]["write"] for r in files]),
                "s3": median([r["mean_stage_seconds_own_time"]["write"] for r in objects]),
            },
            "target_s3_at_least_0_8_of_file": ratio >= 0.8,
        }
    return result


def s3_clients(
    runs: dict[str, list[dict[str, Any]]], settings: list[dict[str, Any]], clients: list[str]
) -> dict[str, Any]:
    """Per setting, the worker writing to the bucket through each client in the same
    invocation: images/s (medians, and every run), the worker's and versitygw's CPU per image,
    each other client's figures divided by obstore's (the worker as shipped), and whether every
    run left exactly the recorded thumbnails in the bucket."""
    result: dict[str, Any] = {}
    for setting in settings:
        each = {client: runs[setting_name(setting, variant("s3", client))] for client in clients}
        rates = {c: median([float(r["images_per_second"]) for r in rs]) for c, rs in each.items()}
        worker = {c: cpu(rs)["worker"] for c, rs in each.items()}
        loop = {c: cpu(rs).get("worker_event_loop_thread", 0.0) for c, rs in each.items()}
        server = {c: cpu(rs).get("s3_server", 0.0) for c, rs in each.items()}
        figures: dict[str, Any] = {
            "images_per_second": {c: round(rate, 1) for c, rate in rates.items()},
            "images_per_second_every_run": {
                c: [r["images_per_second"] for r in rs] for c, rs in each.items()
            },
            # From the first claim to the last completion, start-up excluded.
            "worker_cpu_ms_per_image": worker,
            "worker_event_loop_thread_cpu_ms_per_image": loop,
            "s3_server_cpu_ms_per_image": server,
            "cpu_ms_per_image_by_process": {c: cpu(rs) for c, rs in each.items()},
            "mean_write_seconds_own_time": {
                c: median([r["mean_stage_seconds_own_time"]["write"] for r in rs])
                for c, rs in each.items()
            },
            "every_run_left_exactly_the_recorded_outputs": {
                c: all(
                    r["every_recorded_output_in_bucket"]
                    and r["bucket_holds_only_recorded_outputs"]
                    and r["outputs_recorded"] == r["images"]
                    for r in rs
                )
                for c, rs in each.items()
            },
            "worker_said_which_client": {
                c: all(r["worker_said_which_client"] for r in rs) for c, rs in each.items()
            },
            "content_types": {
                c: sorted({str(r["content_type_of_first_object"]) for r in rs})
                for c, rs in each.items()
            },
        }
        if "obstore" in each:
            base = each["obstore"]
            for client, other in each.items():
                if client == "obstore":
                    continue
                figures[f"{client}_divided_by_obstore"] = {
                    "images_per_second": round(rates[client] / rates["obstore"], 3),
                    "images_per_second_round_by_round": [
                        round(float(o["images_per_second"]) / float(b["images_per_second"]), 3)
                        for b, o in zip(base, other, strict=True)
                    ],
                    "worker_cpu_per_image": round(worker[client] / worker["obstore"], 3),
                    "s3_server_cpu_per_image": round(server[client] / server["obstore"], 3)
                    if server["obstore"]
                    else None,
                }
        result[setting_name(setting)] = figures
    return result


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "pillow": PIL.__version__,
            "postgres_fsync": "off (imagebatch.devservers default)",
        },
    }
    extra: dict[str, Any] = dict(i.split("=", 1) for i in args.worker)
    settings = [parse_setting(text) for text in args.setting] or [
        CONTRACT_DEFAULTS,
        *OTHER_SETTINGS,
    ]
    if "a" in args.stages:
        report["a_thumbnail_stage"] = thumbnail_stage(args.seconds)
    if "c" in args.stages:
        report["c_download_stage"] = await download_stage(args.downloads)
    stores = args.store or ["file"]
    clients = list(dict.fromkeys(args.s3_client)) or ["obstore"]
    variants = [
        (store, client)
        for store in stores
        for client in (clients if store == "s3" else ["obstore"])
    ]
    if "b" in args.stages:
        runs: dict[str, list[dict[str, Any]]] = {
            setting_name(s, variant(*v)): [] for s in settings for v in variants
        }
        for round_ in range(args.runs):  # the settings take turns, so they see the same machine
            for setting in settings:
                # The stores and clients take turns too; which goes first rotates by round.
                shift = round_ % len(variants)
                for store, client in variants[shift:] + variants[:shift]:
                    with tempfile.TemporaryDirectory(prefix="imagebatch-bench-") as tmp:
                        run = await end_to_end(
                            args.images, Path(tmp), {**setting, **extra}, store, client
                        )
                    runs[setting_name(setting, variant(store, client))].append(run)
        report["b_end_to_end"] = {}
        report["b_images_per_second_every_run"] = {}
        for name, each in runs.items():
            ranked = sorted(each, key=lambda run: float(run["images_per_second"]))
            report["b_end_to_end"][name] = ranked[len(ranked) // 2]  # the median run
            report["b_images_per_second_every_run"][name] = [r["images_per_second"] for r in each]
        if set(STORES) <= set(stores) and "obstore" in clients:
            report["b_object_storage"] = object_storage(runs, settings)
        if "s3" in stores and len(clients) > 1:
            report["b_s3_clients"] = s3_clients(runs, settings, clients)
        report["comparison"] = compare(report, settings)
    report["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000, help="jobs in the end-to-end run")
    parser.add_argument(
        "--runs", type=int, default=1, help="end-to-end runs; (b) reports the median one"
    )
    parser.add_argument("--downloads", type=int, default=2000, help="requests per transport")
    parser.add_argument("--seconds", type=float, default=4.0, help="per thumbnail measurement")
    parser.add_argument("--stages", default="acb", help="which of a, b, c to run")
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="CONCURRENCY/PREFETCH",
        help="a worker setting (b) runs, e.g. --setting 8/16 (repeatable; default: the "
        f"contract's {setting_name(CONTRACT_DEFAULTS)}, "
        f"{', '.join(setting_name(s) for s in OTHER_SETTINGS)})",
    )
    parser.add_argument(
        "--worker",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="another worker setting for every run of (b), e.g. --worker fsync=false",
    )
    parser.add_argument(
        "--store",
        action="append",
        default=[],
        choices=STORES,
        help="where (b)'s thumbnails go: a folder (file, the default) or a bucket on a local S3 "
        "server (s3); both given: they take turns and b_object_storage compares them",
    )
    parser.add_argument(
        "--s3-client",
        action="append",
        default=[],
        choices=S3_CLIENTS,
        help="the worker's object client for --store s3: obstore (as shipped, the default) or "
        "aiobotocore (bench/worker_aiobotocore.py; _when_required: no CRC32 per PUT); several "
        "given: they take turns and b_s3_clients compares them",
    )
    parser.add_argument("--output", type=Path, default=REPO / ".cache" / "bench" / "worker.json")
    args = parser.parse_args()
    report = asyncio.run(main_async(args))
    text = json.dumps(report, indent=2)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
