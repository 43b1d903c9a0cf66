"""The api and the worker as real processes on real PostgreSQL and RabbitMQ: what a person
uploads or asks for comes back as a thumbnail through the api."""

from __future__ import annotations

import contextlib
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from imagebatch.core.settings import CommonSettings
from imagebatch.devservers.service_process import api_process, wait_until, worker_process
from tests.support.api import query, seed_images
from tests.support.image_server import ImageServer
from tests.support.photos import photos

pytestmark = pytest.mark.slow


async def finished(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    """The job once the worker is done with it (completed or failed)."""
    state: dict[str, Any] = {}

    async def done() -> bool:
        nonlocal state
        state = (await client.get(f"/images/{job_id}")).json()
        return state["status"] in ("completed", "failed")

    await wait_until(done, within=60, what=f"job {job_id} finished")
    return state


@contextlib.asynccontextmanager
async def api_and_worker(
    messaging: CommonSettings, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    """The api and a worker running as processes, and a client of the api."""
    async with (
        api_process(messaging, tmp_path) as (base, _api),
        worker_process(messaging, tmp_path),
        httpx.AsyncClient(base_url=base, timeout=10) as client,
    ):
        yield client


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


async def test_an_uploaded_photo_comes_back_as_a_decodable_thumbnail(
    messaging: CommonSettings, tmp_path: Path
) -> None:
    original = photos((1024, 768))[0]
    async with api_and_worker(messaging, tmp_path) as client:
        accepted = await client.post(
            "/uploads", files={"file": ("astronaut.jpg", original, "image/jpeg")}
        )
        assert accepted.status_code == 202
        upload_id = accepted.json()["id"]
        not_yet = await client.get(f"/images/{upload_id}/thumbnail")

        state = await finished(client, upload_id)
        thumbnail = await client.get(f"/images/{upload_id}/thumbnail")

    assert not_yet.status_code in (200, 404)  # 404 unless the worker was already done
    assert state["status"] == "completed", state
    assert state["kind"] == "upload"
    assert state["outputs"][0]["path"] == f"{upload_id}.jpg"
    assert thumbnail.status_code == 200
    assert thumbnail.headers["content-type"] == "image/jpeg"
    image = decoded(thumbnail.content)
    assert image.format == "JPEG"
    assert max(image.size) == 256
    assert image.size == (256, 192)  # 4:3 kept
    assert (tmp_path / "data" / f"{upload_id}.jpg").read_bytes() == thumbnail.content


async def test_a_task_by_url_and_enqueued_seed_rows_are_thumbnailed(
    messaging: CommonSettings, tmp_path: Path
) -> None:
    async with ImageServer() as images, api_and_worker(messaging, tmp_path) as client:
        seeded = await seed_images(
            messaging.database_url, [images.url(f"/photo/{n}.jpg") for n in range(3)]
        )
        task = await client.post("/tasks", json={"url": images.url("/photo/7.jpg")})
        enqueued = await client.post("/enqueue", params={"limit": 10})

        task_state = await finished(client, task.json()["id"])
        seed_states = [await finished(client, str(i)) for i in seeded]
        task_thumbnail = await client.get(f"/images/{task.json()['id']}/thumbnail")
        seed_thumbnail = await client.get(f"/images/{seeded[0]}/thumbnail")

    assert enqueued.json() == {"enqueued": 3, "limit": 10}
    assert task_state["status"] == "completed", task_state
    assert [s["status"] for s in seed_states] == ["completed"] * 3
    assert decoded(task_thumbnail.content).size == (256, 192)
    assert decoded(seed_thumbnail.content).format == "JPEG"
    rows = await query(messaging.database_url, "SELECT processed FROM images ORDER BY id")
    assert [r["processed"] for r in rows] == [True, True, True]


async def test_a_url_that_is_not_an_image_ends_failed_with_the_reason(
    messaging: CommonSettings, tmp_path: Path
) -> None:
    async with ImageServer() as images, api_and_worker(messaging, tmp_path) as client:
        task = await client.post("/tasks", json={"url": images.url("/html.jpg")})
        state = await finished(client, task.json()["id"])
        thumbnail = await client.get(f"/images/{task.json()['id']}/thumbnail")

    assert state["status"] == "failed"
    assert state["error"]
    assert thumbnail.status_code == 404
    assert "failed" in thumbnail.json()["detail"]
