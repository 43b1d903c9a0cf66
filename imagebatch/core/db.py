"""PostgreSQL access shared by the services: pools and start-up migrations.

Migrations are the numbered SQL files beside this module. Every service applies them when it
starts, so they are idempotent and serialised by an advisory lock: several replicas starting at
once apply each file exactly once.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import asyncpg

MIGRATIONS_LOCK_ID = 0x1A6EBA7C
"""Advisory lock key that serialises concurrent migration runs."""
MIGRATIONS_TABLE = "schema_migrations"
"""Which migrations were applied, and when."""
SERVICE_ROLES = ("imagebatch_worker", "imagebatch_api", "imagebatch_source")
"""The group roles the services connect as (members of); migration 0010 grants them."""


async def _init_connection(conn: asyncpg.Connection) -> None:
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """A pool reset that sends nothing to the server (see `create_pool`)."""


async def create_pool(
    dsn: str, *, min_size: int = 1, max_size: int = 10, reset_on_release: bool = True
) -> asyncpg.Pool:
    """A pool whose connections encode and decode JSON columns as Python objects.

    By default asyncpg resets every connection on release with one more round trip
    (`RESET ALL`, `pg_advisory_unlock_all()`, …). A hot path that leaves no session state behind
    — and terminates a connection when it cannot be sure of that — passes
    `reset_on_release=False` to save that round trip per use.
    """
    pool: asyncpg.Pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=None if reset_on_release else _keep_session,
    )
    return pool


def migration_files() -> list[tuple[str, str]]:
    """(version, sql) of every migration, in order."""
    folder = resources.files("imagebatch.core") / "migrations"
    entries = sorted((p for p in folder.iterdir() if p.name.endswith(".sql")), key=lambda p: p.name)
    return [(p.name.removesuffix(".sql"), p.read_text()) for p in entries]


async def _all_applied(conn: asyncpg.Connection) -> bool:
    """Whether every migration is recorded, asked without any privilege beyond reading the
    record: a least-privileged service (which may not create or alter tables) starts when
    the operator has migrated."""
    if await conn.fetchval("SELECT to_regclass($1)", MIGRATIONS_TABLE) is None:
        return False
    done = {r["version"] for r in await conn.fetch(f"SELECT version FROM {MIGRATIONS_TABLE}")}
    return all(version in done for version, _ in migration_files())


async def apply_migrations(conn: asyncpg.Connection) -> list[str]:
    """Apply the migrations not yet recorded; returns the versions applied now."""
    if await _all_applied(conn):
        return []
    applied_now: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATIONS_LOCK_ID)
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} ("
            " version TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        done: set[str] = {
            r["version"] for r in await conn.fetch(f"SELECT version FROM {MIGRATIONS_TABLE}")
        }
        for version, sql in migration_files():
            if version in done:
                continue
            await conn.execute(sql)
            await conn.execute(f"INSERT INTO {MIGRATIONS_TABLE} (version) VALUES ($1)", version)
            applied_now.append(version)
    return applied_now


async def grant_new_service_roles(conn: asyncpg.Connection) -> list[str]:
    """Grant the service roles that exist but have no grants recorded — made by an
    administrator after the migrations ran — what migration 0010's function gives them; returns
    the roles granted now. Only the schema's owner may; for anyone else this is one query."""
    owner = await conn.fetchval(
        "SELECT pg_has_role(current_user, relowner, 'USAGE') FROM pg_class"
        " WHERE oid = to_regclass('service_role_grants')"
    )
    if not owner:
        return []
    new = await conn.fetchval(
        "SELECT count(*) FROM pg_roles WHERE rolname = ANY($1::text[])"
        " AND rolname NOT IN (SELECT role FROM service_role_grants)",
        list(SERVICE_ROLES),
    )
    if not new:
        return []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATIONS_LOCK_ID)
        return [r[0] for r in await conn.fetch("SELECT imagebatch_grant_service_roles()")]


async def migrate(dsn: str) -> list[str]:
    """Connect once, apply the migrations and grant service roles made since; returns the
    versions applied now."""
    conn: asyncpg.Connection = await asyncpg.connect(dsn)
    try:
        applied = await apply_migrations(conn)
        await grant_new_service_roles(conn)
        return applied
    finally:
        await conn.close()


def record_to_dict(record: asyncpg.Record | None) -> dict[str, Any] | None:
    return dict(record) if record is not None else None
