"""The worker against real RabbitMQ and PostgreSQL: what a message turns into.

Each test has its own exchange, queues, database and output folder; the worker runs in-process
and the originals come from a loopback image server.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import asyncpg
from PIL import Image

from imagebatch.core import headers as h
from imagebatch.core.settings import CommonSettings
from imagebatch.worker.settings import WorkerSettings
from imagebatch.worker.storage import TEMP_PREFIX
from tests.support.image_server import ImageServer
from tests.support.worker_fixtures import (
    advisory_locks_held,
    count_status,
    drain_dead_letters,
    files_under,
    image_server,
    job_body,
    job_rows,
    publish,
    queue_depth,
    running_worker,
    settings,
    wait_for,
    worker_settings,
)

__all__ = ["image_server", "settings"]


async def seed_images(database_url: str, urls: list[str]) -> list[int]:
    conn: asyncpg.Connection = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "INSERT INTO images (url) SELECT unnest($1::text[]) RETURNING id", urls
        )
    finally:
        await conn.close()
    return [int(r["id"]) for r in rows]


async def test_200_images_are_thumbnailed_recorded_and_acked(
    settings: WorkerSettings, image_server: ImageServer
) -> None:
    seed_ids = await seed_images(
        settings.database_url, [image_server.url(f"/photo/{i}.jpg") for i in range(50)]
    )
    bodies = [
        json.dumps(
            {"url": image_server.url(f"/photo/{i}.jpg"), "ops": ["thumbnail"], "id": str(i_d)}
        ).encode()
        for i, i_d in enumerate(seed_ids)
    ]
    bodies += [
        job_body(
            image_server.url(f"/photo/{i}.jpg"),
            f"task-{i}",
            output="holiday",
            ops=[{"thumbnail": {"width": 160, "height": 160, "fit": "cover", "quality": 80}}],
        )
        for i in range(150)
    ]
    await publish(settings, bodies)

    async with running_worker(settings) as worker:
        await wait_for(lambda: _all_completed(settings.database_url, 200), within=60)
        assert worker.metrics.sample("worker_tasks_processed_total") == 200
        # Pooled connections are not reset on release: every claim must have released its lock.
        assert await advisory_locks_held(settings.database_url) == 0

    rows = await job_rows(settings.database_url)
    assert len(rows) == 200
    assert {r["status"] for r in rows.values()} == {"completed"}
    assert {r["attempts"] for r in rows.values()} == {1}
    assert all(r["started_at"] and r["completed_at"] and r["error"] is None for r in rows.values())

    seed = rows[str(seed_ids[0])]
    assert seed["kind"] == "image"
    assert seed["image_id"] == seed_ids[0]
    assert seed["outputs"] == [
        {
            "path": f"{seed_ids[0]}.jpg",
            "width": 256,
            "height": 192,
            "bytes": seed["outputs"][0]["bytes"],
            "format": "jpeg",
        }
    ]
    assert (seed["source_width"], seed["source_height"]) == (640, 480)
    assert seed["source_bytes"] == len(image_server.photo(0))

    task = rows["task-7"]
    assert task["kind"] == "task"
    [output] = task["outputs"]
    assert output["path"] == "holiday/task-7_160x160.jpg"
    written = settings.output_dir / output["path"]
    assert written.stat().st_size == output["bytes"]
    with Image.open(written) as image:
        assert (image.format, image.size) == ("JPEG", (160, 160))

    files = files_under(settings.output_dir)
    assert len(files) == 200
    assert not [f for f in files if f.name.startswith(TEMP_PREFIX)]

    conn: asyncpg.Connection = await asyncpg.connect(settings.database_url)
    try:
        assert await conn.fetchval("SELECT bool_and(processed) FROM images") is True
    finally:
        await conn.close()
    assert await queue_depth(settings, settings.queue) == 0
    assert await drain_dead_letters(settings) == []


async def _all_completed(database_url: str, n: int) -> bool:
    return await count_status(database_url, "completed") >= n


async def test_the_same_message_twice_gives_one_output_and_one_completion(
    settings: WorkerSettings, image_server: ImageServer
) -> None:
    body = job_body(image_server.url("/photo/5.jpg"), "twice", output="dup")
    await publish(settings, [body, body])
    async with running_worker(settings) as worker:
        await wait_for(lambda: _all_completed(settings.database_url, 1))
        await wait_for(lambda: _settled(worker.metrics.sample("worker_tasks_duplicate_total"), 1))
        assert worker.metrics.sample("worker_tasks_processed_total") == 1
    rows = await job_rows(settings.database_url)
    assert rows["twice"]["attempts"] == 1
    assert [p.name for p in files_under(settings.output_dir)] == ["twice_256x256.jpg"]
    assert image_server.hits["/photo/5.jpg"] == 1
    assert await queue_depth(settings, settings.queue) == 0


async def _settled(value: float, expected: float) -> bool:
    return value >= expected


async def test_a_producer_inserted_row_is_updated_not_duplicated(
    settings: WorkerSettings, image_server: ImageServer
) -> None:
    conn: asyncpg.Connection = await asyncpg.connect(settings.database_url)
    try:
        await conn.execute(
            "INSERT INTO jobs (id, kind, url, status) VALUES ('t-1', 'task', $1, 'pending')",
            image_server.url("/photo/1.jpg"),
        )
    finally:
        await conn.close()
    await publish(settings, [job_body(image_server.url("/photo/1.jpg"), "t-1")])
    async with running_worker(settings):
        await wait_for(lambda: _all_completed(settings.database_url, 1))
    row = (await job_rows(settings.database_url))["t-1"]
    assert (row["kind"], row["status"], row["attempts"]) == ("task", "completed", 1)
    assert row["outputs"][0]["path"] == "tasks/t-1_256x256.jpg"


async def test_exif_rotated_input_comes_out_upright_and_without_metadata(
    settings: WorkerSettings, image_server: ImageServer
) -> None:
    await publish(settings, [job_body(image_server.url("/exif.jpg"), "rotated", output="r")])
    async with running_worker(settings):
        await wait_for(lambda: _all_completed(settings.database_url, 1))
    data = (settings.output_dir / "r" / "rotated_256x256.jpg").read_bytes()
    with Image.open(io.BytesIO(data)) as thumb:
        assert thumb.size == (171, 256), "portrait, as EXIF orientation 6 asks"
        assert not thumb.getexif()
        assert "comment" not in thumb.info
        assert "xmp" not in thumb.info
        reference = image_server.exif_upright.resize(thumb.size)
        from PIL import ImageChops, ImageStat

        diff = ImageChops.difference(thumb.convert("RGB"), reference.convert("RGB"))
        assert sum(ImageStat.Stat(diff).mean) / 3 < 6
    for marker in (b"secret", b"Exif\x00\x00", b"xmpmeta", b"ImageBatch test camera"):
        assert marker not in data


async def test_an_upload_is_thumbnailed_from_the_uploads_folder(
    settings: WorkerSettings, image_server: ImageServer
) -> None:
    settings.uploads_dir.mkdir(parents=True)
    (settings.uploads_dir / "u1.jpg").write_bytes(image_server.photo(6))
    await publish(settings, [job_body("upload:u1.jpg", "u1", output="uploads-thumbs")])
    async with running_worker(settings):
        await wait_for(lambda: _all_completed(settings.database_url, 1))
    row = (await job_rows(settings.database_url))["u1"]
    assert row["kind"] == "upload"
    assert (settings.output_dir / "uploads-thumbs" / "u1_256x256.jpg").is_file()


async def test_outputs_already_on_disk_are_recorded_without_downloading(
    settings: WorkerSettings, image_server: ImageServer
) -> None:
    """A crash between the rename and the commit leaves the file and a row still saying
    `processing`: the redelivery records the file instead of downloading again."""
    conn: asyncpg.Connection = await asyncpg.connect(settings.database_url)
    try:
        await conn.execute(
            "INSERT INTO jobs (id, kind, url, status, attempts) VALUES"
            " ('ready', 'task', $1, 'processing', 1)",
            image_server.url("/photo/1.jpg"),
        )
    finally:
        await conn.close()
    target = settings.output_dir / "pre" / "ready_256x256.jpg"
    target.parent.mkdir(parents=True)
    Image.new("RGB", (256, 170), "green").save(target, "JPEG")
    await publish(settings, [job_body(image_server.url("/photo/1.jpg"), "ready", output="pre")])
    async with running_worker(settings):
        await wait_for(lambda: _all_completed(settings.database_url, 1))
    row = (await job_rows(settings.database_url))["ready"]
    assert row["outputs"] == [
        {
            "path": "pre/ready_256x256.jpg",
            "width": 256,
            "height": 170,
            "bytes": target.stat().st_size,
            "format": "jpeg",
        }
    ]
    assert image_server.hits["/photo/1.jpg"] == 0


async def test_a_batch_queue_is_declared_and_consumed_when_queue_says_so(
    settings: WorkerSettings, image_server: ImageServer
) -> None:
    batch = settings.model_copy(
        update={"queue": f"{settings.queue}.batch.ns.b1", "routing_key": "batch.ns.b1"}
    )
    await publish(batch, [job_body(image_server.url("/photo/2.jpg"), "b-1", batch="ns/b1")])
    async with running_worker(batch):
        await wait_for(lambda: _all_completed(settings.database_url, 1))
    row = (await job_rows(settings.database_url))["b-1"]
    assert (row["kind"], row["batch"]) == ("batch", "ns/b1")
    assert (settings.output_dir / "ns" / "b1" / "b-1_256x256.jpg").is_file()


async def test_the_attempt_header_of_a_delivery_is_what_the_dead_letter_reports(
    settings: WorkerSettings, image_server: ImageServer
) -> None:
    await publish(
        settings,
        [job_body(image_server.url("/status/404"), "late")],
        headers={
            h.ATTEMPT: 2,
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        },
    )
    async with running_worker(settings):
        await wait_for(lambda: _count_failed(settings.database_url, 1))
    [dead] = await drain_dead_letters(settings)
    assert dead.headers[h.ATTEMPT] == 2
    assert str(dead.headers["traceparent"]).startswith("00-0af7651916cd43dd8448eb211c80319c")


async def _count_failed(database_url: str, n: int) -> bool:
    return await count_status(database_url, "failed") >= n


async def test_concurrency_bounds_the_images_in_flight(
    messaging: CommonSettings, tmp_path: Path
) -> None:
    settings = worker_settings(messaging, tmp_path / "data", concurrency=3, prefetch=5)
    async with ImageServer(photo_delay=0.05) as slow:
        await publish(
            settings, [job_body(slow.url(f"/photo/{i}.jpg"), f"c-{i}") for i in range(30)]
        )
        async with running_worker(settings):
            await wait_for(lambda: _all_completed(settings.database_url, 30))
        assert slow.most_active_photos == 3, "never more than CONCURRENCY downloads at once"
