"""Helpers for the api's tests: settings on the test's servers, the app in-process, images,
reading what the api published, and playing the worker's part in the database."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import httpx
from aio_pika.abc import AbstractIncomingMessage
from PIL import Image

from imagebatch.api.app import create_app
from imagebatch.api.settings import ApiSettings
from imagebatch.core.settings import CommonSettings
from imagebatch.core.topology import declare_topology

CLOSED_PORT_URL = "amqp://guest:guest@127.0.0.1:1/"
"""A broker address nothing listens on (port 1 on loopback): RabbitMQ is down."""


def api_settings(messaging: CommonSettings, tmp_path: Path, **overrides: Any) -> ApiSettings:
    """Settings for an api on the test's database and exchange, with folders under tmp_path.

    Every field the environment could set is given explicitly, so a KUBECONFIG exported by
    another fixture does not leak in. Callers are not authenticated (`AUTH_MODE=none`, set
    explicitly as the api requires) unless a test about authentication overrides it.
    """
    values: dict[str, Any] = {
        **messaging.model_dump(),
        "output_dir": tmp_path / "output",
        "uploads_dir": tmp_path / "uploads",
        "max_upload_bytes": 512 * 1024,
        "enqueue_default": 200,
        "enqueue_max": 1000,
        "publish_timeout_seconds": 5.0,
        "startup_timeout_seconds": 10.0,
        "broker_retry_seconds": 0.5,
        "kubeconfig": None,
        "kubernetes_service_host": None,
        "kube_namespace": "default",
        "kube_timeout_seconds": 5.0,
        "auth_mode": "none",
        "auth_tokens_file": None,
    }
    values.update(overrides)
    settings = ApiSettings(**values)
    settings.output_dir.mkdir(parents=True, exist_ok=True)
    return settings


@asynccontextmanager
async def running_api(settings: ApiSettings) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan running, and an httpx client talking to it in-process."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            yield client


def image_bytes(fmt: str = "JPEG", size: tuple[int, int] = (640, 480)) -> bytes:
    """A small real image with some structure (gradient), encoded as `fmt`."""
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


class Inbox:
    """The work queue of a test's messaging settings, read from the consumer's side."""

    def __init__(self, settings: CommonSettings) -> None:
        self.settings = settings
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._queue: aio_pika.abc.AbstractQueue | None = None

    async def __aenter__(self) -> Inbox:
        self._connection = await aio_pika.connect_robust(self.settings.rabbit_url)
        channel = await self._connection.channel()
        self._queue = (await declare_topology(channel, self.settings)).work_queue
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._connection is not None:
            await self._connection.close()

    async def take(self, count: int, *, within: float = 5.0) -> list[AbstractIncomingMessage]:
        """Exactly `count` messages (acked), waiting up to `within` seconds for them."""
        assert self._queue is not None
        taken: list[AbstractIncomingMessage] = []
        deadline = asyncio.get_running_loop().time() + within
        while len(taken) < count:
            message = await self._queue.get(no_ack=True, fail=False)
            if message is None:
                if asyncio.get_running_loop().time() > deadline:
                    raise AssertionError(f"expected {count} message(s), got {len(taken)}")
                await asyncio.sleep(0.05)
                continue
            taken.append(message)
        return taken

    async def depth(self) -> int:
        assert self._queue is not None
        declared = await self._queue.declare()
        return int(declared.message_count or 0)


def body(message: AbstractIncomingMessage) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(message.body)
    return decoded


async def seed_images(database_url: str, urls: list[str], *, processed: bool = False) -> list[int]:
    """Rows in the seed table `images`; returns their ids."""
    conn: asyncpg.Connection = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "INSERT INTO images (url, processed) SELECT u, $2 FROM unnest($1::text[]) AS u"
            " RETURNING id",
            urls,
            processed,
        )
        return [r["id"] for r in rows]
    finally:
        await conn.close()


async def query(database_url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn: asyncpg.Connection = await asyncpg.connect(database_url)
    try:
        rows: list[asyncpg.Record] = await conn.fetch(sql, *args)
        return rows
    finally:
        await conn.close()


async def complete_like_a_worker(
    database_url: str, output_dir: Path, job_id: str, *, name: str | None = None, fmt: str = "JPEG"
) -> Path:
    """Do what a worker does for a finished job: write the thumbnail, record it as completed."""
    relative = name or f"{job_id}.jpg"
    path = output_dir / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    data = image_bytes(fmt, (256, 192))
    path.write_bytes(data)
    outputs = [
        {"path": relative, "width": 256, "height": 192, "bytes": len(data), "format": fmt.lower()}
    ]
    await query(
        database_url,
        "UPDATE jobs SET status = 'completed', attempts = 1, outputs = $2::jsonb,"
        " source_bytes = 1234, source_width = 640, source_height = 480,"
        " started_at = now(), completed_at = now(), updated_at = now() WHERE id = $1",
        job_id,
        json.dumps(outputs),
    )
    return path
