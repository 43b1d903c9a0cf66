"""How reading a batch's items scales: pages of GET /batches/{name}/items at 1,000,000 items, and
the manifest writer's memory at 10,000 and 100,000 items.

    .venv/bin/python bench/batch_items.py [--items 1000000] [--manifest 10000 100000]

Starts a throwaway PostgreSQL, applies the migrations, inserts the rows directly (1 % failed),
then prints one JSON object: the median time of a first page, a page deep into the batch and a
page of failed items (each repeated), the plan PostgreSQL chose for the deep page, and for each
manifest size the writer's Python peak (tracemalloc) and the process's peak RSS growth.
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
import resource  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from collections.abc import Awaitable, Callable  # noqa: E402
from typing import Any  # noqa: E402

import asyncpg  # noqa: E402

from imagebatch.core.batch_items import PAGE_BY_STATUS_SQL, PAGE_SQL, items_page  # noqa: E402
from imagebatch.core.db import create_pool, migrate  # noqa: E402
from imagebatch.core.locations import parse_location  # noqa: E402
from imagebatch.core.stores import open_store  # noqa: E402
from imagebatch.devservers.postgres import PostgresServer  # noqa: E402
from tests.support.batch_rows import insert_items  # noqa: E402

REPEATS = 20


async def median_ms(call: Callable[[], Awaitable[Any]]) -> float:
    await call()  # warm: the plan is cached, the pages are in shared buffers
    times = []
    for _ in range(REPEATS):
        began = time.perf_counter()
        await call()
        times.append((time.perf_counter() - began) * 1000)
    return round(statistics.median(times), 3)


async def pages(pool: asyncpg.Pool, count: int) -> dict[str, Any]:
    batch = "bench/big"
    began = time.perf_counter()
    await insert_items(pool, "bench/other", 100_000, id_prefix="fedcba987654")
    await insert_items(pool, batch, count)
    await pool.execute("ANALYZE jobs")
    inserted = time.perf_counter() - began
    deep = f"0123456789ab-{count * 9 // 10:09d}"
    plan = await pool.fetch("EXPLAIN (ANALYZE, BUFFERS) " + PAGE_SQL, batch, deep, 101)
    failed_plan = await pool.fetch(
        "EXPLAIN (ANALYZE, BUFFERS) " + PAGE_BY_STATUS_SQL, batch, deep, 1001, "failed"
    )
    return {
        "items": count,
        "insert_seconds": round(inserted, 1),
        "first_page_100_ms": await median_ms(lambda: items_page(pool, batch, limit=100)),
        "deep_page_100_ms": await median_ms(lambda: items_page(pool, batch, after=deep)),
        "failed_page_1000_ms": await median_ms(
            lambda: items_page(pool, batch, status="failed", limit=1000, after=deep)
        ),
        "deep_page_plan": [r[0] for r in plan],
        "failed_page_plan": [r[0] for r in failed_plan],
    }


async def manifest_memory(pool: asyncpg.Pool, sizes: list[int]) -> list[dict[str, Any]]:
    from imagebatch.core.manifest import write_manifest

    results = []
    with tempfile.TemporaryDirectory() as folder:
        store = open_store(parse_location(f"file://{folder}"))
        for size in sizes:
            batch = f"bench/m{size}"
            await insert_items(pool, batch, size, id_prefix=f"{size:012d}")
            rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            tracemalloc.start()
            began = time.perf_counter()
            async with pool.acquire() as conn:
                written = await write_manifest(conn, store, batch, f"m{size}")
            seconds = time.perf_counter() - began
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            results.append(
                {
                    "items": size,
                    "lines": written.lines,
                    "bytes": written.bytes,
                    "seconds": round(seconds, 2),
                    "tracemalloc_peak_kib": round(peak / 1024),
                    "max_rss_growth_kib": rss_after - rss_before,
                }
            )
    return results


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--manifest", type=int, nargs="*", default=[10_000, 100_000])
    args = parser.parse_args()
    with PostgresServer() as server:
        await migrate(server.url)
        pool = await create_pool(server.url, max_size=2)
        try:
            report: dict[str, Any] = {}
            if args.manifest:  # first: the RSS high-water mark is the process's
                report["manifest"] = await manifest_memory(pool, sorted(args.manifest))
            if args.items:
                report["pages"] = await pages(pool, args.items)
        finally:
            await pool.close()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
