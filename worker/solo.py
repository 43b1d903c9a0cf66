"""Suspects run alone: a job that an earlier delivery died with is processed with nothing else
in flight.

When a poison job kills the worker, every job in flight with it dies too, and their deliveries
would count against them (`worker/poison.py`) as much as against the poison. So a redelivered
job whose row says an earlier delivery claimed it and recorded nothing waits until the worker
has no other job in flight, and runs before any new one is claimed: if it kills the worker
again, it dies alone, and only its own count grows. Fresh jobs run side by side as ever.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class Solo:
    """Jobs run side by side (`together`) or alone (`alone`); a job waiting to run alone keeps
    new ones from starting, so it cannot wait for ever behind a busy worker."""

    def __init__(self) -> None:
        self._changed = asyncio.Condition()
        self._together = 0
        self._alone = False
        self._waiting_alone = 0

    @property
    def running(self) -> int:
        return self._together + int(self._alone)

    @contextlib.asynccontextmanager
    async def together(self) -> AsyncIterator[None]:
        async with self._changed:
            await self._changed.wait_for(lambda: not self._alone and not self._waiting_alone)
            self._together += 1
        try:
            yield
        finally:
            async with self._changed:
                self._together -= 1
                self._changed.notify_all()

    @contextlib.asynccontextmanager
    async def alone(self) -> AsyncIterator[None]:
        async with self._changed:
            self._waiting_alone += 1
            try:
                await self._changed.wait_for(lambda: not self._alone and not self._together)
            finally:
                self._waiting_alone -= 1
            self._alone = True
        try:
            yield
        finally:
            async with self._changed:
                self._alone = False
                self._changed.notify_all()
