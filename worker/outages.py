"""Telling the operator that a batch waits on one of our own dependencies (core/outages.py).

The consumer calls `down` when a job of a batch met DependencyDown and `up` when one completed;
only the first report of an outage and then one every `refresh` seconds reach PostgreSQL, and
`up` costs a statement only after a `down`, so the healthy path stays free of it. Reporting is
best effort: PostgreSQL being down too must not turn an outage into a crash.
"""

from __future__ import annotations

import logging
import time

import asyncpg

from imagebatch.core.dependencies import DB_ERRORS
from imagebatch.core.outages import STALE_AFTER_SECONDS, clear_outages, report_outage

log = logging.getLogger(__name__)


class OutageReporter:
    def __init__(self, pool: asyncpg.Pool, *, refresh: float = STALE_AFTER_SECONDS / 4) -> None:
        self.pool = pool
        self.refresh = refresh
        self._reported: dict[tuple[str, str], float] = {}

    async def down(self, batch: str | None, dependency: str, reason: str) -> None:
        if batch is None:
            return
        key = (batch, dependency)
        last = self._reported.get(key)
        now = time.monotonic()
        if last is not None and now - last < self.refresh:
            return
        try:
            await report_outage(self.pool, batch, dependency, reason)
        except DB_ERRORS as exc:
            log.warning("cannot record the outage of %s for %s: %r", dependency, batch, exc)
            return
        self._reported[key] = now

    async def up(self, batch: str | None) -> None:
        if batch is None or not any(key[0] == batch for key in self._reported):
            return
        try:
            await clear_outages(self.pool, batch)
        except DB_ERRORS as exc:
            log.warning("cannot clear the outages of %s: %r", batch, exc)
            return
        for key in [key for key in self._reported if key[0] == batch]:
            del self._reported[key]
