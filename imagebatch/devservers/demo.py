"""`make demo`: the whole system on one machine, no Docker, from a fresh clone.

Starts throwaway PostgreSQL, RabbitMQ and a Kubernetes API server (the test machinery), serves
sample photos on 127.0.0.1:8765, seeds `images`, creates the connections Secret, runs the
operator, a supervisor that keeps as many local `imagebatch-worker` processes running as each
batch's Deployment asks for (pods never start without nodes), the api and one worker for the
api's own queue (what the page uploads or asks for); applies `examples/imagebatch.yaml`, shows
its progress until it is done and prints where the thumbnails are; then applies
`examples/imagebatch-postgres.yaml`, the 300 seeded rows, whose rate (images per second since the
first completion, in the line `kubectl imagebatch watch` prints) shows the speed six images
cannot; and stops everything. With `KEEP=1` it keeps running until Ctrl-C. With `KEDA=1` KEDA's
CRDs are installed and the real KEDA operator (`make keda`) runs beside it: the batch gets a
ScaledObject and KEDA, not the operator, scales its workers from 0 to 1 and back (1 → N needs
KEDA's metrics adapter behind the API server, which a local control plane cannot route to).
With `S3=1` the thumbnails (and the api's uploads) go to a bucket on a throwaway S3 server
(versitygw, `make s3`) instead of a folder: the connections Secret and the api get the standard
AWS variables, the operator `WORKER_OUTPUT_URL=s3://imagebatch-demo/thumbnails`, and the end
names the objects and how to list them.

    python -m imagebatch.devservers.demo [--keep] [--keda] [--s3] [--example PATH]
        [--seeded PATH] [--timeout S]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import asyncpg

from imagebatch.core.db import migrate
from imagebatch.core.progressbar import ProgressCounts, RateMeter, progress_line
from imagebatch.devservers.keda import KedaOperator, keda_crds
from imagebatch.devservers.kube import KubeControlPlane
from imagebatch.devservers.operator_process import OperatorProcess
from imagebatch.devservers.postgres import PostgresServer
from imagebatch.devservers.process import free_port, http_ok, spawn, stop_group, wait_until
from imagebatch.devservers.rabbitmq import RabbitMQServer
from imagebatch.devservers.s3 import S3Server
from imagebatch.devservers.samples import DEFAULT_PORT, make_server, sample_jpeg
from imagebatch.devservers.supervisor import WorkerSupervisor

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "default"
SECRET = "imagebatch-connections"
SOURCE_ROLE = "imagebatch_source"
SEED_ROWS = 300
SEED_PICTURES = 30
"""Distinct sample names among the seeded rows. The sample server draws each name once (~0.1-0.2
s of its own CPU), so 300 distinct names made the demo's origin the bottleneck and the rate
measured it; the rows cycle through 30 pictures (drawn in the background at start) instead. Each
row is still its own item with its own thumbnail."""
BAR_WIDTH = 30
SETTLE_SECONDS = 15.0
"""After the batch finished, how long to wait for its workers to be gone before the last line."""
BUCKET = "imagebatch-demo"
THUMBNAILS_PREFIX = "thumbnails"
UPLOADS_PREFIX = "uploads"
LISTED = 20
"""How many thumbnails (files or keys) the last lines name."""


def say(message: str) -> None:
    print(f"demo: {message}", flush=True)


@contextlib.contextmanager
def sample_server() -> Iterator[int]:
    """The sample photos on the port the example's URLs name."""
    try:
        server = make_server("127.0.0.1", DEFAULT_PORT)
    except OSError as exc:
        raise SystemExit(
            f"demo: 127.0.0.1:{DEFAULT_PORT} is taken ({exc}); the example's URLs point there"
        ) from exc
    thread = threading.Thread(target=server.serve_forever, name="samples", daemon=True)
    thread.start()
    threading.Thread(target=draw_seed_pictures, name="samples-warm-up", daemon=True).start()
    try:
        yield DEFAULT_PORT
    finally:
        server.shutdown()
        server.server_close()


def draw_seed_pictures() -> None:
    """Fill the sample server's cache with the seeded rows' pictures before anyone asks."""
    for n in range(1, SEED_PICTURES + 1):
        sample_jpeg(f"photo-{n}")


def source_url(database_url: str) -> str:
    """The demo's SOURCE_DATABASE_URL: the read-only `imagebatch_source` role (migration 0007)
    on the same database, as the dev manifests have it."""
    scheme, _, rest = database_url.partition("://")
    return f"{scheme}://{SOURCE_ROLE}:{SOURCE_ROLE}@{rest.split('@', 1)[-1]}"


async def seed(database_url: str, port: int) -> None:
    """Migrations, the read-only source login, and the seed's `images` rows pointing at the
    sample server."""
    await migrate(database_url)
    conn: asyncpg.Connection = await asyncpg.connect(database_url)
    try:
        await conn.execute(f"ALTER ROLE {SOURCE_ROLE} LOGIN PASSWORD '{SOURCE_ROLE}'")
        await conn.execute(f"ALTER ROLE {SOURCE_ROLE} SET default_transaction_read_only = on")
        if not await conn.fetchval("SELECT count(*) FROM images"):
            await conn.execute(
                "INSERT INTO images (url) SELECT 'http://127.0.0.1:' || $1 || '/samples/photo-'"
                " || ((g - 1) % $3 + 1) || '.jpg' FROM generate_series(1, $2) AS g",
                str(port),
                SEED_ROWS,
                SEED_PICTURES,
            )
    finally:
        await conn.close()


def kubectl(plane: KubeControlPlane, *args: str) -> str:
    result = subprocess.run(
        [plane.kubectl(), f"--kubeconfig={plane.kubeconfig}", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def worker_replicas(plane: KubeControlPlane, name: str) -> int | None:
    """The batch's worker Deployment's `spec.replicas` (None before it exists)."""
    try:
        raw = kubectl(plane, "get", "deployment", f"{name}-worker", "-n", NAMESPACE, "-o", "json")
    except RuntimeError:
        return None
    return int(json.loads(raw)["spec"].get("replicas") or 0)


async def follow(
    plane: KubeControlPlane, name: str, within: float, *, scaler: str
) -> tuple[dict[str, Any], float | None]:
    """Show the batch's progress (the line `kubectl imagebatch watch` prints, its rate counted
    from the first completion), and each change of its workers' replica count made by
    `scaler`, until it is finished; returns its last status and its rate (None when it was
    too quick to measure)."""
    meter, last_line, deadline = RateMeter(), "", time.monotonic() + within
    settle_until = deadline
    status: dict[str, Any] = {}
    replicas: int | None = None
    while time.monotonic() < deadline:
        raw = await asyncio.to_thread(
            kubectl, plane, "get", "ib", name, "-n", NAMESPACE, "-o", "json"
        )
        status = json.loads(raw).get("status") or {}
        counts = ProgressCounts.from_status(status)
        line = progress_line(counts, meter.observe(counts.done, time.monotonic()), BAR_WIDTH)
        if line != last_line:
            say(line)
            last_line = line
        now = await asyncio.to_thread(worker_replicas, plane, name)
        if now is not None and now != replicas:
            if replicas is None:
                say(f"deployment {name}-worker: created at {now} replicas")
            else:
                say(f"deployment {name}-worker: replicas {replicas} → {now} ({scaler})")
            replicas = now
        finished = status.get("phase") in ("Succeeded", "Failed")
        if finished and (not status.get("workers") or time.monotonic() > settle_until):
            break  # done, and its workers gone (they are scaled to 0 at once)
        if not finished:
            settle_until = time.monotonic() + SETTLE_SECONDS
        await asyncio.sleep(0.5)
    say("kubectl get ib:\n" + await asyncio.to_thread(kubectl, plane, "get", "ib", "-n", NAMESPACE))
    return status, meter.rate


def batch_name(example: Path) -> str:
    for line in example.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("metadata:") and "name:" in stripped:
            return stripped.split("name:", 1)[1].strip(" }")
        if stripped.startswith("name:"):
            return stripped.split(":", 1)[1].strip()
    raise SystemExit(f"demo: no metadata.name in {example}")


def storage_env(s3: S3Server | None, data: Path) -> dict[str, str]:
    """The api's storage settings: the demo's folder, or the bucket with the AWS variables."""
    if s3 is None:
        return {"OUTPUT_DIR": str(data), "UPLOADS_DIR": str(data / "uploads")}
    return {
        **s3.aws_env(),
        "OUTPUT_URL": f"s3://{BUCKET}/{THUMBNAILS_PREFIX}",
        "UPLOADS_URL": f"s3://{BUCKET}/{UPLOADS_PREFIX}",
    }


WORKERS_DATA = "file:///data/"
"""`status.output`'s start for a folder output: /data as the workers see it (the supervisor maps
it to the demo's data folder)."""


def local_folder(data: Path, status: dict[str, Any]) -> Path:
    """The batch's thumbnail folder on this machine, from `status.output`."""
    output = str(status.get("output") or "")
    return (
        data / output.removeprefix(WORKERS_DATA).strip("/")
        if output.startswith(WORKERS_DATA)
        else data
    )


def show_files(folder: Path) -> None:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    say(f"{len(files)} thumbnails in {folder}:")
    for path in files[:LISTED]:
        say(f"  {path.relative_to(folder)}")


def output_count(s3: S3Server | None, data: Path, status: dict[str, Any]) -> tuple[int, str]:
    """How many thumbnails the batch made, and where they are (folder, or bucket and prefix)."""
    if s3 is None:
        folder = local_folder(data, status)
        return sum(1 for p in folder.rglob("*") if p.is_file()), f"{folder}/"
    where = str(status.get("output") or f"s3://{BUCKET}/{THUMBNAILS_PREFIX}/")
    return len(s3.object_keys(BUCKET, where.removeprefix(f"s3://{BUCKET}/"))), where


def show_objects(s3: S3Server, status: dict[str, Any]) -> None:
    """The batch's objects in the bucket, and how to list them with any S3 client."""
    keys = s3.object_keys(BUCKET, f"{THUMBNAILS_PREFIX}/")
    say(f"status.output: {status.get('output') or '(not set)'}")
    say(f"{len(keys)} thumbnails in s3://{BUCKET}/{THUMBNAILS_PREFIX}/ at {s3.endpoint_url}:")
    for key in keys[:LISTED]:
        say(f"  {key}")
    variables = " ".join(f"{k}={v}" for k, v in s3.aws_env().items())
    say(
        "list them with any S3 client while it runs (KEEP=1), e.g. the AWS CLI:\n"
        f"  {variables} aws s3 ls --recursive s3://{BUCKET}/{THUMBNAILS_PREFIX}/\n"
        f"  (the objects are files under {s3.data / BUCKET})"
    )


async def wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()


async def run(args: argparse.Namespace) -> int:
    workdir = REPO / ".cache" / "demo"
    data = workdir / "data"
    shutil.rmtree(workdir, ignore_errors=True)
    (workdir / "logs").mkdir(parents=True)
    name = batch_name(args.example)
    with contextlib.ExitStack() as servers:
        say("starting PostgreSQL, RabbitMQ and a Kubernetes API server (etcd + kube-apiserver)")
        postgres = servers.enter_context(PostgresServer())
        rabbit = servers.enter_context(RabbitMQServer())
        plane = KubeControlPlane()
        servers.callback(plane.close)
        # The CRDs before the controller-manager, so its garbage collector knows them at once.
        plane.start(REPO / "crds", *(keda_crds() if args.keda else []))
        if args.keda:
            keda = servers.enter_context(KedaOperator(plane.kubeconfig))
            say(f"KEDA {keda.assets.name} running (its log: {keda.log})")
        s3: S3Server | None = None
        if args.s3:
            s3 = servers.enter_context(S3Server())
            s3.create_bucket(BUCKET)
            say(f"S3 server (versitygw) on {s3.endpoint_url}, bucket {BUCKET}")
        port = servers.enter_context(sample_server())
        say(f"sample photos on http://127.0.0.1:{port}/samples/<name>.jpg")
        database_url = postgres.url
        await seed(database_url, port)
        kubectl(
            plane, "-n", NAMESPACE, "create", "secret", "generic", SECRET,
            f"--from-literal=RABBIT_URL={rabbit.url}",
            f"--from-literal=DATABASE_URL={database_url}",
            f"--from-literal=SOURCE_DATABASE_URL={source_url(database_url)}",
            "--from-literal=ALLOW_PRIVATE_SOURCES=true",
            *(f"--from-literal={k}={v}" for k, v in (s3.aws_env() if s3 else {}).items()),
        )  # fmt: skip
        env = {"DATABASE_URL": database_url, "RABBIT_URL": rabbit.url}
        api_port = free_port()
        api = spawn(
            [sys.executable, "-m", "imagebatch.api"],
            log=workdir / "logs" / "api.log",
            cwd=workdir / "logs",
            env={
                **env,
                "HOST": "127.0.0.1",
                "PORT": str(api_port),
                "KUBECONFIG": str(plane.kubeconfig),
                "KUBE_NAMESPACE": NAMESPACE,
                # A throwaway stack on 127.0.0.1: anyone on this machine may use the api.
                "AUTH_MODE": "none",
                **storage_env(s3, data),
                "PYTHONSAFEPATH": "1",
            },
        )
        servers.callback(stop_group, api)
        # The api's own queue (the page's uploads and URLs) has no Deployment: one worker for it.
        tasks_worker = spawn(
            [sys.executable, "-m", "imagebatch.worker"],
            log=workdir / "logs" / "worker-tasks.log",
            cwd=workdir / "logs",
            env={
                **env,
                **storage_env(s3, data),
                "ALLOW_PRIVATE_SOURCES": "true",
                "METRICS_HOST": "127.0.0.1",
                "METRICS_PORT": "0",
                "LOG_LEVEL": "WARNING",
                "PYTHONSAFEPATH": "1",
            },
        )
        servers.callback(stop_group, tasks_worker)
        async with contextlib.AsyncExitStack() as services:
            operator = OperatorProcess(
                {
                    **env,
                    "KUBECONFIG": str(plane.kubeconfig),
                    "WATCH_NAMESPACE": NAMESPACE,
                    "KEDA_POLLING_INTERVAL_SECONDS": "2",
                    **({"WORKER_OUTPUT_URL": f"s3://{BUCKET}/{THUMBNAILS_PREFIX}"} if s3 else {}),
                },
                workdir / "logs" / "operator.log",
            )
            services.push_async_callback(operator.stop)
            await operator.start()
            await services.enter_async_context(
                WorkerSupervisor(
                    plane.kubeconfig,
                    [NAMESPACE],
                    data,
                    workdir / "logs",
                    env_overrides={"LOG_LEVEL": "WARNING"},
                )
            )
            await asyncio.to_thread(
                wait_until,
                lambda: http_ok(f"http://127.0.0.1:{api_port}/healthz"),
                timeout=60,
                what="the api",
                process=api,
                log=workdir / "logs" / "api.log",
            )
            page = f"http://127.0.0.1:{api_port}/"
            say(f"operator, worker supervisor, api and its worker running; the page: {page}")
            say(f"kubectl apply -f {args.example.relative_to(REPO)}")
            kubectl(plane, "apply", "-n", NAMESPACE, "-f", str(args.example))
            scaler = "by KEDA" if args.keda else "by the operator"
            status, _ = await follow(plane, name, args.timeout, scaler=scaler)
            if s3 is None:
                show_files(local_folder(data, status))
            else:
                show_objects(s3, status)
            # Six images say little about speed: the seeded rows show it.
            seeded = batch_name(args.seeded)
            say(
                f"kubectl apply -f {args.seeded.relative_to(REPO)}"
                f"  ({SEED_ROWS} seeded rows of `images`, to show the speed)"
            )
            kubectl(plane, "apply", "-n", NAMESPACE, "-f", str(args.seeded))
            seeded_status, rate = await follow(plane, seeded, args.timeout, scaler=scaler)
            count, where = output_count(s3, data, seeded_status)
            speed = f"{rate:.1f} images/s from the first completion" if rate else "rate unknown"
            done = ProgressCounts.from_status(seeded_status).done
            say(f"{seeded}: {done} images, {speed}; {count} thumbnails at {where}")
            if args.keep:
                say(
                    "everything keeps running; Ctrl-C stops it. Try:\n"
                    f"  export KUBECONFIG={plane.kubeconfig}\n"
                    f"  {plane.kubectl()} get ib -w\n"
                    f"  open {page}"
                )
                await wait_for_signal()
            say("stopping everything")
    unfinished = [
        f"{batch} ended {st.get('phase') or 'unfinished'}"
        for batch, st in ((name, status), (seeded, seeded_status))
        if st.get("phase") != "Succeeded"
    ]
    if unfinished:
        say(f"{'; '.join(unfinished)}; logs are in {workdir / 'logs'}")
        return 1
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m imagebatch.devservers.demo")
    parser.add_argument("--keep", action="store_true", default=os.environ.get("KEEP") == "1")
    parser.add_argument("--keda", action="store_true", default=os.environ.get("KEDA") == "1")
    parser.add_argument("--s3", action="store_true", default=os.environ.get("S3") == "1")
    parser.add_argument("--example", type=Path, default=REPO / "examples" / "imagebatch.yaml")
    parser.add_argument(
        "--seeded",
        type=Path,
        default=REPO / "examples" / "imagebatch-postgres.yaml",
        help="the batch of the seeded rows, applied after the example",
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for each")
    args = parser.parse_args(argv)
    args.example = args.example.resolve()
    args.seeded = args.seeded.resolve()
    return args


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
