"""The `jobs` table's vocabulary and the statements more than one service runs on it.

Three services write `jobs`: the api (tasks, uploads, seed rows it enqueues), the operator (batch
items) and the workers (every outcome). They must agree on the kinds and statuses a row can have
(the CHECK constraints of migration 0001), on how a message maps to a kind, and on what
"published" means, so those live here once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import asyncpg

from imagebatch.core.batch_status import MAX_FAILURE_REASONS
from imagebatch.core.messages import ImageJob

JobStatus = Literal["pending", "processing", "completed", "failed"]
"""pending → processing → completed | failed; a retried job goes back to pending."""
JobKind = Literal["image", "batch", "task", "upload"]
"""image: a seed row of `images` (/enqueue); batch: an ImageBatch item; task: POST /tasks;
upload: POST /uploads."""
JOB_STATUSES: tuple[JobStatus, ...] = get_args(JobStatus)
JOB_KINDS: tuple[JobKind, ...] = get_args(JobKind)

SHORT_OPS: list[Any] = ["thumbnail"]
"""The seed's short form of `ops`: one 256x256 JPEG at `<OUTPUT_DIR>/<id>.jpg`."""


def job_kind(job: ImageJob) -> JobKind:
    """How a job is filed when a consumer creates its row (its producer may not have)."""
    if job.batch is not None:
        return "batch"
    if job.upload_name is not None:
        return "upload"
    if job.short_form and job.id.isdigit():
        return "image"
    return "task"


MARK_PUBLISHED_SQL = """
UPDATE jobs SET published_at = now()
 WHERE id = ANY($1::text[]) AND published_at IS NULL
"""


async def mark_published(db: asyncpg.Pool | asyncpg.Connection, job_ids: Sequence[str]) -> None:
    """Record that the broker confirmed these jobs' messages (a no-op for ids already marked)."""
    if job_ids:
        await db.execute(MARK_PUBLISHED_SQL, list(job_ids))


@dataclass(frozen=True)
class BatchCounts:
    """A batch's items by state, as the `batch_counts` triggers keep them (migration 0002)."""

    total: int = 0
    published: int = 0
    pending: int = 0
    processing: int = 0
    completed: int = 0
    failed: int = 0
    retried: int = 0
    failure_codes: tuple[tuple[str, int], ...] = ()
    """(reason code, failed items) of the most frequent codes, at most `MAX_FAILURE_REASONS`,
    most frequent first (migration 0005's `batch_failures`)."""

    @property
    def done(self) -> int:
        """Items that reached an end: completed or failed."""
        return self.completed + self.failed


_TOP_FAILURES = f"""
    SELECT code, count FROM batch_failures WHERE batch = $1 AND count > 0
     ORDER BY count DESC, code LIMIT {MAX_FAILURE_REASONS}"""
BATCH_COUNTS_SQL = f"""
SELECT total, published, pending, processing, completed, failed, retried,
       ARRAY(SELECT code FROM ({_TOP_FAILURES}) AS top) AS codes,
       ARRAY(SELECT count FROM ({_TOP_FAILURES}) AS top) AS code_counts
  FROM batch_counts WHERE batch = $1
"""
COUNT_COLUMNS = ("total", "published", "pending", "processing", "completed", "failed", "retried")


async def batch_counts(db: asyncpg.Pool | asyncpg.Connection, batch: str) -> BatchCounts:
    """The counts of `batch` (`<namespace>/<name>`) and its most frequent failure codes: one
    primary-key read and one range of a few rows, whatever the batch's size."""
    row = await db.fetchrow(BATCH_COUNTS_SQL, batch)
    if row is None:
        return BatchCounts()
    codes = tuple(zip(row["codes"], (int(n) for n in row["code_counts"]), strict=True))
    return BatchCounts(**{k: int(row[k]) for k in COUNT_COLUMNS}, failure_codes=codes)
