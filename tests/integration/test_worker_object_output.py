"""The worker writing thumbnails to a bucket, and reading originals from one, against a real S3
server (versitygw), RabbitMQ and PostgreSQL.

What a user relies on: the same key layout as files under the URL's key prefix, the right
Content-Type, `s3://` paths in the job rows, no partial object and no multipart upload left,
a duplicate delivery writing nothing — and the store's own outages (stopped, wrong credentials)
spending no attempt and dead-lettering nothing, with /readyz saying why.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from PIL import Image

from imagebatch.core.settings import CommonSettings
from imagebatch.devservers.s3 import S3Server
from imagebatch.worker.service import WorkerService
from imagebatch.worker.settings import WorkerSettings
from tests.support.image_server import ImageServer
from tests.support.photos import photos
from tests.support.worker_fixtures import (
    count_status,
    drain_dead_letters,
    image_server,
    job_body,
    job_rows,
    publish,
    queue_depth,
    running_worker,
    wait_for,
    worker_settings,
)

__all__ = ["image_server"]

OPS = [
    {"thumbnail": {"width": 128, "height": 128, "format": "jpeg"}},
    {"thumbnail": {"width": 64, "height": 64, "format": "webp"}},
]


def bucket_settings(
    messaging: CommonSettings, tmp_path: Path, server: S3Server, url: str, **overrides: Any
) -> WorkerSettings:
    aws = {key.lower(): value for key, value in server.aws_env().items()}
    values = {**aws, "output_url": url, **overrides}
    return worker_settings(messaging, tmp_path / "unused", **values)


async def readyz(worker: WorkerService) -> tuple[int, dict[str, Any]]:
    url = f"http://127.0.0.1:{worker.health.port}/readyz"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, json.loads(await response.text())


async def outages(database_url: str) -> list[asyncpg.Record]:
    conn: asyncpg.Connection = await asyncpg.connect(database_url)
    try:
        return list(await conn.fetch("SELECT batch, dependency, reason FROM batch_outages"))
    finally:
        await conn.close()


async def test_thumbnails_land_in_the_bucket_under_the_files_layout(
    messaging: CommonSettings,
    tmp_path: Path,
    s3_server: S3Server,
    s3_bucket: str,
    image_server: ImageServer,
) -> None:
    settings = bucket_settings(messaging, tmp_path, s3_server, f"s3://{s3_bucket}/thumbs")
    ids = [f"obj-{i}" for i in range(12)]
    bodies = [
        job_body(image_server.url(f"/photo/{i}.jpg"), job_id, ops=OPS, output="ns/holiday")
        for i, job_id in enumerate(ids)
    ]
    await publish(settings, bodies)
    async with running_worker(settings):
        await wait_for(lambda: _completed(settings.database_url, len(ids)))
        # A second delivery of a finished job is acked as a duplicate and writes nothing.
        await publish(settings, bodies[:3])
        await wait_for(lambda: _queue_empty(settings))

    keys = s3_server.object_keys(s3_bucket)
    expected = sorted(
        f"thumbs/ns/holiday/{job_id}_{size}"
        for job_id in ids
        for size in ("128x128.jpg", "64x64.webp")
    )
    assert keys == expected
    assert s3_server.multipart_uploads(s3_bucket) == []
    rows = await job_rows(settings.database_url)
    for job_id in ids:
        row = rows[job_id]
        assert row["status"] == "completed"
        assert row["attempts"] == 1
        paths = [o["path"] for o in row["outputs"]]
        assert paths == [
            f"s3://{s3_bucket}/thumbs/ns/holiday/{job_id}_128x128.jpg",
            f"s3://{s3_bucket}/thumbs/ns/holiday/{job_id}_64x64.webp",
        ]
    for key in keys[:4]:
        response = s3_server.request("GET", f"/{s3_bucket}/{key}")
        with Image.open(io.BytesIO(response.body)) as image:
            image.load()
            fmt = image.format
        assert (
            response.headers["Content-Type"]
            == {"JPEG": "image/jpeg", "WEBP": "image/webp"}[str(fmt)]
        )


async def test_an_original_in_a_bucket_is_read_through_the_same_connection(
    messaging: CommonSettings, tmp_path: Path, s3_server: S3Server, s3_bucket: str
) -> None:
    s3_server.request("PUT", f"/{s3_bucket}/originals/cat.jpg", body=photos()[0])
    settings = bucket_settings(messaging, tmp_path, s3_server, f"s3://{s3_bucket}/out")
    await publish(
        settings,
        [
            job_body(f"s3://{s3_bucket}/originals/cat.jpg", "from-bucket", ops=OPS[:1]),
            job_body(f"s3://{s3_bucket}/originals/nope.jpg", "missing-key", ops=OPS[:1]),
            job_body("s3://no-such-bucket-x/cat.jpg", "missing-bucket", ops=OPS[:1]),
        ],
    )
    async with running_worker(settings):
        await wait_for(lambda: _completed(settings.database_url, 1))
        await wait_for(lambda: _failed(settings.database_url, 2))
    rows = await job_rows(settings.database_url)
    assert rows["from-bucket"]["status"] == "completed"
    assert rows["from-bucket"]["source_width"] > 0
    dead = {m.headers.get("x-imagebatch-code") for m in await drain_dead_letters(settings)}
    assert dead == {"object_missing", "bucket_missing"}


async def test_a_stopped_store_spends_no_attempt_and_the_batch_completes_after_it(
    messaging: CommonSettings,
    tmp_path: Path,
    s3_server: S3Server,
    s3_bucket: str,
    image_server: ImageServer,
) -> None:
    settings = bucket_settings(messaging, tmp_path, s3_server, f"s3://{s3_bucket}", max_attempts=2)
    bodies = [
        job_body(image_server.url(f"/photo/{i}.jpg"), f"down-{i}", ops=OPS[:1], batch="ns/b")
        for i in range(6)
    ]
    async with running_worker(settings) as worker:
        with s3_server.stopped():
            await publish(settings, bodies)
            await wait_for(lambda: _store_errors(worker, 6), within=60)
            status, body = await readyz(worker)
            assert status == 503
            assert "cannot reach the object store" in body["reason"]
            assert [
                (r["batch"], r["dependency"]) for r in await outages(settings.database_url)
            ] == [("ns/b", "output store")]
            assert await queue_depth(settings, settings.dlq) == 0
        await wait_for(lambda: _completed(settings.database_url, 6), within=60)
        await wait_for(lambda: _ready(worker))
        metrics = worker.metrics
    rows = await job_rows(settings.database_url)
    assert {row["attempts"] for row in rows.values()} == {1}
    assert await queue_depth(settings, settings.dlq) == 0
    assert metrics.sample("worker_tasks_retried_total") == 0
    assert await outages(settings.database_url) == [], "the first success clears the outage"
    assert len(s3_server.object_keys(s3_bucket)) == 6


async def test_wrong_credentials_dead_letter_nothing_and_say_so(
    messaging: CommonSettings,
    tmp_path: Path,
    s3_server: S3Server,
    s3_bucket: str,
    image_server: ImageServer,
) -> None:
    settings = bucket_settings(
        messaging,
        tmp_path,
        s3_server,
        f"s3://{s3_bucket}",
        aws_secret_access_key="not-the-secret",
    )
    await publish(settings, [job_body(image_server.url("/photo/1.jpg"), "creds", ops=OPS[:1])])
    async with running_worker(settings) as worker:
        await wait_for(lambda: _store_errors(worker, 2), within=60)
        status, body = await readyz(worker)
    assert status == 503
    assert "credentials refused" in body["reason"]
    assert await queue_depth(settings, settings.dlq) == 0
    rows = await job_rows(settings.database_url)
    assert rows["creds"]["status"] != "failed"


async def _completed(database_url: str, n: int) -> bool:
    return await count_status(database_url, "completed") >= n


async def _failed(database_url: str, n: int) -> bool:
    return await count_status(database_url, "failed") >= n


async def _queue_empty(settings: WorkerSettings) -> bool:
    return await queue_depth(settings, settings.queue) == 0


async def _store_errors(worker: WorkerService, n: int) -> bool:
    found = worker.metrics.sample(
        "imagebatch_worker_dependency_errors_total", dependency="output store"
    )
    return found >= n


async def _ready(worker: WorkerService) -> bool:
    return (await readyz(worker))[0] == 200
