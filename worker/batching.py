"""When a batcher sends what has queued up: the policy alone, with no clock, thread or I/O in it.

The worker batches two things — claims and completions (one statement for many jobs) and
thumbnail writes (one group's fsyncs side by side, each folder fsynced once) — because under
load that makes each job cheaper. It
must never make a job wait for company: a batch window or a size to fill would put the window's
length into every job's time even when nothing else is queued, and at the contract's defaults
(few jobs in flight) the time a job is held, not CPU, sets the pace. So the rule is group commit:

- when nothing is being flushed, whatever is queued goes at once, be it one request;
- while a flush is in progress, new requests queue and all of them join the next flush, which
  starts the moment the current one ends.

A batch therefore grows only as large as the load makes it: one request when the pipe is empty,
everything that arrived during one round trip when it is full. `BatchState` and its two
transitions are what the batchers (`records.JobRecords`, `group_writer.GroupWriter`) follow;
being pure, they are tested by tables of events rather than by timing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

NO_LIMIT = 1 << 30


@dataclass(frozen=True)
class BatchState:
    """A batcher's bookkeeping: requests waiting, and whether a flush is under way."""

    queued: int = 0
    flushing: bool = False


def take(state: BatchState, limit: int = NO_LIMIT) -> int:
    """How many queued requests to flush now: none while a flush is under way (they join the
    next one), otherwise all of them up to `limit` — without waiting for more to arrive."""
    if state.flushing or state.queued <= 0:
        return 0
    return min(state.queued, max(1, limit))


def _start(state: BatchState, limit: int) -> tuple[BatchState, int]:
    count = take(state, limit)
    if count == 0:
        return state, 0
    return replace(state, queued=state.queued - count, flushing=True), count


def queued(state: BatchState, count: int = 1, limit: int = NO_LIMIT) -> tuple[BatchState, int]:
    """`count` requests arrive: the new state, and how many to flush now (0: they wait for the
    flush in progress to end)."""
    return _start(replace(state, queued=state.queued + count), limit)


def flushed(state: BatchState, limit: int = NO_LIMIT) -> tuple[BatchState, int]:
    """The flush in progress ended: the new state, and how many of the requests that queued
    meanwhile to flush next, at once."""
    return _start(replace(state, flushing=False), limit)
