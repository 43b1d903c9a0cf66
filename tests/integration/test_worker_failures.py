"""Where every bad input ends, with real RabbitMQ and PostgreSQL: retried, completed on a later
attempt, or dead-lettered at once — always with the reason recorded, in the job's row and in the
dead letter's headers — and how `imagebatch dlq replay` brings dead letters back after a fix.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import pytest

from imagebatch.core import headers as h
from imagebatch.core.settings import CommonSettings
from imagebatch.worker.dlq import replay
from imagebatch.worker.settings import WorkerSettings
from tests.support.canary import Canary
from tests.support.image_server import ImageServer
from tests.support.worker_fixtures import (
    count_status,
    drain_dead_letters,
    files_under,
    job_body,
    job_rows,
    publish,
    queue_depth,
    running_worker,
    wait_for,
    worker_settings,
)

SOURCE_HOST = "127.0.0.3"


@pytest.fixture
async def source() -> AsyncIterator[ImageServer]:
    """The image server on the one loopback address the guard is told to allow."""
    async with ImageServer(host=SOURCE_HOST) as server:
        yield server


@pytest.fixture
def guarded_settings(messaging: CommonSettings, tmp_path: Path) -> WorkerSettings:
    """A worker with the address guard on, as in production, allowing only the source."""
    return worker_settings(
        messaging,
        tmp_path / "data",
        allow_private_sources=False,
        allowed_source_networks=[f"{SOURCE_HOST}/32"],
        concurrency=16,
        prefetch=32,
    )


async def finished(database_url: str, n: int) -> bool:
    done = await count_status(database_url, "completed")
    return done + await count_status(database_url, "failed") >= n


async def test_each_bad_input_ends_where_it_should_with_its_reason(
    guarded_settings: WorkerSettings, source: ImageServer
) -> None:
    settings = guarded_settings
    async with Canary() as canary:
        private = quote(f"http://127.0.0.1:{canary.port}/photo.jpg", safe="")
        cases = {
            "not-found": source.url("/status/404"),
            "flaky": source.url("/flaky/f1.jpg"),
            "timeout": source.url("/slow.jpg"),
            "trickle": source.url("/trickle.jpg"),
            "oversize": source.url("/oversize.jpg"),
            "endless": source.url("/endless.jpg"),
            "lying-length": source.raw_url("/lying-length.jpg"),
            "html": source.url("/html.jpg"),
            "truncated": source.url("/truncated.jpg"),
            "bomb": source.url("/bomb.png"),
            "private-redirect": source.url(f"/redirect?to={private}"),
        }
        bodies = [job_body(url, job_id, output="bad") for job_id, url in cases.items()]
        malformed = [b"{not json", b'{"id": "no-url"}', b'["thumbnail"]']
        await publish(settings, bodies + malformed)

        async with running_worker(settings) as worker:
            await wait_for(lambda: finished(settings.database_url, len(cases)), within=60)
            await wait_for(lambda: _dead_letter_count(settings, len(cases) - 1 + 3), within=20)
            metrics = worker.metrics
        assert canary.connections == [], "the redirect to loopback was never followed"

    rows = await job_rows(settings.database_url)
    dead = {job_id_of(m.body): m for m in await drain_dead_letters(settings)}

    expected = {
        # job id: (dead-letter code, attempts, a word of the reason)
        "not-found": ("http_404", 1, "HTTP 404"),
        "timeout": ("retries_exhausted", 3, "timeout"),
        "trickle": ("retries_exhausted", 3, "deadline"),
        "oversize": ("too_large", 1, "Content-Length"),
        "endless": ("too_large", 1, "cut off while streaming"),
        "lying-length": ("bad_response", 1, "malformed HTTP response"),
        "html": ("not_an_image", 1, "not an image"),
        "truncated": ("corrupt_image", 1, "corrupt"),
        "bomb": ("too_many_pixels", 1, "too many pixels"),
        "private-redirect": ("blocked_address", 1, "loopback"),
    }
    for job_id, (code, attempts, word) in expected.items():
        message = dead[job_id]
        assert message.headers[h.CODE] == code, job_id
        assert message.headers[h.ATTEMPT] == attempts, job_id
        assert word in str(message.headers[h.REASON]), job_id
        assert message.headers[h.QUEUE] == settings.queue
        assert message.body == job_body(cases[job_id], job_id, output="bad"), "body untouched"
        row = rows[job_id]
        assert row["status"] == "failed", job_id
        assert row["attempts"] == attempts, job_id
        assert word in row["error"], job_id
        assert row["error_code"] == code, "the row keeps the code the message carries"

    flaky = rows["flaky"]
    assert (flaky["status"], flaky["attempts"], flaky["error"], flaky["error_code"]) == (
        "completed",
        2,
        None,
        None,
    )
    assert source.hits["/flaky/f1.jpg"] == 2

    for body in malformed:
        message = dead[job_id_of(body)]
        assert message.headers[h.CODE] == "malformed"
        assert message.headers[h.ATTEMPT] == 1
        assert "malformed message" in str(message.headers[h.REASON])
        assert message.body == body
    assert set(rows) == set(cases), "malformed messages create no rows"

    assert metrics.sample("worker_tasks_failed_total", code="malformed") == 3
    assert metrics.sample("worker_tasks_retried_total") == 5, (
        "timeout and trickle twice each, flaky once"
    )
    assert metrics.sample("worker_tasks_processed_total") == 1
    assert [p.name for p in files_under(settings.output_dir)] == ["flaky_256x256.jpg"]
    assert await queue_depth(settings, settings.queue) == 0


def job_id_of(body: bytes) -> str:
    """The job id a dead letter's body names, or the body itself when it names none."""
    try:
        data = json.loads(body)
    except json.JSONDecodeError:
        return body.decode()
    return str(data["id"]) if isinstance(data, dict) and "id" in data else body.decode()


async def _dead_letter_count(settings: CommonSettings, n: int) -> bool:
    return await queue_depth(settings, settings.dlq) >= n


async def test_a_retried_message_keeps_its_original_body_and_counts_attempts_in_our_header(
    messaging: CommonSettings, tmp_path: Path, source: ImageServer
) -> None:
    settings = worker_settings(messaging, tmp_path / "data", max_attempts=2)
    short_form = (
        b'{"url": "' + source.url("/status/503").encode() + b'", "ops": ["thumbnail"], "id": "9"}'
    )
    await publish(settings, [short_form])
    async with running_worker(settings):
        await wait_for(lambda: _dead_letter_count(settings, 1))
    [dead] = await drain_dead_letters(settings)
    assert dead.body == short_form, "re-published byte for byte (the short form survives)"
    assert dead.headers[h.ATTEMPT] == 2
    assert dead.headers[h.CODE] == "retries_exhausted"
    assert "HTTP 503" in str(dead.headers[h.REASON])
    assert source.hits["/status/503"] == 2


async def test_replay_sends_dead_letters_back_after_a_fix(
    messaging: CommonSettings, tmp_path: Path, source: ImageServer
) -> None:
    settings = worker_settings(messaging, tmp_path / "data")
    await publish(
        settings,
        [job_body(f"upload:later-{i}.jpg", f"later-{i}", output="replayed") for i in range(3)],
    )
    async with running_worker(settings):
        await wait_for(lambda: _dead_letter_count(settings, 3))
        rows = await job_rows(settings.database_url)
        assert {r["status"] for r in rows.values()} == {"failed"}
        assert "not found" in rows["later-0"]["error"]

        settings.uploads_dir.mkdir(parents=True)
        for i in range(3):
            (settings.uploads_dir / f"later-{i}.jpg").write_bytes(source.photo(i))
        assert await replay(settings, limit=2) == 2
        await wait_for(lambda: _completed(settings.database_url, 2))
        assert await queue_depth(settings, settings.dlq) == 1

        env = {**os.environ, **_env(settings)}
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "imagebatch.cli",
            "dlq",
            "replay",
            env=env,
            stdout=asyncio.subprocess.PIPE,
        )
        stdout, _ = await process.communicate()
        assert process.returncode == 0
        assert b"replayed 1 message" in stdout
        await wait_for(lambda: _completed(settings.database_url, 3))

    rows = await job_rows(settings.database_url)
    assert {r["status"] for r in rows.values()} == {"completed"}
    assert rows["later-0"]["attempts"] == 2
    assert await queue_depth(settings, settings.dlq) == 0
    assert len(files_under(settings.output_dir / "replayed")) == 3


async def _completed(database_url: str, n: int) -> bool:
    return await count_status(database_url, "completed") >= n


def _env(settings: CommonSettings) -> dict[str, str]:
    return {
        "RABBIT_URL": settings.rabbit_url,
        "EXCHANGE": settings.exchange,
        "QUEUE": settings.queue,
        "DLX": settings.dlx,
        "DLQ": settings.dlq,
        "ROUTING_KEY": settings.routing_key,
    }
