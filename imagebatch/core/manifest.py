"""`manifest.jsonl`: every item of a finished batch, one JSON object per line, beside its outputs.

The lines are `BatchItem`s (core/batch_items.py), the same objects `GET /batches/{name}/items`
and `GET /batches/{name}/manifest` show. They are read through a server-side cursor and handed to
the store in chunks of about `CHUNK_BYTES`, so the writer holds one chunk and one cursor batch
whatever the batch's size; the store's `replace` makes the file or object appear whole or not at
all (and replaces the previous manifest the same way after a retried batch ends).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from imagebatch.core.batch_items import Conn, all_items
from imagebatch.core.stores import Store

MANIFEST_NAME = "manifest.jsonl"
CONTENT_TYPE = "application/jsonl"
CHUNK_BYTES = 256 * 1024


def manifest_key(output_prefix: str) -> str:
    """The manifest's key under the output location: `<prefix>/manifest.jsonl`."""
    return f"{output_prefix.strip('/')}/{MANIFEST_NAME}"


@dataclass(frozen=True)
class Written:
    """A manifest that was stored: where (as a row or status names it), lines and bytes."""

    location: str
    lines: int
    bytes: int


async def manifest_chunks(conn: Conn, batch: str, counter: list[int]) -> AsyncIterator[bytes]:
    """The manifest's bytes in chunks of about CHUNK_BYTES; `counter[0]` counts the lines."""
    pending: list[bytes] = []
    size = 0
    async for item in all_items(conn, batch):
        line = item.line()
        pending.append(line)
        size += len(line)
        counter[0] += 1
        if size >= CHUNK_BYTES:
            yield b"".join(pending)
            pending, size = [], 0
    if pending:
        yield b"".join(pending)


async def write_manifest(conn: Conn, store: Store, batch: str, output_prefix: str) -> Written:
    """Write (or rewrite) the manifest of `batch` (`<namespace>/<name>`) into `store`.

    Raises `DependencyDown` when the store cannot take it and asyncpg's errors when PostgreSQL
    fails meanwhile; in both cases the previous manifest, if any, is what readers keep seeing.
    """
    key = manifest_key(output_prefix)
    counter = [0]
    written = await store.replace(key, manifest_chunks(conn, batch, counter), CONTENT_TYPE)
    return Written(location=store.describe(key), lines=counter[0], bytes=written)
