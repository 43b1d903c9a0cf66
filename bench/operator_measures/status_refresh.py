"""Part `refresh`: one status refresh at 1,000,000 items, and the triggers' cost on a bulk insert.

1,000,000 jobs rows of one batch, inserted with the batch_counts triggers and, in a second
database, with them disabled (--insert-pairs pairs in alternating order); then what the operator
does per status refresh — `batch_counts` (with the top 10 of 13 failure reason codes) + a passive
queue declaration (`queue_stats`) + `progress.decide` — median and p95 over --refreshes
repetitions (target < 50 ms), next to the naive `GROUP BY status` count over the batch's rows.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from typing import Any

import asyncpg

from bench.operator_measures.servers import NAMESPACE, SECRET, Servers
from imagebatch.core.batch_status import MAX_FAILURE_REASONS, BatchStatus
from imagebatch.core.broker import connect
from imagebatch.core.db import create_pool, migrate
from imagebatch.core.imagebatch import RunSpec, run_spec
from imagebatch.core.jobs import batch_counts
from imagebatch.core.topology import batch_queue_name
from imagebatch.operator.kube import Kube, load_client
from imagebatch.operator.progress import Observation, decide
from imagebatch.operator.queues import ensure_queue, queue_stats

BIG_ITEMS = 1_000_000
BIG_BATCH = "ns/big"
BIG_INSERT_SQL = f"""
INSERT INTO jobs (id, kind, url, batch, status, error_code)
SELECT 'b-' || g, 'batch', 'http://x/' || g, '{BIG_BATCH}',
       CASE WHEN g % 3 = 0 THEN 'completed' WHEN g % 10 = 1 THEN 'failed' ELSE 'pending' END,
       CASE WHEN g % 3 <> 0 AND g % 10 = 1 THEN 'http_' || (400 + (g / 10) % 13) END
  FROM generate_series(1, {BIG_ITEMS}) g
"""
"""A third of the items completed, ~6 % failed under 13 reason codes (the status names the top
10), the rest pending."""
WARM_UP = 10
NAIVE_SQL = "SELECT status, count(*) FROM jobs WHERE batch = $1 GROUP BY status"
COUNTS_ONLY_SQL = "SELECT * FROM batch_counts WHERE batch = $1"
"""The refresh's read before `failureReasons` (for the ratio in the same run)."""


def percentile(values: list[float], fraction: float) -> float:
    ranked = sorted(values)
    return ranked[min(len(ranked) - 1, int(fraction * len(ranked)))]


def summary_ms(values: list[float]) -> dict[str, float]:
    return {
        "median_ms": round(statistics.median(values) * 1000, 3),
        "p95_ms": round(percentile(values, 0.95) * 1000, 3),
        "max_ms": round(max(values) * 1000, 3),
    }


async def timed_insert(dsn: str, *, triggers: bool) -> float:
    """Seconds to insert the 1M rows into an empty `jobs` (triggers on, or disabled)."""
    conn: asyncpg.Connection = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"ALTER TABLE jobs {'ENABLE' if triggers else 'DISABLE'} TRIGGER USER")
        await conn.execute("TRUNCATE jobs CASCADE")  # TRUNCATE fires no row/statement trigger
        await conn.execute("DELETE FROM batch_counts")
        await conn.execute("VACUUM jobs")
        await conn.execute("CHECKPOINT")
        began = time.perf_counter()
        await conn.execute(BIG_INSERT_SQL)
        seconds = time.perf_counter() - began
        await conn.execute("VACUUM (ANALYZE) jobs")
    finally:
        await conn.close()
    return seconds


async def kube_secret_lookups(server: Servers, repetitions: int) -> list[float]:
    """Seconds per `Kube.secret_exists`, which every tick also does (not part of the refresh
    proper, but the operator's refresh histogram includes it). Empty without a control plane."""
    if server.kube is None:
        return []
    kube = Kube(load_client(server.kube.kubeconfig))
    try:
        times: list[float] = []
        for n in range(repetitions + WARM_UP):
            t0 = time.perf_counter()
            if not await kube.secret_exists(NAMESPACE, SECRET):
                raise RuntimeError(f"Secret {SECRET} missing")
            if n >= WARM_UP:
                times.append(time.perf_counter() - t0)
    finally:
        kube.close()
    return times


async def refresh_part(
    server: Servers, repetitions: int, naive_repetitions: int, insert_pairs: int
) -> dict[str, Any]:
    dsns = {}
    for label in ("plain", "triggers"):
        await server.pool.execute(f"CREATE DATABASE big_{label}")
        dsns[label] = server.postgres.dsn(f"big_{label}")
        await migrate(dsns[label])
    inserts: dict[str, list[float]] = {"plain": [], "triggers": []}
    for pair in range(max(insert_pairs, 1)):
        order = ("plain", "triggers") if pair % 2 == 0 else ("triggers", "plain")
        for label in order:
            inserts[label].append(await timed_insert(dsns[label], triggers=label == "triggers"))
    insert = {label: statistics.median(values) for label, values in inserts.items()}
    print(f"  1M-row inserts (s): {inserts}", file=sys.stderr)
    namespace, name = BIG_BATCH.split("/")
    spec: RunSpec = run_spec(
        namespace, name, {"source": {"postgres": {"table": "images", "limit": BIG_ITEMS}}}
    )
    pool = await create_pool(dsns["triggers"], min_size=1, max_size=10)
    connection = await connect(server.messaging.rabbit_url)
    try:
        channel = await connection.channel()
        await ensure_queue(channel, server.messaging, spec)
        parts: dict[str, list[float]] = {"batch_counts": [], "queue_stats": [], "decide": []}
        totals: list[float] = []
        previous = BatchStatus()
        await pool.execute("CHECKPOINT")  # the inserts' dirty pages written before timing
        await asyncio.sleep(1.0)
        counts = await batch_counts(pool, spec.batch)
        parts["counts_without_reasons"] = []
        for n in range(repetitions + WARM_UP):
            t = time.perf_counter()
            await pool.fetchrow(COUNTS_ONLY_SQL, spec.batch)
            t0 = time.perf_counter()
            counts = await batch_counts(pool, spec.batch)
            t1 = time.perf_counter()
            queue = await queue_stats(connection, spec)
            t2 = time.perf_counter()
            decision = decide(spec, previous, Observation(1, counts, queue, True))
            t3 = time.perf_counter()
            previous = decision.status
            if n >= WARM_UP:
                parts["counts_without_reasons"].append(t0 - t)
                parts["batch_counts"].append(t1 - t0)
                parts["queue_stats"].append(t2 - t1)
                parts["decide"].append(t3 - t2)
                totals.append(t3 - t0)
        # For comparison: the same passive declaration on one channel kept open (the plain
        # aiormq channel: aio-pika's robust one would answer from its cache).
        kept = await (await connection.channel()).get_underlay_channel()
        on_kept_channel: list[float] = []
        for n in range(repetitions + WARM_UP):
            t0 = time.perf_counter()
            await kept.queue_declare(batch_queue_name(namespace, name), passive=True)
            if n >= WARM_UP:
                on_kept_channel.append(time.perf_counter() - t0)
        secret_lookups = await kube_secret_lookups(server, repetitions // 4)
        naive: list[float] = []
        naive_counts: dict[str, int] = {}
        for _ in range(naive_repetitions):
            t0 = time.perf_counter()
            rows = await pool.fetch(NAIVE_SQL, spec.batch)
            naive.append(time.perf_counter() - t0)
            naive_counts = {r["status"]: int(r["count"]) for r in rows}
        plan = await pool.fetch("EXPLAIN (ANALYZE, BUFFERS) " + NAIVE_SQL, spec.batch)
        await channel.queue_delete(batch_queue_name(namespace, name))
        await channel.close()
    finally:
        await connection.close()
        await pool.close()
    if (counts.total, counts.completed, counts.failed) != (
        BIG_ITEMS,
        naive_counts.get("completed"),
        naive_counts.get("failed"),
    ) or len(counts.failure_codes) != MAX_FAILURE_REASONS:
        raise RuntimeError(f"batch_counts {counts} disagree with the rows: {naive_counts}")
    for label in ("plain", "triggers"):
        await server.pool.execute(f"DROP DATABASE big_{label}")
    return {
        "items": BIG_ITEMS,
        "insert_seconds_with_triggers": round(insert["triggers"], 2),
        "insert_seconds_triggers_disabled": round(insert["plain"], 2),
        "insert_slowdown_from_triggers": round(insert["triggers"] / insert["plain"], 3),
        "insert_slowdown_every_pair": [
            round(t / p, 3) for t, p in zip(inserts["triggers"], inserts["plain"], strict=True)
        ],
        "insert_seconds_every_run": {k: [round(x, 2) for x in v] for k, v in inserts.items()},
        "refresh_repetitions": repetitions,
        "refresh_total": summary_ms(totals),
        "refresh_per_step": {k: summary_ms(v) for k, v in parts.items()},
        "passive_declaration_on_a_kept_channel": summary_ms(on_kept_channel),
        **(
            {"also_per_tick_kube_secret_lookup": summary_ms(secret_lookups)}
            if secret_lookups
            else {}
        ),
        "counts_read": {
            "total": counts.total,
            "completed": counts.completed,
            "failed": counts.failed,
            "failure_reasons": len(counts.failure_codes),
        },
        "batch_counts_vs_counts_without_reasons_median": round(
            statistics.median(parts["batch_counts"])
            / statistics.median(parts["counts_without_reasons"]),
            2,
        ),
        "naive_group_by_repetitions": naive_repetitions,
        "naive_group_by": summary_ms(naive),
        "naive_vs_refresh_median": round(statistics.median(naive) / statistics.median(totals), 1),
        "naive_plan": [str(r[0]) for r in plan],
        "target": "refresh < 50 ms",
    }
