"""A finished batch's items written straight into PostgreSQL, as workers would have left them:
100,000 rows in a few seconds (one INSERT … SELECT generate_series), for tests and benchmarks of
what reads a batch's items (pages, the manifest)."""

from __future__ import annotations

import asyncpg

INSERT_ITEMS_SQL = """
INSERT INTO jobs (id, kind, url, batch, status, attempts, outputs, error, published_at)
SELECT $2 || '-' || lpad(n::text, 9, '0'), 'batch',
       'https://origin.test/' || n || '.jpg', $1,
       CASE WHEN n % $4 = 0 THEN 'failed' ELSE 'completed' END,
       CASE WHEN n % $4 = 0 THEN 3 ELSE 1 END,
       CASE WHEN n % $4 = 0 THEN '[]'::jsonb
            ELSE jsonb_build_array(jsonb_build_object(
                'path', $5 || $2 || '-' || lpad(n::text, 9, '0') || '_256x256.jpg',
                'width', 256, 'height', 192, 'bytes', 10000 + n % 5000, 'format', 'jpeg'))
       END,
       CASE WHEN n % $4 = 0 THEN 'http_404: the origin answered 404' END,
       now()
  FROM generate_series(1, $3) AS n
"""


async def insert_items(
    db: asyncpg.Pool | asyncpg.Connection,
    batch: str,
    count: int,
    *,
    failed_every: int = 100,
    id_prefix: str = "0123456789ab",
    output_prefix: str = "",
) -> None:
    """`count` items of `batch`, every `failed_every`-th failed (http_404), the rest completed
    with one thumbnail each at `<output_prefix><id>_256x256.jpg`."""
    await db.execute(INSERT_ITEMS_SQL, batch, id_prefix, count, failed_every, output_prefix)
