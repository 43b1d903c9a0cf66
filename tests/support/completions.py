"""A trigger that counts every completion a job ever gets, so a chaos test sees a job that was
completed twice."""

from __future__ import annotations

import asyncpg

COMPLETIONS_SQL = """
CREATE TABLE IF NOT EXISTS completions (id TEXT NOT NULL, at TIMESTAMPTZ DEFAULT clock_timestamp());
CREATE OR REPLACE FUNCTION note_completion() RETURNS trigger AS $$
BEGIN
    IF NEW.status = 'completed' THEN
        INSERT INTO completions (id) VALUES (NEW.id);
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER jobs_completion AFTER INSERT OR UPDATE ON jobs
    FOR EACH ROW EXECUTE FUNCTION note_completion();
"""
"""Every write that leaves a job `completed` adds a row: a job completed twice shows twice."""


async def count_completions(database_url: str) -> dict[str, int]:
    conn: asyncpg.Connection = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT id, count(*) AS n FROM completions GROUP BY id")
    finally:
        await conn.close()
    return {r["id"]: int(r["n"]) for r in rows}


async def install_completion_counter(database_url: str) -> None:
    conn: asyncpg.Connection = await asyncpg.connect(database_url)
    try:
        await conn.execute(COMPLETIONS_SQL)
    finally:
        await conn.close()
