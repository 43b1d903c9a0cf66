"""Per-caller rate limits as token buckets: the arithmetic, with the clock passed in.

A bucket holds up to a minute's allowance and refills evenly (`per_minute / 60` each second), so
a caller may burst up to its minute's worth and then goes on at the steady rate. A request that
does not fit is told, in whole seconds, when it would (`Retry-After`). Nothing here reads the
clock or knows HTTP; `limit_middleware` applies the decisions.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Allowed:
    """The request fits in every bucket it was checked against."""


@dataclass(frozen=True)
class Limited:
    """The request does not fit; it would in `retry_after` seconds (at least 1)."""

    retry_after: int
    what: str


Decision = Allowed | Limited


@dataclass
class Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    """Token buckets of one kind (requests, bytes) per caller; `per_minute == 0` is no limit.

    A cost larger than a whole minute's allowance is counted as a full bucket: such a request
    waits for an idle minute instead of never passing.
    """

    MAX_CALLERS = 10_000

    def __init__(
        self, per_minute: int, what: str, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.what = what
        self._clock = clock
        self._buckets: dict[str, Bucket] = {}

    @property
    def enabled(self) -> bool:
        return self.capacity > 0

    def _bucket(self, key: str, now: float) -> Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.MAX_CALLERS:
                self._forget_full(now)
            bucket = self._buckets[key] = Bucket(self.capacity, now)
        elapsed = max(0.0, now - bucket.stamp)
        bucket.tokens = min(self.capacity, bucket.tokens + elapsed * self.rate)
        bucket.stamp = now
        return bucket

    def _forget_full(self, now: float) -> None:
        """Buckets that have refilled are the same as new ones: drop them to bound memory."""
        self._buckets = {
            k: b
            for k, b in self._buckets.items()
            if b.tokens + max(0.0, now - b.stamp) * self.rate < self.capacity
        }

    def check(self, key: str, cost: float = 1.0) -> Decision:
        """Whether `cost` fits now, without taking it."""
        if not self.enabled:
            return Allowed()
        need = min(float(cost), self.capacity)
        bucket = self._bucket(key, self._clock())
        if bucket.tokens >= need:
            return Allowed()
        return Limited(math.ceil((need - bucket.tokens) / self.rate), self.what)

    def take(self, key: str, cost: float = 1.0) -> None:
        """Take `cost` (checked before) from the caller's bucket."""
        self.charge(key, min(float(cost), self.capacity))

    def charge(self, key: str, cost: float) -> None:
        """Take `cost` even if it does not fit (bytes counted only after they arrived): the
        bucket goes into debt and the caller's next requests wait until it is paid."""
        if self.enabled:
            self._bucket(key, self._clock()).tokens -= float(cost)


def admit(checks: Sequence[tuple[RateLimiter, str, float]]) -> Decision:
    """Take from every bucket if the request fits in all of them, else take nothing and say
    when it would fit in all (the longest wait)."""
    decisions = [limiter.check(key, cost) for limiter, key, cost in checks]
    refused = [d for d in decisions if isinstance(d, Limited)]
    if refused:
        return max(refused, key=lambda d: d.retry_after)
    for limiter, key, cost in checks:
        limiter.take(key, cost)
    return Allowed()
