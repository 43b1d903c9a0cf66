"""The benchmark's image origin: photos over HTTP/1.1 on loopback, for as little CPU as possible.

In production the images come from other machines; here the origin shares the worker's two cores,
so every CPU-millisecond it spends is taken from the worker under test. The tests' `ImageServer`
(aiohttp, with routing and middleware) spent ~0.35 ms per image; this one answers each request
with one prepared response (status line, headers and body in one buffer), one write per request,
keep-alive, no framework. It serves `/photo/{n}.jpg` and nothing else (404).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field

REQUEST_LINE = re.compile(rb"GET /photo/(\d+)\.jpg HTTP/1\.[01]\r\n")
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
MAX_HEADER_BYTES = 16 * 1024


def _response(body: bytes) -> bytes:
    head = f"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


class _Connection(asyncio.Protocol):
    """One keep-alive connection: answers each complete request head as it arrives."""

    def __init__(self, responses: tuple[bytes, ...]) -> None:
        self.responses = responses
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head, self.buffer = self.buffer[: end + 4], self.buffer[end + 4 :]
            match = REQUEST_LINE.match(head)
            if match is None:
                self.transport.write(NOT_FOUND)
                continue
            self.transport.write(self.responses[int(match[1]) % len(self.responses)])
        if len(self.buffer) > MAX_HEADER_BYTES:
            self.transport.close()


@dataclass
class PhotoOrigin:
    """`async with PhotoOrigin(photos) as origin:` then `origin.url(n)`."""

    photos: tuple[bytes, ...]
    host: str = "127.0.0.1"
    port: int = 0
    _server: asyncio.Server | None = field(default=None, init=False)

    def url(self, n: int) -> str:
        return f"http://{self.host}:{self.port}/photo/{n}.jpg"

    async def __aenter__(self) -> PhotoOrigin:
        responses = tuple(_response(body) for body in self.photos)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(responses), self.host, self.port
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
