"""The api and the worker as the processes a pod runs (`python -m imagebatch.api`, `python -m
imagebatch.worker` or a console script), configured only through their environment variables:
the parent's service variables never leak in, each process logs to its own file, and stopping is
SIGTERM (a graceful exit flushes spans) before a kill.

Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from imagebatch.core.settings import CommonSettings
from imagebatch.devservers.process import free_port
from imagebatch.devservers.s3 import S3Server


class ServiceError(AssertionError):
    """A service exited or did not become ready; the message carries its log.

    An AssertionError, so a test that waits on a service reports it as a failure, not an error.
    """


SERVICE_ENV = (
    "RABBIT_URL",
    "DATABASE_URL",
    "EXCHANGE",
    "QUEUE",
    "DLX",
    "DLQ",
    "ROUTING_KEY",
    "KUBECONFIG",
    "KUBERNETES_SERVICE_HOST",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_SERVICE_NAME",
    "HOST",
    "PORT",
    "AUTH_MODE",
    "AUTH_TOKENS_FILE",
    "RATE_LIMIT_PER_MINUTE",
    "UPLOAD_BYTES_PER_MINUTE",
    "MAX_OPEN_TASKS",
    "OUTPUT_URL",
    "UPLOADS_URL",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_PROFILE",
)
"""Variables the parent's environment must not leak into a service started by a test."""


def service_env(messaging: CommonSettings, **variables: object) -> dict[str, str]:
    """A clean environment for a service on the test's servers, plus `variables` (None: unset)."""
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_ENV}
    env.update(
        RABBIT_URL=messaging.rabbit_url,
        DATABASE_URL=messaging.database_url,
        EXCHANGE=messaging.exchange,
        QUEUE=messaging.queue,
        DLX=messaging.dlx,
        DLQ=messaging.dlq,
        ROUTING_KEY=messaging.routing_key,
        PYTHONUNBUFFERED="1",
    )
    for key, value in variables.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = str(value)
    return env


def bucket_storage(server: S3Server, bucket: str) -> dict[str, str]:
    """The variables that put a service's thumbnails (`thumbnails/`) and uploads (`uploads/`)
    in `bucket` on `server` (⚑ Storage); they win over the folders the helpers set."""
    return {
        **server.aws_env(),
        "OUTPUT_URL": f"s3://{bucket}/thumbnails",
        "UPLOADS_URL": f"s3://{bucket}/uploads",
    }


@dataclass
class Service:
    """A service process started by a test, with its log file."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, wait for a graceful exit (spans flushed), kill if it hangs."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start(
    name: str, module: str, env: Mapping[str, str], log_dir: Path, *, argv: list[str] | None = None
) -> Service:
    """`python -m module` (or `argv`) with exactly `env`, its output going to a log file."""
    log = log_dir / f"{name}.log"
    command = argv or [sys.executable, "-m", module]
    with log.open("wb") as sink:
        process = subprocess.Popen(command, env=dict(env), stdout=sink, stderr=subprocess.STDOUT)
    return Service(name, process, log)


async def wait_until(
    check: Callable[[], Awaitable[bool]],
    *,
    within: float,
    what: str,
    service: Service | None = None,
) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if service is not None and service.process.poll() is not None:
            raise ServiceError(
                f"{service.name} exited while waiting for {what}:\n{service.output()}"
            )
        if time.monotonic() > deadline:
            logs = f"\n{service.name} log:\n{service.output()}" if service else ""
            raise ServiceError(f"{what}: not within {within}s{logs}")
        await asyncio.sleep(0.1)


@asynccontextmanager
async def api_process(
    messaging: CommonSettings, tmp_path: Path, **variables: object
) -> AsyncIterator[tuple[str, Service]]:
    """`python -m imagebatch.api` on a free loopback port; yields (base URL, service).

    Without authentication (`AUTH_MODE=none`, explicitly) unless `variables` say otherwise.
    """
    variables = {"AUTH_MODE": "none", **variables}
    port = free_port()
    env = service_env(
        messaging,
        HOST="127.0.0.1",
        PORT=port,
        OUTPUT_DIR=tmp_path / "data",
        UPLOADS_DIR=tmp_path / "data" / "uploads",
        OTEL_BSP_SCHEDULE_DELAY=100,
        **variables,
    )
    service = start("api", "imagebatch.api", env, tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=2.0) as client:

            async def ready() -> bool:
                try:
                    return (await client.get("/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_until(ready, within=30, what="api ready", service=service)
        yield base, service
    finally:
        service.stop()


@asynccontextmanager
async def worker_process(
    messaging: CommonSettings, tmp_path: Path, **variables: object
) -> AsyncIterator[Service]:
    """`python -m imagebatch.worker` on the test's queues and folders (loopback sources allowed)."""
    env = service_env(
        messaging,
        OUTPUT_DIR=tmp_path / "data",
        UPLOADS_DIR=tmp_path / "data" / "uploads",
        METRICS_HOST="127.0.0.1",
        METRICS_PORT=0,
        ALLOW_PRIVATE_SOURCES="true",
        CONCURRENCY=4,
        TRANSFORM_THREADS=1,
        OTEL_BSP_SCHEDULE_DELAY=100,
        **variables,
    )
    service = start("worker", "imagebatch.worker", env, tmp_path)
    try:
        yield service
    finally:
        code = service.stop()
        if code != 0:
            raise RuntimeError(f"worker exited with {code}:\n{service.output()}")
