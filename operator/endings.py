"""What the operator owes a batch each time it ends: its manifest, and its notification.

A batch ends when its phase becomes Succeeded or Failed; a retried batch ends again later. Each
ending is one row of `batch_endings` (migration 0006), found by the batch's uid and what tells
its endings apart (`completionTime` and the last retry request), so a restarted operator finds
the row it made before instead of starting a second ending. The row's id is the ending's
identity: the CloudEvent id of its notification.

The work runs in a task beside the batch's run loop (a manifest of 1,000,000 items takes a
while; a notification may be retried for 10 minutes), and every step is recorded in the row
before the next: the manifest once written is not written again, a notification once accepted
is not sent again. `observe` starts the task when work is left and reports how far it is; the
run loop turns that into `status.manifest` and the `Notified` condition through `decide`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import asyncpg

from imagebatch.core.dependencies import DB_ERRORS
from imagebatch.core.errors import DependencyDown
from imagebatch.core.imagebatch import RunSpec
from imagebatch.core.locations import FileLocation, parse_location
from imagebatch.core.manifest import manifest_key, write_manifest
from imagebatch.core.stores import open_store
from imagebatch.operator.conditions import Condition
from imagebatch.operator.context import OperatorContext
from imagebatch.operator.notify import Notifier, NotifyFailed, cloud_event, retry_delay
from imagebatch.operator.progress import parse_time

log = logging.getLogger(__name__)

FINISHED = frozenset({"Succeeded", "Failed"})
MANIFEST_RETRY_SECONDS = 10.0
"""After a failed manifest write (the store or PostgreSQL down), wait this long to try again."""


@dataclass(frozen=True)
class Ending:
    """One ending of a batch, as `batch_endings` records it."""

    id: str
    phase: str
    manifest: str | None = None
    manifest_error: str | None = None
    notified: bool = False
    notify_attempts: int = 0
    notify_error: str | None = None
    notify_gave_up: bool = False
    age: float = 0.0
    """Seconds since the ending was first recorded (when it was read)."""


def ending_key(status: Mapping[str, Any]) -> str | None:
    """What tells this ending from the batch's others, or None when the batch has not ended."""
    completion = status.get("completionTime")
    if status.get("phase") not in FINISHED or not isinstance(completion, str):
        return None
    retry = status.get("lastRetry")
    request = retry.get("request") if isinstance(retry, Mapping) else None
    return f"{completion}|{request or ''}"


RECORD_SQL = """
INSERT INTO batch_endings (id, batch, uid, ending, phase) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (batch, uid, ending) DO NOTHING
"""
READ_SQL = """
SELECT id, phase, manifest, manifest_error, notified_at IS NOT NULL AS notified,
       notify_attempts, notify_error, notify_gave_up,
       extract(epoch FROM now() - created_at)::float8 AS age
  FROM batch_endings WHERE batch = $1 AND uid = $2 AND ending = $3
"""


async def record(pool: asyncpg.Pool, batch: str, uid: str, key: str, phase: str) -> Ending:
    """The ending's row, made now if this is its first sight."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(RECORD_SQL, str(uuid.uuid4()), batch, uid, key, phase)
        row = await conn.fetchrow(READ_SQL, batch, uid, key)
    assert row is not None
    return Ending(**dict(row))


class Endings:
    """The endings of one batch, for its run loop."""

    def __init__(self, ctx: OperatorContext, batch: str, uid: str) -> None:
        self.ctx = ctx
        self.batch = batch
        self.uid = uid
        self._key: str | None = None
        self.current: Ending | None = None
        self._task: asyncio.Task[None] | None = None
        self._not_before = 0.0
        self._notifier: Notifier | None = None

    def owes(self, spec: RunSpec, ending: Ending) -> bool:
        """Whether work is left for `ending`."""
        return ending.manifest is None or self.owes_notification(spec, ending)

    @staticmethod
    def owes_notification(spec: RunSpec, ending: Ending) -> bool:
        return spec.notify_url is not None and not ending.notified and not ending.notify_gave_up

    async def observe(self, spec: RunSpec, status: Mapping[str, Any]) -> Ending | None:
        """The batch's latest ending, starting (or resuming) what it is owed."""
        key = ending_key(status)
        if key is None:
            return self.current
        if key != self._key:
            try:
                self.current = await record(
                    self.ctx.pool, self.batch, self.uid, key, str(status["phase"])
                )
            except DB_ERRORS as exc:
                log.warning("%s: cannot record the batch's ending: %r", self.batch, exc)
                return self.current
            self._key = key
        ending = self.current
        assert ending is not None
        idle = self._task is None or self._task.done()
        if idle and self.owes(spec, ending) and time.monotonic() >= self._not_before:
            self._task = asyncio.create_task(
                self._settle(spec, ending, dict(status)), name=f"ending {self.batch}"
            )
        return ending

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._notifier is not None:
            await self._notifier.close()

    async def _settle(self, spec: RunSpec, ending: Ending, status: dict[str, Any]) -> None:
        try:
            await self._settle_once(spec, ending, status)
        except Exception:  # a bug or an outage nobody modelled: log it, try again later
            log.exception("%s: settling ending %s failed", self.batch, ending.id)
            self._not_before = time.monotonic() + MANIFEST_RETRY_SECONDS

    async def _settle_once(self, spec: RunSpec, ending: Ending, status: dict[str, Any]) -> None:
        if ending.manifest is None:
            ending = await self._write_manifest(spec, ending)
        if self.owes_notification(spec, ending):  # also when the manifest is not there yet
            ending = await self._notify(spec, ending, status)
        if ending.manifest is None:
            self._not_before = time.monotonic() + MANIFEST_RETRY_SECONDS

    async def _notify(self, spec: RunSpec, ending: Ending, status: dict[str, Any]) -> Ending:
        """Deliver the ending's event, retrying with backoff until GIVE_UP_AFTER_SECONDS."""
        assert spec.notify_url is not None
        if self._notifier is None:
            self._notifier = Notifier(self.ctx.settings.allow_private_webhooks)
        ended = parse_time(status.get("completionTime")) or dt.datetime.now(dt.UTC)
        data = {**status, "manifest": ending.manifest or status.get("manifest")}
        event = cloud_event(spec.namespace, spec.name, ending.id, ending.phase, data, ended)
        started = time.monotonic() - ending.age
        while True:
            try:
                await self._notifier.send(spec.notify_url, event)
            except NotifyFailed as exc:
                attempts = ending.notify_attempts + 1
                delay = retry_delay(attempts, time.monotonic() - started)
                ending = replace(
                    ending, notify_attempts=attempts, notify_error=str(exc),
                    notify_gave_up=delay is None,
                )  # fmt: skip
                await self._save(ending)
                self._update(ending)
                log.warning(
                    "%s: notification %s attempt %d failed: %s%s", self.batch, ending.id,
                    attempts, exc, "; giving up" if delay is None else f"; again in {delay:g}s",
                )  # fmt: skip
                if delay is None:
                    return ending
                await asyncio.sleep(delay)
                continue
            ending = replace(
                ending, notified=True, notify_attempts=ending.notify_attempts + 1,
                notify_error=None,
            )  # fmt: skip
            await self._save(ending)
            log.info("%s: notification %s accepted by %s", self.batch, ending.id, spec.notify_url)
            return self._update(ending)

    def _update(self, ending: Ending) -> Ending:
        if self.current is not None and self.current.id == ending.id:
            self.current = ending
        return ending

    async def _write_manifest(self, spec: RunSpec, ending: Ending) -> Ending:
        settings = self.ctx.settings
        location = parse_location(spec.output_url or settings.worker_output_url)
        local = location
        if isinstance(location, FileLocation):  # the workers' /data, mounted here
            local = FileLocation(settings.worker_data_dir)
        store = open_store(local, settings)
        began = time.perf_counter()
        try:
            if isinstance(local, FileLocation) and not local.root.is_dir():
                raise DependencyDown(
                    "output store",
                    f"WORKER_DATA_DIR {local.root} does not exist: mount the workers' volume "
                    f"({settings.worker_data_claim}) there to write manifests of file outputs",
                )
            async with self.ctx.pool.acquire() as conn:
                written = await write_manifest(conn, store, self.batch, spec.output_prefix)
        except (DependencyDown, *DB_ERRORS) as exc:
            log.warning("%s: cannot write the manifest: %s", self.batch, exc)
            ending = replace(ending, manifest_error=str(exc))
            await self._save(ending)
            return self._update(ending)
        url = f"{location.url.rstrip('/')}/{manifest_key(spec.output_prefix)}"
        log.info(
            "%s: manifest %s written: %d items, %d bytes in %.1fs",
            self.batch, url, written.lines, written.bytes, time.perf_counter() - began,
        )  # fmt: skip
        ending = replace(ending, manifest=url, manifest_error=None)
        await self._save(ending)
        return self._update(ending)

    async def _save(self, ending: Ending) -> None:
        """Record the ending's progress; a PostgreSQL outage only costs a repeat later."""
        try:
            await self.ctx.pool.execute(
                "UPDATE batch_endings SET manifest = $2, manifest_error = $3,"
                " notified_at = CASE WHEN $4 THEN coalesce(notified_at, now()) END,"
                " notify_attempts = $5, notify_error = $6, notify_gave_up = $7 WHERE id = $1",
                ending.id,
                ending.manifest,
                ending.manifest_error,
                ending.notified,
                ending.notify_attempts,
                ending.notify_error,
                ending.notify_gave_up,
            )
        except DB_ERRORS as exc:
            log.warning("%s: cannot record the ending's progress: %r", self.batch, exc)


def notified_condition(spec: RunSpec, ending: Ending | None) -> Condition | None:
    """The `Notified` condition for the latest ending (None: nothing to say yet)."""
    if ending is None or spec.notify_url is None:
        return None
    if ending.notified:
        return Condition(
            "Notified", True, "EventAccepted", f"the receiver accepted event {ending.id}"
        )
    if ending.notify_error is None:
        return None
    if ending.notify_gave_up:
        return Condition(
            "Notified", False, "GaveUp",
            f"no attempt in 10 minutes delivered event {ending.id}; the last: "
            f"{ending.notify_error}",
        )  # fmt: skip
    return Condition(
        "Notified", False, "Retrying",
        f"attempt {ending.notify_attempts} to deliver event {ending.id} failed: "
        f"{ending.notify_error}",
    )  # fmt: skip
