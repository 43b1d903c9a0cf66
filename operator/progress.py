"""A batch's status, phase and next moves as one pure function of what was observed.

The run loop (`batch.py`) gathers an `Observation` — the counts PostgreSQL keeps, the queue's
depth and consumers, whether publishing has finished, what is wrong — and `decide` turns it and
the previous status into the new status, the Events to post, the workers wanted and whether the
batch is due for deletion. Everything about lifecycles (suspension, deadline, failure budget,
TTL) is decided here, so it is tested as a table, without Kubernetes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal

from imagebatch.core.batch_status import (
    ACTIVE,
    FINISHED,
    BatchStatus,
    LastRetry,
    Phase,
    top_reasons,
)
from imagebatch.core.imagebatch import RunSpec
from imagebatch.core.jobs import BatchCounts
from imagebatch.operator import conditions as cond
from imagebatch.operator.conditions import Condition
from imagebatch.operator.scaling import desired_replicas

__all__ = ["ACTIVE", "FINISHED", "Decision", "Event", "Observation", "Problem", "decide"]


@dataclass(frozen=True)
class QueueStats:
    """The batch's queue: messages ready for a worker, and consumers attached."""

    messages: int
    consumers: int


@dataclass(frozen=True)
class Problem:
    """Something that stops the batch (`fatal`) or slows it while it may recover."""

    reason: str
    message: str
    fatal: bool = False


@dataclass(frozen=True)
class Observation:
    generation: int
    counts: BatchCounts
    queue: QueueStats | None
    """None when the broker could not be asked (the previous figures are kept)."""
    published_all: bool
    """Every item exists and every publishable item's message is confirmed."""
    problems: tuple[Problem, ...] = ()
    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    output: str | None = None
    """Where the thumbnails are (`status.output`), or None to keep the previous value."""
    manifest: str | None = None
    """The latest ending's manifest (`status.manifest`), or None to keep the previous value."""
    notified: Condition | None = None
    """The latest ending's notification as the `Notified` condition, None to leave it as is."""
    retry: LastRetry | None = None
    """The last `imagejobs.io/retry-failed` request acted on (PostgreSQL's record; retries.py),
    or None when there was none. One the status does not show yet is a retry that just
    happened: the batch runs again."""


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class Decision:
    status: BatchStatus
    events: tuple[Event, ...]
    replicas: int
    """Workers wanted when the operator scales by itself."""
    paused: bool
    """Hold the workers at 0 (KEDA's paused-replicas): suspended or finished."""
    publish: bool
    """Publishing may go on."""
    delete: bool
    """ttlSecondsAfterFinished has passed: delete the batch."""


def timestamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _failure(spec: RunSpec | None, obs: Observation, start: dt.datetime | None) -> Problem | None:
    """Why the batch fails now, if it does."""
    fatal = next((p for p in obs.problems if p.fatal), None)
    if fatal is not None:
        return fatal
    if spec is None:
        return Problem("SpecInvalid", "the spec cannot be read", fatal=True)
    counts = obs.counts
    budget = spec.failure_budget(counts.total)
    if counts.failed > budget:
        return Problem(
            "TooManyFailures",
            f"{counts.failed} of {counts.total} items failed, more than maxFailed "
            f"({spec.max_failed} = {budget}); the items not yet done stay in the queue",
        )
    deadline = spec.active_deadline_seconds
    running_for = (obs.now - start).total_seconds() if start is not None else 0.0
    if deadline is not None and not spec.suspend and running_for >= deadline:
        return Problem(
            "DeadlineExceeded",
            f"the batch ran longer than activeDeadlineSeconds ({deadline}s) "
            f"with {counts.done} of {counts.total} items done",
        )
    return None


def _phase(spec: RunSpec, obs: Observation, previous: Phase | None, published: bool) -> Phase:
    if previous in FINISHED:
        return previous
    if spec.suspend:
        return "Suspended"
    if published and obs.counts.done >= obs.counts.total:
        return "Succeeded"
    if published:
        return "Running"
    return "Publishing"


def _new_retry(previous: BatchStatus, obs: Observation) -> LastRetry | None:
    """The retry `obs` records that the status does not show yet, if there is one."""
    retry, shown = obs.retry, previous.last_retry
    if retry is None or (shown is not None and shown.request == retry.request):
        return None
    return retry


def decide(spec: RunSpec | None, previous: BatchStatus, obs: Observation) -> Decision:
    """The new status and what to do about it (see the module's docstring). `spec` None: the
    spec cannot be read (the CRD installed is older than the operator, or was edited); the batch
    fails with the fatal problem `obs` carries, and nothing else is done."""
    now = timestamp(obs.now)
    old_phase = previous.phase
    start = parse_time(previous.start_time)
    completion = previous.completion_time
    counts = obs.counts
    events: list[Event] = []
    updates: list[Condition] = []
    suspend = spec.suspend if spec is not None else False

    retry = _new_retry(previous, obs)
    if retry is not None:
        message = f"{retry.items} failed items sent back to work (retry-failed={retry.request!r})"
        events.append(Event("Normal", "RetryingFailed", message))
        if retry.items and old_phase in FINISHED:  # judged again, its clock started again
            reopened = [Condition("Complete", False, "RetryingFailed", message)]
            if previous.condition("Failed") is not None:
                reopened.append(Condition("Failed", False, "RetryingFailed", message))
            previous = previous.model_copy(
                update={"conditions": cond.apply(previous.conditions, reopened, now)}
            )
            old_phase, start, completion = "Running", None, None

    was_published = previous.is_true("Published")
    # Once every item was published, items published again (retried, or not yet seen as
    # published by a pump started after a restart) leave the batch Running.
    published = obs.published_all or was_published
    failure = None if old_phase in FINISHED else _failure(spec, obs, start)
    phase: Phase
    if failure is not None:
        phase = "Failed"
    elif spec is None:
        phase = old_phase or "Failed"
    else:
        phase = _phase(spec, obs, old_phase, published)

    if phase in ACTIVE and start is None:
        start = obs.now
    if phase == "Suspended":
        start = None  # as a Job's: the deadline counts again from the resumption
    if phase in FINISHED and completion is None:
        completion = now

    published_message = f"{counts.published} of {counts.total} items published"
    if phase == "Suspended":
        updates.append(Condition("Suspended", True, "Suspended", "spec.suspend is true"))
        if not published:
            updates.append(Condition("Published", False, "Suspended", published_message))
    elif spec is not None and not suspend and previous.is_true("Suspended"):
        updates.append(Condition("Suspended", False, "Resumed", "spec.suspend is false"))
        events.append(Event("Normal", "Resumed", "the batch goes on where it stopped"))
    if old_phase != "Suspended" and phase == "Suspended":
        events.append(Event("Normal", "Suspended", "publishing stopped, workers scaled to 0"))

    if obs.published_all:
        updates.append(Condition("Published", True, "AllPublished", published_message))
        if not was_published:
            events.append(Event("Normal", "Published", published_message))
    elif phase in ACTIVE and not was_published:
        updates.append(Condition("Published", False, "Publishing", published_message))

    done_message = f"{counts.completed} succeeded, {counts.failed} failed of {counts.total}"
    if phase == "Succeeded" and old_phase != "Succeeded":
        updates.append(Condition("Complete", True, "AllItemsDone", done_message))
        events.append(Event("Normal", "Succeeded", done_message))
    if failure is not None:
        updates.append(Condition("Failed", True, failure.reason, failure.message))
        events.append(Event("Warning", failure.reason, failure.message))

    degraded = [p for p in obs.problems if not p.fatal]
    was_degraded = previous.is_true("Degraded")
    if degraded:
        first = degraded[0]
        message = "; ".join(p.message for p in degraded)
        updates.append(Condition("Degraded", True, first.reason, message))
        if not was_degraded:
            events.append(Event("Warning", first.reason, message))
    elif was_degraded:
        updates.append(Condition("Degraded", False, "Recovered", "nothing stands in the way"))

    if obs.notified is not None:
        updates.append(obs.notified)

    queue = obs.queue
    status = previous.model_copy(
        update={
            "phase": phase,
            "total": counts.total,
            "published": counts.published,
            "succeeded": counts.completed,
            "failed": counts.failed,
            "retried": counts.retried,
            "queued": queue.messages if queue else previous.queued,
            "workers": queue.consumers if queue else previous.workers,
            "progress": f"{counts.done}/{counts.total}",
            "output": obs.output if obs.output is not None else previous.output,
            "manifest": obs.manifest if obs.manifest is not None else previous.manifest,
            "start_time": timestamp(start) if start is not None else None,
            "completion_time": completion,
            "observed_generation": obs.generation,
            "conditions": cond.apply(previous.conditions, updates, now),
            "failure_reasons": top_reasons(counts.failure_codes),
            "last_retry": obs.retry or previous.last_retry,
        }
    )
    finished_at = parse_time(completion)
    ttl = spec.ttl_seconds_after_finished if spec is not None else None
    expired = (
        phase in FINISHED
        and ttl is not None
        and finished_at is not None
        and (obs.now - finished_at).total_seconds() >= ttl
    )
    active = phase in ACTIVE and spec is not None
    return Decision(
        status=status,
        events=tuple(events),
        replicas=desired_replicas(
            counts.total - counts.done,
            per_replica=spec.messages_per_replica,
            minimum=spec.min_replicas,
            maximum=spec.max_replicas,
            active=active,
        )
        if spec is not None
        else 0,
        paused=not active,
        publish=active and not any(p.fatal for p in obs.problems),
        delete=expired,
    )
