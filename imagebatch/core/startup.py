"""Waiting for a dependency at start-up.

In docker compose and Kubernetes the services start in any order: a service tries its
PostgreSQL or RabbitMQ again, with growing pauses, until a start-up deadline instead of crashing
on the first refused connection.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


async def retry_until(
    what: str,
    attempt: Callable[[], Awaitable[T]],
    errors: tuple[type[BaseException], ...],
    within: float,
) -> T:
    """`attempt()` until it succeeds or `within` seconds passed; the last error is raised."""
    deadline = time.monotonic() + within
    pause = 0.5
    while True:
        try:
            return await attempt()
        except errors as exc:
            if time.monotonic() + pause > deadline:
                raise
            log.warning("%s not reachable yet (%r); retrying in %.1fs", what, exc, pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 5.0)
