"""POST /tasks and GET /tasks/{id}: single images by URL, with idempotent retries."""

from __future__ import annotations

import asyncio
import uuid
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
    complete_like_a_worker,
    query,
    running_api,
)

URL = "http://images.example.test/cats/tabby.jpg"


async def test_a_task_is_recorded_then_published_as_a_short_form_job(
    api: httpx.AsyncClient, job_inbox: Inbox, api_config: ApiSettings
) -> None:
    response = await api.post("/tasks", json={"url": URL, "ops": ["thumbnail"]})

    assert response.status_code == 202
    accepted = response.json()
    task_id = accepted["id"]
    assert uuid.UUID(task_id).version == 4
    assert accepted == {
        "id": task_id,
        "status": "pending",
        "status_url": f"/tasks/{task_id}",
        "thumbnail_url": f"/images/{task_id}/thumbnail",
    }
    assert response.headers["location"] == f"/tasks/{task_id}"

    [message] = await job_inbox.take(1)
    assert body(message) == {
        "url": URL,
        "ops": ["thumbnail"],
        "id": task_id,
        "batch": None,
        "output": None,
    }
    assert message.message_id == task_id
    assert message.content_type == "application/json"
    assert message.delivery_mode == 2  # persistent

    [row] = await query(api_config.database_url, "SELECT * FROM jobs WHERE id = $1", task_id)
    assert (row["kind"], row["status"], row["url"]) == ("task", "pending", URL)
    assert row["published_at"] is not None


async def test_ops_default_to_one_thumbnail(api: httpx.AsyncClient, job_inbox: Inbox) -> None:
    response = await api.post("/tasks", json={"url": URL})

    assert response.status_code == 202
    [message] = await job_inbox.take(1)
    assert body(message)["ops"] == ["thumbnail"]


async def test_full_operation_objects_are_passed_on(
    api: httpx.AsyncClient, job_inbox: Inbox
) -> None:
    ops = [{"thumbnail": {"width": 64, "height": 64, "fit": "cover", "format": "webp"}}]

    response = await api.post("/tasks", json={"url": URL, "ops": ops})

    assert response.status_code == 202
    [message] = await job_inbox.take(1)
    [op] = body(message)["ops"]
    assert op["thumbnail"] | {"quality": 85} == op["thumbnail"]
    assert (op["thumbnail"]["width"], op["thumbnail"]["format"]) == (64, "webp")


async def test_get_task_follows_the_worker(
    api: httpx.AsyncClient, api_config: ApiSettings, job_inbox: Inbox
) -> None:
    task_id = (await api.post("/tasks", json={"url": URL})).json()["id"]

    pending = (await api.get(f"/tasks/{task_id}")).json()
    assert pending["status"] == "pending"
    assert pending["kind"] == "task"
    assert pending["url"] == URL
    assert pending["outputs"] == []
    assert pending["thumbnail_url"] is None
    assert pending["created_at"]
    assert pending["published_at"]

    await complete_like_a_worker(api_config.database_url, api_config.output_dir, task_id)

    done = (await api.get(f"/tasks/{task_id}")).json()
    assert done["status"] == "completed"
    assert done["outputs"] == [
        {
            "path": f"{task_id}.jpg",
            "width": 256,
            "height": 192,
            "bytes": done["outputs"][0]["bytes"],
            "format": "jpeg",
        }
    ]
    assert done["source"] == {"bytes": 1234, "width": 640, "height": 480}
    assert done["thumbnail_url"] == f"/images/{task_id}/thumbnail"
    assert done["completed_at"] is not None


async def test_the_same_idempotency_key_returns_the_same_task_and_publishes_once(
    api: httpx.AsyncClient, job_inbox: Inbox, api_config: ApiSettings
) -> None:
    headers = {"Idempotency-Key": "order-4711"}
    first = await api.post("/tasks", json={"url": URL, "ops": ["thumbnail"]}, headers=headers)
    again = await api.post("/tasks", json={"ops": ["thumbnail"], "url": URL}, headers=headers)

    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    await job_inbox.take(1)
    assert await job_inbox.depth() == 0
    rows = await query(api_config.database_url, "SELECT id FROM jobs WHERE kind = 'task'")
    assert [r["id"] for r in rows] == [first.json()["id"]]


async def test_the_same_idempotency_key_with_another_body_is_a_conflict(
    api: httpx.AsyncClient, job_inbox: Inbox
) -> None:
    headers = {"Idempotency-Key": "order-4712"}
    first = await api.post("/tasks", json={"url": URL}, headers=headers)

    other = await api.post("/tasks", json={"url": URL + "?v=2"}, headers=headers)

    assert other.status_code == 409
    detail = other.json()["detail"]
    assert "order-4712" in detail
    assert first.json()["id"] in detail
    assert "new key" in detail
    await job_inbox.take(1)
    assert await job_inbox.depth() == 0


async def test_different_keys_make_different_tasks(api: httpx.AsyncClient) -> None:
    one = await api.post("/tasks", json={"url": URL}, headers={"Idempotency-Key": "a"})
    two = await api.post("/tasks", json={"url": URL}, headers={"Idempotency-Key": "b"})

    assert one.json()["id"] != two.json()["id"]


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://example.test/a.jpg", "http"),
        ("file:///etc/passwd", "http"),
        ("example.test/a.jpg", "http"),
        ("http://", "host"),
        ("http://exa mple.test/a.jpg", "percent-encode"),
        ("http://example.test/ä.jpg", "ASCII"),
        ("http://example.test/" + "a" * 2100, "2048"),
        ("", "at least 1"),
        ("http://[zz::1]/a.jpg", "url"),
    ],
)
async def test_urls_a_worker_cannot_fetch_are_refused_with_the_reason(
    api: httpx.AsyncClient, url: str, why: str
) -> None:
    response = await api.post("/tasks", json={"url": url})

    assert response.status_code == 422
    problem = response.json()
    assert problem["detail"].startswith("invalid request: body.url")
    assert why in problem["detail"]
    assert problem["errors"][0]["loc"] == ["body", "url"]


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"url": URL, "ops": []},
        {"url": URL, "ops": ["resize"]},
        {"url": URL, "ops": [{"thumbnail": {"width": 0}}]},
        {"url": URL, "colour": "red"},
        [URL],
    ],
)
async def test_malformed_task_requests_are_422(api: httpx.AsyncClient, payload: object) -> None:
    response = await api.post("/tasks", json=payload)

    assert response.status_code == 422
    assert response.json()["detail"].startswith("invalid request")


async def test_a_body_that_is_not_json_is_422(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/tasks", content=b"{not json", headers={"content-type": "application/json"}
    )

    assert response.status_code == 422


async def test_an_unknown_task_is_404(api: httpx.AsyncClient) -> None:
    response = await api.get(f"/tasks/{uuid.uuid4()}")

    assert response.status_code == 404
    assert "no task" in response.json()["detail"]


async def test_a_malformed_task_id_is_422(api: httpx.AsyncClient) -> None:
    response = await api.get("/tasks/not an id!")

    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["path", "task_id"]


async def test_without_a_broker_tasks_are_refused_with_503_and_nothing_is_left_behind(
    messaging: CommonSettings, tmp_path: Path
) -> None:
    settings = api_settings(messaging, tmp_path, rabbit_url=CLOSED_PORT_URL)
    async with running_api(settings) as api:
        response = await api.post("/tasks", json={"url": URL}, headers={"Idempotency-Key": "k1"})
        ready = await api.get("/readyz")

    assert response.status_code == 503
    assert "RabbitMQ" in response.json()["detail"]
    assert response.headers["retry-after"]
    assert ready.status_code == 503
    assert ready.json()["checks"]["postgresql"] == "ok"
    assert "RabbitMQ" in ready.json()["checks"]["rabbitmq"]
    assert await query(settings.database_url, "SELECT id FROM jobs") == []


async def test_a_key_whose_publish_failed_can_be_retried_once_the_broker_is_back(
    messaging: CommonSettings, tmp_path: Path, job_inbox: Inbox
) -> None:
    down = api_settings(messaging, tmp_path, rabbit_url=CLOSED_PORT_URL)
    async with running_api(down) as api:
        refused = await api.post("/tasks", json={"url": URL}, headers={"Idempotency-Key": "k2"})
    async with running_api(api_settings(messaging, tmp_path)) as api:
        retried = await api.post("/tasks", json={"url": URL}, headers={"Idempotency-Key": "k2"})

    assert (refused.status_code, retried.status_code) == (503, 202)
    [message] = await job_inbox.take(1)
    assert body(message)["id"] == retried.json()["id"]


async def test_concurrent_retries_with_one_key_make_one_task(
    api: httpx.AsyncClient, job_inbox: Inbox, api_config: ApiSettings
) -> None:
    headers = {"Idempotency-Key": "burst-1"}

    responses = await asyncio.gather(
        *(api.post("/tasks", json={"url": URL}, headers=headers) for _ in range(5))
    )

    assert {r.status_code for r in responses} == {202}
    assert len({r.json()["id"] for r in responses}) == 1
    await job_inbox.take(1)
    assert await job_inbox.depth() == 0
    assert len(await query(api_config.database_url, "SELECT id FROM jobs")) == 1
