"""A full disk is an outage of ours, not the images' fault: with OUTPUT_DIR on a small
filesystem that is full, the worker dead-letters nothing and spends no attempt, says why it is
not ready (`/readyz`, a metric), leaves no partial file — and once space is freed the batch
completes. Real worker, RabbitMQ and PostgreSQL; OUTPUT_DIR on a tmpfs mounted with `size=`."""

from __future__ import annotations

import errno
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from imagebatch.core.settings import CommonSettings
from imagebatch.worker.service import WorkerService
from tests.support.image_server import ImageServer
from tests.support.worker_fixtures import (
    count_status,
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

JOBS = 4


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 512 KiB tmpfs, unmounted afterwards (mounting needs root: skipped otherwise)."""
    mountpoint = tmp_path / "small"
    mountpoint.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k,mode=0755", "tmpfs", str(mountpoint)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs: {mounted.stderr.decode().strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def fill(folder: Path) -> Path:
    """A file taking every free byte of `folder`'s filesystem."""
    filler = folder / "filler.bin"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while True:
            try:
                os.write(fd, b"\0" * 4096)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                return filler
    finally:
        os.close(fd)


async def readyz(worker: WorkerService) -> tuple[int, dict[str, object]]:
    url = f"http://127.0.0.1:{worker.health.port}/readyz"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, json.loads(await response.text())


async def test_a_full_disk_spends_no_attempt_and_the_batch_completes_once_space_is_freed(
    messaging: CommonSettings, small_disk: Path, image_server: ImageServer
) -> None:
    output = small_disk / "data"
    output.mkdir()
    (output / "full").mkdir()
    filler = fill(small_disk)
    settings = worker_settings(messaging, output, max_attempts=2)
    bodies = [
        job_body(image_server.url(f"/photo/{i}.jpg"), f"disk-{i}", output="full")
        for i in range(JOBS)
    ]
    await publish(settings, bodies)

    async with running_worker(settings) as worker:
        await wait_for(lambda: _disk_errors(worker, JOBS))
        status, body = await readyz(worker)
        assert status == 503
        assert str(body["reason"]).startswith("disk unavailable: cannot write full/disk-")
        assert "No space left on device" in str(body["reason"])
        rows = await job_rows(settings.database_url)
        assert {row["status"] for row in rows.values()} <= {"pending", "processing"}
        assert await queue_depth(settings, settings.dlq) == 0
        assert files_under(output) == [], "no partial file, no temp file"

        filler.unlink()
        await wait_for(lambda: _completed(settings.database_url, JOBS))
        await wait_for(lambda: _ready(worker))
        metrics = worker.metrics

    rows = await job_rows(settings.database_url)
    assert {row["attempts"] for row in rows.values()} == {1}, "no attempt spent on the outage"
    assert {row["error"] for row in rows.values()} == {None}
    assert await queue_depth(settings, settings.dlq) == 0
    assert metrics.sample("worker_tasks_retried_total") == 0
    assert metrics.sample("worker_tasks_failed_total", code="retries_exhausted") == 0
    assert metrics.sample("imagebatch_worker_dependency_errors_total", dependency="disk") >= JOBS
    assert len(files_under(output / "full")) == JOBS
    assert not [p for p in files_under(output) if p.name.startswith(".ibtmp-")]


async def _disk_errors(worker: WorkerService, n: int) -> bool:
    found = worker.metrics.sample("imagebatch_worker_dependency_errors_total", dependency="disk")
    return found >= n


async def _completed(database_url: str, n: int) -> bool:
    return await count_status(database_url, "completed") >= n


async def _ready(worker: WorkerService) -> bool:
    return (await readyz(worker))[0] == 200
