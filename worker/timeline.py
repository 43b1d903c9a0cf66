"""One message's way through the worker, as the times it reached each point.

Throughput at a fixed number of messages in flight is that number divided by the time each is
held (Little's law), so where the hold time goes is what decides how fast the contract's
defaults run. The marks follow the message: delivered → claimed → (a concurrency slot) →
downloaded → transformed → written → recorded → acked; each phase is the time from the previous
mark reached to this one, so the phases of one message add up to its whole hold time, waits
included (for a slot, a thumbnail thread, a batch in progress).
"""

from __future__ import annotations

import time
from collections.abc import Callable

PHASES = ("claim", "slot", "download", "transform", "write", "record", "ack")
"""Each phase ends at its mark: `claim` at claimed, `slot` when a concurrency slot was free, …"""


class Timeline:
    """Marks of one message, taken with `clock` (monotonic seconds)."""

    __slots__ = ("_clock", "attempted", "delivered", "marks")

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self.delivered = clock()
        self.marks: dict[str, float] = {}
        self.attempted = False
        """True once this delivery claimed the job for an attempt (its row counted one): if it
        then ends without spending it (a throttling wait, an outage of ours), the count is
        given back."""

    def mark(self, phase: str) -> None:
        """The message has just finished `phase` (one of PHASES)."""
        self.marks[phase] = self._clock()

    def phases(self) -> dict[str, float]:
        """Seconds spent in each phase reached; a phase skipped (a duplicate is neither
        downloaded nor written) has no entry, its time going to the next phase reached."""
        durations: dict[str, float] = {}
        previous = self.delivered
        for phase in PHASES:
            at = self.marks.get(phase)
            if at is None:
                continue
            durations[phase] = max(0.0, at - previous)
            previous = at
        return durations

    def held(self) -> float:
        """Seconds from delivery to the last mark reached."""
        return max(self.marks.values(), default=self.delivered) - self.delivered
