"""ImageBatch end to end: `kubectl apply` → the operator publishes the items → the batch's
Deployment runs (as local worker processes, pods never start here) → the status reports exact
counts until the batch is done."""

from __future__ import annotations

import asyncpg

from imagebatch.core.settings import CommonSettings
from imagebatch.devservers.operator_process import OperatorProcess
from tests.support.image_server import ImageServer
from tests.support.k8s import KubeCluster
from tests.support.operator import (
    Batches,
    eventually,
    outputs,
)

GENTLE = {"maxReplicas": 2, "messagesPerReplica": 250, "concurrency": 8, "prefetch": 16}
"""Two local worker processes at most: they share two cores with the rest of the suite."""


async def db_counts(database_url: str, batch: str) -> dict[str, int]:
    conn: asyncpg.Connection = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT status, count(*) AS n FROM jobs WHERE batch = $1 GROUP BY status", batch
        )
    finally:
        await conn.close()
    return {r["status"]: int(r["n"]) for r in rows}


async def test_an_inline_batch_of_500_urls_succeeds_with_exact_counts(
    operator: OperatorProcess,
    supervisor: object,
    batches: Batches,
    image_server: ImageServer,
    kube_cluster: KubeCluster,
    namespace: str,
    tmp_path: object,
) -> None:
    urls = [image_server.url(f"/photo/{n}.jpg") for n in range(500)]
    await batches.create("inline", {"source": {"urls": urls}, "workers": GENTLE})

    status = await batches.wait_phase("inline", "Succeeded", within=180)

    assert {k: status[k] for k in ("total", "published", "succeeded", "failed")} == {
        "total": 500,
        "published": 500,
        "succeeded": 500,
        "failed": 0,
    }
    assert status["progress"] == "500/500"
    assert status["completionTime"] >= status["startTime"]
    kinds = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
    assert kinds["Published"] == ("True", "AllPublished")
    assert kinds["Complete"] == ("True", "AllItemsDone")
    data = tmp_path / "data" / namespace / "inline"  # type: ignore[operator]
    assert len(outputs(data)) == 500, "one 256x256 thumbnail per item, under <ns>/<name>"
    row = kube_cluster.kubectl("get", "ib", "inline", "-n", namespace).stdout.splitlines()
    assert row[0].split() == ["NAME", "PHASE", "PROGRESS", "SUCCEEDED", "FAILED", "WORKERS", "AGE"]
    assert row[1].split()[:5] == ["inline", "Succeeded", "500/500", "500", "0"]
    reasons = [reason for reason, _ in await batches.events("inline")]
    assert "Published" in reasons
    assert "Succeeded" in reasons
    await batches.wait_replicas("inline", 0)


async def test_a_postgres_batch_of_500_rows_succeeds_and_marks_its_rows_processed(
    operator: OperatorProcess,
    supervisor: object,
    batches: Batches,
    image_server: ImageServer,
    messaging: CommonSettings,
    namespace: str,
) -> None:
    conn: asyncpg.Connection = await asyncpg.connect(messaging.database_url)
    try:
        await conn.executemany(
            "INSERT INTO images (url) VALUES ($1)",
            [(image_server.url(f"/photo/{n}.jpg"),) for n in range(600)],
        )
        await batches.create(
            "seeded",
            {"source": {"postgres": {"table": "images", "limit": 500}}, "workers": GENTLE},
        )
        status = await batches.wait_phase("seeded", "Succeeded", within=180)
        processed = await conn.fetchval("SELECT count(*) FROM images WHERE processed")
        first_unprocessed = await conn.fetchval("SELECT min(id) FROM images WHERE NOT processed")
    finally:
        await conn.close()

    assert (status["total"], status["succeeded"], status["failed"]) == (500, 500, 0)
    assert processed == 500, "each item marks its source row processed"
    assert first_unprocessed == 501, "the oldest rows are taken first"


async def test_a_batch_with_20_percent_broken_urls_fails_past_max_failed_with_exact_counts(
    operator: OperatorProcess,
    supervisor: object,
    batches: Batches,
    image_server: ImageServer,
    messaging: CommonSettings,
    namespace: str,
) -> None:
    urls = [
        image_server.url("/status/404" if n % 5 == 0 else f"/photo/{n}.jpg") for n in range(200)
    ]
    await batches.create(
        "broken", {"source": {"urls": urls}, "maxFailed": "10%", "workers": GENTLE}
    )

    failed = await batches.wait_phase("broken", "Failed", within=180)
    assert any(
        c["type"] == "Failed" and c["reason"] == "TooManyFailures" for c in failed["conditions"]
    )
    await batches.wait_replicas("broken", 0)  # at once, not when the queue is empty

    # In-flight items finish after the verdict; the status follows the database to the end.
    async def settled() -> tuple[dict[str, object], dict[str, int]]:
        return await batches.status("broken"), await db_counts(
            messaging.database_url, f"{namespace}/broken"
        )

    status, counts = await eventually(
        settled,
        lambda pair: (
            pair[0].get("workers") == 0
            and pair[0].get("succeeded") == pair[1].get("completed", 0)
            and pair[0].get("failed") == pair[1].get("failed", 0)
        ),
        within=60,
        what="the status to match the database",
    )
    assert status["phase"] == "Failed", "a finished batch stays finished"
    assert status["total"] == 200
    assert counts.get("failed", 0) > 20, "more than 10 % failed"
    assert counts.get("failed", 0) <= 40, "only the broken URLs fail"


async def test_a_batch_suspended_mid_run_keeps_its_queue_and_resumes_where_it_stopped(
    operator: OperatorProcess,
    supervisor: object,
    batches: Batches,
    image_server: ImageServer,
    messaging: CommonSettings,
    namespace: str,
    tmp_path: object,
) -> None:
    image_server.photo_delay = 0.05  # a worker takes ~20 images/s: the batch is still running
    urls = [image_server.url(f"/photo/{n}.jpg") for n in range(300)]
    slow = {"maxReplicas": 1, "concurrency": 1, "prefetch": 1}
    await batches.create("paused", {"source": {"urls": urls}, "workers": slow})
    await batches.wait_status("paused", lambda s: int(s.get("succeeded") or 0) >= 20, within=120)

    await batches.patch_spec("paused", {"suspend": True})

    held = await batches.wait_status(
        "paused",
        lambda s: s.get("phase") == "Suspended" and s.get("workers") == 0,
        within=60,
        what="suspended with no workers left",
    )
    assert held["succeeded"] < 300
    assert held["queued"] > 0, "the queue keeps what is not done"
    deployment = await batches.deployment("paused")
    assert deployment is not None
    assert deployment.spec.replicas == 0

    await batches.patch_spec("paused", {"suspend": False})
    image_server.photo_delay = 0.0
    done = await batches.wait_phase("paused", "Succeeded", within=180)

    assert (done["succeeded"], done["failed"], done["total"]) == (300, 0, 300)
    counts = await db_counts(messaging.database_url, f"{namespace}/paused")
    assert counts == {"completed": 300}
    data = tmp_path / "data" / namespace / "paused"  # type: ignore[operator]
    assert len(outputs(data)) == 300
    reasons = [reason for reason, _ in await batches.events("paused")]
    assert (reasons.count("Suspended"), reasons.count("Resumed")) == (1, 1)
