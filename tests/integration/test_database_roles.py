"""Least privilege in PostgreSQL: each service's role (made by migration 0007) can do its own
work and nothing more — on a real server, as login roles that are members of them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from imagebatch.api import store
from imagebatch.api.store import CLAIM_IMAGES
from imagebatch.core.db import create_pool, grant_new_service_roles, migrate
from imagebatch.core.messages import ImageJob
from imagebatch.worker.records import JobRecords, OutputRecord, SourceRecord
from tests.conftest import _with_database
from tests.support.servers import ServerHandle

INIT = Path(__file__).resolve().parents[2] / "db" / "init"

Login = Callable[[str], Awaitable[asyncpg.Connection]]


@pytest.fixture
async def login_as(database_url: str) -> AsyncIterator[Login]:
    """`await login_as("imagebatch_worker")`: a connection as a new login member of that role."""
    admin: asyncpg.Connection = await asyncpg.connect(database_url)
    made: list[str] = []
    opened: list[asyncpg.Connection] = []
    at = database_url.split("@", 1)[1]

    async def login(service: str) -> asyncpg.Connection:
        name = f"{service}_{uuid.uuid4().hex[:6]}"
        await admin.execute(f"CREATE ROLE {name} LOGIN PASSWORD 'pw' IN ROLE {service}")
        made.append(name)
        conn: asyncpg.Connection = await asyncpg.connect(f"postgresql://{name}:pw@{at}")
        opened.append(conn)
        return conn

    try:
        yield login
    finally:
        for conn in opened:
            await conn.close()
        for name in made:
            await admin.execute(f"DROP ROLE IF EXISTS {name}")
        await admin.close()


async def test_the_worker_may_record_outcomes_but_not_drop_tables_or_read_uploads(
    login_as: Login,
) -> None:
    worker = await login_as("imagebatch_worker")

    await worker.execute(
        "INSERT INTO jobs (id, kind, url, batch, status) VALUES ('w1', 'batch', 'https://a.test/x',"
        " 'ns/b', 'processing')"
    )
    await worker.execute("UPDATE jobs SET status = 'completed' WHERE id = 'w1'")
    await worker.execute("UPDATE images SET processed = true WHERE id = -1")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await worker.execute("DROP TABLE jobs")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await worker.execute("ALTER TABLE jobs ADD COLUMN mine text")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await worker.fetch("SELECT * FROM uploads")


async def test_the_api_may_not_write_the_operator_s_batch_rows(login_as: Login) -> None:
    api = await login_as("imagebatch_api")

    assert await api.fetchval("SELECT count(*) FROM batches") == 0
    assert await api.fetch(CLAIM_IMAGES, 10) == [], "/enqueue's claim runs as the api"
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await api.execute("DELETE FROM batches")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await api.execute("DROP TABLE uploads")


async def test_the_api_may_not_change_batch_items_but_still_does_its_own_work(
    database_url: str, login_as: Login
) -> None:
    """Row-level security (migration 0009): the api reads batch items, never writes them."""
    admin: asyncpg.Connection = await asyncpg.connect(database_url)
    try:
        await admin.execute(
            "INSERT INTO jobs (id, kind, url, batch, status) VALUES ('item-1', 'batch',"
            " 'https://a.test/i.jpg', 'ns/b', 'failed')"
        )
        await admin.execute("INSERT INTO images (url) VALUES ('https://a.test/seed.jpg')")
    finally:
        await admin.close()
    user = await (await login_as("imagebatch_api")).fetchval("SELECT current_user")
    pool = await create_pool(f"postgresql://{user}:pw@{database_url.split('@', 1)[1]}")
    try:
        assert await pool.fetchval("SELECT status FROM jobs WHERE id = 'item-1'") == "failed"
        assert await pool.execute("UPDATE jobs SET status = 'pending' WHERE id = 'item-1'") == (
            "UPDATE 0"
        )
        assert await pool.execute("DELETE FROM jobs WHERE batch = 'ns/b'") == "DELETE 0"
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await pool.execute(
                "INSERT INTO jobs (id, kind, url, batch, status) VALUES ('item-2', 'batch',"
                " 'https://a.test/j.jpg', 'ns/b', 'pending')"
            )
        assert await pool.fetchval("SELECT status FROM jobs WHERE id = 'item-1'") == "failed"

        task, created = await store.insert_task(
            pool,
            job_id="t-1",
            url="https://a.test/t.jpg",
            ops=["thumbnail"],
            idempotency_key=None,
            request_hash="h",
            caller="alice",
        )
        assert created
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await pool.execute("UPDATE jobs SET kind = 'batch' WHERE id = $1", task["id"])
        await store.insert_upload(
            pool,
            store.UploadRecord("u-1", "upload://u-1", "u.jpg", "image/jpeg", 3, "u-1.jpg", "alice"),
        )
        claimed = await store.claim_images(pool, 10)
        assert [c.url for c in claimed] == ["https://a.test/seed.jpg"]
        await store.mark_unpublished(pool, [c.id for c in claimed], "broker down")
        await store.delete_job(pool, "u-1")
        assert await pool.fetchval("SELECT count(*) FROM jobs WHERE kind <> 'batch'") == 2
    finally:
        await pool.close()


async def test_the_source_role_reads_the_seed_table_and_nothing_else(login_as: Login) -> None:
    source = await login_as("imagebatch_source")

    assert await source.fetchval("SELECT count(*) FROM images") >= 0
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await source.execute("UPDATE images SET processed = true")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await source.fetch("SELECT * FROM jobs")


async def test_a_service_that_may_not_migrate_starts_once_migrations_are_applied(
    database_url: str, login_as: Login
) -> None:
    worker = await login_as("imagebatch_worker")
    user = await worker.fetchval("SELECT current_user")
    at = database_url.split("@", 1)[1]

    assert await migrate(f"postgresql://{user}:pw@{at}") == []


async def test_the_init_scripts_give_each_service_its_login(postgres_server: ServerHandle) -> None:
    """docker compose and the dev manifests run db/init/*.sql on an empty volume; then the
    owner migrates and every service logs in as its own role."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    admin: asyncpg.Connection = await asyncpg.connect(postgres_server.url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        fresh: asyncpg.Connection = await asyncpg.connect(_with_database(postgres_server.url, name))
        try:
            for script in sorted(INIT.glob("*.sql")):
                await fresh.execute(script.read_text())
        finally:
            await fresh.close()
        at = _with_database(postgres_server.url, name).split("@", 1)[1]

        def url(role: str) -> str:
            return f"postgresql://{role}:{role}@{at}"

        assert await migrate(url("imagebatch")), "the owner applies the migrations"
        worker: asyncpg.Connection = await asyncpg.connect(url("imagebatch_worker"))
        source: asyncpg.Connection = await asyncpg.connect(url("imagebatch_source"))
        try:
            assert await worker.fetchval("SELECT count(*) FROM images") == 300
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await worker.execute("DROP TABLE jobs")
            assert await source.fetchval("SELECT count(*) FROM images") == 300
            with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
                await source.execute("CREATE TEMP TABLE mine (x int)")
        finally:
            await worker.close()
            await source.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_the_worker_role_records_a_seed_row_and_a_batch_item_end_to_end(
    database_url: str, login_as: Login
) -> None:
    admin: asyncpg.Connection = await asyncpg.connect(database_url)
    try:
        seed_id = await admin.fetchval(
            "INSERT INTO images (url) VALUES ('https://a.test/s.jpg') RETURNING id"
        )
    finally:
        await admin.close()
    user = await (await login_as("imagebatch_worker")).fetchval("SELECT current_user")
    pool = await create_pool(
        f"postgresql://{user}:pw@{database_url.split('@', 1)[1]}", reset_on_release=False
    )
    records = JobRecords(pool)
    try:
        for job in (
            ImageJob.model_validate(  # the seed's short form: a seed row's job
                {"url": "https://a.test/s.jpg", "ops": ["thumbnail"], "id": str(seed_id)}
            ),
            ImageJob(url="https://a.test/b.jpg", id="abc-1", batch="ns/b", output="b"),
        ):
            async with records.claim(job) as claim:
                assert claim.state == "started"
                await claim.complete(
                    SourceRecord(10, 64, 48), [OutputRecord("x.jpg", 8, 6, 1, "jpeg")]
                )
        failing = ImageJob(url="https://a.test/gone.jpg", id="abc-2", batch="ns/b", output="b")
        async with records.claim(failing) as claim:
            assert claim.state == "started"
        await records.fail(failing.id, "404 Not Found", "http_404")
        await records.close()
        assert await pool.fetchval("SELECT processed FROM images WHERE id = $1", seed_id)
        counts = await pool.fetchrow(
            "SELECT completed, failed FROM batch_counts WHERE batch = 'ns/b'"
        )
        assert counts is not None
        assert tuple(counts) == (1, 1)
        reasons = await pool.fetch("SELECT code, count FROM batch_failures WHERE batch = 'ns/b'")
        assert [tuple(r) for r in reasons] == [("http_404", 1)]
    finally:
        await pool.close()


async def test_a_service_role_made_after_the_migrations_gets_its_grants_at_the_owners_next_start(
    database_url: str, login_as: Login
) -> None:
    """What a database migrated before its administrator created imagebatch_api looks like:
    no grants, no row policies, nothing recorded. The owner's next start grants it."""
    admin: asyncpg.Connection = await asyncpg.connect(database_url)
    try:
        await admin.execute(
            "REVOKE ALL ON ALL TABLES IN SCHEMA public FROM imagebatch_api;"
            " DROP POLICY jobs_api_insert ON jobs; DROP POLICY jobs_api_update ON jobs;"
            " DROP POLICY jobs_api_delete ON jobs;"
            " DELETE FROM service_role_grants WHERE role = 'imagebatch_api'"
        )
        await admin.execute(
            "INSERT INTO jobs (id, kind, url, batch, status) VALUES ('item-1', 'batch',"
            " 'https://a.test/i.jpg', 'ns/b', 'failed')"
        )
    finally:
        await admin.close()
    api = await login_as("imagebatch_api")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await api.fetch("SELECT id FROM jobs")

    assert await migrate(database_url) == [], "nothing to migrate, only grants to give"

    assert [r["id"] for r in await api.fetch("SELECT id FROM jobs")] == ["item-1"]
    assert await api.execute("UPDATE jobs SET status = 'pending' WHERE id = 'item-1'") == (
        "UPDATE 0"
    ), "the row policies came back with the grants"
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await api.execute("DROP TABLE jobs")


async def test_roles_already_granted_are_not_granted_again_at_every_start(
    database_url: str,
) -> None:
    conn: asyncpg.Connection = await asyncpg.connect(database_url)
    try:
        granted = {
            r["role"]: r["granted_at"]
            for r in await conn.fetch("SELECT role, granted_at FROM service_role_grants")
        }
        assert set(granted) == {"imagebatch_worker", "imagebatch_api", "imagebatch_source"}
        assert await grant_new_service_roles(conn) == []
        again = {
            r["role"]: r["granted_at"]
            for r in await conn.fetch("SELECT role, granted_at FROM service_role_grants")
        }
        assert again == granted
    finally:
        await conn.close()
