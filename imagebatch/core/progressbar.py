"""A batch's progress as one line of text, for `kubectl imagebatch watch` and `make demo`.

The line is a pure function of the counts, the rate and the bar's width, so both commands print
the same thing and a table test covers it. The rate is measured by `RateMeter` from the moments
the counts changed, starting at the first completion: a batch's first seconds (the workers
starting, the first downloads) are not images per second, and counting them made six images
look like "0.7 images/s".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

FINISHED_PHASES = frozenset({"Succeeded", "Failed"})
"""Phases after which a batch changes no more (until someone retries its failed items)."""


@dataclass(frozen=True)
class ProgressCounts:
    """The numbers of `status` a progress line shows."""

    total: int = 0
    succeeded: int = 0
    failed: int = 0
    queued: int = 0
    workers: int = 0
    phase: str | None = None

    @property
    def done(self) -> int:
        """Finished items, succeeded or failed."""
        return self.succeeded + self.failed

    @property
    def finished(self) -> bool:
        return self.phase in FINISHED_PHASES

    @classmethod
    def from_status(cls, status: dict[str, Any] | None) -> ProgressCounts:
        """The counts of an ImageBatch's `status` (missing or malformed numbers count as 0)."""
        status = status or {}

        def count(key: str) -> int:
            value = status.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                return value
            return 0

        phase = status.get("phase")
        return cls(
            total=count("total"),
            succeeded=count("succeeded"),
            failed=count("failed"),
            queued=count("queued"),
            workers=count("workers"),
            phase=phase if isinstance(phase, str) else None,
        )


def progress_line(counts: ProgressCounts, rate: float | None, width: int = 30) -> str:
    """`[#####.....] done/total (ok, failed, queued, workers) rate images/s  Phase`.

    `rate` None (nothing measured yet) leaves the rate out rather than print a number that is
    not one; `width` is the bar's, in characters.
    """
    total = counts.total
    filled = width * min(counts.done, total) // total if total else 0
    speed = f" {rate:.1f} images/s" if rate is not None else ""
    return (
        f"[{'#' * filled}{'.' * (width - filled)}] {counts.done}/{total} "
        f"({counts.succeeded} ok, {counts.failed} failed, {counts.queued} queued, "
        f"{counts.workers} workers){speed}  {counts.phase or 'Pending'}"
    )


class RateMeter:
    """Images per second since the first completion.

    Feed it every observation (`done`, a monotonic time in seconds). The clock starts at the
    first observation with anything done, and the rate is the items finished after it divided by
    the time until the last observation that changed the count, so it neither includes the
    start-up before the first image nor decays while a finished batch is polled. None until two
    different counts have been seen. A count that drops (its failed items were retried) starts
    the measurement again.
    """

    def __init__(self) -> None:
        self._first: tuple[float, int] | None = None
        self._last: tuple[float, int] | None = None

    def observe(self, done: int, now: float) -> float | None:
        if self._last is not None and done < self._last[1]:
            self._first = self._last = None
        if done > 0 and self._first is None:
            self._first = self._last = (now, done)
        elif self._last is not None and done != self._last[1]:
            self._last = (now, done)
        return self.rate

    @property
    def rate(self) -> float | None:
        if self._first is None or self._last is None:
            return None
        (began, first), (now, last) = self._first, self._last
        if now <= began or last <= first:
            return None
        return (last - first) / (now - began)
