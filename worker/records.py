"""The job's row in PostgreSQL: the durable record the worker writes before it acks.

JSON columns take Python objects: the pool (`imagebatch.core.db.create_pool`) encodes them.
A producer may or may not have inserted the row (the api does for tasks and uploads; the seed's
`/enqueue` and older producers may not), so every write is an upsert keyed by the message id.
A delivery first claims its job (an advisory lock), then marks it `processing`; a job already
`completed` is not processed again, and one held by another delivery is left to it, so a
duplicated message yields one output and one completion.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

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


CLAIM_SQL = """
WITH lock AS (
    SELECT pg_try_advisory_lock(hashtextextended('imagebatch.job:' || $1, 0)) AS held
), started AS (
    INSERT INTO jobs (id, kind, url, ops, batch, image_id, status, attempts, started_at, updated_at)
    SELECT $1, $2, $3, $4::jsonb, $5,
           (SELECT id FROM images WHERE $6::bigint IS NOT NULL AND id = $6::bigint),
           'processing', 1, now(), now()
      FROM lock WHERE lock.held
    ON CONFLICT (id) DO UPDATE
       SET status = 'processing', attempts = jobs.attempts + 1,
           started_at = now(), updated_at = now(), completed_at = NULL
     WHERE jobs.status <> 'completed'
    RETURNING attempts
)
SELECT (SELECT held FROM lock) AS held, (SELECT attempts FROM started) AS attempts
"""
"""Take the job's advisory lock and, if it was free, mark the job processing — one round trip.
`held` false: another delivery holds it; `attempts` null: the job is already completed."""

UNLOCK_SQL = "SELECT pg_advisory_unlock(hashtextextended('imagebatch.job:' || $1, 0))"

COMPLETE_SQL = """
WITH done AS (
    UPDATE jobs
       SET status = 'completed', outputs = $2::jsonb, source_bytes = COALESCE($3, source_bytes),
           source_width = COALESCE($4, source_width),
           source_height = COALESCE($5, source_height),
           error = NULL, completed_at = now(), updated_at = now()
     WHERE id = $1
    RETURNING image_id
), seed AS (
    UPDATE images SET processed = true FROM done WHERE images.id = done.image_id
)
SELECT pg_advisory_unlock(hashtextextended('imagebatch.job:' || $1, 0))
"""
"""Success, `images.processed` for a seed row, and the claim's release — one round trip.

The lock goes a moment before the statement commits. That is safe: the statement holds the job
row's lock until its commit, and a second delivery's claim (an upsert on the same row) waits for
that commit and then sees `completed`."""

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


def _ops(job: ImageJob) -> list[dict[str, Any]]:
    return [op.model_dump(mode="json") for op in job.ops]


@dataclass
class Claim:
    """The outcome of claiming a job, and while `state == "started"` this worker's exclusive
    hold on it.

    The hold is a session-level advisory lock keyed by the job id, on one pooled connection: a
    second delivery of the same job (a duplicate published twice, or a redelivery racing a slow
    first delivery) cannot process it at the same time, and a crashed holder's lock disappears
    with its connection.
    """

    job: ImageJob
    state: Literal["started", "completed", "busy"]
    attempts: int
    _conn: asyncpg.pool.PoolConnectionProxy | None = None
    released: bool = False
    """True once `complete` has released the lock along with its write."""

    async def complete(self, source: SourceRecord, outputs: Sequence[OutputRecord]) -> None:
        """Record success (and `images.processed` for a seed row) and release the claim, in one
        statement."""
        assert self._conn is not None, "only a started claim completes"
        payload = [asdict(o) for o in outputs]
        try:
            await self._conn.execute(
                COMPLETE_SQL, self.job.id, payload, source.bytes, source.width, source.height
            )
        except DB_ERRORS as exc:
            raise RecordError(f"cannot record completion of {self.job.id}: {exc}") from exc
        self.released = True


class JobRecords:
    """Reads and writes the `jobs` (and, for seed rows, `images`) tables."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @contextlib.asynccontextmanager
    async def claim(self, job: ImageJob) -> AsyncIterator[Claim]:
        """Claim `job` for the duration of the block (see `Claim.state`)."""
        try:
            conn = await self._pool.acquire()
        except DB_ERRORS as exc:
            raise RecordError(f"cannot reach the database: {exc}") from exc
        held = None
        claim: Claim | None = None
        try:
            try:
                row = await conn.fetchrow(
                    CLAIM_SQL, job.id, job_kind(job), job.url, _ops(job), job.batch, _image_id(job)
                )
            except DB_ERRORS as exc:
                held = True  # unknown: the lock may have been taken before the statement failed
                raise RecordError(f"cannot claim job {job.id}: {exc}") from exc
            assert row is not None
            held = bool(row["held"])
            attempts = row["attempts"]
            if not held:
                claim = Claim(job, "busy", 0)
            elif attempts is None:
                claim = Claim(job, "completed", 0)
            else:
                claim = Claim(job, "started", int(attempts), conn)
            yield claim
        finally:
            await self._release(
                conn, job, still_locked=bool(held) and not (claim and claim.released)
            )

    async def _release(
        self, conn: asyncpg.pool.PoolConnectionProxy, job: ImageJob, *, still_locked: bool
    ) -> None:
        """Hand the connection back with no advisory lock left on its session.

        The pool does not reset connections (`reset_on_release=False`), so a connection whose
        unlock failed is terminated instead: closing the session releases its locks.
        """
        try:
            if still_locked:
                try:
                    await conn.execute(UNLOCK_SQL, job.id)
                except BaseException as exc:
                    conn.terminate()
                    if not isinstance(exc, DB_ERRORS):
                        raise
        finally:
            with contextlib.suppress(*DB_ERRORS):
                await self._pool.release(conn)

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
