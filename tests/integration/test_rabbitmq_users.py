"""Least privilege in RabbitMQ: the users of manifests/base/rabbitmq-definitions.json (which
docker compose loads too), made on a real broker in a vhost of this test, may do their own work
and the api's may never consume a batch's queue."""

from __future__ import annotations

import base64
import json
import re
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aio_pika
import aiormq
import pytest

from imagebatch.core.settings import CommonSettings
from imagebatch.core.topology import batch_queue_name, declare_topology
from tests.support.servers import ServerHandle

DEFINITIONS = (
    Path(__file__).resolve().parents[2] / "manifests" / "base" / "rabbitmq-definitions.json"
)
PASSWORD = "pw"
Connect = Callable[[str], str]


def management(server: ServerHandle, method: str, path: str, body: dict[str, Any] | None) -> None:
    request = urllib.request.Request(
        f"{server.extra['management_url']}/api/{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={
            "Authorization": "Basic " + base64.b64encode(b"guest:guest").decode(),
            "Content-Type": "application/json",
        },
    )
    with urllib.request.urlopen(request, timeout=10):
        pass


@pytest.fixture
def user_url(rabbitmq_server: ServerHandle) -> Iterator[Connect]:
    """`user_url("imagebatch-api")`: an AMQP URL of that user, with the definitions file's
    permissions, in a fresh vhost (so the contract's default names are this test's alone)."""
    vhost = f"t-{uuid.uuid4().hex[:8]}"
    quoted = urllib.parse.quote(vhost, safe="")
    management(rabbitmq_server, "PUT", f"vhosts/{quoted}", {})
    permissions = {p["user"]: p for p in json.loads(DEFINITIONS.read_text())["permissions"]}
    made: list[str] = []
    base = urllib.parse.urlsplit(rabbitmq_server.url)

    def url(user: str) -> str:
        name = f"{user}-{vhost}"
        management(rabbitmq_server, "PUT", f"users/{name}", {"password": PASSWORD, "tags": ""})
        made.append(name)
        rules = {k: permissions[user][k] for k in ("configure", "write", "read")}
        management(rabbitmq_server, "PUT", f"permissions/{quoted}/{name}", rules)
        return f"amqp://{name}:{PASSWORD}@{base.hostname}:{base.port}/{quoted}"

    yield url
    for name in made:
        management(rabbitmq_server, "DELETE", f"users/{name}", None)
    management(rabbitmq_server, "DELETE", f"vhosts/{quoted}", None)


async def test_the_api_user_publishes_but_cannot_consume_a_batch_queue(user_url: Connect) -> None:
    batch = batch_queue_name("team-a", "holiday")
    operator = await aio_pika.connect(user_url("imagebatch-operator"))
    async with operator:
        channel = await operator.channel()
        settings = CommonSettings(rabbit_url="amqp://unused/")
        batch_topology = await declare_topology(channel, settings, queue=batch, routing_key=batch)
        await batch_topology.exchange.publish(aio_pika.Message(b"{}"), routing_key=batch)

    api = await aio_pika.connect(user_url("imagebatch-api"))
    async with api:
        channel = await api.channel()
        topology = await declare_topology(channel, settings)  # what the api does at start
        await topology.exchange.publish(aio_pika.Message(b"{}"), routing_key="process_image")
        underlay = await channel.get_underlay_channel()
        refused = f"access to queue '{batch}'"
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused, match=re.escape(refused)):
            await underlay.basic_get(batch, no_ack=True)

    worker = await aio_pika.connect(user_url("imagebatch-worker"))
    async with worker:
        channel = await worker.channel()
        queue = await channel.declare_queue(batch, passive=True)
        assert await queue.get(no_ack=True, fail=False) is not None, "a worker consumes it"
