"""An origin that throttles (429 or 503 with Retry-After) is waited for, without spending the
job's attempts, at most MAX_THROTTLES times; past that a throttle is a transient failure. Real
worker, real RabbitMQ and PostgreSQL, a loopback origin."""

from __future__ import annotations

from pathlib import Path

from imagebatch.core import headers as h
from imagebatch.core.delays import Backoff, delay_queue_name, ttl_ms_of
from imagebatch.core.settings import CommonSettings
from imagebatch.worker.service import WorkerService
from tests.support.image_server import ImageServer
from tests.support.worker_fixtures import (
    count_status,
    drain_dead_letters,
    files_under,
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


async def test_an_origin_throttling_its_first_requests_is_waited_for_without_spending_attempts(
    messaging: CommonSettings, tmp_path: Path, image_server: ImageServer
) -> None:
    settings = worker_settings(messaging, tmp_path / "data", max_attempts=2)
    url = image_server.url("/throttled/busy-origin.jpg?times=3&retry_after=2")
    await publish(settings, [job_body(url, "patient", output="throttled")])
    async with running_worker(settings) as worker:
        await wait_for(lambda: _completed(settings.database_url, 1))
        metrics = worker.metrics

    row = (await job_rows(settings.database_url))["patient"]
    assert (row["status"], row["attempts"], row["error"]) == ("completed", 1, None)
    assert image_server.hits["/throttled/busy-origin.jpg"] == 4, "three 429s, then the photo"
    assert metrics.sample("worker_tasks_throttled_total") == 3
    assert metrics.sample("worker_tasks_retried_total") == 0, "no attempt spent"
    assert [p.name for p in files_under(settings.output_dir)] == ["patient_256x256.jpg"]
    assert await queue_depth(settings, settings.dlq) == 0


async def test_an_origin_that_always_throttles_ends_after_max_throttles_waits(
    messaging: CommonSettings, tmp_path: Path, image_server: ImageServer
) -> None:
    settings = worker_settings(messaging, tmp_path / "data", max_attempts=2, max_throttles=2)
    url = image_server.url("/throttled/never.jpg?retry_after=1")
    await publish(settings, [job_body(url, "hopeless", output="throttled")])
    async with running_worker(settings) as worker:
        await wait_for(lambda: _dead_letters(settings, 1))
        metrics = worker.metrics

    [dead] = await drain_dead_letters(settings)
    assert dead.headers[h.CODE] == "retries_exhausted"
    assert dead.headers[h.ATTEMPT] == 2
    assert dead.headers[h.THROTTLES] == 2
    assert "HTTP 429" in str(dead.headers[h.REASON])
    assert "still throttled after 2 waits" in str(dead.headers[h.REASON])
    # Two waits (no attempt spent), then two attempts that each count as a transient failure.
    assert image_server.hits["/throttled/never.jpg"] == 4
    assert metrics.sample("worker_tasks_throttled_total") == 2
    assert metrics.sample("worker_tasks_retried_total") == 1
    row = (await job_rows(settings.database_url))["hopeless"]
    assert (row["status"], row["attempts"]) == ("failed", 2)
    assert files_under(settings.output_dir) == []


async def test_a_throttled_job_is_shown_pending_with_why_while_it_waits(
    messaging: CommonSettings, tmp_path: Path, image_server: ImageServer
) -> None:
    settings = worker_settings(messaging, tmp_path / "data", retry_after_max_seconds=600)
    url = image_server.url("/throttled/slow-origin.jpg?retry_after=300")
    await publish(settings, [job_body(url, "waiting", output="throttled")])
    async with running_worker(settings) as worker:
        await wait_for(lambda: _throttled_once(worker))
        row = (await job_rows(settings.database_url))["waiting"]
        assert worker.ready(), "a throttling origin is not an outage of ours"
    assert (row["status"], row["attempts"]) == ("pending", 0)
    assert "HTTP 429" in row["error"]
    assert "Retry-After 300s" in row["error"]
    backoff = Backoff(base=settings.backoff_seconds, cap=settings.backoff_max_seconds)
    tier = backoff.tier(300, longest=settings.retry_after_max_seconds)
    assert 300 <= tier <= 600, "beyond the backoff's cap, as long as the origin asked"
    assert await queue_depth(settings, delay_queue_name(settings.queue, ttl_ms_of(tier))) == 1


async def _completed(database_url: str, n: int) -> bool:
    return await count_status(database_url, "completed") >= n


async def _dead_letters(settings: CommonSettings, n: int) -> bool:
    return await queue_depth(settings, settings.dlq) >= n


async def _throttled_once(worker: WorkerService) -> bool:
    return worker.metrics.sample("worker_tasks_throttled_total") >= 1
