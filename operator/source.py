"""What the schema cannot check about a batch's source: that the table exists and can be paged
through. A source that fails here fails the batch (`SourceInvalid`), with the reason."""

from __future__ import annotations

import asyncpg

from imagebatch.core.imagebatch import RunSpec
from imagebatch.operator.progress import Problem

INTEGER_TYPES = frozenset({"smallint", "integer", "bigint"})
COLUMNS_SQL = """
SELECT column_name, data_type FROM information_schema.columns
 WHERE table_schema = current_schema() AND table_name = $1
"""


def _invalid(message: str) -> Problem:
    return Problem("SourceInvalid", message, fatal=True)


async def check_source(pool: asyncpg.Pool, spec: RunSpec) -> Problem | None:
    """None when the batch's source can be read, else why not."""
    if spec.urls is not None:
        return None
    columns = {r["column_name"]: r["data_type"] for r in await pool.fetch(COLUMNS_SQL, spec.table)}
    table = f"table {spec.table!r}"
    if not columns:
        return _invalid(f"{table} does not exist in the database")
    if "url" not in columns:
        return _invalid(f"{table} has no url column")
    if columns.get("id") not in INTEGER_TYPES:
        return _invalid(f"{table} needs an integer id column: items are taken from it in id order")
    if spec.only_unprocessed and columns.get("processed") != "boolean":
        return _invalid(
            f"{table} has no boolean processed column; set source.postgres.onlyUnprocessed: false"
        )
    return None
