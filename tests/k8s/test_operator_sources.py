"""Tenants kept apart: a batch reads its Postgres source through the connection its own
namespace provides, never ImageBatch's own tables, and a namespace without one is told what to
set — against a real API server, PostgreSQL and RabbitMQ, without workers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from imagebatch.core.settings import CommonSettings
from tests.support.k8s import KubeCluster
from tests.support.operator import SECRET, Batches, OperatorFactory, create_connections_secret

ROWS = 12


def failed_condition(status: dict[str, object]) -> dict[str, str]:
    found = [c for c in status.get("conditions") or [] if c["type"] == "Failed"]  # type: ignore[attr-defined]
    assert found, f"no Failed condition in {status}"
    return found[0]  # type: ignore[no-any-return]


@pytest.fixture
async def tenant_role(messaging: CommonSettings) -> AsyncIterator[str]:
    """Tenant A's read-only source URL on a database shared with tenant B and the operator:
    A's role may read A's table (`a_photos`, ROWS rows) and nothing else; B's table
    (`b_photos`) is there too."""
    role = f"tenant_{uuid.uuid4().hex[:8]}"
    conn: asyncpg.Connection = await asyncpg.connect(messaging.database_url)
    try:
        for table in ("a_photos", "b_photos"):
            await conn.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, url text)")
            await conn.execute(
                f"INSERT INTO {table} SELECT g, 'https://a.test/' || g || '.jpg'"
                f" FROM generate_series(1, {ROWS}) AS g"
            )
        await conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'tenant'")
        await conn.execute(f"GRANT SELECT ON a_photos TO {role}")
        at = messaging.database_url.split("@", 1)[1]
        yield f"postgresql://{role}:tenant@{at}"
        await conn.execute(f"DROP OWNED BY {role}")
    finally:
        await conn.execute(f"DROP ROLE IF EXISTS {role}")
        await conn.close()


async def test_a_batch_reads_its_namespace_s_source_and_nothing_else(
    start_operator: OperatorFactory,
    batches: Batches,
    kube_cluster: KubeCluster,
    namespace: str,
    messaging: CommonSettings,
    tenant_role: str,
) -> None:
    create_connections_secret(kube_cluster, namespace, messaging, SOURCE_DATABASE_URL=tenant_role)
    await start_operator()
    only_mine = {"table": "a_photos", "onlyUnprocessed": False}
    await batches.create("mine", {"source": {"postgres": only_mine}, "suspend": True})
    await batches.create(
        "theirs", {"source": {"postgres": {"table": "b_photos", "onlyUnprocessed": False}}}
    )
    await batches.create("bookkeeping", {"source": {"postgres": {"table": "jobs"}}})

    theirs = failed_condition(await batches.wait_phase("theirs", "Failed"))
    assert theirs["reason"] == "SourceInvalid"
    assert "may not be read by role" in theirs["message"], theirs["message"]
    own = failed_condition(await batches.wait_phase("bookkeeping", "Failed"))
    assert own["reason"] == "SourceInvalid"
    assert "'jobs' is ImageBatch's own bookkeeping" in own["message"]

    await batches.patch_spec("mine", {"suspend": False})
    status = await batches.wait_status(
        "mine", lambda s: s.get("published") == ROWS, what=f"{ROWS} items published"
    )
    assert status["total"] == ROWS


async def test_a_namespace_without_a_source_connection_gets_source_invalid(
    start_operator: OperatorFactory,
    batches: Batches,
    kube_cluster: KubeCluster,
    namespace: str,
    messaging: CommonSettings,
) -> None:
    kube_cluster.kubectl(
        "-n", namespace, "create", "secret", "generic", SECRET,
        f"--from-literal=RABBIT_URL={messaging.rabbit_url}",
        f"--from-literal=DATABASE_URL={messaging.database_url}",
    )  # fmt: skip
    await start_operator()
    await batches.create("seed", {"source": {"postgres": {"table": "images"}}})

    failed = failed_condition(await batches.wait_phase("seed", "Failed"))

    assert failed["reason"] == "SourceInvalid"
    assert "SOURCE_DATABASE_URL" in failed["message"]
    assert "DEFAULT_SOURCE_DATABASE_URL" in failed["message"], "what an admin may set instead"
    assert (await batches.status("seed")).get("total") in (None, 0), (
        "the operator's own database is never read"
    )
