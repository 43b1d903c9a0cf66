"""manifest.jsonl of a 100,000-item batch (rows written straight into the test's PostgreSQL) in a
folder and in a bucket of the suite's S3 server: one parsable line per item, and the manifest
appears whole or not at all — a write that fails half-way leaves the previous one (or none)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from imagebatch.core.locations import FileLocation, parse_bucket_url
from imagebatch.core.manifest import CONTENT_TYPE, manifest_key, write_manifest
from imagebatch.core.objectstore import Buckets, S3Settings
from imagebatch.core.stores import FileStore, ObjectStore, Store
from imagebatch.devservers.s3 import S3Server
from tests.support.batch_rows import insert_items

BATCH = "ns/photos"


@pytest.fixture(params=["folder", "bucket"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "folder":
        return FileStore(FileLocation(tmp_path / "out"))
    server: S3Server = request.getfixturevalue("s3_server")
    bucket: str = request.getfixturevalue("s3_bucket")
    settings = S3Settings(**{k.lower(): v for k, v in server.aws_env().items()})
    return ObjectStore(parse_bucket_url(f"s3://{bucket}/thumbs"), Buckets(settings))


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database_url)
    try:
        yield connection
    finally:
        await connection.close()


async def manifest_lines(store: Store) -> list[dict[str, object]]:
    body = await store.read(manifest_key("ns/photos"), 1 << 30)
    assert body is not None
    return [json.loads(line) for line in body.decode().splitlines()]


@pytest.mark.slow
async def test_the_manifest_of_100000_items_has_one_parsable_line_per_item(
    store: Store, conn: asyncpg.Connection
) -> None:
    await insert_items(conn, BATCH, 100_000, failed_every=50)

    written = await write_manifest(conn, store, BATCH, "ns/photos")

    lines = await manifest_lines(store)
    assert written.lines == len(lines) == 100_000
    assert written.location.endswith("ns/photos/manifest.jsonl")
    assert [line["id"] for line in lines] == [f"0123456789ab-{n:09d}" for n in range(1, 100_001)]
    assert sum(line["status"] == "failed" for line in lines) == 2_000
    first = lines[0]
    assert set(first) == {"id", "url", "status", "attempts", "error", "outputs"}
    assert first["outputs"] == [
        {
            "path": "0123456789ab-000000001_256x256.jpg",
            "bytes": 10001,
            "width": 256,
            "height": 192,
            "format": "jpeg",
        }
    ]


async def test_a_manifest_is_replaced_whole_or_left_as_it_was(
    store: Store, conn: asyncpg.Connection, request: pytest.FixtureRequest
) -> None:
    await insert_items(conn, BATCH, 2_000)
    key = manifest_key("ns/photos")

    async def breaks_half_way() -> AsyncIterator[bytes]:
        yield b'{"id": "half"}\n' * 100_000  # more than one part of a multipart upload
        raise ConnectionResetError("PostgreSQL went away")

    with pytest.raises(ConnectionResetError):
        await store.replace(key, breaks_half_way(), CONTENT_TYPE)
    assert await store.size(key) is None  # nothing at all, not a part

    await write_manifest(conn, store, BATCH, "ns/photos")
    await conn.execute("UPDATE jobs SET status = 'completed', error = NULL WHERE batch = $1", BATCH)
    with pytest.raises(ConnectionResetError):
        await store.replace(key, breaks_half_way(), CONTENT_TYPE)
    before = await manifest_lines(store)
    assert len(before) == 2_000  # the previous manifest, whole
    assert sum(line["status"] == "failed" for line in before) == 20

    await write_manifest(conn, store, BATCH, "ns/photos")  # the batch ended again
    assert all(line["status"] == "completed" for line in await manifest_lines(store))
    if isinstance(store, ObjectStore):
        server: S3Server = request.getfixturevalue("s3_server")
        assert server.multipart_uploads(store.location.bucket) == []  # the broken ones aborted
    if isinstance(store, FileStore):
        leftovers = [p.name for p in store.path(key).parent.iterdir()]
        assert leftovers == ["manifest.jsonl"]  # no temp file left behind
