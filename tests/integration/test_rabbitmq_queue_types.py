"""`QUEUE_TYPE`: every queue the services declare — work, batch, retry-delay and dead-letter —
is of the type asked for, with each argument the project relies on accepted by the RabbitMQ the
suite runs (Debian's 3.10.8): on quorum queues, at-least-once dead-lettering (`x-dead-letter-
strategy`, which needs `x-overflow: reject-publish`), message TTL, per-message expiration and
`x-expires` on the delay queues. The worker runs its whole failure policy on either type."""

from __future__ import annotations

import base64
import json
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import aiormq
import pytest

from imagebatch.core.broker import connect
from imagebatch.core.delays import delay_queue_names
from imagebatch.core.settings import CommonSettings
from imagebatch.core.topology import DEAD_LETTER_ROUTING_KEY, batch_queue_name, declare_topology
from tests.support.image_server import ImageServer
from tests.support.servers import ServerHandle
from tests.support.worker_fixtures import (
    count_status,
    drain_dead_letters,
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

AT_LEAST_ONCE = {"x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"}


def described(rabbitmq_server: ServerHandle, queue: str) -> dict[str, Any]:
    """The queue as the management API shows it (type, arguments)."""
    base = rabbitmq_server.extra["management_url"]
    request = urllib.request.Request(
        f"{base}/api/queues/%2F/{urllib.parse.quote(queue, safe='')}",
        headers={"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode()},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        data: dict[str, Any] = json.load(response)
    return data


def of_type(messaging: CommonSettings, queue_type: str) -> CommonSettings:
    return messaging.model_copy(update={"queue_type": queue_type})


async def test_classic_queues_are_declared_exactly_as_before(
    messaging: CommonSettings, rabbitmq_server: ServerHandle
) -> None:
    """The default adds no argument, so queues an earlier version made still redeclare."""
    connection = await connect(messaging.rabbit_url)
    async with connection:
        await declare_topology(await connection.channel(), messaging)
    work = described(rabbitmq_server, messaging.queue)
    assert work["type"] == "classic"
    assert work["arguments"] == {
        "x-dead-letter-exchange": messaging.dlx,
        "x-dead-letter-routing-key": DEAD_LETTER_ROUTING_KEY,
    }
    dead = described(rabbitmq_server, messaging.dlq)
    assert (dead["type"], dead["arguments"]) == ("classic", {})


async def test_quorum_work_batch_and_dead_letter_queues_dead_letter_at_least_once(
    messaging: CommonSettings, rabbitmq_server: ServerHandle
) -> None:
    settings = of_type(messaging, "quorum")
    batch = batch_queue_name("ns", f"b-{settings.queue}")
    connection = await connect(settings.rabbit_url)
    async with connection:
        await declare_topology(await connection.channel(), settings)
        await declare_topology(await connection.channel(), settings, queue=batch, routing_key=batch)
    for queue in (settings.queue, batch):
        work = described(rabbitmq_server, queue)
        assert work["type"] == "quorum", queue
        assert work["arguments"] == {
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": settings.dlx,
            "x-dead-letter-routing-key": DEAD_LETTER_ROUTING_KEY,
            **AT_LEAST_ONCE,
        }, queue
    dead = described(rabbitmq_server, settings.dlq)
    assert (dead["type"], dead["arguments"]) == ("quorum", {"x-queue-type": "quorum"})


async def test_a_queue_cannot_change_type_by_redeclaring_it(messaging: CommonSettings) -> None:
    """Why switching an existing deployment to quorum needs new queues (README: upgrade path)."""
    connection = await connect(messaging.rabbit_url)
    async with connection:
        await declare_topology(await connection.channel(), messaging)
        with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed, match="x-queue-type"):
            await declare_topology(await connection.channel(), of_type(messaging, "quorum"))


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
async def test_the_worker_retries_waits_and_dead_letters_on_either_queue_type(
    messaging: CommonSettings,
    tmp_path: Path,
    image_server: ImageServer,
    rabbitmq_server: ServerHandle,
    queue_type: str,
) -> None:
    settings = worker_settings(of_type(messaging, queue_type), tmp_path / "data")
    cases = {
        "plain": image_server.url("/photo/1.jpg"),
        "flaky": image_server.url(f"/flaky/{queue_type}.jpg"),
        "throttled": image_server.url(f"/throttled/{queue_type}.jpg?times=1&retry_after=1"),
        "missing": image_server.url("/status/404"),
    }
    await publish(settings, [job_body(url, job_id) for job_id, url in cases.items()])
    async with running_worker(settings):
        await wait_for(lambda: _completed(settings.database_url, 3))
        await wait_for(lambda: _dead_letters(settings, 1))

    rows = await job_rows(settings.database_url)
    assert {job_id: (r["status"], r["attempts"]) for job_id, r in rows.items()} == {
        "plain": ("completed", 1),
        "flaky": ("completed", 2),
        "throttled": ("completed", 1),
        "missing": ("failed", 1),
    }
    [dead] = await drain_dead_letters(settings)
    assert json.loads(dead.body)["id"] == "missing"

    names = set(
        delay_queue_names(
            settings.queue,
            settings.backoff_seconds,
            settings.backoff_max_seconds,
            longest=settings.retry_after_max_seconds,
        )
    )
    used = [name for name in names if _exists(rabbitmq_server, name)]
    assert used, "the retry and the wait went through delay queues"
    for name in used:
        delay = described(rabbitmq_server, name)
        assert delay["type"] == queue_type, name
        arguments = delay["arguments"]
        assert arguments["x-dead-letter-exchange"] == ""
        assert arguments["x-dead-letter-routing-key"] == settings.queue
        assert arguments["x-message-ttl"] < arguments["x-expires"]
        if queue_type == "quorum":
            assert AT_LEAST_ONCE.items() <= arguments.items()
        else:
            assert "x-queue-type" not in arguments


async def _completed(database_url: str, n: int) -> bool:
    return await count_status(database_url, "completed") >= n


async def _dead_letters(settings: CommonSettings, n: int) -> bool:
    return await queue_depth(settings, settings.dlq) >= n


def _exists(rabbitmq_server: ServerHandle, queue: str) -> bool:
    try:
        described(rabbitmq_server, queue)
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return False
        raise
    return True
