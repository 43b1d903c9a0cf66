"""Which tables are ImageBatch's own bookkeeping, derived from the migrations themselves so a
new migration's table is covered the day it lands.

A batch's Postgres source may name any table its namespace's source connection can read, except
these: even on a database shared with the operator, no tenant reads (or learns the shape of)
other tenants' items, uploads or the operator's cursors through a batch. `images`, the seed's
table that producers fill and batches read by default, is the one table the migrations create
to be a source.
"""

from __future__ import annotations

import functools
import re

from imagebatch.core.db import MIGRATIONS_TABLE, migration_files

SOURCE_TABLES: frozenset[str] = frozenset({"images"})
"""Tables the migrations create for batches to read."""
_CREATE_TABLE = re.compile(
    r"\bCREATE\s+(?:UNLOGGED\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?\"?([a-z_][a-z0-9_]*)\"?",
    re.IGNORECASE,
)


def tables_in(sql: str) -> set[str]:
    """The tables a migration's SQL creates."""
    return {name.lower() for name in _CREATE_TABLE.findall(sql)}


@functools.cache
def own_tables() -> frozenset[str]:
    """Every table the migrations create (and the migrations' own record), but the seed's."""
    created: set[str] = {MIGRATIONS_TABLE}
    for _, sql in migration_files():
        created |= tables_in(sql)
    return frozenset(created - SOURCE_TABLES)
