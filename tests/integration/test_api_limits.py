"""Per-caller limits on the work a caller can ask for: tasks and uploads per minute, upload bytes
per minute and unfinished tasks. Past a limit the caller gets 429 with `Retry-After`; another
caller is not affected."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from imagebatch.core.settings import CommonSettings
from tests.support.api import api_settings, complete_like_a_worker, image_bytes, running_api

TOKEN_A = "team-a-token-0123456789abcdef"
TOKEN_B = "team-b-token-fedcba9876543210"
A = {"Authorization": f"Bearer {TOKEN_A}"}
B = {"Authorization": f"Bearer {TOKEN_B}"}


def limited_settings(messaging: CommonSettings, tmp_path: Path, **limits: Any) -> Any:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{TOKEN_A} team-a\n{TOKEN_B} team-b\n")
    values: dict[str, Any] = {
        "rate_limit_per_minute": 0,
        "upload_bytes_per_minute": 0,
        "max_open_tasks": 0,
        **limits,
    }
    return api_settings(messaging, tmp_path, auth_mode="token", auth_tokens_file=tokens, **values)


def task(n: int) -> dict[str, Any]:
    return {"url": f"https://example.test/{n}.jpg"}


def assert_limited(response: httpx.Response, words: str) -> None:
    assert response.status_code == 429, response.text
    assert int(response.headers["retry-after"]) >= 1
    assert words in response.json()["detail"]


async def test_past_its_requests_per_minute_a_caller_gets_429_and_another_does_not(
    messaging: CommonSettings, tmp_path: Path
) -> None:
    settings = limited_settings(messaging, tmp_path, rate_limit_per_minute=3)
    async with running_api(settings) as api:
        allowed = [
            await api.post("/tasks", json=task(1), headers=A),
            await api.post("/uploads", files={"file": ("a.jpg", image_bytes())}, headers=A),
            await api.post("/tasks", json=task(2), headers=A),
        ]
        past = [
            await api.post("/tasks", json=task(3), headers=A),
            await api.post("/uploads", files={"file": ("b.jpg", image_bytes())}, headers=A),
        ]
        other = await api.post("/tasks", json=task(4), headers=B)
        reading = await api.get(allowed[0].headers["location"], headers=A)

    assert [r.status_code for r in allowed] == [202, 202, 202]
    for response in past:
        assert_limited(response, "too many tasks, uploads and enqueues from this caller")
        assert response.headers["retry-after"] == "20"  # 3 a minute: one every 20 s
    assert other.status_code == 202
    assert reading.status_code == 200  # reads are not limited


async def test_enqueue_counts_in_the_caller_s_requests_per_minute(
    messaging: CommonSettings, tmp_path: Path
) -> None:
    settings = limited_settings(messaging, tmp_path, rate_limit_per_minute=2)
    async with running_api(settings) as api:
        allowed = [
            await api.post("/tasks", json=task(1), headers=A),
            await api.post("/enqueue", headers=A),
        ]
        past = await api.post("/enqueue", headers=A)
        other = await api.post("/enqueue", headers=B)

    assert [r.status_code for r in allowed] == [202, 200]
    assert_limited(past, "too many tasks, uploads and enqueues from this caller")
    assert other.status_code == 200


async def test_past_its_upload_bytes_per_minute_a_caller_gets_429_and_another_does_not(
    messaging: CommonSettings, tmp_path: Path
) -> None:
    photo = image_bytes()
    settings = limited_settings(messaging, tmp_path, upload_bytes_per_minute=3 * len(photo))
    async with running_api(settings) as api:
        first = await api.post("/uploads", files={"file": ("a.jpg", photo)}, headers=A)
        second = await api.post("/uploads", files={"file": ("b.jpg", photo)}, headers=A)
        third = await api.post("/uploads", files={"file": ("c.jpg", photo)}, headers=A)
        other = await api.post("/uploads", files={"file": ("d.jpg", photo)}, headers=B)
        tasks = await api.post("/tasks", json=task(1), headers=A)

    assert (first.status_code, second.status_code) == (202, 202)
    assert_limited(third, "too many upload bytes from this caller")
    assert other.status_code == 202
    assert tasks.status_code == 202  # bytes limit uploads only


async def test_past_its_unfinished_tasks_a_caller_gets_429_until_some_finish(
    messaging: CommonSettings, tmp_path: Path
) -> None:
    settings = limited_settings(messaging, tmp_path, max_open_tasks=2)
    async with running_api(settings) as api:
        first = await api.post("/tasks", json=task(1), headers=A)
        await api.post("/uploads", files={"file": ("a.jpg", image_bytes())}, headers=A)
        full = [
            await api.post("/tasks", json=task(2), headers=A),
            await api.post("/uploads", files={"file": ("b.jpg", image_bytes())}, headers=A),
        ]
        replay = await api.post("/tasks", json=task(9), headers={**A, "Idempotency-Key": "k-1"})
        other = await api.post("/tasks", json=task(3), headers=B)
        await complete_like_a_worker(settings.database_url, settings.output_dir, first.json()["id"])
        after = await api.post("/tasks", json=task(4), headers=A)

    for response in full:
        assert_limited(response, "already has 2 unfinished tasks and uploads (MAX_OPEN_TASKS)")
    assert replay.status_code == 429
    assert other.status_code == 202
    assert after.status_code == 202


async def test_an_idempotent_retry_is_not_refused_at_the_limit_and_keys_are_per_caller(
    messaging: CommonSettings, tmp_path: Path
) -> None:
    settings = limited_settings(messaging, tmp_path, max_open_tasks=1)
    async with running_api(settings) as api:
        key = {"Idempotency-Key": "same-key"}
        first = await api.post("/tasks", json=task(1), headers={**A, **key})
        retry = await api.post("/tasks", json=task(1), headers={**A, **key})
        stolen = await api.post("/tasks", json=task(1), headers={**B, **key})

    assert first.status_code == 202
    assert retry.status_code == 202
    assert retry.json()["id"] == first.json()["id"]
    assert stolen.status_code == 409
    assert first.json()["id"] not in stolen.text


async def test_without_authentication_the_limits_still_apply_per_address(
    messaging: CommonSettings, tmp_path: Path
) -> None:
    settings = api_settings(messaging, tmp_path, auth_mode="none", rate_limit_per_minute=1)
    async with running_api(settings) as api:
        first = await api.post("/tasks", json=task(1))
        second = await api.post("/tasks", json=task(2))

    assert first.status_code == 202
    assert_limited(second, "too many tasks, uploads and enqueues")
