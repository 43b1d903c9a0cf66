"""Part `lag`: how long after the last item completes the batch's status counts it.

A 5,000-item batch (postgres source) is published, then, after an offset spread over one refresh
interval, its items are completed the way workers do (UPDATE jobs ... status='completed' in batches
of 200 over ~2.5 s); seconds from the last commit until the resource's status counts them all
(polled every 50 ms). Target ≤ 2 s at STATUS_INTERVAL_SECONDS=2. Median of --lag-runs.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from typing import Any

from bench.operator_measures.batches import batch_status, create_batch, delete_batch, wait_for
from bench.operator_measures.servers import NAMESPACE, Servers

COMPLETE_SQL = """
UPDATE jobs SET status = 'completed', completed_at = now(), updated_at = now()
 WHERE id = ANY($1::text[])
"""


async def lag_once(
    server: Servers, name: str, size: int, spread: float, offset: float
) -> dict[str, Any]:
    batch = f"{NAMESPACE}/{name}"
    await create_batch(server, name, size)
    await wait_for(
        lambda: batch_status(server, name),
        lambda s: bool(s) and s.get("published") == s.get("total") == size,
        interval=0.2,
        within=120,
        what=f"{name} published",
    )
    ids = [r["id"] for r in await server.pool.fetch("SELECT id FROM jobs WHERE batch = $1", batch)]
    step = 200
    groups = [ids[i : i + step] for i in range(0, len(ids), step)]
    pause = spread / max(len(groups) - 1, 1)
    # The status was just seen, i.e. just after a refresh: without an offset every run would
    # end its completions at the same point of the operator's refresh cycle.
    await asyncio.sleep(offset)
    first = time.perf_counter()
    for n, group in enumerate(groups):
        await server.pool.execute(COMPLETE_SQL, group)
        if n < len(groups) - 1:
            await asyncio.sleep(pause)
    last_commit = time.perf_counter()
    status, seen = await wait_for(
        lambda: batch_status(server, name),
        lambda s: bool(s) and int(s.get("succeeded", 0)) + int(s.get("failed", 0)) == size,
        interval=0.05,
        within=60,
        what=f"{name} all done in the status",
    )
    await delete_batch(server, name)
    return {
        "lag_seconds": round(seen - last_commit, 3),
        "start_offset_seconds": round(offset, 2),
        "completion_spread_seconds": round(last_commit - first, 2),
        "phase_then": status.get("phase"),
    }


async def lag_part(server: Servers, size: int, runs: int) -> dict[str, Any]:
    interval = float(server.env_overrides.get("STATUS_INTERVAL_SECONDS", 2))
    # Offsets spread evenly over one refresh interval, in a shuffled (but fixed) order.
    offsets = [interval * (n + 0.5) / runs for n in range(runs)]
    random.Random(runs).shuffle(offsets)
    every = [
        await lag_once(server, f"lag-{n}", size, spread=2.5, offset=offsets[n]) for n in range(runs)
    ]
    lags = [r["lag_seconds"] for r in every]
    return {
        "items": size,
        "status_interval_seconds": interval,
        "start_offsets_seconds": [round(o, 2) for o in offsets],
        "completion_statements": f"{-(-size // 200)} UPDATEs of 200 rows",
        "poll_interval_seconds": 0.05,
        "median_lag_seconds": round(statistics.median(lags), 3),
        "max_lag_seconds": max(lags),
        "lag_seconds_every_run": lags,
        "phase_every_run": [r["phase_then"] for r in every],
        "target": "<= 2 s",
    }
