"""GET /images, /images/{id} and /images/{id}/thumbnail: state of any job and its result."""

from __future__ import annotations

import io
import json

import httpx
from PIL import Image

from imagebatch.api.settings import ApiSettings
from tests.support.api import complete_like_a_worker, image_bytes, query, seed_images

URL = "http://example.test/a.jpg"


async def new_task(api: httpx.AsyncClient, url: str = URL) -> str:
    response = await api.post("/tasks", json={"url": url})
    assert response.status_code == 202
    task_id: str = response.json()["id"]
    return task_id


async def test_an_unknown_id_is_404_for_status_and_thumbnail(api: httpx.AsyncClient) -> None:
    for path in ("/images/nope", "/images/nope/thumbnail", "/images/123456", "/images/9/thumbnail"):
        response = await api.get(path)

        assert response.status_code == 404, path
        assert "no image or job" in response.json()["detail"]


async def test_the_thumbnail_is_404_until_the_job_completes(api: httpx.AsyncClient) -> None:
    task_id = await new_task(api)

    response = await api.get(f"/images/{task_id}/thumbnail")

    assert response.status_code == 404
    assert "not ready: the job is pending" in response.json()["detail"]
    assert response.headers["retry-after"] == "1"


async def test_a_completed_job_shows_paths_sizes_and_timestamps_and_serves_its_thumbnail(
    api: httpx.AsyncClient, api_config: ApiSettings
) -> None:
    task_id = await new_task(api)
    await complete_like_a_worker(api_config.database_url, api_config.output_dir, task_id)

    status = (await api.get(f"/images/{task_id}")).json()
    thumbnail = await api.get(f"/images/{task_id}/thumbnail")

    assert status["status"] == "completed"
    assert status["outputs"][0]["path"] == f"{task_id}.jpg"
    assert (status["outputs"][0]["width"], status["outputs"][0]["height"]) == (256, 192)
    assert status["source"] == {"bytes": 1234, "width": 640, "height": 480}
    assert status["started_at"]
    assert status["completed_at"]
    assert status["created_at"]
    assert thumbnail.status_code == 200
    assert thumbnail.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(thumbnail.content)) as image:
        assert image.format == "JPEG"
        assert image.size == (256, 192)


async def test_the_content_type_follows_the_output_s_format(
    api: httpx.AsyncClient, api_config: ApiSettings
) -> None:
    task_id = await new_task(api)
    await complete_like_a_worker(
        api_config.database_url,
        api_config.output_dir,
        task_id,
        name=f"tasks/{task_id}/0.webp",
        fmt="WEBP",
    )

    thumbnail = await api.get(f"/images/{task_id}/thumbnail")

    assert thumbnail.headers["content-type"] == "image/webp"
    assert Image.open(io.BytesIO(thumbnail.content)).format == "WEBP"
    assert (await api.get(f"/images/{task_id}/thumbnail", params={"index": 1})).status_code == 404


async def test_an_output_path_outside_output_dir_is_never_served(
    api: httpx.AsyncClient, api_config: ApiSettings
) -> None:
    task_id = await new_task(api)
    secret = api_config.output_dir.parent / "secret.jpg"
    secret.write_bytes(image_bytes())
    for path in ("../secret.jpg", str(secret), "/etc/passwd"):
        await query(
            api_config.database_url,
            "UPDATE jobs SET status = 'completed', outputs = $2::jsonb WHERE id = $1",
            task_id,
            json.dumps([{"path": path}]),
        )

        response = await api.get(f"/images/{task_id}/thumbnail")

        assert response.status_code == 404, path
        assert "missing" in response.json()["detail"]


async def test_a_failed_job_says_why(api: httpx.AsyncClient, api_config: ApiSettings) -> None:
    task_id = await new_task(api)
    await query(
        api_config.database_url,
        "UPDATE jobs SET status = 'failed', attempts = 3, error = 'HTTP 404 from source'"
        " WHERE id = $1",
        task_id,
    )

    status = (await api.get(f"/images/{task_id}")).json()
    thumbnail = await api.get(f"/images/{task_id}/thumbnail")

    assert (status["status"], status["attempts"], status["error"]) == (
        "failed",
        3,
        "HTTP 404 from source",
    )
    assert thumbnail.status_code == 404
    assert "failed (HTTP 404 from source)" in thumbnail.json()["detail"]


async def test_seed_rows_answer_before_they_are_enqueued(
    api: httpx.AsyncClient, api_config: ApiSettings
) -> None:
    [waiting] = await seed_images(api_config.database_url, [URL])
    [done] = await seed_images(api_config.database_url, [URL], processed=True)
    (api_config.output_dir / f"{done}.jpg").write_bytes(image_bytes())

    pending = (await api.get(f"/images/{waiting}")).json()
    completed = (await api.get(f"/images/{done}")).json()
    served = await api.get(f"/images/{done}/thumbnail")

    assert (pending["status"], pending["kind"], pending["url"]) == ("pending", "image", URL)
    assert completed["status"] == "completed"
    assert completed["outputs"] == [
        {"path": f"{done}.jpg", "width": None, "height": None, "bytes": None, "format": "jpeg"}
    ]
    assert served.status_code == 200


async def test_recent_images_come_newest_first_with_counts_per_state(
    api: httpx.AsyncClient, api_config: ApiSettings
) -> None:
    first = await new_task(api, URL + "?1")
    second = await new_task(api, URL + "?2")
    third = await new_task(api, URL + "?3")
    await complete_like_a_worker(api_config.database_url, api_config.output_dir, second)

    recent = (await api.get("/images", params={"limit": 2})).json()

    assert [j["id"] for j in recent["items"]] == [third, second]
    assert recent["items"][1]["thumbnail_url"] == f"/images/{second}/thumbnail"
    assert recent["counts"] == {"pending": 2, "processing": 0, "completed": 1, "failed": 0}
    assert first not in {j["id"] for j in recent["items"]}
    assert (await api.get("/images", params={"limit": 0})).status_code == 422
