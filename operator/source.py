"""What the schema cannot check about a batch's source: that it is not one of ImageBatch's own
tables, that the namespace provides a connection to read it through (`sources.py`), and that
the table exists there, may be read and can be paged through. A source that fails here fails
the batch (`SourceInvalid`), with the reason."""

from __future__ import annotations

from imagebatch.core.imagebatch import RunSpec
from imagebatch.core.owntables import own_tables
from imagebatch.operator.progress import Problem
from imagebatch.operator.sources import NoSourceConnection, SourceConnection, SourceConnections

INTEGER_TYPES = frozenset({"smallint", "integer", "bigint"})
COLUMNS_SQL = """
SELECT column_name, data_type FROM information_schema.columns
 WHERE table_schema = current_schema() AND table_name = $1
"""
ACCESS_SQL = """
SELECT current_user AS role, to_regclass(quote_ident($1)) IS NOT NULL AS found,
       CASE WHEN to_regclass(quote_ident($1)) IS NOT NULL
            THEN has_table_privilege(to_regclass(quote_ident($1)), 'SELECT') END AS readable
"""


def _invalid(message: str) -> Problem:
    return Problem("SourceInvalid", message, fatal=True)


def refused_table(table: str) -> Problem | None:
    """ImageBatch's own tables are never a source, whatever database the namespace reads."""
    if table in own_tables():
        return _invalid(
            f"table {table!r} is ImageBatch's own bookkeeping and can never be a batch's "
            "source; name a table of your own in source.postgres.table"
        )
    return None


async def check_source(sources: SourceConnections, namespace: str, spec: RunSpec) -> Problem | None:
    """None when the batch's source can be read, else why not."""
    if spec.urls is not None:
        return None
    refused = refused_table(spec.table)
    if refused is not None:
        return refused
    try:
        source = await sources.for_namespace(namespace)
    except NoSourceConnection as exc:
        return _invalid(str(exc))
    return await check_table(source, spec)


async def check_table(source: SourceConnection, spec: RunSpec) -> Problem | None:
    pool = source.pool
    table = f"table {spec.table!r}"
    access = await pool.fetchrow(ACCESS_SQL, spec.table)
    assert access is not None
    if not access["found"]:
        return _invalid(f"{table} does not exist in the source database ({source.origin})")
    if not access["readable"]:
        return _invalid(
            f"{table} may not be read by role {access['role']!r} of {source.origin}; "
            f"a table of your own needs GRANT SELECT ON {spec.table} TO {access['role']}"
        )
    columns = {r["column_name"]: r["data_type"] for r in await pool.fetch(COLUMNS_SQL, spec.table)}
    if "url" not in columns:
        return _invalid(f"{table} has no url column")
    if columns.get("id") not in INTEGER_TYPES:
        return _invalid(f"{table} needs an integer id column: items are taken from it in id order")
    if spec.only_unprocessed and columns.get("processed") != "boolean":
        return _invalid(
            f"{table} has no boolean processed column; set source.postgres.onlyUnprocessed: false"
        )
    return None
