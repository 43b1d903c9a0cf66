"""Retry delays and the delay queues that hold them, shared by the worker (which retries into
them) and the operator (whose finalizer deletes a batch's delay queues with its work queue).

A retry waits in `<work queue>.retry.<ttl>ms`, one queue per delay tier: base·2ⁿ seconds,
capped. Both sides derive the tiers from the same two numbers (`BACKOFF_SECONDS`,
`BACKOFF_MAX_SECONDS`), so the operator can name every delay queue a batch's workers can make.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

DEFAULT_BACKOFF_MAX_SECONDS = 300.0
"""The worker's default `BACKOFF_MAX_SECONDS`."""
DEFAULT_RETRY_AFTER_MAX_SECONDS = 600.0
"""The worker's default `RETRY_AFTER_MAX_SECONDS`: the longest wait a throttling origin gets."""


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with "equal jitter": attempt n waits between half and all of
    base·2ⁿ⁻¹ (capped), never less than a delay the server asked for (Retry-After)."""

    base: float
    cap: float

    def ceiling(self, attempt: int) -> float:
        """Longest wait after failed attempt number `attempt` (1-based)."""
        return float(min(self.cap, self.base * 2.0 ** max(0, attempt - 1)))

    def delay(self, attempt: int, *, at_least: float | None = None, rng: random.Random) -> float:
        ceiling = self.ceiling(attempt)
        chosen = rng.uniform(ceiling / 2, ceiling)
        if at_least is not None:
            chosen = max(chosen, min(self.cap, at_least))
        return chosen

    def tier(self, delay: float, *, longest: float | None = None) -> float:
        """The delay queue's TTL for a wait of `delay`: the smallest base·2ⁿ ≥ delay, or the cap.

        A base of 0 means "retry at once": a wait of 0 gets the shortest tier (0, which the delay
        queue turns into 1 ms), and a longer wait (a server's Retry-After) a tier of 2ⁿ seconds.
        A wait the cap does not cover — a throttling origin's Retry-After, allowed up to
        `longest` — gets the smallest cap·2ᵏ ≥ delay, capped at `longest`.
        """
        if longest is not None and delay > self.cap > 0 and longest > self.cap:
            tier = self.cap
            while tier < delay and tier < longest:
                tier *= 2
            return float(min(tier, longest))
        if delay >= self.cap:
            return self.cap
        if self.base <= 0 and delay <= 0:
            return 0.0
        base = self.base if self.base > 0 else 1.0
        steps = max(0, math.ceil(math.log2(max(delay, base) / base) - 1e-9))
        return float(min(self.cap, base * 2.0**steps))


def delay_queue_name(work_queue: str, ttl_ms: int) -> str:
    return f"{work_queue}.retry.{ttl_ms}ms"


def ttl_ms_of(tier: float) -> int:
    """A delay queue's TTL in milliseconds (at least 1: RabbitMQ's smallest useful TTL)."""
    return max(1, round(tier * 1000))


def delay_queue_names(
    work_queue: str, base: float, cap: float, *, longest: float | None = None
) -> list[str]:
    """Every delay queue `Backoff(base, cap)` can send a message of `work_queue` to, including
    the tiers of throttling waits up to `longest` seconds."""
    backoff = Backoff(base=base, cap=cap)
    tiers = {backoff.tier(0.0), backoff.cap}
    step = base if base > 0 else 1.0
    while step < cap:
        tiers.add(backoff.tier(step))
        step *= 2
    if longest is not None and cap > 0:
        step = cap
        while step < longest:
            step *= 2
            tiers.add(backoff.tier(step, longest=longest))
    return [delay_queue_name(work_queue, ttl_ms_of(t)) for t in sorted(tiers)]
