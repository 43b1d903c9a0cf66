"""The RabbitMQ the suite runs against is a real broker with the project's topology."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import aio_pika
import httpx
import pytest

from imagebatch.core.broker import connect, producer_channel, publish_job
from imagebatch.core.messages import ImageJob
from imagebatch.core.settings import CommonSettings
from imagebatch.core.topology import declare_topology
from tests.support.servers import ServerHandle


async def test_a_confirmed_publish_is_consumed_and_acked(messaging: CommonSettings) -> None:
    connection = await connect(messaging.rabbit_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        topology = await declare_topology(channel, messaging)
        jobs = [ImageJob(url=f"https://example.test/{i}.jpg", id=f"job-{i}") for i in range(20)]
        for job in jobs:
            await publish_job(topology.exchange, job, messaging.routing_key)

        received: list[dict[str, object]] = []
        async with topology.work_queue.iterator() as messages:
            async for message in messages:
                async with message.process():
                    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
                    assert message.content_type == "application/json"
                    received.append(json.loads(message.body))
                if len(received) == len(jobs):
                    break

        await asyncio.sleep(0.2)
        declared = await channel.declare_queue(messaging.queue, passive=True)
        assert declared.declaration_result.message_count == 0, "every message was acked"
    assert [m["id"] for m in received] == [j.id for j in jobs]


async def test_a_rejected_message_is_dead_lettered(messaging: CommonSettings) -> None:
    connection = await connect(messaging.rabbit_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        topology = await declare_topology(channel, messaging)
        await publish_job(
            topology.exchange,
            ImageJob(url="https://example.test/x.jpg", id="x"),
            messaging.routing_key,
        )
        message = await topology.work_queue.get(timeout=5)
        await message.reject(requeue=False)

        dead = await topology.dead_letter_queue.get(timeout=5, fail=False)
        for _ in range(50):
            if dead is not None:
                break
            await asyncio.sleep(0.1)
            dead = await topology.dead_letter_queue.get(fail=False)
        assert dead is not None
        await dead.ack()
        assert json.loads(dead.body)["id"] == "x"


async def test_an_unroutable_publish_raises_instead_of_vanishing(messaging: CommonSettings) -> None:
    connection = await connect(messaging.rabbit_url)
    async with connection:
        channel = await producer_channel(connection)
        topology = await declare_topology(channel, messaging)
        with pytest.raises(aio_pika.exceptions.DeliveryError):
            await publish_job(
                topology.exchange, ImageJob(url="https://example.test/y.jpg", id="y"), "no-such-key"
            )


def test_the_management_api_answers(rabbitmq_server: ServerHandle) -> None:
    url = rabbitmq_server.extra["management_url"]
    request = urllib.request.Request(
        f"{url}/api/overview", headers={"Authorization": "Basic Z3Vlc3Q6Z3Vlc3Q="}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        overview = json.load(response)
    assert overview["rabbitmq_version"].startswith("3.")


async def test_the_prometheus_endpoint_shows_each_queue_by_name(
    messaging: CommonSettings, rabbitmq_server: ServerHandle
) -> None:
    """What the alerting rules and the dashboard's queue panels read (rabbitmq_prometheus)."""
    connection = await connect(messaging.rabbit_url)
    async with connection:
        await declare_topology(await connection.channel(), messaging)
        url = f"{rabbitmq_server.extra['prometheus_url']}/metrics/per-object"
        async with httpx.AsyncClient(timeout=10) as client:
            text = (await client.get(url)).raise_for_status().text
    for name in ("messages", "messages_ready", "messages_unacked", "consumers"):
        labels = f'rabbitmq_queue_{name}{{vhost="/",queue="{messaging.queue}"}}'
        assert labels in text, f"no {labels} at /metrics/per-object"
