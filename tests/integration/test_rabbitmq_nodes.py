"""Several broker addresses (`RABBIT_URL=amqp://node-a,amqp://node-b`): a service connects to
the first node that answers and, when its node goes away, reconnects to the next one — its
channels, queues and consumers restored there."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid

import aio_pika
from yarl import URL

from imagebatch.core.broker import connect


def _closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _at(rabbit_url: str, port: int) -> str:
    return str(URL(rabbit_url).with_host("127.0.0.1").with_port(port))


class Node:
    """A stand-in broker node: a TCP relay on its own loopback port to the real broker, that
    the test can take down (listener and every connection through it), as a node dies."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.server: asyncio.Server | None = None
        self.links: set[asyncio.StreamWriter] = set()
        self.connections = 0

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.links |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def die(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.links:
            writer.transport.abort()
        await self.server.wait_closed()


async def test_connect_skips_a_node_that_does_not_answer(rabbit_url: str) -> None:
    real = URL(rabbit_url).port
    assert real is not None
    connection = await connect(f"{_at(rabbit_url, _closed_port())},{_at(rabbit_url, real)}")
    async with connection:
        assert connection.url.port == real
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        assert queue.name


async def test_a_lost_node_is_replaced_by_the_next_one_and_consumers_go_on(
    rabbit_url: str,
) -> None:
    real = URL(rabbit_url).port
    assert real is not None
    node = Node(real)
    node_port = await node.start()
    setting = f"{_at(rabbit_url, node_port)}?reconnect_interval=0.2,{_at(rabbit_url, real)}"
    connection = await connect(setting)
    async with connection:
        assert connection.url.port == node_port, "the first node answered"
        channel = await connection.channel()
        queue = await channel.declare_queue(f"nodes-{uuid.uuid4().hex[:8]}", auto_delete=True)
        received: asyncio.Queue[bytes] = asyncio.Queue()

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            async with message.process():
                await received.put(message.body)

        await queue.consume(on_message)
        reconnected = asyncio.Event()
        connection.reconnect_callbacks.add(lambda *_: reconnected.set())

        await node.die()
        await reconnected.wait()

        assert connection.url.port == real, "the reconnect went to the next node"
        await channel.default_exchange.publish(
            aio_pika.Message(b"after the node died"), routing_key=queue.name
        )
        assert await received.get() == b"after the node died"
