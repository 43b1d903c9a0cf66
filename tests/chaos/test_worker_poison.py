"""A poison message: a job whose processing kills the worker every time (here, the test
SIGKILLs the worker whenever that job's download is in flight). It is dead-lettered with code
`delivery_limit` once `MAX_ATTEMPTS` deliveries died with it, and every other job of its batch
completes — exactly once — on classic and quorum queues alike.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from imagebatch.core.settings import CommonSettings
from imagebatch.devservers.worker_process import WorkerProcess
from imagebatch.worker.settings import WorkerSettings
from tests.support.completions import count_completions, install_completion_counter
from tests.support.image_server import ImageServer
from tests.support.worker_fixtures import (
    count_status,
    drain_dead_letters,
    job_body,
    job_rows,
    publish,
    queue_depth,
    wait_for,
    worker_settings,
)

pytestmark = pytest.mark.slow

MAX_ATTEMPTS = 3
BATCH = 60
POISON = "/slow.jpg"  # answers after 60 s: the worker is killed long before


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
async def test_a_job_that_kills_every_worker_is_dead_lettered_and_the_batch_completes(
    messaging: CommonSettings, tmp_path: Path, queue_type: str
) -> None:
    await install_completion_counter(messaging.database_url)
    settings: WorkerSettings = worker_settings(
        messaging,
        tmp_path / "data",
        queue_type=queue_type,
        max_attempts=MAX_ATTEMPTS,
        read_timeout_seconds=120.0,
        download_deadline_seconds=120.0,
    )
    async with ImageServer(photo_delay=0.02) as source:
        ids = [f"img-{i:03d}" for i in range(BATCH)]
        bodies = [
            job_body(source.url(f"/photo/{i}.jpg"), job_id, output="b")
            for i, job_id in enumerate(ids)
        ]
        bodies.insert(5, job_body(source.url(POISON), "poison", output="b"))
        await publish(settings, bodies)

        async def poison_in_flight_or_all_done() -> bool:
            if source.hits[POISON] > kills:
                return True
            failed = await count_status(settings.database_url, "failed")
            completed = await count_status(settings.database_url, "completed")
            return failed == 1 and completed == BATCH

        kills = 0
        for run in range(1, MAX_ATTEMPTS + 3):
            worker = await WorkerProcess(settings, tmp_path / f"worker-{run}.log").start()
            try:
                await wait_for(poison_in_flight_or_all_done, within=60)
                if source.hits[POISON] > kills:
                    worker.signal(signal.SIGKILL)
                    assert await worker.wait() == -signal.SIGKILL
                    kills += 1
                    continue
                worker.signal(signal.SIGTERM)
                assert await worker.wait() == 0
                break
            finally:
                await worker.close()

    print(f"\n[{queue_type}] worker killed {kills} times by the poison job")
    assert kills == MAX_ATTEMPTS, "the poison was processed MAX_ATTEMPTS times, no more"
    dead = await drain_dead_letters(settings)
    assert [
        (json.loads(m.body)["id"], (m.headers or {}).get("x-imagebatch-code")) for m in dead
    ] == [("poison", "delivery_limit")]
    rows = await job_rows(settings.database_url)
    assert rows["poison"]["status"] == "failed"
    assert "died 3 times" in rows["poison"]["error"]
    others = {job_id: row for job_id, row in rows.items() if job_id != "poison"}
    assert {row["status"] for row in others.values()} == {"completed"}
    assert len(others) == BATCH
    completions = await count_completions(settings.database_url)
    assert {job_id: completions.get(job_id) for job_id in ids} == dict.fromkeys(ids, 1)
    assert await queue_depth(settings, settings.queue) == 0
    died_with_it = sorted(j for j, row in others.items() if row["attempts"] > 1)
    print(f"[{queue_type}] jobs cut off with the poison and redone: {len(died_with_it)}")
