"""What the operator does when a batch ends, against the suite's real servers: it writes
manifest.jsonl beside the outputs and names it in `status.manifest`, and it POSTs one CloudEvent
to spec.notify.url — to a receiver on loopback (ALLOW_PRIVATE_WEBHOOKS=true) that fails the first
attempts — exactly once, also when the operator is killed between the ending and the delivery.

The test plays the workers' part in PostgreSQL (the batch's items are marked completed once
published), so only the operator runs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web

from imagebatch.core.settings import CommonSettings
from tests.support.operator import Batches, OperatorFactory, eventually

pytestmark = pytest.mark.slow

URLS = [f"https://origin.test/{n}.jpg" for n in range(3)]


@dataclass
class Receiver:
    """A CloudEvents receiver on loopback that answers 503 until `failures` POSTs are spent, or
    for as long as `refusing` is set."""

    failures: int = 0
    refusing: bool = False
    posts: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        answer = 503 if self.refusing or self.failures > 0 else 202
        self.failures -= 1
        self.posts.append((answer, request.headers["Content-Type"], body))
        return web.Response(status=answer)

    @property
    def accepted(self) -> list[dict[str, Any]]:
        return [body for status, _, body in self.posts if status == 202]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    app = web.Application()
    app.router.add_post("/events", found.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    found.url = f"http://127.0.0.1:{port}/events"
    try:
        yield found
    finally:
        await runner.cleanup()


async def finish_items(database_url: str, batch: str) -> None:
    """Play the workers: once every item is published, mark all of them completed."""
    conn: asyncpg.Connection = await asyncpg.connect(database_url)
    try:
        await eventually(
            lambda: conn.fetchval(
                "SELECT count(*) FROM jobs WHERE batch = $1 AND published_at IS NOT NULL", batch
            ),
            lambda n: n == len(URLS),
            what="every item published",
        )
        await conn.execute(
            "UPDATE jobs SET status = 'completed', attempts = 1,"
            " outputs = jsonb_build_array(jsonb_build_object('path', id || '_256x256.jpg',"
            " 'width', 256, 'height', 256, 'bytes', 1234, 'format', 'jpeg'))"
            " WHERE batch = $1",
            batch,
        )
    finally:
        await conn.close()


def notified(status: dict[str, Any]) -> str | None:
    found = [c for c in status.get("conditions") or [] if c["type"] == "Notified"]
    return found[0]["status"] if found else None


async def test_an_ended_batch_gets_its_manifest_and_one_event_despite_two_failed_posts(
    start_operator: OperatorFactory,
    connections_secret: str,
    batches: Batches,
    messaging: CommonSettings,
    receiver: Receiver,
    namespace: str,
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    receiver.failures = 2
    await start_operator(ALLOW_PRIVATE_WEBHOOKS="true", WORKER_DATA_DIR=str(data))
    await batches.create("photos", {"source": {"urls": URLS}, "notify": {"url": receiver.url}})

    await finish_items(messaging.database_url, f"{namespace}/photos")
    status = await batches.wait_status(
        "photos", lambda s: notified(s) == "True", what="Notified=True"
    )

    assert status["phase"] == "Succeeded"
    assert status["manifest"] == f"file:///data/{namespace}/photos/manifest.jsonl"
    lines = (data / namespace / "photos" / "manifest.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["url"] for line in lines) == URLS
    assert {json.loads(line)["status"] for line in lines} == {"completed"}
    assert [s for s, _, _ in receiver.posts] == [503, 503, 202]
    [event] = receiver.accepted
    assert {body["id"] for _, _, body in receiver.posts} == {event["id"]}  # one id, every attempt
    assert receiver.posts[0][1] == "application/cloudevents+json; charset=utf-8"
    assert event["specversion"] == "1.0"
    assert event["type"] == "io.imagejobs.batch.succeeded"
    assert (
        event["source"] == f"/apis/imagejobs.io/v1alpha1/namespaces/{namespace}/imagebatches/photos"
    )
    assert event["datacontenttype"] == "application/json"
    assert event["time"] == status["completionTime"]
    assert event["data"]["phase"] == "Succeeded"
    assert event["data"]["succeeded"] == 3
    assert event["data"]["manifest"] == status["manifest"]


async def test_an_operator_killed_between_the_ending_and_the_delivery_sends_it_once(
    start_operator: OperatorFactory,
    connections_secret: str,
    batches: Batches,
    messaging: CommonSettings,
    receiver: Receiver,
    namespace: str,
    tmp_path: Path,
) -> None:
    settings = {"ALLOW_PRIVATE_WEBHOOKS": "true", "WORKER_DATA_DIR": str(tmp_path)}
    receiver.refusing = True
    first = await start_operator(**settings)
    await batches.create("photos", {"source": {"urls": URLS}, "notify": {"url": receiver.url}})
    await finish_items(messaging.database_url, f"{namespace}/photos")
    await batches.wait_status("photos", lambda s: notified(s) == "False", what="Notified=False")

    await first.kill()  # the batch has ended, its event is not delivered yet
    receiver.refusing = False
    second = await start_operator(**settings)
    await batches.wait_status("photos", lambda s: notified(s) == "True", what="Notified=True")
    await second.kill()
    delivered = len(receiver.posts)
    await start_operator(**settings)  # a third one finds the ending delivered
    await batches.wait_status(
        "photos", lambda s: s.get("observedGeneration") == 1 and notified(s) == "True"
    )
    await asyncio.sleep(3)  # six status intervals: time for a wrong second delivery

    assert len(receiver.accepted) == 1
    assert len(receiver.posts) == delivered
    assert len({body["id"] for _, _, body in receiver.posts}) == 1
