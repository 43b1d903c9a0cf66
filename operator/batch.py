"""One ImageBatch's run, from its first sight to its end, as the operator's daemon for it.

Every `STATUS_INTERVAL_SECONDS` the run:
  1. reads the live spec and checks what the schema cannot (source table, connections Secret);
  2. lets the pump go on (declare the queue → materialize items → publish them), or holds it;
  3. observes counts (PostgreSQL), queue depth and consumers (RabbitMQ);
  4. decides the status, Events, workers and deletion (`progress.decide`, pure);
  5. applies that: children (Deployment; ScaledObject and TriggerAuthentication with KEDA),
     the status, the Events, and the deletion when the TTL has passed.

The pump's progress lives in PostgreSQL (`items.py`), so a run that starts again after the
operator was killed continues from the record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from imagebatch.core.batch_status import BatchStatus
from imagebatch.core.dependencies import DB_ERRORS
from imagebatch.core.imagebatch import RunSpec, SpecInvalid, run_spec
from imagebatch.core.jobs import BatchCounts, batch_counts
from imagebatch.core.outages import current_outages
from imagebatch.operator import children, retries
from imagebatch.operator.context import OperatorContext
from imagebatch.operator.endings import Endings, notified_condition
from imagebatch.operator.progress import (
    Decision,
    Observation,
    Problem,
    QueueStats,
    decide,
)
from imagebatch.operator.pump import Pump
from imagebatch.operator.queues import ensure_queue, own_channel, queue_stats
from imagebatch.operator.source import check_source

log = logging.getLogger(__name__)

PostEvent = Callable[[str, str, str], None]
"""(type, reason, message) → an Event on the batch."""
IDLE_FACTOR = 10
"""A finished batch whose status no longer changes is looked at this many times less often."""


class BatchRun:
    def __init__(
        self, ctx: OperatorContext, body: Mapping[str, Any], post_event: PostEvent
    ) -> None:
        self.ctx = ctx
        self.body = body
        """The live object (kopf keeps it current)."""
        self.post_event = post_event
        meta = body["metadata"]
        self.namespace: str = meta["namespace"]
        self.name: str = meta["name"]
        self.uid: str = meta["uid"]
        self._gate = asyncio.Event()
        self._pump = Pump(ctx, self.batch, self.uid, self._gate)
        self._pumping: asyncio.Task[None] | None = None
        self._source_checked: tuple[int, Problem | None] | None = None
        self._applied: dict[str, dict[str, Any]] = {}
        self._queue_declared = False
        self._status = BatchStatus.read(body.get("status"))
        """The status as last written (or found)."""
        self._retry = retries.Retries()
        """The retry-failed requests acted on, as PostgreSQL records them."""
        self._retry_loaded = False
        self._endings = Endings(ctx, self.batch, self.uid)

    @property
    def batch(self) -> str:
        return f"{self.namespace}/{self.name}"

    async def run(self, stop: asyncio.Event) -> None:
        """Tick until `stop` (the batch is being deleted, or the operator stops)."""
        try:
            while not stop.is_set():
                began = time.monotonic()
                try:
                    changed = await self.tick()
                except Exception:  # a bug or an outage nobody modelled: log it, keep the batch
                    log.exception("%s: refreshing the batch failed; trying again", self.batch)
                    changed = True
                idle = self._status.finished and not changed and not self._status.workers
                await self._wait(stop, began, idle)
        finally:
            await self._endings.close()
            await self._stop_pump()

    async def _wait(self, stop: asyncio.Event, began: float, idle: bool) -> None:
        """Until the next refresh: one interval after the last one began, not after it ended;
        IDLE_FACTOR intervals for an idle batch, cut short by a retry request."""
        interval = self.ctx.settings.status_interval_seconds
        for step in range(IDLE_FACTOR if idle else 1):
            if step and self._retry_due():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    stop.wait(), timeout=interval * (step + 1) - (time.monotonic() - began)
                )
            if stop.is_set():
                return

    def _retry_due(self) -> bool:
        request = retries.requested(self.body["metadata"].get("annotations"))
        return retries.due(request, self._status.phase, self._retry)

    async def tick(self) -> bool:
        """One round of observe → decide → apply; returns whether the status changed."""
        began = time.perf_counter()
        generation = int(self.body["metadata"].get("generation") or 0)
        problems: list[Problem] = []
        spec: RunSpec | None = None
        try:
            spec = run_spec(self.namespace, self.name, dict(self.body.get("spec") or {}))
        except SpecInvalid as exc:
            problems.append(Problem("SpecInvalid", str(exc), fatal=True))
        if spec is None:  # nothing can be done but say so
            self._gate.clear()
            return await self._report(
                decide(
                    None,
                    self._status,
                    Observation(generation, self._counts(), None, False, tuple(problems)),
                )
            )
        problems += await self._check(spec, generation)
        await self._retry_failed()
        if self._pump.problem is not None:
            problems.append(self._pump.problem)
        counts, queue = await self._observe(spec, problems)
        # what an ended batch is owed: its manifest, its notification
        ending = await self._endings.observe(spec, self._status.to_kube())
        decision = decide(
            spec,
            self._status,
            Observation(
                generation,
                counts,
                queue,
                self._pump.published_all,
                tuple(problems),
                output=spec.output_location(self.ctx.settings.worker_output_url),
                manifest=ending.manifest if ending is not None else None,
                notified=notified_condition(spec, ending),
                retry=self._retry.last,
            ),
        )
        self.ctx.metrics.refresh_seconds.observe(time.perf_counter() - began)
        if decision.publish:  # never with a fatal problem (decide); a missing Secret is not one
            self._gate.set()
            if self._pumping is None:
                self._pumping = asyncio.create_task(self._pump.run(spec), name=f"pump {self.batch}")
        else:
            self._gate.clear()
        await self._ensure_children(spec, decision)
        changed = await self._report(decision)
        if decision.delete:
            log.info("%s: ttlSecondsAfterFinished passed; deleting the batch", self.batch)
            await self.ctx.kube.delete_batch(self.namespace, self.name, self.uid)
        return changed

    async def _retry_failed(self) -> None:
        """Act on a new `imagejobs.io/retry-failed` value (retries.py): the failed items go
        back to work, and the pump publishes them again."""
        try:
            if not self._retry_loaded:
                self._retry = await retries.recorded(self.ctx.pool, self.batch, self.uid)
                self._retry_loaded = True
            request = retries.requested(self.body["metadata"].get("annotations"))
            if request is None or not retries.due(request, self._status.phase, self._retry):
                return
            record = await retries.retry_failed(self.ctx.pool, self.batch, self.uid, request)
        except DB_ERRORS as exc:  # asked again next tick; the counts say the database is down
            log.warning("%s: cannot retry the failed items yet: %r", self.batch, exc)
            return
        if record is None:
            return
        self._retry = record
        if record.last is None or record.last.request != request:
            return  # acted on before, not last: nothing was sent back now
        items = record.last.items
        log.info("%s: retry %r sent %d failed items back", self.batch, request, items)
        if items:  # a pump that has finished, or is finishing, would miss them
            await self._stop_pump()
            self._pump.published_all = False

    async def _stop_pump(self) -> None:
        if self._pumping is not None:
            self._pumping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pumping
            self._pumping = None

    async def _check(self, spec: RunSpec, generation: int) -> list[Problem]:
        problems: list[Problem] = []
        if self._source_checked is None or self._source_checked[0] != generation:
            try:
                self._source_checked = (
                    generation,
                    await check_source(self.ctx.sources, self.namespace, spec),
                )
            except DB_ERRORS as exc:
                problems.append(Problem("DatabaseUnavailable", f"cannot read the source: {exc}"))
        if self._source_checked is not None and self._source_checked[1] is not None:
            problems.append(self._source_checked[1])
        secret = self.ctx.settings.worker_connections_secret
        try:
            if not await self.ctx.kube.secret_exists(self.namespace, secret):
                problems.append(
                    Problem(
                        "SecretMissing",
                        f"Secret {secret!r} (RABBIT_URL, DATABASE_URL for the workers) does not "
                        f"exist in namespace {self.namespace!r}: worker pods cannot start",
                    )
                )
        except Exception as exc:  # an API server hiccup is not the batch's fault
            log.warning("%s: cannot look up Secret %s: %r", self.batch, secret, exc)
        return problems

    async def _observe(
        self, spec: RunSpec, problems: list[Problem]
    ) -> tuple[BatchCounts, QueueStats | None]:
        counts = self._counts()
        try:
            counts = await batch_counts(self.ctx.pool, self.batch)
        except DB_ERRORS as exc:
            problems.append(
                Problem("DatabaseUnavailable", f"cannot read the batch's counts: {exc}")
            )
        try:
            for outage in await current_outages(self.ctx.pool, self.batch):
                problems.append(
                    Problem(
                        "OutputUnavailable",
                        f"workers cannot store thumbnails ({outage.dependency}): "
                        f"{outage.reason}; items wait, no attempt is spent",
                    )
                )
        except DB_ERRORS:
            pass  # the counts above already said the database is unavailable
        queue = None
        try:
            queue = await asyncio.wait_for(queue_stats(self.ctx.broker, spec), timeout=5)
        except Exception as exc:  # connection errors, or a channel the broker just closed
            problems.append(Problem("BrokerUnavailable", f"cannot reach RabbitMQ: {exc!r}"))
        return counts, queue

    def _counts(self) -> BatchCounts:
        """The counts the status last reported (when PostgreSQL cannot be asked)."""
        status = self._status
        return BatchCounts(
            total=status.total,
            published=status.published,
            completed=status.succeeded,
            failed=status.failed,
            retried=status.retried,
            failure_codes=tuple((r.reason, r.count) for r in status.failure_reasons),
        )

    async def _ensure_children(self, spec: RunSpec, decision: Decision) -> None:
        settings = self.ctx.settings
        try:
            keda = await self.ctx.keda_installed()
            wanted = [
                children.deployment(
                    spec, self.uid, settings, replicas=None if keda else decision.replicas
                )
            ]
            if keda and not self._queue_declared:
                # KEDA reads the queue from the moment its ScaledObject exists, and a queue not
                # there yet is a KEDAScalerFailed Warning: a suspended batch publishes nothing,
                # and a resumed one's pump declares it only after this tick's apply.
                async with own_channel(self.ctx.broker) as channel:
                    await ensure_queue(channel, settings, spec)
                self._queue_declared = True
            if keda and "Deployment" not in self._applied:
                await self.ctx.kube.create_deployment(children.created_at_zero(wanted[0]))
            if keda:
                wanted += [
                    children.trigger_authentication(spec, self.uid, settings),
                    children.scaled_object(spec, self.uid, settings, paused=decision.paused),
                ]
            for obj in wanted:
                key = obj["kind"]
                if self._applied.get(key) != obj:
                    await self.ctx.kube.apply(obj)
                    self._applied[key] = obj
        except Exception as exc:  # retried next tick; the status says why meanwhile
            log.warning("%s: cannot apply the batch's children: %r", self.batch, exc)

    async def _report(self, decision: Decision) -> bool:
        """Write the decided status, then post its Events: only once the status that records
        the transition is written, so a failed write (decided again next tick) posts nothing
        twice. Returns whether the status changed."""
        status = decision.status
        changed = status.to_kube() != self._status.to_kube()
        if changed:
            try:
                await self.ctx.kube.patch_status(self.namespace, self.name, status.to_kube())
            except Exception as exc:
                log.warning("%s: cannot update the status: %r", self.batch, exc)
                return False
            self._status = status
        for event in decision.events:
            self.post_event(event.type, event.reason, event.message)
        self.ctx.metrics.phase(self.batch, status.phase)
        return changed
