"""Outages of our own dependencies, as workers saw them per batch (migration 0003).

A worker that cannot write a batch's thumbnails (the object store unreachable, credentials
refused, a full disk) gives the message back without spending an attempt; nobody's image is at
fault, so no item fails, and without this table the batch would simply stall in silence. The
worker records the outage here, the operator reads it on its next refresh and shows `Degraded`
with reason `OutputUnavailable` and the worker's words, and the worker's first success after it
removes the row. Workers spread over many nodes need no other channel to the operator.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

STALE_AFTER_SECONDS = 60.0
"""A row not refreshed for this long is from a worker that stopped: readers ignore it."""

REPORT_SQL = """
INSERT INTO batch_outages (batch, dependency, reason) VALUES ($1, $2, $3)
ON CONFLICT (batch, dependency) DO UPDATE SET reason = EXCLUDED.reason, seen = now()
"""
CLEAR_SQL = "DELETE FROM batch_outages WHERE batch = $1"
CURRENT_SQL = """
SELECT dependency, reason, since FROM batch_outages
 WHERE batch = $1 AND seen > now() - make_interval(secs => $2)
 ORDER BY dependency
"""


@dataclass(frozen=True)
class Outage:
    dependency: str
    reason: str


async def report_outage(
    db: asyncpg.Pool | asyncpg.Connection, batch: str, dependency: str, reason: str
) -> None:
    await db.execute(REPORT_SQL, batch, dependency, reason[:1000])


async def clear_outages(db: asyncpg.Pool | asyncpg.Connection, batch: str) -> None:
    await db.execute(CLEAR_SQL, batch)


async def current_outages(
    db: asyncpg.Pool | asyncpg.Connection, batch: str, *, stale_after: float = STALE_AFTER_SECONDS
) -> list[Outage]:
    rows = await db.fetch(CURRENT_SQL, batch, stale_after)
    return [Outage(row["dependency"], row["reason"]) for row in rows]
