"""A soak: many small images through two workers while one of them is killed with SIGKILL every
~20 s and started again. Nothing is lost, no job completes (and so writes its outputs) twice,
no output or temp file is left over, and the worker that lives through it all keeps a flat
resident set.

SOAK_IMAGES sets the size (default 100,000, what `make test` runs; a quick look:
`SOAK_IMAGES=2000 .venv/bin/pytest tests/chaos/test_worker_soak.py -s`), and SOAK_KILL_SECONDS
the kill interval (20).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

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
    publish,
    queue_depth,
    worker_settings,
)

IMAGES = int(os.environ.get("SOAK_IMAGES", "100000"))
KILL_EVERY = float(os.environ.get("SOAK_KILL_SECONDS", "20"))
PUBLISH_WINDOW = 500


def rss_mib(worker: WorkerProcess) -> float:
    assert worker.process is not None
    for line in Path(f"/proc/{worker.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.timeout(600 + IMAGES // 10)
async def test_two_workers_one_killed_every_20s_lose_nothing_and_complete_each_image_once(
    messaging: CommonSettings, tmp_path: Path
) -> None:
    await install_completion_counter(messaging.database_url)
    settings: WorkerSettings = worker_settings(
        messaging,
        tmp_path / "data",
        concurrency=8,
        prefetch=32,
        transform_threads=1,
        fsync=False,  # a killed process, not a lost machine: the page cache keeps its writes
        stale_temp_seconds=0,
        read_timeout_seconds=5.0,
        download_deadline_seconds=10.0,
    )
    ids = [f"s{i:06d}" for i in range(IMAGES)]
    async with ImageServer(photo_size=(64, 48)) as origin:
        began = time.monotonic()
        await publish(
            settings,
            [job_body(origin.url(f"/photo/{i}.jpg"), j, output="soak") for i, j in enumerate(ids)],
            message_ids=ids,
            window=PUBLISH_WINDOW,
        )
        published_in = time.monotonic() - began
        steady = await WorkerProcess(settings, tmp_path / "steady.log").start()
        victim = await WorkerProcess(settings, tmp_path / "victim-0.log").start()
        kills = 0
        try:
            await steady.wait_ready(within=120)
            rss_start = rss_mib(steady)
            began = time.monotonic()
            next_kill = began + KILL_EVERY
            rss_warm = None
            while (done := await count_status(settings.database_url, "completed")) < IMAGES:
                assert time.monotonic() - began < 3600, f"stuck at {done}/{IMAGES}"
                if rss_warm is None and done >= IMAGES // 10:
                    rss_warm = rss_mib(steady)
                # Every KILL_EVERY seconds, and at a quarter done at the latest (a fast
                # machine may not need 20 s for the whole soak).
                if time.monotonic() >= next_kill or (kills == 0 and done >= IMAGES // 4):
                    victim.signal(signal.SIGKILL)
                    await victim.wait()
                    kills += 1
                    victim = await WorkerProcess(settings, tmp_path / f"victim-{kills}.log").start()
                    next_kill = time.monotonic() + KILL_EVERY
                await asyncio.sleep(0.5)
            took = time.monotonic() - began
            rss_end = rss_mib(steady)
            for worker in (steady, victim):
                await worker.wait_ready(within=120)  # a victim just started has no handler yet
                worker.signal(signal.SIGTERM)
                assert await worker.wait() == 0
        finally:
            await steady.close()
            await victim.close()

    completions = await count_completions(settings.database_url)
    assert len(completions) == IMAGES, "0 lost"
    assert set(completions.values()) == {1}, "no image completed, so written, twice"
    files = files_under(settings.output_dir)
    assert not [f for f in files if f.name.startswith(TEMP_PREFIX)], "no temp file left"
    assert len(files) == IMAGES, "one output per image, nothing else"
    assert await queue_depth(settings, settings.queue) == 0
    assert await queue_depth(settings, settings.dlq) == 0, "nothing dead-lettered"
    assert kills >= max(1, int(took // KILL_EVERY) - 1), "the victim was killed all along"
    assert rss_warm is not None
    assert rss_end < rss_warm * 1.25, "the steady worker's memory is flat"
    print(
        f"\nsoak: {IMAGES} images (published in {published_in:.0f}s) through 2 workers in "
        f"{took:.0f}s ({IMAGES / took:.0f}/s), one SIGKILLed {kills} times (every "
        f"{KILL_EVERY:.0f}s): 0 lost, each completed once, {len(files)} outputs; steady "
        f"worker RSS {rss_start:.0f} MiB when ready, {rss_warm or 0:.0f} MiB at 10 %, "
        f"{rss_end:.0f} MiB at the end"
    )
