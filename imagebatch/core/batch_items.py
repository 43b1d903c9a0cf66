"""A batch item as users see it, and the two ways to read a batch's items: by page and all of them.

`GET /batches/{name}/items` (a page), `GET /batches/{name}/manifest` and `manifest.jsonl` (every
item) show the same fields, so the shape and the queries live here once: `BatchItem` is one line
of the manifest and one entry (or CSV row) of a page.

Both reads are keyset scans in item-id order over the `(batch, id)` and `(batch, status, id)`
indexes of migration 0006: a page costs `limit` index entries wherever it starts, at 1,000,000
items as at 100; the full read goes through a server-side cursor, so memory stays flat in the
batch's size.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

import asyncpg
import asyncpg.pool
from pydantic import BaseModel, Field

from imagebatch.core.jobs import JobStatus

Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
"""A connection of its own or one lent by a pool."""
MAX_PAGE = 1000
"""The largest page a caller may ask for (the manifest has every item)."""
CURSOR_PREFETCH = 1000
"""Rows the full read takes from PostgreSQL per round trip."""


class ItemOutput(BaseModel):
    """One thumbnail: a path relative to the output folder, or `s3://bucket/key`."""

    path: str
    bytes: int | None = None
    width: int | None = None
    height: int | None = None
    format: str | None = None


class BatchItem(BaseModel):
    """One item of a batch: a manifest line, a page entry, a CSV row."""

    id: str
    url: str
    status: JobStatus
    attempts: int
    error: str | None = Field(default=None, description="Why it failed (failed items).")
    outputs: list[ItemOutput] = Field(default_factory=list)

    def line(self) -> bytes:
        """The item as one manifest line (JSON, newline-terminated)."""
        return self.model_dump_json().encode() + b"\n"


class ItemsPage(BaseModel):
    """A page of items in id order; `after` is the cursor of the next page (None: the last)."""

    items: list[BatchItem]
    after: str | None = Field(
        default=None, description="Pass as `after=` for the next page; null on the last page."
    )


COLUMNS = "id, url, status, attempts, error, outputs"
PAGE_SQL = f"""
SELECT {COLUMNS} FROM jobs
 WHERE batch = $1 AND id COLLATE "C" > $2
 ORDER BY id COLLATE "C" LIMIT $3
"""
PAGE_BY_STATUS_SQL = f"""
SELECT {COLUMNS} FROM jobs
 WHERE batch = $1 AND status = $4 AND id COLLATE "C" > $2
 ORDER BY id COLLATE "C" LIMIT $3
"""
ALL_SQL = f'SELECT {COLUMNS} FROM jobs WHERE batch = $1 ORDER BY id COLLATE "C"'
"""Two page statements rather than one with `($4 IS NULL OR status = $4)`: a prepared
statement's generic plan could not use the status index for that. Ids compare bytewise
(`COLLATE "C"`), as migration 0006's indexes hold them (see there why)."""


def _outputs(raw: Any) -> list[ItemOutput]:
    if isinstance(raw, str):  # a connection without the pool's JSON codec
        raw = json.loads(raw)
    if not isinstance(raw, list):
        return []
    return [ItemOutput.model_validate(o) for o in raw if isinstance(o, dict) and "path" in o]


def item_from_row(row: asyncpg.Record | dict[str, Any]) -> BatchItem:
    return BatchItem(
        id=row["id"],
        url=row["url"],
        status=row["status"],
        attempts=row["attempts"],
        error=row["error"],
        outputs=_outputs(row["outputs"]),
    )


async def items_page(
    db: asyncpg.Pool | asyncpg.Connection,
    batch: str,
    *,
    status: JobStatus | None = None,
    limit: int = 100,
    after: str | None = None,
) -> ItemsPage:
    """The items of `batch` after the id `after`, at most `limit` (1…MAX_PAGE) of them."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be between 1 and {MAX_PAGE}")
    args: list[Any] = [batch, after or "", limit + 1]
    if status is None:
        rows = await db.fetch(PAGE_SQL, *args)
    else:
        rows = await db.fetch(PAGE_BY_STATUS_SQL, *args, status)
    items = [item_from_row(r) for r in rows[:limit]]
    more = len(rows) > limit
    return ItemsPage(items=items, after=items[-1].id if more else None)


async def all_items(conn: Conn, batch: str) -> AsyncIterator[BatchItem]:
    """Every item of `batch` in id order, through a server-side cursor (`conn` must not be in
    use meanwhile; the cursor's transaction is opened and closed here)."""
    async with conn.transaction(readonly=True, isolation="repeatable_read"):
        async for row in conn.cursor(ALL_SQL, batch, prefetch=CURSOR_PREFETCH):
            yield item_from_row(row)


CSV_HEADER: Sequence[str] = ("id", "url", "status", "attempts", "error", "outputs")


def csv_text(items: Iterable[BatchItem], *, header: bool = True) -> str:
    """Items as CSV rows; `outputs` is a JSON array (the same objects as in JSON)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if header:
        writer.writerow(CSV_HEADER)
    for item in items:
        outputs = json.dumps([o.model_dump() for o in item.outputs], separators=(",", ":"))
        writer.writerow([item.id, item.url, item.status, item.attempts, item.error or "", outputs])
    return buffer.getvalue()
