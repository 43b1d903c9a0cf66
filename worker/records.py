"""The job's row in PostgreSQL: the durable record the worker writes before it acks.

JSON columns take Python objects: the pool (`imagebatch.core.db.create_pool`) encodes them.
A producer may or may not have inserted the row (the api does for tasks and uploads; the seed's
`/enqueue` and older producers may not), so every write is an upsert keyed by the message id.
A delivery first claims its job (an advisory lock), then marks it `processing`; a job already
`completed` is not processed again, and one held by another delivery is left to it, so a
duplicated message yields one output and one completion.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import asyncpg

from imagebatch.core.dependencies import DB_ERRORS
from imagebatch.core.errors import DependencyDown
from imagebatch.core.jobs import job_kind
from imagebatch.core.messages import ImageJob
from imagebatch.worker import batching

log = logging.getLogger(__name__)


class RecordError(DependencyDown):
    """PostgreSQL did not take a write: the database is down for us. Not the job's fault: the
    message goes back to the queue without spending an attempt."""

    def __init__(self, reason: str) -> None:
        super().__init__("database", reason)


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


CLAIMS_SQL = """
WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[])
        AS t(id, kind, url, ops, batch, image_id)
), locked AS MATERIALIZED (
    SELECT input.*, pg_try_advisory_lock(hashtextextended('imagebatch.job:' || id, 0)) AS held
      FROM input
), started AS (
    INSERT INTO jobs (id, kind, url, ops, batch, image_id, status, attempts, unfinished,
                      started_at, updated_at)
    SELECT locked.id, locked.kind, locked.url, locked.ops::jsonb, locked.batch,
           (SELECT images.id FROM images WHERE images.id = locked.image_id),
           'processing', 1, 1, now(), now()
      FROM locked WHERE locked.held
    ON CONFLICT (id) DO UPDATE
       SET status = 'processing', attempts = jobs.attempts + 1,
           unfinished = jobs.unfinished + 1,
           started_at = now(), updated_at = now(), completed_at = NULL
     WHERE jobs.status <> 'completed'
    RETURNING id, attempts, unfinished
)
SELECT locked.id, locked.held, started.attempts, started.unfinished
  FROM locked LEFT JOIN started USING (id)
"""
"""Claim several jobs in one round trip: for each, take its advisory lock and, if it was free,
mark the job processing. `held` false: another worker holds it; `attempts` null: the job is
already completed. `unfinished` counts this delivery and the ones before it that died without
recording an outcome."""

COMPLETIONS_SQL = """
WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::int[], $5::int[])
        AS t(id, outputs, source_bytes, source_width, source_height)
), done AS (
    UPDATE jobs
       SET status = 'completed', outputs = input.outputs::jsonb,
           source_bytes = COALESCE(input.source_bytes, jobs.source_bytes),
           source_width = COALESCE(input.source_width, jobs.source_width),
           source_height = COALESCE(input.source_height, jobs.source_height),
           error = NULL, error_code = NULL, unfinished = 0, completed_at = now(),
           updated_at = now()
      FROM input
     WHERE jobs.id = input.id
    RETURNING jobs.image_id
), seed AS (
    UPDATE images SET processed = true FROM done WHERE images.id = done.image_id RETURNING 1
)
SELECT pg_advisory_unlock(hashtextextended('imagebatch.job:' || input.id, 0))
  FROM input, (SELECT count(*) FROM done) AS updated, (SELECT count(*) FROM seed) AS seeded
"""
"""Record several successes (and `images.processed` for seed rows) and release their claims,
in one round trip.

Reading `done` and `seed` makes every row update happen before the first unlock, so this
statement holds all its row locks before it lets any claim go: a claim racing in (an upsert on
the same row) waits for the commit and then sees `completed`, and two workers' statements can
never wait on each other's rows."""

RELEASES_SQL = """
SELECT pg_advisory_unlock(hashtextextended('imagebatch.job:' || id, 0))
  FROM unnest($1::text[]) AS id
"""

FAIL_SQL = """
UPDATE jobs SET status = 'failed', error = $2, error_code = $3, unfinished = 0,
       completed_at = now(), updated_at = now()
 WHERE id = $1 AND status <> 'completed'
"""

UNSPEND_SQL = """
UPDATE jobs SET status = 'pending', attempts = greatest(attempts - 1, 0), error = $2,
       unfinished = 0, updated_at = now()
 WHERE id = $1 AND status <> 'completed'
"""

RETRY_SQL = """
UPDATE jobs SET status = 'pending', error = $2, unfinished = 0, updated_at = now()
 WHERE id = $1 AND status <> 'completed'
"""


def _image_id(job: ImageJob) -> int | None:
    return int(job.id) if job_kind(job) == "image" else None


def _ops(job: ImageJob) -> str:
    return json.dumps([op.model_dump(mode="json") for op in job.ops])


@dataclass
class Claim:
    """The outcome of claiming a job, and while `state == "started"` this worker's exclusive
    hold on it: an advisory lock keyed by the job id, held by the worker's lock session."""

    job: ImageJob
    state: Literal["started", "completed", "busy"]
    attempts: int
    died: int = 0
    """Earlier deliveries in a row that claimed the job and died before recording an outcome."""
    _records: JobRecords | None = None
    released: bool = False
    """True once `complete` has released the lock along with its write."""

    async def complete(self, source: SourceRecord, outputs: Sequence[OutputRecord]) -> None:
        """Record success (and `images.processed` for a seed row) and release the claim; the
        write is batched with other jobs' completions."""
        assert self._records is not None, "only a started claim completes"
        payload = json.dumps([asdict(o) for o in outputs])
        await self._records.submit(
            "complete", (self.job.id, payload, source.bytes, source.width, source.height)
        )
        self.released = True


Kind = Literal["claim", "complete", "release"]
FLUSH_ORDER: tuple[Kind, ...] = ("complete", "release", "claim")
Request = tuple[tuple[Any, ...], asyncio.Future[Any]]


class JobRecords:
    """Reads and writes the `jobs` (and, for seed rows, `images`) tables.

    Claims and completions — two per image — are batched as group commit (`batching`): a
    request finding the lock session idle is sent at once, alone; whatever queued up while a
    statement ran goes in the next one, so a busy worker makes a few round trips per batch
    instead of two per image, and PostgreSQL commits once per batch.

    Every claim's advisory lock lives on one connection, the lock session, which runs those
    statements; session-level locks are re-entrant, so the worker also keeps the ids it holds and
    answers a second delivery of one of them "busy" itself. If the lock session fails it is
    terminated, which releases all its locks at once (in-flight jobs finish unprotected: their
    writes are atomic and their completion idempotent); a crashed worker's locks go the same way.
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._session: asyncpg.pool.PoolConnectionProxy | None = None
        self._queues: dict[Kind, list[Request]] = {"complete": [], "release": [], "claim": []}
        self._flusher: asyncio.Task[None] | None = None
        self._held: set[str] = set()

    @contextlib.asynccontextmanager
    async def claim(self, job: ImageJob) -> AsyncIterator[Claim]:
        """Claim `job` for the duration of the block (see `Claim.state`)."""
        if job.id in self._held:
            yield Claim(job, "busy", 0)
            return
        self._held.add(job.id)
        claim: Claim | None = None
        try:
            held, attempts, unfinished = await self.submit(
                "claim", (job.id, job_kind(job), job.url, _ops(job), job.batch, _image_id(job))
            )
            if not held:
                claim = Claim(job, "busy", 0, released=True)
            elif attempts is None:
                claim = Claim(job, "completed", 0)
            else:
                claim = Claim(job, "started", int(attempts), int(unfinished) - 1, self)
            yield claim
        finally:
            try:
                if claim is not None and not claim.released:
                    with contextlib.suppress(RecordError):
                        await self.submit("release", (job.id,))
            finally:
                self._held.discard(job.id)

    async def submit(self, kind: Kind, row: tuple[Any, ...]) -> Any:
        """Queue one row for the next statement of its kind and wait for its result."""
        future = self._enqueue(kind, row)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            if kind == "claim":  # the lock may be taken after all: let it go when it is
                future.add_done_callback(lambda done: self._release_if_held(row[0], done))
            raise

    def _enqueue(self, kind: Kind, row: tuple[Any, ...]) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queues[kind].append((row, future))
        flushing = self._flusher is not None and not self._flusher.done()
        if batching.take(batching.BatchState(queued=1, flushing=flushing)):
            self._flusher = asyncio.create_task(self._flush(), name="job-records")
        return future

    def _release_if_held(self, job_id: str, claimed: asyncio.Future[Any]) -> None:
        if claimed.cancelled() or claimed.exception() is not None or not claimed.result()[0]:
            return
        release = self._enqueue("release", (job_id,))
        release.add_done_callback(lambda done: done.cancelled() or done.exception())

    async def _flush(self) -> None:
        """Run queued requests until none are left, one statement at a time, each taking every
        request of its kind queued when it starts: per round completions, then releases (both
        free claims), then claims — every kind gets its turn each round, so a steady stream of
        completions never starves the claims. Every request gets an answer, whatever happens
        to a statement."""
        try:
            while any(self._queues.values()):
                for kind in FLUSH_ORDER:
                    batch, self._queues[kind] = self._queues[kind], []
                    if batch:
                        await self._run(kind, batch)
        except BaseException as exc:  # cancelled (the loop is closing): nobody may wait forever
            for kind, queued in self._queues.items():
                self._queues[kind] = []
                self._fail(queued, f"cannot {kind}: {exc!r}")
            raise

    async def _run(self, kind: Kind, batch: list[Request]) -> None:
        columns = [list(column) for column in zip(*(row for row, _future in batch), strict=True)]
        sql = {"claim": CLAIMS_SQL, "complete": COMPLETIONS_SQL, "release": RELEASES_SQL}[kind]
        try:
            session = await self._lock_session()
            rows = await session.fetch(sql, *columns)
            if kind == "claim":
                results = {r["id"]: (bool(r["held"]), r["attempts"], r["unfinished"]) for r in rows}
                for row, future in batch:
                    if not future.done():
                        future.set_result(results[row[0]])
            else:
                for _row, future in batch:
                    if not future.done():
                        future.set_result(None)
        except BaseException as exc:
            # The session's state (which locks it holds) is unknown now: end it, which
            # releases them all, and let the jobs' deliveries go back to the queue.
            self._fail(batch, f"cannot {kind} {len(batch)} job(s): {exc!r}")
            await self._drop_session()
            if not isinstance(exc, Exception):
                raise
            if not isinstance(exc, DB_ERRORS):
                log.exception("recording %d job(s) failed unexpectedly", len(batch))

    @staticmethod
    def _fail(batch: list[Request], reason: str) -> None:
        """A RecordError of its own for each waiting job (they are raised in different tasks)."""
        for _row, future in batch:
            if not future.done():
                future.set_exception(RecordError(reason))

    async def _lock_session(self) -> asyncpg.pool.PoolConnectionProxy:
        if self._session is None:
            self._session = await self._pool.acquire()
        return self._session

    async def _drop_session(self) -> None:
        """Terminate the lock session: closing it is what releases its locks for certain."""
        session, self._session = self._session, None
        if session is not None:
            with contextlib.suppress(*DB_ERRORS):  # already closed by a lost connection
                session.terminate()
            with contextlib.suppress(*DB_ERRORS):
                await self._pool.release(session)

    async def close(self) -> None:
        """Hand the lock session back (after the jobs are drained), or end it if a lock is
        still held."""
        if self._held:
            await self._drop_session()
            return
        session, self._session = self._session, None
        if session is not None:
            with contextlib.suppress(*DB_ERRORS):
                await self._pool.release(session)

    async def died_before(self, job_id: str) -> bool:
        """Whether an earlier delivery claimed the job and died without recording an outcome
        (a cheap look, taking no claim)."""
        try:
            unfinished = await self._pool.fetchval(
                "SELECT unfinished FROM jobs WHERE id = $1", job_id
            )
        except DB_ERRORS as exc:
            raise RecordError(f"cannot look up {job_id}: {exc}") from exc
        return bool(unfinished)

    async def fail(self, job_id: str, reason: str, code: str) -> None:
        """Record a final failure with its reason code, the one the dead-lettered message
        carries (a no-op when the row does not exist or already completed)."""
        await self._update(FAIL_SQL, job_id, reason, code)

    async def retrying(self, job_id: str, reason: str) -> None:
        """Record that the job waits for another attempt."""
        await self._update(RETRY_SQL, job_id, reason)

    async def unspend(self, job_id: str, reason: str) -> None:
        """Give back the attempt a claim counted, for a delivery that did not spend one (it
        waits for a throttling origin, or one of our dependencies was down), and say why."""
        await self._update(UNSPEND_SQL, job_id, reason)

    async def _update(self, sql: str, job_id: str, *values: str) -> None:
        try:
            await self._pool.execute(sql, job_id, *values)
        except DB_ERRORS as exc:
            raise RecordError(f"cannot record the outcome of {job_id}: {exc}") from exc
