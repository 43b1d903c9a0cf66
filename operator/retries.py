"""Retrying a batch's failed items, asked for with the `imagejobs.io/retry-failed` annotation.

A new value of the annotation on a Running, Succeeded or Failed batch sends every failed item
back to work once. `retry_failed` does it in one transaction that also records the value in the
batch's `batches` row: a value already recorded — the last one or any earlier one (A, B, then A
again does nothing) — is not acted on again, whether the operator saw it a moment ago or before
it was killed and restarted. The items go back to `pending` with their
attempts at 0 and no `published_at`, so the pump publishes them again through the usual path,
with their stable message ids (a kill before that is covered as any unpublished item is). The
worker claims a `pending` or `failed` job like any other: only a `completed` one is a duplicate.

`decide` (progress.py) turns the recorded retry into the status: `lastRetry`, the Event
`RetryingFailed`, the phase back to Running.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import asyncpg

from imagebatch.core.batch_status import LastRetry, Phase
from imagebatch.core.retry_request import RETRY_FAILED_ANNOTATION
from imagebatch.operator.progress import timestamp

RETRYABLE: frozenset[Phase] = frozenset({"Running", "Succeeded", "Failed"})
"""Phases in which a request is acted on; in the others (Pending, Publishing, Suspended) it
waits until the batch is in one of these."""


def requested(annotations: Mapping[str, str] | None) -> str | None:
    """The annotation's value, if it has a usable one."""
    value = (annotations or {}).get(RETRY_FAILED_ANNOTATION)
    return value if isinstance(value, str) and value.strip() else None


@dataclass(frozen=True)
class Retries:
    """The requests acted on for one resource: the last (`status.lastRetry`) and every value."""

    last: LastRetry | None = None
    acted: frozenset[str] = frozenset()


def due(request: str | None, phase: Phase | None, handled: Retries) -> bool:
    """Whether `request` is to be acted on now: a value never acted on, on a batch in a phase
    that allows it."""
    return request is not None and phase in RETRYABLE and request not in handled.acted


RECORDED_SQL = """
SELECT retry_request, retry_items, retried_at, retry_requests FROM batches
 WHERE batch = $1 AND uid = $2
"""

RESET_SQL = """
UPDATE jobs SET status = 'pending', attempts = 0, unfinished = 0, error = NULL,
       error_code = NULL, outputs = '[]', published_at = NULL, started_at = NULL,
       completed_at = NULL, updated_at = now()
 WHERE batch = $1 AND status = 'failed'
"""

RECORD_SQL = """
UPDATE batches SET retry_request = $3, retry_items = $4, retried_at = now(),
       retry_requests = array_append(retry_requests, $3)
 WHERE batch = $1 AND uid = $2
RETURNING retry_request, retry_items, retried_at, retry_requests
"""


def _record(row: asyncpg.Record | None) -> Retries:
    if row is None or row["retry_request"] is None:
        return Retries()
    last = LastRetry(
        request=row["retry_request"],
        items=int(row["retry_items"] or 0),
        time=timestamp(row["retried_at"]),
    )
    return Retries(last, frozenset(row["retry_requests"] or ()) | {last.request})


async def recorded(pool: asyncpg.Pool, batch: str, uid: str) -> Retries:
    """The requests acted on for this resource, as PostgreSQL holds them."""
    return _record(await pool.fetchrow(RECORDED_SQL, batch, uid))


async def retry_failed(pool: asyncpg.Pool, batch: str, uid: str, request: str) -> Retries | None:
    """Send the batch's failed items back to work and record `request`, in one transaction;
    a request already recorded changes nothing. Returns the record (None: the batch's row is
    not there yet)."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(RECORDED_SQL + " FOR UPDATE", batch, uid)
        if row is None:
            return None
        before = _record(row)
        if request in before.acted:
            return before
        reset: str = await conn.execute(RESET_SQL, batch)
        return _record(await conn.fetchrow(RECORD_SQL, batch, uid, request, int(reset.split()[-1])))
