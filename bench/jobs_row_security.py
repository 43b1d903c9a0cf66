"""What row-level security on `jobs` (migration 0009) costs the worker's hot path: its record
statements (claim → processing, then completed) as the worker's role, with the policies on and
off in alternating rounds of one run.

    .venv/bin/python bench/jobs_row_security.py [--jobs 2000] [--rounds 6]

Starts a throwaway PostgreSQL, applies the migrations, logs in as a member of imagebatch_worker
and prints one JSON object: the median records per second with and without row security, and
their ratio (1.0 = no cost).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(REPO))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402

import asyncpg  # noqa: E402

from imagebatch.core.db import create_pool, migrate  # noqa: E402
from imagebatch.core.messages import ImageJob  # noqa: E402
from imagebatch.devservers.postgres import PostgresServer  # noqa: E402
from imagebatch.worker.records import JobRecords, OutputRecord, SourceRecord  # noqa: E402

CONCURRENCY = 16


async def record_round(records: JobRecords, count: int) -> float:
    """Jobs per second for `count` batch items claimed and completed, CONCURRENCY at a time."""
    prefix = uuid.uuid4().hex[:8]
    jobs = [
        ImageJob(url=f"https://a.test/{i}.jpg", id=f"{prefix}-{i}", batch="ns/b", output="b")
        for i in range(count)
    ]
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(job: ImageJob) -> None:
        async with gate, records.claim(job) as claim:
            await claim.complete(SourceRecord(10, 64, 48), [OutputRecord("x.jpg", 8, 6, 1, "jpeg")])

    began = time.perf_counter()
    await asyncio.gather(*(one(job) for job in jobs))
    return count / (time.perf_counter() - began)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    with PostgresServer() as server:
        await migrate(server.url)
        admin: asyncpg.Connection = await asyncpg.connect(server.url)
        await admin.execute(
            "CREATE ROLE bench_worker LOGIN PASSWORD 'pw' IN ROLE imagebatch_worker"
        )
        at = server.url.split("@", 1)[1]
        pool = await create_pool(f"postgresql://bench_worker:pw@{at}", reset_on_release=False)
        records = JobRecords(pool)
        rates: dict[str, list[float]] = {"on": [], "off": []}
        try:
            await record_round(records, args.jobs // 4)  # warm: plans cached, buffers filled
            for i in range(args.rounds * 2):
                state = "on" if i % 2 == 0 else "off"
                action = "ENABLE" if state == "on" else "DISABLE"
                await admin.execute(f"ALTER TABLE jobs {action} ROW LEVEL SECURITY")
                rates[state].append(await record_round(records, args.jobs))
        finally:
            await records.close()
            await pool.close()
            await admin.close()
    on, off = statistics.median(rates["on"]), statistics.median(rates["off"])
    report = {
        "jobs_per_round": args.jobs,
        "rounds": args.rounds,
        "concurrency": CONCURRENCY,
        "records_per_s_with_rls": round(on, 1),
        "records_per_s_without_rls": round(off, 1),
        "ratio_with_over_without": round(on / off, 3),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
