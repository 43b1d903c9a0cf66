"""PostgreSQL crashes mid-batch (`pg_ctl stop -m immediate`: no checkpoint, crash recovery on
start, as `pg_ctl restart -m immediate` does) and stays down until the operator's status says
so: workers hold their jobs and hand them back without spending an attempt, nothing is
dead-lettered, the batch's status shows `Degraded`/`DatabaseUnavailable` while PostgreSQL is
down and recovers after, and the batch completes with one completion per item."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from imagebatch.core.db import apply_migrations
from imagebatch.core.settings import CommonSettings
from imagebatch.devservers.postgres import PostgresServer
from tests.support.completions import count_completions, install_completion_counter
from tests.support.image_server import ImageServer
from tests.support.k8s import KubeCluster
from tests.support.operator import Batches, OperatorFactory, outputs, supervise
from tests.support.worker_fixtures import job_rows, queue_depth

ROWS = 300


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL of this module alone, since it crashes it; durable (fsync and synchronous
    commit on, as in production), so a crash loses no committed write."""
    server = PostgresServer(durable=True).start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
async def database_url(own_postgres: PostgresServer) -> AsyncIterator[str]:
    """This test's database, on the PostgreSQL it crashes (overrides the shared one)."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    admin: asyncpg.Connection = await asyncpg.connect(own_postgres.url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = own_postgres.dsn(name)
        conn: asyncpg.Connection = await asyncpg.connect(url)
        try:
            await apply_migrations(conn)
        finally:
            await conn.close()
        yield url
    finally:
        await admin.close()


def degraded(status: dict[str, object]) -> dict[str, str]:
    for condition in status.get("conditions") or []:  # type: ignore[attr-defined]
        if condition["type"] == "Degraded":
            return condition  # type: ignore[no-any-return]
    return {}


async def test_a_database_crash_mid_batch_spends_no_attempt_and_the_batch_completes(
    own_postgres: PostgresServer,
    start_operator: OperatorFactory,
    connections_secret: str,
    batches: Batches,
    kube_cluster: KubeCluster,
    messaging: CommonSettings,
    namespace: str,
    tmp_path: Path,
) -> None:
    async with ImageServer(photo_size=(320, 240), photo_delay=0.05) as origin:
        conn: asyncpg.Connection = await asyncpg.connect(messaging.database_url)
        try:
            await conn.execute(
                "INSERT INTO images (url) SELECT $1 || (g % 10) || '.jpg'"
                " FROM generate_series(1, $2) AS g",
                origin.url("/photo/"),
                ROWS,
            )
        finally:
            await conn.close()
        await install_completion_counter(messaging.database_url)
        await start_operator()
        await batches.create(
            "pg",
            {
                "source": {"postgres": {"table": "images", "limit": ROWS}},
                "workers": {"maxReplicas": 2, "concurrency": 8, "prefetch": 16},
            },
        )
        async with supervise(kube_cluster, namespace, tmp_path):
            await batches.wait_status(
                "pg", lambda s: int(s.get("succeeded") or 0) >= 40, within=120, what="progress"
            )
            began = time.monotonic()
            await asyncio.to_thread(own_postgres.crash)
            down = await batches.wait_status(
                "pg",
                lambda s: (
                    degraded(s).get("reason") == "DatabaseUnavailable"
                    and degraded(s).get("status") == "True"
                ),
                within=30,
                what="Degraded/DatabaseUnavailable",
            )
            await asyncio.to_thread(own_postgres.recover)
            outage = time.monotonic() - began
            done = await batches.wait_phase("pg", "Succeeded", within=300)
            recovered = await batches.wait_status(
                "pg", lambda s: degraded(s).get("status") == "False", what="recovery"
            )
    assert int(down["succeeded"]) < ROWS, "the crash really was mid-batch"
    assert degraded(recovered)["reason"] == "Recovered"
    assert (done["succeeded"], done["failed"]) == (ROWS, 0)
    assert await queue_depth(messaging, messaging.dlq) == 0, "nothing dead-lettered"
    rows = await job_rows(messaging.database_url)
    attempts = sorted({int(r["attempts"]) for r in rows.values()})
    assert attempts == [1], "no attempt spent on the outage"
    completions = await count_completions(messaging.database_url)
    assert len(completions) == ROWS
    assert set(completions.values()) == {1}
    assert len(outputs(tmp_path / "data" / namespace / "pg")) == ROWS
    print(
        f"\nPostgreSQL crashed at {down['succeeded']}/{ROWS} done, down {outage:.1f}s (until the "
        f"status said Degraded/DatabaseUnavailable); batch Succeeded {ROWS}/{ROWS}, 0 failed, "
        "0 dead-lettered, every job attempts 1, completed once"
    )
