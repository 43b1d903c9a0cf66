"""A loopback HTTP server that serves real photographs and every kind of misbehaviour.

It runs in the test's own event loop (aiohttp), binds 127.x.x.x only, and counts the requests
each path received. Endpoints that break HTTP itself (a Content-Length that lies) are served by
a raw asyncio server beside it, because a well-behaved framework refuses to send them.

| path | behaviour |
|---|---|
| /photo/{n}.jpg | photo n (mod the set), JPEG of `photo_size` |
| /status/{code}?retry_after=V | that status, empty body (with `Retry-After: V` when given) |
| /throttled/{key}.jpg?times=N&retry_after=V | 429 + `Retry-After: V` (default 1) for the first N |
|   | requests for `key` (all of them without N), the photo afterwards |
| /flaky/{key}.jpg | 500 on the first request for `key`, the photo afterwards |
| /missing/{n}.jpg | 404 until the test sets `missing_fixed`, photo n afterwards |
| /slow.jpg | headers after 60 s (a read timeout fires first) |
| /gated/{n}.jpg | photo n once `gate` is open: until then the origin stalls (`stalled` counts) |
| /trickle.jpg | a JPEG header, then one byte every 0.1 s (only a total deadline stops it) |
| /endless.jpg | JPEG magic, then an endless chunked body (no Content-Length) |
| /oversize.jpg | an honest Content-Length larger than the worker accepts |
| /html.jpg | an HTML page served as `image/jpeg` |
| /truncated.jpg | the first 60 % of a real JPEG, honestly sized |
| /bomb.png | a tiny PNG claiming 40,000 x 40,000 pixels |
| /exif.jpg | a landscape JPEG with EXIF orientation 6, GPS, comment and XMP |
| /redirect?to=URL | 302 to URL |
| /redirects/{n} | a chain of n redirects ending at a photo |
| raw: /lying-length.jpg | says Content-Length: 1000, then sends `lying_bytes` bytes |
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from tests.support.photos import decompression_bomb_png, exif_rotated_jpeg, photos


@dataclass
class ImageServer:
    """Start with `async with ImageServer() as server:`; `server.url("/photo/1.jpg")`."""

    host: str = "127.0.0.1"
    photo_size: tuple[int, int] = (640, 480)
    oversize_bytes: int = 3 * 1024 * 1024
    lying_bytes: int = 3 * 1024 * 1024
    photo_delay: float = 0.0
    """Seconds each /photo request waits before answering (keeps a batch in flight longer)."""
    missing_fixed: bool = False
    """Whether /missing/{n}.jpg is there yet (the origin "fixed")."""
    hits: Counter[str] = field(default_factory=Counter)
    cookies_sent: list[str] = field(default_factory=list)
    """Every Cookie header a request brought."""
    port: int = 0
    raw_port: int = 0

    def __post_init__(self) -> None:
        self.active_photos = 0
        self.most_active_photos = 0
        """Concurrent /photo requests now, and the most there ever were."""
        self.gate = asyncio.Event()
        """Opened by the test: /gated requests stall until then."""
        self.stalled = 0
        """/gated requests waiting for the gate now."""
        self._runner: web.AppRunner | None = None
        self._raw: asyncio.Server | None = None
        self._failed_once: set[str] = set()
        self._throttled_count: Counter[str] = Counter()
        self._photos = photos(self.photo_size)
        self._exif, self.exif_upright = exif_rotated_jpeg()

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def raw_url(self, path: str) -> str:
        return f"http://{self.host}:{self.raw_port}{path}"

    @property
    def photo_count(self) -> int:
        return len(self._photos)

    def photo(self, n: int) -> bytes:
        return self._photos[n % len(self._photos)]

    async def __aenter__(self) -> ImageServer:
        app = web.Application()
        app.middlewares.append(self._count)
        routes = [
            ("/photo/{n:\\d+}.jpg", self._photo),
            ("/cookie/{n:\\d+}.jpg", self._cookie_photo),
            ("/status/{code:\\d+}", self._status),
            ("/flaky/{key}.jpg", self._flaky),
            ("/missing/{n:\\d+}.jpg", self._missing),
            ("/throttled/{key}.jpg", self._throttled),
            ("/slow.jpg", self._slow),
            ("/gated/{n:\\d+}.jpg", self._gated),
            ("/trickle.jpg", self._trickle),
            ("/endless.jpg", self._endless),
            ("/oversize.jpg", self._oversize),
            ("/html.jpg", self._html),
            ("/truncated.jpg", self._truncated),
            ("/bomb.png", self._bomb),
            ("/exif.jpg", self._exif_photo),
            ("/redirect", self._redirect),
            ("/redirects/{n:\\d+}", self._redirects),
        ]
        for path, handler in routes:
            app.router.add_get(path, handler)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        self._raw = await asyncio.start_server(self._raw_client, self.host, 0)
        self.raw_port = int(self._raw.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._raw is not None:
            self._raw.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._raw.wait_closed(), 2)
        if self._runner is not None:
            await self._runner.cleanup()

    @web.middleware
    async def _count(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        self.hits[request.path] += 1
        if "Cookie" in request.headers:
            self.cookies_sent.append(request.headers["Cookie"])
        return await handler(request)

    def _jpeg(self, data: bytes) -> web.Response:
        return web.Response(body=data, content_type="image/jpeg")

    async def _photo(self, request: web.Request) -> web.Response:
        self.active_photos += 1
        self.most_active_photos = max(self.most_active_photos, self.active_photos)
        try:
            if self.photo_delay:
                await asyncio.sleep(self.photo_delay)
            return self._jpeg(self.photo(int(request.match_info["n"])))
        finally:
            self.active_photos -= 1

    async def _missing(self, request: web.Request) -> web.Response:
        if not self.missing_fixed:
            return web.Response(status=404, text="not here yet")
        return self._jpeg(self.photo(int(request.match_info["n"])))

    async def _cookie_photo(self, request: web.Request) -> web.Response:
        response = self._jpeg(self.photo(int(request.match_info["n"])))
        response.set_cookie("session", "someone-elses", path="/")
        return response

    async def _status(self, request: web.Request) -> web.Response:
        headers = (
            {"Retry-After": request.query["retry_after"]}
            if "retry_after" in request.query
            else None
        )
        return web.Response(status=int(request.match_info["code"]), headers=headers)

    async def _throttled(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        self._throttled_count[key] += 1
        times = request.query.get("times")
        if times is None or self._throttled_count[key] <= int(times):
            retry_after = request.query.get("retry_after", "1")
            return web.Response(status=429, headers={"Retry-After": retry_after})
        return self._jpeg(self.photo(len(key)))

    async def _flaky(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        if key not in self._failed_once:
            self._failed_once.add(key)
            return web.Response(status=500, text="try again")
        return self._jpeg(self.photo(len(key)))

    async def _gated(self, request: web.Request) -> web.Response:
        self.stalled += 1
        try:
            await self.gate.wait()
        finally:
            self.stalled -= 1
        return self._jpeg(self.photo(int(request.match_info["n"])))

    async def _slow(self, _request: web.Request) -> web.Response:
        await asyncio.sleep(60)
        return self._jpeg(self.photo(0))

    async def _stream(
        self, request: web.Request, chunks: AsyncIterator[bytes]
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            async for chunk in chunks:
                await response.write(chunk)
        return response

    async def _trickle(self, request: web.Request) -> web.StreamResponse:
        async def drip() -> AsyncIterator[bytes]:
            yield self.photo(0)[:16]
            for byte in self.photo(0)[16:600]:
                await asyncio.sleep(0.1)
                yield bytes([byte])

        return await self._stream(request, drip())

    async def _endless(self, request: web.Request) -> web.StreamResponse:
        async def flood() -> AsyncIterator[bytes]:
            yield b"\xff\xd8\xff\xe0" + b"\x00" * 65532
            for _ in range(4096):  # bounded: 256 MiB at most
                yield b"\x00" * 65536

        return await self._stream(request, flood())

    async def _oversize(self, _request: web.Request) -> web.Response:
        return self._jpeg(b"\xff\xd8\xff\xe0" + b"\x00" * (self.oversize_bytes - 4))

    async def _html(self, _request: web.Request) -> web.Response:
        page = b"<!DOCTYPE html><html><body>Not a photo</body></html>"
        return web.Response(body=page, headers={"Content-Type": "image/jpeg"})

    async def _truncated(self, _request: web.Request) -> web.Response:
        data = self.photo(1)
        return self._jpeg(data[: len(data) * 6 // 10])

    async def _bomb(self, _request: web.Request) -> web.Response:
        return web.Response(body=decompression_bomb_png(), content_type="image/png")

    async def _exif_photo(self, _request: web.Request) -> web.Response:
        return self._jpeg(self._exif)

    async def _redirect(self, request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["to"])

    async def _redirects(self, request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        if n == 0:
            return self._jpeg(self.photo(2))
        raise web.HTTPFound(f"/redirects/{n - 1}")

    async def _raw_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Speaks just enough HTTP/1.1 to lie about Content-Length."""
        try:
            request_line = await reader.readline()
            while (await reader.readline()) not in (b"\r\n", b""):
                pass
            path = request_line.split(b" ")[1].decode() if b" " in request_line else "/"
            self.hits[f"raw:{path}"] += 1
            if path == "/lying-length.jpg":
                head = (
                    b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 1000\r\n"
                    b"Connection: close\r\n\r\n"
                )
                writer.write(head)
                body = (self.photo(3) * (self.lying_bytes // len(self.photo(3)) + 1))[
                    : self.lying_bytes
                ]
                for start in range(0, len(body), 65536):
                    writer.write(body[start : start + 65536])
                    await writer.drain()
            else:
                writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
