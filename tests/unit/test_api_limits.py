"""Per-caller limits: a minute's allowance at once, then the steady rate, and a caller past it is
told when to come back; other callers keep theirs. The clock is a test's own."""

from __future__ import annotations

import pytest

from imagebatch.api.limits import Allowed, Limited, RateLimiter, admit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limiter(per_minute: int, clock: Clock, what: str = "requests") -> RateLimiter:
    return RateLimiter(per_minute, what, clock=clock)


def run(lim: RateLimiter, clock: Clock, steps: list[tuple[float, str, float]]) -> list[object]:
    """Each step: (seconds later, caller, cost) → the decision, taken when allowed."""
    answers: list[object] = []
    for later, key, cost in steps:
        clock.now += later
        decision = admit([(lim, key, cost)])
        answers.append(decision if isinstance(decision, Limited) else "ok")
    return answers


LIMITED_30 = Limited(30, "requests")


@pytest.mark.parametrize(
    ("per_minute", "steps", "expected"),
    [
        # a minute's allowance at once, then the next one waits for the refill (60/6 = 10 s)
        (6, [(0, "a", 1)] * 6 + [(0, "a", 1)], ["ok"] * 6 + [Limited(10, "requests")]),
        # ... and passes once it has come
        (6, [(0, "a", 1)] * 6 + [(10, "a", 1)], ["ok"] * 7),
        # a second early is still too early, and says 1 s
        (6, [(0, "a", 1)] * 6 + [(9, "a", 1)], ["ok"] * 6 + [Limited(1, "requests")]),
        # another caller has its own bucket
        (2, [(0, "a", 1)] * 3 + [(0, "b", 1)], ["ok", "ok", Limited(30, "requests"), "ok"]),
        # an idle caller refills to a minute's worth, never more
        (2, [(0, "a", 1), (600, "a", 1), (0, "a", 1), (0, "a", 1)], [*["ok"] * 3, LIMITED_30]),
        # 0 means no limit
        (0, [(0, "a", 1)] * 1000, ["ok"] * 1000),
    ],
)
def test_requests_per_minute(
    per_minute: int, steps: list[tuple[float, str, float]], expected: list[object]
) -> None:
    clock = Clock()
    assert run(limiter(per_minute, clock), clock, steps) == expected


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        # 600 bytes a minute = 10 a second: 400 + 200 fit, 100 more need 10 s
        ([(0, "a", 400), (0, "a", 200), (0, "a", 100)], ["ok", "ok", Limited(10, "bytes")]),
        # bigger than a whole minute: waits for a full bucket instead of never passing
        ([(0, "a", 5000)], ["ok"]),
        ([(0, "a", 1), (0, "a", 5000)], ["ok", Limited(1, "bytes")]),
    ],
)
def test_bytes_per_minute(steps: list[tuple[float, str, float]], expected: list[object]) -> None:
    clock = Clock()
    assert run(limiter(600, clock, "bytes"), clock, steps) == expected


def test_bytes_counted_after_the_fact_put_the_caller_in_debt() -> None:
    clock = Clock()
    lim = limiter(600, clock, "bytes")

    lim.charge("a", 1200)  # an upload without Content-Length, counted as it streamed

    assert lim.check("a", 1) == Limited(61, "bytes")
    clock.now += 61
    assert lim.check("a", 1) == Allowed()
    assert lim.check("b", 600) == Allowed()


def test_a_request_past_one_limit_takes_nothing_from_the_other() -> None:
    clock = Clock()
    requests = limiter(60, clock)
    upload_bytes = limiter(600, clock, "bytes")

    first = admit([(requests, "a", 1), (upload_bytes, "a", 600)])
    second = admit([(requests, "a", 1), (upload_bytes, "a", 600)])

    assert first == Allowed()
    assert second == Limited(60, "bytes")
    assert requests.check("a", 59) == Allowed()  # the refused request took no request token


def test_many_callers_do_not_grow_memory_without_bound() -> None:
    clock = Clock()
    lim = limiter(60, clock)
    lim.MAX_CALLERS = 100
    for n in range(100):
        lim.take(f"caller-{n}")
    clock.now += 60
    lim.take("one-more")

    assert len(lim._buckets) == 1
