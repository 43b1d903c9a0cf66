"""The job's row in PostgreSQL: the durable record the worker writes before it acks.

A producer may or may not have inserted the row (the api does for tasks and uploads; the seed's
`/enqueue` and older producers may not), so every write is an upsert keyed by the message id.
Marking a job `processing` is also how duplicates are recognised: a job already `completed` is
not processed again, so a redelivered message yields one output and one completion.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import asyncpg

from imagebatch.core.errors import TransientError
from imagebatch.core.messages import ImageJob

DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


class RecordError(TransientError):
    """PostgreSQL did not take a write. Not the job's fault: the message goes back to the queue
    without spending an attempt."""


@dataclass(frozen=True)
class OutputRecord:
    """One written thumbnail as the api shows it; `path` is relative to OUTPUT_DIR."""

    path: str
    width: int
    height: int
    bytes: int
    format: str


@dataclass(frozen=True)
class SourceRecord:
    """The original's size in bytes and pixels (unknown when outputs already existed)."""

    bytes: int | None
    width: int | None
    height: int | None


def job_kind(job: ImageJob) -> str:
    """How a job is filed when the worker creates its row."""
    if job.batch is not None:
        return "batch"
    if job.upload_name is not None:
        return "upload"
    if job.short_form and job.id.isdigit():
        return "image"
    return "task"


START_SQL = """
INSERT INTO jobs (id, kind, url, ops, batch, image_id, status, attempts, started_at, updated_at)
VALUES ($1, $2, $3, $4::jsonb, $5,
        (SELECT id FROM images WHERE $6::bigint IS NOT NULL AND id = $6::bigint),
        'processing', 1, now(), now())
ON CONFLICT (id) DO UPDATE
   SET status = 'processing', attempts = jobs.attempts + 1,
       started_at = now(), updated_at = now(), completed_at = NULL
 WHERE jobs.status <> 'completed'
RETURNING attempts
"""

COMPLETE_SQL = """
UPDATE jobs
   SET status = 'completed', outputs = $2::jsonb, source_bytes = COALESCE($3, source_bytes),
       source_width = COALESCE($4, source_width), source_height = COALESCE($5, source_height),
       error = NULL, completed_at = now(), updated_at = now()
 WHERE id = $1
RETURNING image_id
"""

FAIL_SQL = """
UPDATE jobs SET status = 'failed', error = $2, completed_at = now(), updated_at = now()
 WHERE id = $1 AND status <> 'completed'
"""

RETRY_SQL = """
UPDATE jobs SET status = 'pending', error = $2, updated_at = now()
 WHERE id = $1 AND status <> 'completed'
"""


def _image_id(job: ImageJob) -> int | None:
    return int(job.id) if job_kind(job) == "image" else None


def _ops_json(job: ImageJob) -> str:
    return json.dumps([op.model_dump(mode="json") for op in job.ops])


class JobRecords:
    """Reads and writes the `jobs` (and, for seed rows, `images`) tables."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def start(self, job: ImageJob) -> int | None:
        """Mark the job processing; its attempt count, or None when it is already completed."""
        try:
            attempts: int | None = await self._pool.fetchval(
                START_SQL,
                job.id,
                job_kind(job),
                job.url,
                _ops_json(job),
                job.batch,
                _image_id(job),
            )
        except DB_ERRORS as exc:
            raise RecordError(f"cannot mark job {job.id} processing: {exc}") from exc
        return attempts

    async def complete(
        self, job: ImageJob, source: SourceRecord, outputs: Sequence[OutputRecord]
    ) -> None:
        """Record success (and `images.processed` for a seed row) in one transaction."""
        payload = json.dumps([asdict(o) for o in outputs])
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                image_id = await conn.fetchval(
                    COMPLETE_SQL, job.id, payload, source.bytes, source.width, source.height
                )
                if image_id is not None:
                    await conn.execute("UPDATE images SET processed = true WHERE id = $1", image_id)
        except DB_ERRORS as exc:
            raise RecordError(f"cannot record completion of {job.id}: {exc}") from exc

    async def fail(self, job_id: str, reason: str) -> None:
        """Record a final failure (a no-op when the row does not exist or already completed)."""
        await self._update(FAIL_SQL, job_id, reason)

    async def retrying(self, job_id: str, reason: str) -> None:
        """Record that the job waits for another attempt."""
        await self._update(RETRY_SQL, job_id, reason)

    async def _update(self, sql: str, job_id: str, reason: str) -> None:
        try:
            await self._pool.execute(sql, job_id, reason)
        except DB_ERRORS as exc:
            raise RecordError(f"cannot record the outcome of {job_id}: {exc}") from exc

    async def row(self, job_id: str) -> dict[str, Any] | None:
        """The job's row (tests and diagnostics)."""
        record = await self._pool.fetchrow("SELECT * FROM jobs WHERE id = $1", job_id)
        return dict(record) if record is not None else None
