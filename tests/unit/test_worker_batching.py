"""The batching policy alone: group commit, never a batch window.

Each case is a sequence of events — requests arriving (`q`, with how many), the flush in progress
ending (`f`) — and, after each, how many requests the batcher must send at once.
"""

from __future__ import annotations

import pytest

from imagebatch.worker import batching
from imagebatch.worker.batching import BatchState

Event = tuple[str, int]

CASES: dict[str, tuple[list[Event], list[int]]] = {
    "one job, batcher idle: flushed at once, alone": ([("q", 1)], [1]),
    "several at once, batcher idle: flushed together at once": ([("q", 3)], [3]),
    "queued during a flush: nothing sent until it ends": ([("q", 1), ("q", 1)], [1, 0]),
    "queued during a flush: all join the next one, at its end": (
        [("q", 1), ("q", 1), ("q", 2), ("f", 0)],
        [1, 0, 0, 3],
    ),
    "a flush ending with nothing queued: idle again, the next job goes at once": (
        [("q", 1), ("f", 0), ("q", 1)],
        [1, 0, 1],
    ),
    "a steady stream: each flush takes what arrived during the previous one": (
        [("q", 1), ("q", 2), ("f", 0), ("q", 4), ("f", 0), ("f", 0)],
        [1, 0, 2, 0, 4, 0],
    ),
}


def replay(events: list[Event], limit: int = batching.NO_LIMIT) -> list[int]:
    state = BatchState()
    sent: list[int] = []
    for kind, count in events:
        if kind == "q":
            state, start = batching.queued(state, count, limit)
        else:
            state, start = batching.flushed(state, limit)
        sent.append(start)
    return sent


@pytest.mark.parametrize(("events", "expected"), CASES.values(), ids=CASES.keys())
def test_group_commit(events: list[Event], expected: list[int]) -> None:
    assert replay(events) == expected


def test_a_limit_splits_what_queued_and_the_rest_follows_at_once() -> None:
    assert replay([("q", 1), ("q", 5), ("f", 0), ("f", 0), ("f", 0)], limit=2) == [1, 0, 2, 2, 1]


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (BatchState(queued=0, flushing=False), 0),
        (BatchState(queued=1, flushing=False), 1),
        (BatchState(queued=7, flushing=False), 7),
        (BatchState(queued=7, flushing=True), 0),
    ],
)
def test_take(state: BatchState, expected: int) -> None:
    assert batching.take(state) == expected
