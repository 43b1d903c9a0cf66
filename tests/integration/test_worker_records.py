"""Job records against a real PostgreSQL: claims and completions batched through one lock
session, one holder per job across workers, and no lock outliving its job or its session."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from imagebatch.core.db import create_pool
from imagebatch.core.messages import ImageJob, decode_job
from imagebatch.worker.records import JobRecords, OutputRecord, RecordError, SourceRecord
from tests.support.worker_fixtures import advisory_locks_held

OUTPUT = OutputRecord(path="t/x.jpg", width=256, height=192, bytes=1234, format="jpeg")


def job(job_id: str) -> ImageJob:
    return decode_job(f'{{"url": "http://127.0.0.1:9/{job_id}.jpg", "id": "{job_id}"}}'.encode())


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, max_size=4, reset_on_release=False)
    yield pool
    await pool.close()


async def test_many_jobs_claimed_and_completed_at_once_are_all_recorded(
    pool: asyncpg.Pool, database_url: str
) -> None:
    records = JobRecords(pool)

    async def process(job_id: str) -> None:
        async with records.claim(job(job_id)) as claim:
            assert (claim.state, claim.attempts) == ("started", 1)
            await claim.complete(SourceRecord(10, 640, 480), [OUTPUT])

    await asyncio.gather(*(process(f"j{n}") for n in range(40)))
    await records.close()
    rows = await pool.fetch("SELECT id, status, attempts, outputs, source_width FROM jobs")
    assert len(rows) == 40
    assert {(r["status"], r["attempts"], r["source_width"]) for r in rows} == {
        ("completed", 1, 640)
    }
    assert rows[0]["outputs"][0]["path"] == "t/x.jpg"
    assert await advisory_locks_held(database_url) == 0


async def test_a_job_has_one_holder_within_a_worker_and_across_workers(
    pool: asyncpg.Pool, database_url: str
) -> None:
    mine, theirs = JobRecords(pool), JobRecords(pool)
    async with mine.claim(job("same")) as first:
        assert first.state == "started"
        async with mine.claim(job("same")) as again:  # session locks are re-entrant
            assert again.state == "busy"
        async with theirs.claim(job("same")) as other:
            assert other.state == "busy"
        await first.complete(SourceRecord(1, 1, 1), [OUTPUT])
    async with theirs.claim(job("same")) as later:
        assert later.state == "completed"
    for records in (mine, theirs):
        await records.close()
    assert await advisory_locks_held(database_url) == 0


async def test_a_claim_left_without_completing_is_released_for_the_next_delivery(
    pool: asyncpg.Pool,
) -> None:
    records = JobRecords(pool)
    with pytest.raises(RuntimeError):
        async with records.claim(job("crashy")):
            raise RuntimeError("download failed")
    async with records.claim(job("crashy")) as retry:
        assert (retry.state, retry.attempts) == ("started", 2)
    await records.close()


async def test_a_lost_lock_session_releases_every_lock_and_the_next_claim_reconnects(
    pool: asyncpg.Pool, database_url: str
) -> None:
    records = JobRecords(pool)
    async with records.claim(job("a")) as claim:
        assert claim.state == "started"
        killer: asyncpg.Connection = await asyncpg.connect(database_url)
        try:
            await killer.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks"
                " WHERE locktype = 'advisory' AND pid <> pg_backend_pid()"
            )
        finally:
            await killer.close()
        with pytest.raises(RecordError):
            await claim.complete(SourceRecord(1, 1, 1), [OUTPUT])
    async with records.claim(job("b")) as fresh:
        assert fresh.state == "started"
        await fresh.complete(SourceRecord(1, 1, 1), [OUTPUT])
    await records.close()
    assert await advisory_locks_held(database_url) == 0


async def test_a_claim_knows_how_many_deliveries_before_it_died_with_the_job(
    pool: asyncpg.Pool,
) -> None:
    """Deliveries that claimed the job and recorded nothing (their worker died) add up; any
    recorded outcome — a retry, a give-back, a failure — starts the count again."""
    records = JobRecords(pool)
    died: list[int] = []
    for _ in range(3):  # three deliveries that die without an outcome
        async with records.claim(job("poison")) as claim:
            died.append(claim.died)
    async with records.claim(job("poison")) as claim:
        died.append(claim.died)
        await records.retrying("poison", "HTTP 503")
    async with records.claim(job("poison")) as claim:
        died.append(claim.died)
        await records.unspend("poison", "throttled")
    async with records.claim(job("poison")) as claim:
        died.append(claim.died)
        await records.fail("poison", "not an image", "not_an_image")
    async with records.claim(job("poison")) as claim:
        died.append(claim.died)
    await records.close()
    assert died == [0, 1, 2, 3, 0, 0, 0]
