"""Workers stopped mid-batch, politely (SIGTERM, as KEDA scale-down does) and not (kill -9):
every image is still completed exactly once, no partial file is ever visible, and what a
SIGTERM'd worker cannot finish goes back to the queue without spending an attempt.
"""

from __future__ import annotations

import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image

from imagebatch.core.settings import CommonSettings
from imagebatch.devservers.worker_process import WorkerProcess
from imagebatch.worker.settings import WorkerSettings
from imagebatch.worker.storage import TEMP_PREFIX
from tests.support.completions import count_completions, install_completion_counter
from tests.support.image_server import ImageServer
from tests.support.worker_fixtures import (
    count_status,
    files_under,
    job_body,
    job_rows,
    publish,
    queue_depth,
    wait_for,
    worker_settings,
)

BATCH = 400

pytestmark = pytest.mark.slow


@pytest.fixture
async def slow_source() -> AsyncIterator[ImageServer]:
    """Photos that take 40 ms each to arrive, so a batch stays in flight for seconds."""
    async with ImageServer(photo_delay=0.04) as server:
        yield server


@pytest.fixture
async def chaos_settings(messaging: CommonSettings, tmp_path: Path) -> WorkerSettings:
    await install_completion_counter(messaging.database_url)
    return worker_settings(messaging, tmp_path / "data", stale_temp_seconds=0)


async def publish_batch(settings: WorkerSettings, source: ImageServer) -> list[str]:
    ids = [f"img-{i:04d}" for i in range(BATCH)]
    await publish(
        settings,
        [
            job_body(source.url(f"/photo/{i}.jpg"), job_id, output="b")
            for i, job_id in enumerate(ids)
        ],
    )
    return ids


async def completed_at_least(database_url: str, n: int) -> bool:
    return await count_status(database_url, "completed") >= n


def assert_outputs_whole(settings: WorkerSettings, ids: list[str]) -> None:
    files = files_under(settings.output_dir)
    assert not [f for f in files if f.name.startswith(TEMP_PREFIX)], "no temp file left"
    assert sorted(f.name for f in files) == sorted(f"{i}_256x256.jpg" for i in ids)
    for path in files:
        with Image.open(path) as image:
            image.load()  # a partial JPEG would raise here
            assert image.size == (256, 192)


async def a_worker_stopped_mid_batch(
    settings: WorkerSettings, tmp_path: Path, stop: signal.Signals
) -> int:
    """Run a worker until 60 images are done, send it `stop`; its exit code."""
    first = await WorkerProcess(settings, tmp_path / "worker-1.log").start()
    try:
        await first.wait_ready()
        await wait_for(lambda: completed_at_least(settings.database_url, 60))
        first.signal(stop)
        return await first.wait()
    finally:
        await first.close()


async def a_second_worker_finishes_the_batch(
    settings: WorkerSettings, ids: list[str], tmp_path: Path, *, stop: signal.Signals
) -> None:
    """A fresh worker completes what the first left, exits 0 on `stop`, and every image was
    completed exactly once over both."""
    second = await WorkerProcess(settings, tmp_path / "worker-2.log").start()
    try:
        await wait_for(lambda: completed_at_least(settings.database_url, BATCH), within=60)
        second.signal(stop)
        assert await second.wait() == 0
    finally:
        await second.close()
    completions = await count_completions(settings.database_url)
    assert completions == dict.fromkeys(ids, 1), "every image completed exactly once"


async def test_sigterm_mid_batch_finishes_in_flight_images_and_exits_0(
    chaos_settings: WorkerSettings, slow_source: ImageServer, tmp_path: Path
) -> None:
    settings = chaos_settings
    ids = await publish_batch(settings, slow_source)
    assert await a_worker_stopped_mid_batch(settings, tmp_path, signal.SIGTERM) == 0
    log = (tmp_path / "worker-1.log").read_text()
    assert "draining" in log or "stopping" in log

    rows = await job_rows(settings.database_url)
    assert {r["status"] for r in rows.values()} == {"completed"}, "nothing left half-done"
    done = len(rows)
    assert done < BATCH, "stopped mid-batch"
    assert await queue_depth(settings, settings.queue) == BATCH - done, "the rest is queued"
    assert_outputs_whole(settings, sorted(rows))

    await a_second_worker_finishes_the_batch(settings, ids, tmp_path, stop=signal.SIGINT)
    rows = await job_rows(settings.database_url)
    assert {r["attempts"] for r in rows.values()} == {1}, "a drained job is never redone"
    assert_outputs_whole(settings, ids)
    assert sum(slow_source.hits.values()) == BATCH, "each original downloaded once"


async def test_kill_9_mid_batch_loses_nothing_and_leaves_no_partial_file(
    chaos_settings: WorkerSettings, slow_source: ImageServer, tmp_path: Path
) -> None:
    settings = chaos_settings
    ids = await publish_batch(settings, slow_source)
    assert await a_worker_stopped_mid_batch(settings, tmp_path, signal.SIGKILL) == -signal.SIGKILL
    rows = await job_rows(settings.database_url)
    assert len(rows) < BATCH, "killed mid-batch"
    in_flight = [r for r in rows.values() if r["status"] == "processing"]
    assert in_flight, "some jobs were cut off in the middle"

    await a_second_worker_finishes_the_batch(settings, ids, tmp_path, stop=signal.SIGTERM)
    rows = await job_rows(settings.database_url)
    assert {r["status"] for r in rows.values()} == {"completed"}
    assert max(r["attempts"] for r in rows.values()) == 2, "cut-off jobs were redone once"
    assert_outputs_whole(settings, ids)
    assert await queue_depth(settings, settings.queue) == 0


async def test_sigterm_hands_back_the_jobs_it_cannot_finish_without_spending_an_attempt(
    messaging: CommonSettings, tmp_path: Path
) -> None:
    """A scale-down while the origin stalls: the worker finishes the jobs that arrive within
    SHUTDOWN_TIMEOUT_SECONDS, hands the stalled ones back untouched and exits 0; another
    worker completes them on their first counted attempt."""
    stalled, quick = 6, 4
    await install_completion_counter(messaging.database_url)
    settings = worker_settings(
        messaging,
        tmp_path / "data",
        shutdown_timeout_seconds=3.0,
        read_timeout_seconds=120.0,
        download_deadline_seconds=120.0,
        concurrency=16,
    )
    async with ImageServer(photo_delay=1.0) as origin:
        stalled_ids = [f"stalled-{i}" for i in range(stalled)]
        quick_ids = [f"quick-{i}" for i in range(quick)]
        await publish(
            settings,
            [
                job_body(origin.url(f"/gated/{i}.jpg"), j, output="b")
                for i, j in enumerate(stalled_ids)
            ]
            + [
                job_body(origin.url(f"/photo/{i}.jpg"), j, output="b")
                for i, j in enumerate(quick_ids)
            ],
        )
        first = await WorkerProcess(settings, tmp_path / "worker-1.log").start()
        try:
            await first.wait_ready()
            await wait_for(
                lambda: _true(origin.stalled == stalled and origin.active_photos == quick)
            )
            signalled = time.monotonic()
            first.signal(signal.SIGTERM)
            assert await first.wait() == 0
            stopped_in = time.monotonic() - signalled
        finally:
            await first.close()

        rows = await job_rows(settings.database_url)
        assert {(j, rows[j]["status"], rows[j]["attempts"]) for j in quick_ids} == {
            (j, "completed", 1) for j in quick_ids
        }, "what arrived within SHUTDOWN_TIMEOUT was finished"
        assert {(j, rows[j]["status"], rows[j]["attempts"]) for j in stalled_ids} == {
            (j, "pending", 0) for j in stalled_ids
        }, "what could not finish was handed back without spending an attempt"
        returned = await queue_depth(settings, settings.queue)
        assert returned == stalled, "the stalled jobs are back in the queue"

        origin.gate.set()
        second = await WorkerProcess(settings, tmp_path / "worker-2.log").start()
        try:
            await wait_for(
                lambda: completed_at_least(settings.database_url, stalled + quick), within=60
            )
            second.signal(signal.SIGTERM)
            assert await second.wait() == 0
        finally:
            await second.close()
    rows = await job_rows(settings.database_url)
    assert {r["attempts"] for r in rows.values()} == {1}, "each job counted one attempt"
    completions = await count_completions(settings.database_url)
    assert completions == dict.fromkeys(stalled_ids + quick_ids, 1)
    print(
        f"\nSIGTERM with {stalled} stalled and {quick} quick downloads in flight: exited 0 in "
        f"{stopped_in:.2f}s (SHUTDOWN_TIMEOUT 3s), {quick} finished, {returned} handed back "
        "with 0 attempts spent; a second worker completed them (attempts 1)"
    )


async def _true(value: bool) -> bool:
    return value
