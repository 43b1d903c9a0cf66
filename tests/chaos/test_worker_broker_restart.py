"""The broker goes away mid-batch and comes back: the worker reconnects by itself, its consumer
is restored (aio-pika's robust connection, checked here rather than assumed), and the batch
completes — every image exactly once — without restarting the worker.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from imagebatch.core.settings import CommonSettings
from imagebatch.devservers.rabbitmq import RabbitMQServer
from imagebatch.devservers.worker_process import WorkerProcess
from imagebatch.worker.settings import WorkerSettings
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

BATCH = 300

pytestmark = pytest.mark.slow


@pytest.fixture
async def slow_source() -> AsyncIterator[ImageServer]:
    async with ImageServer(photo_delay=0.04) as server:
        yield server


async def completed_at_least(database_url: str, n: int) -> bool:
    return await count_status(database_url, "completed") >= n


@pytest.mark.parametrize("outage", ["stop", "kill"])
async def test_a_broker_restart_mid_batch_is_survived(
    own_broker: RabbitMQServer,
    database_url: str,
    slow_source: ImageServer,
    tmp_path: Path,
    outage: str,
) -> None:
    suffix = uuid.uuid4().hex[:8]
    messaging = CommonSettings(
        rabbit_url=own_broker.url,
        database_url=database_url,
        exchange=f"images.{suffix}",
        queue=f"images.{suffix}.q",
        dlx=f"images.{suffix}.dlx",
        dlq=f"images.{suffix}.dlx.q",
    )
    await install_completion_counter(database_url)
    settings: WorkerSettings = worker_settings(messaging, tmp_path / "data")
    ids = [f"r-{i:04d}" for i in range(BATCH)]
    await publish(
        settings,
        [job_body(slow_source.url(f"/photo/{i}.jpg"), j, output="r") for i, j in enumerate(ids)],
    )

    worker = await WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        await worker.wait_ready()
        await wait_for(lambda: completed_at_least(database_url, 40))

        await asyncio.to_thread(own_broker.stop if outage == "stop" else own_broker.kill)
        done_while_down = await count_status(database_url, "completed")
        await wait_for(lambda: _unready(worker), within=10)
        await asyncio.sleep(1.0)
        assert worker.process is not None
        assert worker.process.returncode is None, "the worker stays up while the broker is down"

        await asyncio.to_thread(own_broker.start)
        await wait_for(worker.ready, within=30)
        await wait_for(lambda: completed_at_least(database_url, BATCH), within=90)
        assert done_while_down < BATCH, "the outage really was mid-batch"

        worker.signal(signal.SIGTERM)
        assert await worker.wait() == 0
    finally:
        await worker.close()

    completions = await count_completions(database_url)
    assert completions == dict.fromkeys(ids, 1), "every image completed exactly once"
    rows = await job_rows(database_url)
    assert {r["status"] for r in rows.values()} == {"completed"}
    assert len(files_under(settings.output_dir)) == BATCH
    assert await queue_depth(settings, settings.queue) == 0
    assert await queue_depth(settings, settings.dlq) == 0


async def _unready(worker: WorkerProcess) -> bool:
    return not await worker.ready()
