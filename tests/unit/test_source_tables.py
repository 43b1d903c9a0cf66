"""Which tables a batch may never read: ImageBatch's own, derived from the migrations."""

from __future__ import annotations

import pytest

from imagebatch.core.owntables import own_tables, tables_in
from imagebatch.operator.source import refused_table


@pytest.mark.parametrize(
    "table", ["jobs", "batches", "batch_counts", "batch_outages", "uploads", "schema_migrations"]
)
def test_imagebatch_s_own_tables_are_refused_as_a_source(table: str) -> None:
    problem = refused_table(table)
    assert problem is not None
    assert (problem.reason, problem.fatal) == ("SourceInvalid", True)
    assert f"{table!r} is ImageBatch's own bookkeeping" in problem.message


@pytest.mark.parametrize("table", ["images", "photos", "jobs_archive"])
def test_the_seed_table_and_tables_of_your_own_may_be_a_source(table: str) -> None:
    assert refused_table(table) is None


def test_a_table_a_new_migration_creates_is_one_of_ours() -> None:
    sql = 'CREATE TABLE IF NOT EXISTS "thumbnails" (id int);\ncreate unlogged table leases (x int)'
    assert tables_in(sql) == {"thumbnails", "leases"}
    assert "images" not in own_tables()
