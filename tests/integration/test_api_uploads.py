"""POST /uploads: originals stored under UPLOADS_DIR by id, typed by magic bytes, queued."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from imagebatch.api.settings import ApiSettings
from imagebatch.core.settings import CommonSettings
from tests.support.api import (
    CLOSED_PORT_URL,
    Inbox,
    api_settings,
    body,
    image_bytes,
    query,
    running_api,
)


def stored(settings: ApiSettings) -> list[str]:
    folder = settings.uploads_dir
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


async def test_an_upload_is_stored_by_id_recorded_and_published(
    api: httpx.AsyncClient, api_config: ApiSettings, job_inbox: Inbox
) -> None:
    data = image_bytes("JPEG")

    response = await api.post("/uploads", files={"file": ("holiday.jpeg", data, "image/jpeg")})

    assert response.status_code == 202
    accepted = response.json()
    upload_id = accepted["id"]
    assert uuid.UUID(upload_id).version == 4
    assert accepted == {
        "id": upload_id,
        "status": "pending",
        "status_url": f"/images/{upload_id}",
        "thumbnail_url": f"/images/{upload_id}/thumbnail",
        "filename": "holiday.jpeg",
        "content_type": "image/jpeg",
        "bytes": len(data),
    }
    assert (api_config.uploads_dir / f"{upload_id}.jpg").read_bytes() == data
    assert stored(api_config) == [f"{upload_id}.jpg"]

    [message] = await job_inbox.take(1)
    assert body(message) == {
        "url": f"upload:{upload_id}.jpg",
        "ops": ["thumbnail"],
        "id": upload_id,
        "batch": None,
        "output": None,
    }
    [row] = await query(
        api_config.database_url,
        "SELECT j.kind, j.status, j.url, u.filename, u.content_type, u.bytes, u.path"
        " FROM jobs j JOIN uploads u USING (id) WHERE id = $1",
        upload_id,
    )
    assert dict(row) == {
        "kind": "upload",
        "status": "pending",
        "url": f"upload:{upload_id}.jpg",
        "filename": "holiday.jpeg",
        "content_type": "image/jpeg",
        "bytes": len(data),
        "path": f"{upload_id}.jpg",
    }
    status = (await api.get(f"/images/{upload_id}")).json()
    assert (status["kind"], status["status"]) == ("upload", "pending")
    assert status["filename"] == "holiday.jpeg"


@pytest.mark.parametrize(
    ("fmt", "extension", "content_type"),
    [("PNG", "png", "image/png"), ("WEBP", "webp", "image/webp"), ("GIF", "gif", "image/gif")],
)
async def test_the_type_comes_from_the_bytes_not_from_the_name_or_header(
    api: httpx.AsyncClient, api_config: ApiSettings, fmt: str, extension: str, content_type: str
) -> None:
    response = await api.post(
        "/uploads", files={"file": ("looks-like.jpg", image_bytes(fmt), "image/jpeg")}
    )

    assert response.status_code == 202
    assert response.json()["content_type"] == content_type
    assert stored(api_config) == [f"{response.json()['id']}.{extension}"]


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"just some text, honestly", "not an image"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "not an image"),
        (b"", "empty"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 64, "cannot be read"),
        (b"\x89PNG\r\n\x1a\n" + b"garbage" * 10, "cannot be read"),
    ],
)
async def test_files_that_are_not_images_are_415_and_nothing_is_kept(
    api: httpx.AsyncClient, api_config: ApiSettings, job_inbox: Inbox, data: bytes, why: str
) -> None:
    response = await api.post("/uploads", files={"file": ("photo.jpg", data, "image/jpeg")})

    assert response.status_code == 415
    assert why in response.json()["detail"]
    assert stored(api_config) == []
    assert await query(api_config.database_url, "SELECT id FROM jobs") == []
    assert await job_inbox.depth() == 0


async def test_an_upload_over_the_limit_is_413_and_nothing_is_kept(
    api: httpx.AsyncClient, api_config: ApiSettings
) -> None:
    big = image_bytes("PNG", (64, 64)) + b"\x00" * (api_config.max_upload_bytes + 1)

    response = await api.post("/uploads", files={"file": ("big.png", big, "image/png")})

    assert response.status_code == 413
    assert f"limit of {api_config.max_upload_bytes} bytes" in response.json()["detail"]
    assert stored(api_config) == []
    assert await query(api_config.database_url, "SELECT id FROM jobs") == []


async def test_a_file_just_over_the_limit_is_413_even_inside_the_multipart_allowance(
    api: httpx.AsyncClient, api_config: ApiSettings
) -> None:
    head = image_bytes("PNG", (8, 8))
    data = head + b"\x00" * (api_config.max_upload_bytes + 1 - len(head))

    response = await api.post("/uploads", files={"file": ("big.png", data, "image/png")})

    assert response.status_code == 413


async def test_a_streamed_body_without_length_is_cut_off_at_the_limit(
    api: httpx.AsyncClient, api_config: ApiSettings
) -> None:
    boundary = "b0undary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()

    async def chunks() -> AsyncIterator[bytes]:
        yield head + image_bytes("PNG", (8, 8))
        for _ in range(api_config.max_upload_bytes // 65536 + 3):
            yield b"\x00" * 65536
        yield f"\r\n--{boundary}--\r\n".encode()

    response = await api.post(
        "/uploads",
        content=chunks(),
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
    )

    assert response.status_code == 413
    assert stored(api_config) == []


async def test_a_request_without_the_file_field_is_422(api: httpx.AsyncClient) -> None:
    response = await api.post("/uploads", files={"picture": ("a.jpg", image_bytes(), "image/jpeg")})

    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "file"]


async def test_a_request_that_is_not_multipart_is_422(api: httpx.AsyncClient) -> None:
    response = await api.post("/uploads", json={"file": "aGVsbG8="})

    assert response.status_code == 422


async def test_without_a_broker_uploads_are_503_and_nothing_is_kept(
    messaging: CommonSettings, tmp_path: Path
) -> None:
    settings = api_settings(messaging, tmp_path, rabbit_url=CLOSED_PORT_URL)
    async with running_api(settings) as api:
        response = await api.post(
            "/uploads", files={"file": ("a.jpg", image_bytes(), "image/jpeg")}
        )

    assert response.status_code == 503
    assert "RabbitMQ" in response.json()["detail"]
    assert stored(settings) == []
    assert (
        await query(settings.database_url, "SELECT id FROM jobs UNION SELECT id FROM uploads") == []
    )
