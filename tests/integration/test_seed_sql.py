"""The docker compose seed (db/init/01-seed.sql) on a real PostgreSQL, in the order compose runs
things: the seed first (PostgreSQL's image runs it when it initialises), then the services'
migrations at start-up, which must adopt the seed's `images` table rather than trip over it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from imagebatch.core.db import apply_migrations
from imagebatch.devservers.samples import sample_name
from tests.support.servers import ServerHandle

SEED = Path(__file__).resolve().parents[2] / "db" / "init" / "01-seed.sql"


@pytest.fixture
async def fresh_database(postgres_server: ServerHandle) -> AsyncIterator[asyncpg.Connection]:
    """An empty database, as the compose volume is before the seed runs."""
    name = f"seed_{uuid.uuid4().hex[:12]}"
    admin: asyncpg.Connection = await asyncpg.connect(postgres_server.url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        base = postgres_server.url.rpartition("/")[0]
        conn: asyncpg.Connection = await asyncpg.connect(f"{base}/{name}")
        try:
            yield conn
        finally:
            await conn.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def test_the_seed_gives_300_unprocessed_images_on_the_sample_server(
    fresh_database: asyncpg.Connection,
) -> None:
    await fresh_database.execute(SEED.read_text())

    rows = await fresh_database.fetch("SELECT id, url, processed FROM images ORDER BY id")

    assert len(rows) == 300
    assert not any(row["processed"] for row in rows)
    assert len({row["url"] for row in rows}) == 300
    for row in rows:
        url = urlsplit(row["url"])
        assert (url.scheme, url.netloc) == ("http", "samples:8765"), "compose's samples service"
        assert sample_name(url.path) is not None, f"the sample server would 404 {row['url']}"


async def test_the_migrations_adopt_the_seeded_table_and_keep_its_rows(
    fresh_database: asyncpg.Connection,
) -> None:
    await fresh_database.execute(SEED.read_text())

    await apply_migrations(fresh_database)
    await apply_migrations(fresh_database)  # a second service starting: nothing left to do

    assert await fresh_database.fetchval("SELECT count(*) FROM images WHERE NOT processed") == 300
    columns = {
        row["column_name"]
        for row in await fresh_database.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'images'"
        )
    }
    assert {"id", "url", "processed", "created_at"} <= columns
    next_id = await fresh_database.fetchval(
        "INSERT INTO images (url) VALUES ('http://samples:8765/samples/extra.jpg') RETURNING id"
    )
    assert next_id == 301, "the BIGSERIAL sequence continues after the seeded rows"
