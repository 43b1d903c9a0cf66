"""A batch's failure reason codes and the retry of its failed items, against a real PostgreSQL:
the counts kept by the triggers agree with the rows, and a retry request is acted on once."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from imagebatch.core.db import create_pool
from imagebatch.core.jobs import batch_counts
from imagebatch.operator import retries

BATCH, UID = "photos/holiday", "0f3c9a1e-0000-4000-8000-000000000001"
CODES = ["http_404"] * 6 + ["not_an_image"] * 3 + ["retries_exhausted"] * 3 + ["too_large"]


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, max_size=2)
    await pool.execute("INSERT INTO batches (batch, uid) VALUES ($1, $2)", BATCH, UID)
    await pool.executemany(
        "INSERT INTO jobs (id, kind, url, batch, status, attempts, published_at)"
        " VALUES ($1, 'batch', 'http://127.0.0.1:9/x.jpg', $2, 'processing', 2, now())",
        [(f"item-{n:02}", BATCH) for n in range(20)],
    )
    yield pool
    await pool.close()


async def fail(pool: asyncpg.Pool, job_id: str, code: str) -> None:
    """As the worker records a dead-lettered job (one statement per job)."""
    await pool.execute(
        "UPDATE jobs SET status = 'failed', error = 'x', error_code = $2 WHERE id = $1",
        job_id,
        code,
    )


async def test_failure_codes_are_counted_per_batch_most_frequent_first(pool: asyncpg.Pool) -> None:
    for n, code in enumerate(CODES):
        await fail(pool, f"item-{n:02}", code)
    await pool.execute("UPDATE jobs SET status = 'completed' WHERE status = 'processing'")
    await pool.execute("UPDATE jobs SET status = 'completed' WHERE id = 'item-12'")  # too_large

    counts = await batch_counts(pool, BATCH)

    assert (counts.completed, counts.failed) == (8, 12)
    assert counts.failure_codes == (("http_404", 6), ("not_an_image", 3), ("retries_exhausted", 3))


async def test_a_retry_sends_the_failed_items_back_once_whatever_repeats_it(
    pool: asyncpg.Pool,
) -> None:
    for n, code in enumerate(CODES):
        await fail(pool, f"item-{n:02}", code)

    first = await retries.retry_failed(pool, BATCH, UID, "r1")
    again = await retries.retry_failed(pool, BATCH, UID, "r1")
    after_restart = await retries.recorded(pool, BATCH, UID)

    assert first is not None
    assert first.last is not None
    assert (first.last.request, first.last.items) == ("r1", len(CODES))
    assert again == first
    assert after_restart == first
    counts = await batch_counts(pool, BATCH)
    assert (counts.failed, counts.pending, counts.failure_codes) == (0, len(CODES), ())
    assert counts.published == 20 - len(CODES), "the pump publishes them again"
    rows = await pool.fetch("SELECT attempts, error, error_code FROM jobs WHERE status = 'pending'")
    assert {(r["attempts"], r["error"], r["error_code"]) for r in rows} == {(0, None, None)}
    assert counts.retried == 20 - len(CODES), "their earlier deliveries no longer count"

    await fail(pool, "item-00", "http_404")
    second = await retries.retry_failed(pool, BATCH, UID, "r2")
    assert second is not None
    assert second.last is not None
    assert (second.last.request, second.last.items) == ("r2", 1)

    await fail(pool, "item-01", "http_404")
    r1_again = await retries.retry_failed(pool, BATCH, UID, "r1")
    assert r1_again == second, "r1 was acted on before r2: setting it again does nothing"
    assert (await batch_counts(pool, BATCH)).failed == 1
    assert (await retries.recorded(pool, BATCH, UID)).acted == {"r1", "r2"}


async def test_a_retry_of_another_resource_under_the_name_does_nothing(pool: asyncpg.Pool) -> None:
    await fail(pool, "item-00", "http_404")
    assert await retries.retry_failed(pool, BATCH, "another-uid", "r1") is None
    assert (await batch_counts(pool, BATCH)).failed == 1
