"""A batch's items in PostgreSQL: made from the source before anything is published, then
published from there, so PostgreSQL's record is what a restarted operator resumes from.

- `register` ties the batch's name to the resource's uid; items of an earlier resource with the
  same name (deleted and created again) are removed, so the new one starts from zero.
- `materialize_step` reads the next chunk of source rows through the namespace's own source
  connection (keyset pagination on the source's `id`, never the whole table in memory), turns
  them into pending items and advances the cursor in one transaction: a kill at any moment
  leaves either the whole chunk with its cursor, or neither.
- `unpublished` hands out the next items whose messages are not confirmed yet.

Item ids are `<12 hex digits of the uid>-<source id or position>`: stable across restarts (the
message id a redelivered duplicate is recognised by), and new for a re-created batch, whose
outputs therefore do not collide with the old one's files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import asyncpg

from imagebatch.core.imagebatch import RunSpec
from imagebatch.core.messages import MAX_URL_LENGTH
from imagebatch.operator.sources import SourceConnection


def item_prefix(uid: str) -> str:
    return uid.replace("-", "")[:12]


@dataclass(frozen=True)
class Feed:
    """How far the batch's items are made."""

    materialized: int
    materialized_all: bool


@dataclass(frozen=True)
class Item:
    id: str
    url: str


REGISTER_SQL = """
INSERT INTO batches (batch, uid) VALUES ($1, $2)
ON CONFLICT (batch) DO UPDATE
   SET uid = EXCLUDED.uid, source_cursor = NULL, materialized = 0, materialized_at = NULL,
       retry_request = NULL, retry_items = NULL, retried_at = NULL, created_at = now()
 WHERE batches.uid <> EXCLUDED.uid
RETURNING materialized, materialized_at IS NOT NULL AS done
"""


async def register(pool: asyncpg.Pool, spec: RunSpec, uid: str) -> Feed:
    """Record which resource `spec.batch` is; clears what an earlier one with the name left."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(REGISTER_SQL, spec.batch, uid)
        if row is not None:  # new, or a new resource under an old name: start from zero
            await conn.execute(
                "DELETE FROM jobs WHERE batch = $1 AND id NOT LIKE $2",
                spec.batch,
                f"{item_prefix(uid)}-%",
            )
            return Feed(materialized=int(row["materialized"]), materialized_all=bool(row["done"]))
        current = await conn.fetchrow(
            "SELECT materialized, materialized_at IS NOT NULL AS done"
            " FROM batches WHERE batch = $1",
            spec.batch,
        )
        assert current is not None
        return Feed(
            materialized=int(current["materialized"]), materialized_all=bool(current["done"])
        )


OBJECT_URL_SQL = "^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/[^[:space:]]+$"
"""An item's original in a bucket (the workers read it with their S3 connection)."""
INVALID_URL = (
    f"CASE WHEN src.url IS NULL THEN 'the source row has no url' "
    f"WHEN src.url !~* '^https?://' AND src.url !~ '{OBJECT_URL_SQL}' "
    f"THEN 'the source url is neither an http(s) URL nor s3://<bucket>/<key>' "
    f"WHEN length(src.url) > {MAX_URL_LENGTH} THEN 'the source url is longer than "
    f"{MAX_URL_LENGTH} characters' END"
)
"""Why a source row cannot become a message; its item is recorded failed with that reason."""
INVALID_URL_CODE = "invalid_url"
"""The reason code of such an item (the worker's, for a URL it cannot fetch)."""
MALFORMED_CODE = "malformed"
"""The reason code of an item whose message cannot be built (the worker's, for a bad body)."""


def _insert_items(source: str) -> str:
    """An INSERT of pending items (failed ones for unusable urls) from `source` rows with
    columns key, url, image_id."""
    return f"""
    INSERT INTO jobs (id, kind, url, ops, batch, image_id, status, error, error_code,
                      completed_at)
    SELECT $1 || '-' || src.key, 'batch', coalesce(src.url, ''), $2::jsonb, $3, src.image_id,
           CASE WHEN ({INVALID_URL}) IS NULL THEN 'pending' ELSE 'failed' END,
           {INVALID_URL},
           CASE WHEN ({INVALID_URL}) IS NULL THEN NULL ELSE '{INVALID_URL_CODE}' END,
           CASE WHEN ({INVALID_URL}) IS NULL THEN NULL ELSE now() END
      FROM {source} src
    ON CONFLICT (id) DO NOTHING
    """


INLINE_SQL = _insert_items(
    "(SELECT (n - 1)::text AS key, u AS url, NULL::bigint AS image_id"
    " FROM unnest($4::text[]) WITH ORDINALITY AS t(u, n))"
)


SOURCE_ITEMS_SQL = _insert_items(
    "(SELECT k::text AS key, u AS url,"
    " (SELECT images.id FROM images WHERE images.id = t.i) AS image_id"
    " FROM unnest($4::bigint[], $5::text[], $6::bigint[]) AS t(k, u, i))"
)
"""Items from source rows read through the namespace's connection; a seed row's id becomes the
item's `image_id` (which workers mark processed) only when it is the operator's own `images`."""


def _page_sql(table: str, *, only_unprocessed: bool) -> str:
    """One chunk of the source table after the cursor, in id order."""
    where = "id > $1::bigint" + (" AND NOT processed" if only_unprocessed else "")
    return f'SELECT id, url::text AS url FROM "{table}" WHERE {where} ORDER BY id LIMIT $2'


async def materialize_step(
    pool: asyncpg.Pool, source: SourceConnection | None, spec: RunSpec, uid: str, chunk: int
) -> Feed:
    """Make the next chunk of items; returns how far the batch's items are made now.

    The chunk is read through the namespace's `source` connection (None: the spec's inline
    URLs), and the items and the cursor are recorded in one transaction of the operator's own
    database, which holds the batch's row locked meanwhile."""
    ops = json.dumps(spec.operations_json())
    prefix = item_prefix(uid)
    async with pool.acquire() as conn, conn.transaction():
        state = await conn.fetchrow(
            "SELECT source_cursor, materialized, materialized_at IS NOT NULL AS done"
            " FROM batches WHERE batch = $1 AND uid = $2 FOR UPDATE",
            spec.batch,
            uid,
        )
        if state is None:
            raise LookupError(f"batch {spec.batch} is not registered for uid {uid}")
        if state["done"]:
            return Feed(int(state["materialized"]), True)
        if spec.urls is not None:
            await conn.execute(INLINE_SQL, prefix, ops, spec.batch, list(spec.urls))
            taken, cursor, finished = len(spec.urls), None, True
        else:
            if source is None:
                raise LookupError(f"batch {spec.batch} reads a table but has no source connection")
            wanted = max(min(chunk, spec.limit - int(state["materialized"])), 0)
            sql = _page_sql(spec.table, only_unprocessed=spec.only_unprocessed)
            cursor_in = state["source_cursor"] if state["source_cursor"] is not None else -(2**63)
            rows = await source.pool.fetch(sql, cursor_in, wanted)
            ids = [int(r["id"]) for r in rows]
            seed_rows = source.own_database and spec.table == "images"
            await conn.execute(
                SOURCE_ITEMS_SQL,
                prefix,
                ops,
                spec.batch,
                ids,
                [r["url"] for r in rows],
                ids if seed_rows else [None] * len(ids),
            )
            taken = len(rows)
            cursor = ids[-1] if ids else state["source_cursor"]
            finished = taken < wanted or int(state["materialized"]) + taken >= spec.limit
        materialized = int(state["materialized"]) + taken if spec.urls is None else taken
        await conn.execute(
            "UPDATE batches SET source_cursor = $2, materialized = $3,"
            " materialized_at = CASE WHEN $4 THEN now() END WHERE batch = $1",
            spec.batch,
            cursor,
            materialized,
            finished,
        )
        return Feed(materialized, finished)


UNPUBLISHED_SQL = """
SELECT id, url, status FROM jobs
 WHERE batch = $1 AND published_at IS NULL AND id > $2 AND status <> 'failed'
 ORDER BY id LIMIT $3
"""


async def unpublished(
    pool: asyncpg.Pool, batch: str, *, after: str, limit: int
) -> tuple[list[Item], list[str]]:
    """The next items (after id `after`) whose messages are not confirmed: (to publish, already
    taken by a worker — their message reached the broker before a crash, only the record of it
    did not)."""
    rows = await pool.fetch(UNPUBLISHED_SQL, batch, after, limit)
    fresh = [Item(r["id"], r["url"]) for r in rows if r["status"] == "pending"]
    taken = [r["id"] for r in rows if r["status"] != "pending"]
    return fresh, taken


async def fail(pool: asyncpg.Pool, failures: list[tuple[str, str]]) -> None:
    """Items that can never be a message: failed, with why."""
    await pool.execute(
        f"UPDATE jobs SET status = 'failed', error = t.reason, error_code = '{MALFORMED_CODE}',"
        " completed_at = now(), updated_at = now()"
        " FROM unnest($1::text[], $2::text[]) AS t(id, reason)"
        " WHERE jobs.id = t.id AND jobs.status = 'pending'",
        [f[0] for f in failures],
        [f[1] for f in failures],
    )


async def forget(pool: asyncpg.Pool, batch: str) -> int:
    """Remove a deleted batch's items, counts, record and endings; returns the items removed."""
    async with pool.acquire() as conn, conn.transaction():
        result: str = await conn.execute("DELETE FROM jobs WHERE batch = $1", batch)
        await conn.execute("DELETE FROM batch_counts WHERE batch = $1", batch)
        await conn.execute("DELETE FROM batch_failures WHERE batch = $1", batch)
        await conn.execute("DELETE FROM batches WHERE batch = $1", batch)
        await conn.execute("DELETE FROM batch_endings WHERE batch = $1", batch)
    return int(result.split()[-1])


def describe_source(spec: RunSpec) -> dict[str, Any]:
    """For log lines and events."""
    if spec.urls is not None:
        return {"urls": len(spec.urls)}
    return {"table": spec.table, "limit": spec.limit, "onlyUnprocessed": spec.only_unprocessed}
