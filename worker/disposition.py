"""The worker's failure policy: what becomes of a message, decided by one pure function.

`decide` takes what processing a delivery gave — an `Outcome` or the error it raised — with the
message's attempt and throttle counts and the worker's limits, and returns a frozen disposition.
It touches nothing: `consumer.Consumer` carries the disposition out (record, publish, ack or
nack), and a table test covers every case. This is kopf's `execute_handler_once` → `Outcome`,
applied elsewhere.

| what happened                                   | disposition                          | attempt |
|-------------------------------------------------|--------------------------------------|---------|
| completed, or a duplicate of a job already done | `Ack`                                | —       |
| another delivery of the job is being processed  | `Wait` (backoff's first delay)       | kept    |
| `Throttled` (429/503 + Retry-After), fewer than | `Wait` (Retry-After, at most         | kept    |
|   `MAX_THROTTLES` waits so far                  |   `RETRY_AFTER_MAX_SECONDS`)         |         |
| `Throttled`, `MAX_THROTTLES` waits already made | as a `TransientError`                | spent   |
| `TransientError` (or a bug), attempts left      | `RetryAfter` (backoff, ≥ server's)   | spent   |
| `TransientError` (or a bug), attempts used up   | `DeadLetter` `retries_exhausted`     | —       |
| `PermanentError`                                | `DeadLetter` with its code           | —       |
|   — among them `delivery_limit`: `MAX_ATTEMPTS` |                                      |         |
|   deliveries in a row died processing the job   |                                      |         |
|   (worker/poison.py, checked at claim time)     |                                      |         |
| `DependencyDown` (database, broker, output      | `Requeue` after a pause              | kept    |
|   store, disk)                                  |                                      |         |
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from imagebatch.core.delays import Backoff
from imagebatch.core.errors import (
    Dependency,
    DependencyDown,
    PermanentError,
    Throttled,
    TransientError,
)
from imagebatch.worker.pipeline import Outcome
from imagebatch.worker.settings import WorkerSettings

MIN_REQUEUE_PAUSE = 0.05
MAX_REQUEUE_PAUSE = 5.0


@dataclass(frozen=True)
class Ack:
    """Done with the message: the job completed now, or had completed before (`duplicate`)."""

    status: Literal["completed", "duplicate"]

    @property
    def label(self) -> str:
        return self.status


@dataclass(frozen=True)
class RetryAfter:
    """Spend an attempt: record the failure, re-publish the message to a delay queue as attempt
    `attempt` (the failed one + 1) after `delay` seconds, then ack the original."""

    delay: float
    attempt: int
    reason: str

    @property
    def label(self) -> str:
        return "retried"


@dataclass(frozen=True)
class Wait:
    """Look again after `delay` seconds without spending an attempt: re-publish to a delay queue
    with the same attempt number, carrying `throttles` throttling waits, then ack the original.
    `why`: the origin asked us to (`throttled`), or another delivery holds the job (`busy`)."""

    delay: float
    why: Literal["throttled", "busy"]
    throttles: int
    reason: str = ""

    @property
    def label(self) -> str:
        return self.why


@dataclass(frozen=True)
class DeadLetter:
    """Give up: record the failure, send the message to the dead-letter queue with `code` (for
    programs) and `reason` (for people), then ack the original."""

    code: str
    reason: str

    @property
    def label(self) -> str:
        return "dead_lettered"


@dataclass(frozen=True)
class Requeue:
    """A dependency of ours is down: after `pause` seconds, hand the message back to the broker
    unchanged (no attempt spent, nothing recorded) and report `dependency` as down."""

    pause: float
    dependency: Dependency
    reason: str

    @property
    def label(self) -> str:
        return "requeued"


Disposition = Ack | RetryAfter | Wait | DeadLetter | Requeue


@dataclass(frozen=True)
class Policy:
    """The limits `decide` applies (from the worker's settings)."""

    max_attempts: int
    max_throttles: int
    retry_after_max: float
    backoff: Backoff
    requeue_pause: float

    @classmethod
    def from_settings(cls, settings: WorkerSettings) -> Policy:
        return cls(
            max_attempts=settings.max_attempts,
            max_throttles=settings.max_throttles,
            retry_after_max=settings.retry_after_max_seconds,
            backoff=Backoff(base=settings.backoff_seconds, cap=settings.backoff_max_seconds),
            # An outage of ours says nothing about the backoff the batch asked for: even
            # `BACKOFF_SECONDS=0` pauses a little rather than spin on redeliveries.
            requeue_pause=min(MAX_REQUEUE_PAUSE, max(settings.backoff_seconds, MIN_REQUEUE_PAUSE)),
        )


def decide(
    result: Outcome | Exception,
    *,
    attempt: int,
    throttles: int,
    policy: Policy,
    rng: random.Random,
) -> Disposition:
    """What to do with a message whose processing gave `result`, on attempt `attempt` (1-based)
    after `throttles` throttling waits. `rng` draws the backoff's jitter."""
    match result:
        case Outcome(status="busy"):
            return Wait(
                delay=policy.backoff.delay(1, rng=rng),
                why="busy",
                throttles=throttles,
                reason="another delivery of the job is being processed",
            )
        case Outcome(status="completed" | "duplicate" as status):
            return Ack(status)
        case DependencyDown():
            return Requeue(policy.requeue_pause, result.dependency, result.reason)
        case PermanentError():
            return DeadLetter(result.code, result.reason)
        case Throttled() if throttles < policy.max_throttles:
            return Wait(
                delay=min(result.delay, policy.retry_after_max),
                why="throttled",
                throttles=throttles + 1,
                reason=result.reason,
            )
        case Throttled():
            reason = f"{result.reason} (still throttled after {throttles} waits)"
            return _retry_or_give_up(reason, result.delay, attempt, policy, rng)
        case TransientError():
            return _retry_or_give_up(result.reason, result.delay, attempt, policy, rng)
        case _:
            # A bug (or an error nobody classified): retried like a transient failure, so it
            # cannot loop forever.
            reason = f"internal error: {type(result).__name__}: {result}"
            return _retry_or_give_up(reason, None, attempt, policy, rng)


def _retry_or_give_up(
    reason: str, at_least: float | None, attempt: int, policy: Policy, rng: random.Random
) -> RetryAfter | DeadLetter:
    if attempt >= policy.max_attempts:
        return DeadLetter("retries_exhausted", f"gave up after {attempt} attempts: {reason}")
    if at_least is not None:
        at_least = min(at_least, policy.retry_after_max)
    delay = policy.backoff.delay(attempt, at_least=at_least, rng=rng)
    return RetryAfter(delay=delay, attempt=attempt + 1, reason=reason)
