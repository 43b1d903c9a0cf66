"""POST /enqueue: unprocessed seed rows of `images` become jobs, each published once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from imagebatch.api.settings import ApiSettings
from imagebatch.core.settings import CommonSettings
from tests.support.api import (
    CLOSED_PORT_URL,
    Inbox,
    api_settings,
    body,
    query,
    running_api,
    seed_images,
)


def urls(n: int, start: int = 0) -> list[str]:
    return [f"http://seed.example.test/{i}.jpg" for i in range(start, start + n)]


async def test_enqueue_publishes_the_oldest_unprocessed_rows_as_short_form_jobs(
    api: httpx.AsyncClient, api_config: ApiSettings, job_inbox: Inbox
) -> None:
    ids = await seed_images(api_config.database_url, urls(5))

    response = await api.post("/enqueue", params={"limit": 3})

    assert response.status_code == 200
    assert response.json() == {"enqueued": 3, "limit": 3}
    messages = await job_inbox.take(3)
    assert sorted((body(m) for m in messages), key=lambda b: int(b["id"])) == [
        {"url": url, "ops": ["thumbnail"], "id": str(i), "batch": None, "output": None}
        for i, url in zip(ids[:3], urls(3), strict=True)
    ]
    assert {m.message_id for m in messages} == {str(i) for i in ids[:3]}
    jobs = await query(api_config.database_url, "SELECT * FROM jobs ORDER BY image_id")
    assert [(j["id"], j["kind"], j["image_id"], j["status"]) for j in jobs] == [
        (str(i), "image", i, "pending") for i in ids[:3]
    ]
    assert all(j["published_at"] is not None for j in jobs)


async def test_rows_already_queued_or_processed_are_not_published_again(
    api: httpx.AsyncClient, api_config: ApiSettings, job_inbox: Inbox
) -> None:
    await seed_images(api_config.database_url, urls(2, 100), processed=True)
    fresh = await seed_images(api_config.database_url, urls(4))

    first = await api.post("/enqueue", params={"limit": 3})
    second = await api.post("/enqueue", params={"limit": 3})
    third = await api.post("/enqueue", params={"limit": 3})

    assert [r.json()["enqueued"] for r in (first, second, third)] == [3, 1, 0]
    messages = await job_inbox.take(4)
    assert sorted(int(body(m)["id"]) for m in messages) == fresh
    assert await job_inbox.depth() == 0


async def test_the_default_limit_is_200(
    api: httpx.AsyncClient, api_config: ApiSettings, job_inbox: Inbox
) -> None:
    await seed_images(api_config.database_url, urls(230))

    response = await api.post("/enqueue")

    assert response.json() == {"enqueued": 200, "limit": 200}
    await job_inbox.take(200)


async def test_rows_whose_url_is_not_http_are_skipped(
    api: httpx.AsyncClient, api_config: ApiSettings, job_inbox: Inbox
) -> None:
    await seed_images(api_config.database_url, ["not a url", "ftp://x.test/a.jpg"])
    [good] = await seed_images(api_config.database_url, urls(1))

    response = await api.post("/enqueue")

    assert response.json()["enqueued"] == 1
    [message] = await job_inbox.take(1)
    assert body(message)["id"] == str(good)


async def test_a_limit_outside_the_bounds_is_422(api: httpx.AsyncClient) -> None:
    for limit in ("0", "-1", "1001", "many"):
        response = await api.post("/enqueue", params={"limit": limit})

        assert response.status_code == 422
        assert response.json()["errors"][0]["loc"] == ["query", "limit"]


async def test_rows_whose_publish_failed_are_taken_again_by_the_next_enqueue(
    messaging: CommonSettings, tmp_path: Path, job_inbox: Inbox
) -> None:
    down = api_settings(messaging, tmp_path, rabbit_url=CLOSED_PORT_URL)
    ids = await seed_images(down.database_url, urls(3))

    async with running_api(down) as api:
        refused = await api.post("/enqueue")
    assert refused.status_code == 503
    assert "published 0 of 3" in refused.json()["detail"]
    failed = await query(down.database_url, "SELECT status, error FROM jobs")
    assert [r["status"] for r in failed] == ["failed"] * 3
    assert all(r["error"].startswith("not published") for r in failed)

    async with running_api(api_settings(messaging, tmp_path)) as api:
        retried = await api.post("/enqueue")

    assert retried.json()["enqueued"] == 3
    assert sorted(int(body(m)["id"]) for m in await job_inbox.take(3)) == ids
    statuses = await query(down.database_url, "SELECT status, error FROM jobs")
    assert {(r["status"], r["error"]) for r in statuses} == {("pending", None)}


async def test_a_job_the_worker_failed_is_left_to_the_worker_s_retries_and_dlq(
    api: httpx.AsyncClient, api_config: ApiSettings, job_inbox: Inbox
) -> None:
    [image_id] = await seed_images(api_config.database_url, urls(1))
    await api.post("/enqueue")
    await job_inbox.take(1)
    await query(
        api_config.database_url,
        "UPDATE jobs SET status = 'failed', error = 'http 404' WHERE id = $1",
        str(image_id),
    )

    again = await api.post("/enqueue")

    assert again.json()["enqueued"] == 0


async def test_a_row_a_batch_item_is_working_on_is_not_enqueued(
    api: httpx.AsyncClient, api_config: ApiSettings, job_inbox: Inbox
) -> None:
    busy, free = await seed_images(api_config.database_url, urls(2))
    await query(
        api_config.database_url,
        "INSERT INTO jobs (id, kind, url, image_id, batch, status)"
        " VALUES ('default.b.1', 'batch', 'http://x.test/1.jpg', $1, 'default/b', 'processing')",
        busy,
    )

    response = await api.post("/enqueue")

    assert response.json()["enqueued"] == 1
    [message] = await job_inbox.take(1)
    assert body(message)["id"] == str(free)


async def test_concurrent_enqueues_publish_each_row_once(
    api: httpx.AsyncClient, api_config: ApiSettings, job_inbox: Inbox
) -> None:
    ids = await seed_images(api_config.database_url, urls(60))

    responses = await asyncio.gather(
        *(api.post("/enqueue", params={"limit": 25}) for _ in range(4))
    )
    # A call racing another may take fewer rows than its limit ("up to N"); one more takes the rest.
    rest = await api.post("/enqueue", params={"limit": 60})

    assert sum(r.json()["enqueued"] for r in [*responses, rest]) == 60
    messages = await job_inbox.take(60)
    assert sorted(int(body(m)["id"]) for m in messages) == ids
    assert await job_inbox.depth() == 0
