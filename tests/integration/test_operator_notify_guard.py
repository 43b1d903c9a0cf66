"""The operator's notifications pass through the workers' SSRF guard: a receiver on loopback is
refused (nothing reaches it) unless ALLOW_PRIVATE_WEBHOOKS=true."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from imagebatch.operator.notify import Notifier, NotifyFailed

EVENT = {"specversion": "1.0", "id": "e-1", "type": "io.imagejobs.batch.succeeded"}


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[object]]]:
    received: list[object] = []

    async def handle(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/events", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/events", received
    finally:
        await runner.cleanup()


async def test_a_loopback_receiver_is_refused_unless_private_webhooks_are_allowed(
    receiver: tuple[str, list[object]],
) -> None:
    url, received = receiver
    guarded, allowed = Notifier(allow_private=False), Notifier(allow_private=True)
    try:
        with pytest.raises(NotifyFailed, match=r"127\.0\.0\.1 refused: loopback"):
            await guarded.send(url, EVENT)
        assert received == []

        assert await allowed.send(url, EVENT) == 204
        assert received == [EVENT]
    finally:
        await guarded.close()
        await allowed.close()
