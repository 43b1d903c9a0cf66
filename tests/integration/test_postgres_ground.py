"""The PostgreSQL the suite runs against is a real server, and the schema arrives by migrations."""

from __future__ import annotations

import asyncio

import asyncpg

from imagebatch.core.db import apply_migrations, create_pool, migration_files


async def test_a_row_written_through_asyncpg_reads_back(database_url: str) -> None:
    pool = await create_pool(database_url)
    try:
        async with pool.acquire() as conn:
            image_id = await conn.fetchval(
                "INSERT INTO images (url) VALUES ($1) RETURNING id", "https://example.test/a.jpg"
            )
            await conn.execute(
                "INSERT INTO jobs (id, kind, url, ops, image_id) VALUES ($1, 'image', $2, $3, $4)",
                str(image_id),
                "https://example.test/a.jpg",
                [{"thumbnail": {"width": 64}}],
                image_id,
            )
            row = await conn.fetchrow(
                "SELECT status, ops, attempts FROM jobs WHERE id = $1", str(image_id)
            )
    finally:
        await pool.close()
    assert row is not None
    assert row["status"] == "pending"
    assert row["attempts"] == 0
    assert row["ops"] == [{"thumbnail": {"width": 64}}], "JSONB columns decode to Python objects"


async def test_migrations_apply_once_even_when_replicas_start_together(database_url: str) -> None:
    # The fixture already migrated this database; five more concurrent runs must change nothing.
    async def run() -> list[str]:
        conn: asyncpg.Connection = await asyncpg.connect(database_url)
        try:
            return await apply_migrations(conn)
        finally:
            await conn.close()

    results = await asyncio.gather(*(run() for _ in range(5)))
    assert results == [[] for _ in range(5)]

    conn: asyncpg.Connection = await asyncpg.connect(database_url)
    try:
        recorded = [
            r["version"]
            for r in await conn.fetch("SELECT version FROM schema_migrations ORDER BY 1")
        ]
    finally:
        await conn.close()
    assert recorded == [version for version, _ in migration_files()]


async def test_the_server_is_postgresql_not_a_stand_in(database_url: str) -> None:
    conn: asyncpg.Connection = await asyncpg.connect(database_url)
    try:
        version = await conn.fetchval("SHOW server_version_num")
    finally:
        await conn.close()
    assert int(version) >= 130000
