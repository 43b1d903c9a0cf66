"""The api and the worker as real processes with their storage in a bucket (versitygw): an
upload kept in the bucket, a job whose source is an object, both thumbnailed into the bucket and
served by the api — the same URL the web page loads thumbnails from — with no shared folder."""

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
from imagebatch.devservers.s3 import S3Server
from imagebatch.devservers.service_process import (
    api_process,
    bucket_storage,
    wait_until,
    worker_process,
)
from tests.support.photos import photos

pytestmark = pytest.mark.slow

THUMBNAIL = {"thumbnail": {"width": 256, "height": 256, "format": "jpeg"}}


async def finished(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    """The job once the worker is done with it (completed or failed); a job the api has not
    recorded (a batch item before a worker took it) is not found until then."""
    state: dict[str, Any] = {}

    async def done() -> bool:
        nonlocal state
        response = await client.get(f"/images/{job_id}")
        if response.status_code == 404:
            return False
        state = response.json()
        return state["status"] in ("completed", "failed")

    await wait_until(done, within=60, what=f"job {job_id} finished")
    return state


@contextlib.asynccontextmanager
async def api_and_worker_on_bucket(
    messaging: CommonSettings, tmp_path: Path, s3_server: S3Server, bucket: str
) -> AsyncIterator[httpx.AsyncClient]:
    """The api and a worker, both storing in `bucket`, and a client of the api."""
    storage = bucket_storage(s3_server, bucket)
    async with (
        api_process(messaging, tmp_path, **storage) as (base, _api),
        worker_process(messaging, tmp_path, **storage),
        httpx.AsyncClient(base_url=base, timeout=10) as client,
    ):
        yield client


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def stored(s3_server: S3Server, url: str) -> bytes:
    """The object an `s3://bucket/key` output names, read straight from the store."""
    response = s3_server.request("GET", "/" + url.removeprefix("s3://"))
    assert response.status == 200, url
    return response.body


def files_in(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


async def test_an_upload_kept_in_the_bucket_is_thumbnailed_there_and_served_by_the_api(
    messaging: CommonSettings, tmp_path: Path, s3_server: S3Server, s3_bucket: str
) -> None:
    original = photos((1024, 768))[0]
    async with api_and_worker_on_bucket(messaging, tmp_path, s3_server, s3_bucket) as client:
        accepted = await client.post(
            "/uploads", files={"file": ("astronaut.jpg", original, "image/jpeg")}
        )
        assert accepted.status_code == 202, accepted.text
        upload_id = accepted.json()["id"]
        state = await finished(client, upload_id)
        recent = (await client.get("/images", params={"limit": 20})).json()
        thumbnail = await client.get(f"/images/{upload_id}/thumbnail")

    assert state["status"] == "completed", state
    assert state["kind"] == "upload"
    output = state["outputs"][0]["path"]
    assert output == f"s3://{s3_bucket}/thumbnails/{upload_id}.jpg"
    assert [k for k in s3_server.object_keys(s3_bucket, "uploads/")], "the original is kept there"
    assert thumbnail.status_code == 200
    assert thumbnail.headers["content-type"] == "image/jpeg"
    image = decoded(thumbnail.content)
    assert image.format == "JPEG"
    assert image.size == (256, 192)  # 4:3 kept
    assert thumbnail.content == stored(s3_server, output)
    # The web page lists recent jobs and loads each completed one's thumbnail_url.
    tile = next(job for job in recent["items"] if job["id"] == upload_id)
    assert tile["thumbnail_url"] == f"/images/{upload_id}/thumbnail"
    assert files_in(tmp_path / "data") == [], "nothing went to the folders"


async def test_a_task_naming_an_object_is_thumbnailed_into_the_bucket_and_served(
    messaging: CommonSettings, tmp_path: Path, s3_server: S3Server, s3_bucket: str
) -> None:
    """POST /tasks with an `s3://bucket/key` source: the worker reads it through its S3
    connection, and the api serves the result from the bucket."""
    put = s3_server.request(
        "PUT",
        f"/{s3_bucket}/originals/coffee.jpg",
        body=photos((800, 600))[0],
        headers={"Content-Type": "image/jpeg"},
    )
    assert put.status == 200
    async with api_and_worker_on_bucket(messaging, tmp_path, s3_server, s3_bucket) as client:
        accepted = await client.post(
            "/tasks", json={"url": f"s3://{s3_bucket}/originals/coffee.jpg", "ops": [THUMBNAIL]}
        )
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["id"]
        state = await finished(client, job_id)
        thumbnail = await client.get(f"/images/{job_id}/thumbnail")

    assert state["status"] == "completed", state
    output = state["outputs"][0]["path"]
    assert output == f"s3://{s3_bucket}/thumbnails/tasks/{job_id}_256x256.jpg"
    assert thumbnail.status_code == 200
    assert thumbnail.headers["content-type"] == "image/jpeg"
    assert decoded(thumbnail.content).size == (256, 192)
    assert thumbnail.content == stored(s3_server, output)
