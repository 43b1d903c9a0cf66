"""PostgreSQL reads and writes of the api, one function per question or change.

The `jobs` table (migration 0001) is shared with the workers: the api inserts rows as `pending`
before publishing, the workers move them through processing → completed | failed. Seed rows of
`images` become jobs with `id = images.id` when /enqueue claims them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from pydantic import ValidationError

from imagebatch.api.models import Job, JobCounts, OutputFile, SourceInfo
from imagebatch.core.jobs import SHORT_OPS


@dataclass(frozen=True)
class ClaimedImage:
    """A seed row /enqueue has turned into a pending job and must now publish."""

    id: str
    url: str


@dataclass(frozen=True)
class UploadRecord:
    """What POST /uploads stores about one original."""

    id: str
    url: str
    filename: str | None
    content_type: str
    bytes: int
    path: str
    caller: str | None = None


async def insert_task(
    pool: asyncpg.Pool,
    *,
    job_id: str,
    url: str,
    ops: list[Any],
    idempotency_key: str | None,
    request_hash: str,
    caller: str | None = None,
) -> tuple[asyncpg.Record, bool]:
    """Insert a pending task; with a key already used, return that task instead.

    Returns (row, created). The unique index on `idempotency_key` makes concurrent retries with
    one key agree on one row.
    """
    for _ in range(3):
        row = await pool.fetchrow(
            "INSERT INTO jobs (id, kind, url, ops, status, idempotency_key, request_hash, caller)"
            " VALUES ($1, 'task', $2, $3, 'pending', $4, $5, $6)"
            " ON CONFLICT (idempotency_key) DO NOTHING RETURNING *",
            job_id,
            url,
            ops,
            idempotency_key,
            request_hash,
            caller,
        )
        if row is not None:
            return row, True
        existing = await pool.fetchrow(
            "SELECT * FROM jobs WHERE idempotency_key = $1", idempotency_key
        )
        if existing is not None:
            return existing, False
        # The holder of the key was removed (its publish failed) between our two statements.
    raise RuntimeError("idempotency key kept vanishing; giving up")  # pragma: no cover


async def insert_upload(pool: asyncpg.Pool, upload: UploadRecord) -> None:
    """The upload's job and its `uploads` row, together or not at all."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO jobs (id, kind, url, ops, status, caller)"
            " VALUES ($1, 'upload', $2, $3, 'pending', $4)",
            upload.id,
            upload.url,
            SHORT_OPS,
            upload.caller,
        )
        await conn.execute(
            "INSERT INTO uploads (id, filename, content_type, bytes, path)"
            " VALUES ($1, $2, $3, $4, $5)",
            upload.id,
            upload.filename,
            upload.content_type,
            upload.bytes,
            upload.path,
        )


async def open_jobs(pool: asyncpg.Pool, caller: str) -> int:
    """Tasks and uploads of `caller` that are not completed or failed yet."""
    count: int = await pool.fetchval(
        "SELECT count(*) FROM jobs WHERE caller = $1 AND status IN ('pending', 'processing')",
        caller,
    )
    return count


async def task_by_key(pool: asyncpg.Pool, idempotency_key: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await pool.fetchrow(
        "SELECT * FROM jobs WHERE idempotency_key = $1", idempotency_key
    )
    return row


async def delete_job(pool: asyncpg.Pool, job_id: str) -> None:
    """Forget a job whose message never reached the broker (its uploads row cascades)."""
    await pool.execute("DELETE FROM jobs WHERE id = $1 AND published_at IS NULL", job_id)


async def mark_unpublished(pool: asyncpg.Pool, job_ids: Sequence[str], reason: str) -> None:
    """Claimed seed rows whose publish failed: failed jobs, which the next /enqueue retries."""
    if job_ids:
        await pool.execute(
            "UPDATE jobs SET status = 'failed', error = $2, updated_at = now()"
            " WHERE id = ANY($1::text[]) AND status = 'pending' AND published_at IS NULL",
            list(job_ids),
            reason,
        )


CLAIM_IMAGES = """
WITH picked AS (
    SELECT i.id, i.url
    FROM images i
    LEFT JOIN jobs j ON j.id = i.id::text
    WHERE NOT i.processed
      AND i.url ~* '^https?://' AND length(i.url) <= 2048
      AND (
          j.id IS NULL
          OR (j.kind = 'image' AND j.status = 'failed' AND j.published_at IS NULL)
      )
      AND NOT EXISTS (
          SELECT 1 FROM jobs other
          WHERE other.image_id = i.id AND other.status IN ('pending', 'processing')
      )
    ORDER BY i.id
    LIMIT $1
    FOR UPDATE OF i SKIP LOCKED
)
INSERT INTO jobs (id, kind, url, ops, image_id, status)
SELECT picked.id::text, 'image', picked.url, '["thumbnail"]'::jsonb, picked.id, 'pending'
FROM picked
ON CONFLICT (id) DO UPDATE
    SET status = 'pending', error = NULL, url = EXCLUDED.url, published_at = NULL,
        updated_at = now()
    WHERE jobs.kind = 'image' AND jobs.status = 'failed' AND jobs.published_at IS NULL
RETURNING id, url
"""


async def claim_images(pool: asyncpg.Pool, limit: int) -> list[ClaimedImage]:
    """Turn up to `limit` unprocessed seed rows into pending jobs, oldest first.

    A row is claimed only when it has no job yet, or its job failed before its message reached
    the broker: a pending, processing, completed or worker-failed job (whose retries and
    dead-lettering are the workers' business) is never published again, and neither is a row
    that another job (a batch item naming it in `image_id`) is pending or processing. Rows whose
    url is not http(s) are never claimed. Concurrent calls skip each other's rows, and the
    conflict clause stops two calls from claiming one row even across snapshots.
    """
    rows = await pool.fetch(CLAIM_IMAGES, limit)
    claimed = [ClaimedImage(id=r["id"], url=r["url"]) for r in rows]
    return sorted(claimed, key=lambda c: int(c.id))


JOB_COLUMNS = "j.*, u.filename"
JOB_FROM = "jobs j LEFT JOIN uploads u ON u.id = j.id"


async def get_job(pool: asyncpg.Pool, job_id: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await pool.fetchrow(
        f"SELECT {JOB_COLUMNS} FROM {JOB_FROM} WHERE j.id = $1", job_id
    )
    return row


async def get_seed_image(pool: asyncpg.Pool, image_id: int) -> asyncpg.Record | None:
    """A seed row of `images` (for ids that have no job yet)."""
    row: asyncpg.Record | None = await pool.fetchrow(
        "SELECT id, url, processed, created_at FROM images WHERE id = $1", image_id
    )
    return row


async def recent_jobs(
    pool: asyncpg.Pool, limit: int, owner: str | None = None
) -> list[asyncpg.Record]:
    """The newest jobs; with `owner`, only the jobs that caller created."""
    if owner is None:
        rows: list[asyncpg.Record] = await pool.fetch(
            f"SELECT {JOB_COLUMNS} FROM {JOB_FROM} ORDER BY j.created_at DESC, j.id DESC LIMIT $1",
            limit,
        )
    else:
        rows = await pool.fetch(
            f"SELECT {JOB_COLUMNS} FROM {JOB_FROM} WHERE j.caller = $2"
            " ORDER BY j.created_at DESC, j.id DESC LIMIT $1",
            limit,
            owner,
        )
    return rows


async def job_counts(pool: asyncpg.Pool, owner: str | None = None) -> JobCounts:
    """Jobs per state; with `owner`, only the jobs that caller created."""
    if owner is None:
        rows = await pool.fetch("SELECT status, count(*) AS n FROM jobs GROUP BY status")
    else:
        rows = await pool.fetch(
            "SELECT status, count(*) AS n FROM jobs WHERE caller = $1 GROUP BY status", owner
        )
    return JobCounts(**{r["status"]: r["n"] for r in rows})


def parse_outputs(raw: Any) -> list[OutputFile]:
    """The outputs a worker recorded; entries that are not well-formed are left out."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            return []
    if not isinstance(raw, list):
        return []
    outputs = []
    for item in raw:
        try:
            outputs.append(OutputFile.model_validate(item))
        except ValidationError:
            continue
    return outputs


def job_view(row: asyncpg.Record) -> Job:
    """The public view of a `jobs` row."""
    outputs = parse_outputs(row["outputs"])
    completed = row["status"] == "completed" and bool(outputs)
    source = None
    if any(row[k] is not None for k in ("source_bytes", "source_width", "source_height")):
        source = SourceInfo(
            bytes=row["source_bytes"], width=row["source_width"], height=row["source_height"]
        )
    return Job(
        id=row["id"],
        kind=row["kind"],
        url=row["url"],
        filename=row.get("filename"),
        status=row["status"],
        attempts=row["attempts"],
        error=row["error"],
        batch=row["batch"],
        outputs=outputs,
        source=source,
        thumbnail_url=f"/images/{row['id']}/thumbnail" if completed else None,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        published_at=row["published_at"],
        started_at=row["started_at"],
        completed_at=row["completed_at"],
    )
