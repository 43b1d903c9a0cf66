"""Fixtures and helpers of the worker tests: a loopback image server, worker settings for a
test's own queues, an in-process worker, publishing raw bodies and reading the outcome back.

Test modules import the fixtures they use by name (`from tests.support.worker_fixtures import
image_server`), so nothing here leaks into other services' tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import pytest
from aio_pika.abc import AbstractIncomingMessage

from imagebatch.core.broker import connect, producer_channel
from imagebatch.core.settings import CommonSettings
from imagebatch.core.topology import declare_topology
from imagebatch.worker.service import WorkerService
from imagebatch.worker.settings import WorkerSettings
from tests.support.image_server import ImageServer

FAST_LIMITS: dict[str, Any] = {
    "allow_private_sources": True,
    "metrics_host": "127.0.0.1",
    "metrics_port": 0,
    "connect_timeout_seconds": 2.0,
    "read_timeout_seconds": 0.5,
    "download_deadline_seconds": 2.0,
    "max_download_bytes": 1024 * 1024,
    "backoff_seconds": 0.05,
    "backoff_max_seconds": 0.4,
    "shutdown_timeout_seconds": 10.0,
    "startup_timeout_seconds": 10.0,
    "transform_threads": 2,
}
"""Limits that make every failure class show up within a second or two."""


@pytest.fixture
async def image_server() -> AsyncIterator[ImageServer]:
    async with ImageServer() as server:
        yield server


def worker_settings(
    messaging: CommonSettings, output_dir: Path, **overrides: Any
) -> WorkerSettings:
    """Settings for a worker on this test's queues and database, with fast limits."""
    values: dict[str, Any] = {
        **messaging.model_dump(),
        **FAST_LIMITS,
        "output_dir": output_dir,
        "uploads_dir": output_dir / "uploads",
        **overrides,
    }
    return WorkerSettings(**values)


@pytest.fixture
def settings(messaging: CommonSettings, tmp_path: Path) -> WorkerSettings:
    return worker_settings(messaging, tmp_path / "data")


@contextlib.asynccontextmanager
async def running_worker(settings: WorkerSettings) -> AsyncIterator[WorkerService]:
    """An in-process worker: started, yielded, then stopped gracefully."""
    service = WorkerService(settings)
    try:
        await service.start()
        yield service
    finally:
        await service.stop()


async def publish(
    settings: CommonSettings,
    bodies: list[bytes],
    *,
    headers: Mapping[str, Any] | None = None,
    message_ids: list[str] | None = None,
    window: int = 1,
) -> None:
    """Publish raw bodies (valid or not) as a producer would: persistent, mandatory, confirmed,
    with up to `window` confirms awaited together as the operator's publisher awaits a chunk's
    (one at a time would take minutes at 100,000)."""
    connection = await connect(settings.rabbit_url)
    async with connection:
        channel = await producer_channel(connection)
        topology = await declare_topology(channel, settings)
        for start in range(0, len(bodies), window):
            await asyncio.gather(
                *(
                    topology.exchange.publish(
                        aio_pika.Message(
                            body=bodies[index],
                            content_type="application/json",
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                            message_id=message_ids[index] if message_ids else None,
                            headers=dict(headers or {}),
                        ),
                        routing_key=settings.routing_key,
                        mandatory=True,
                    )
                    for index in range(start, min(start + window, len(bodies)))
                )
            )


def job_body(url: str, job_id: str, **extra: Any) -> bytes:
    return json.dumps({"url": url, "id": job_id, **extra}).encode()


async def wait_for(
    check: Callable[[], Awaitable[bool]], *, within: float = 30.0, interval: float = 0.1
) -> None:
    """Poll `check` until it is true; fail the test after `within` seconds."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(interval)


async def job_rows(database_url: str) -> dict[str, dict[str, Any]]:
    """Every row of `jobs`, by id, with JSON columns decoded."""
    conn: asyncpg.Connection = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT * FROM jobs")
    finally:
        await conn.close()
    result = {}
    for row in rows:
        record = dict(row)
        for column in ("outputs", "ops"):
            if isinstance(record[column], str):
                record[column] = json.loads(record[column])
        result[record["id"]] = record
    return result


async def count_status(database_url: str, status: str) -> int:
    conn: asyncpg.Connection = await asyncpg.connect(database_url)
    try:
        value = await conn.fetchval("SELECT count(*) FROM jobs WHERE status = $1", status)
    finally:
        await conn.close()
    return int(value)


async def advisory_locks_held(database_url: str) -> int:
    """Advisory locks anyone holds in this database (claims of jobs being processed)."""
    conn: asyncpg.Connection = await asyncpg.connect(database_url)
    try:
        value = await conn.fetchval(
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
            " WHERE l.locktype = 'advisory' AND d.datname = current_database()"
        )
    finally:
        await conn.close()
    return int(value)


async def queue_depth(settings: CommonSettings, queue: str) -> int:
    connection = await connect(settings.rabbit_url)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        count = declared.declaration_result.message_count
    return int(count or 0)


async def drain_dead_letters(settings: CommonSettings) -> list[AbstractIncomingMessage]:
    """Take (and ack) every message in the test's dead-letter queue."""
    taken: list[AbstractIncomingMessage] = []
    connection = await connect(settings.rabbit_url)
    async with connection:
        channel = await connection.channel()
        topology = await declare_topology(channel, settings)
        while (message := await topology.dead_letter_queue.get(fail=False)) is not None:
            await message.ack()
            taken.append(message)
    return taken


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())
