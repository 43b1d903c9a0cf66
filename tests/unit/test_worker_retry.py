"""Backoff, delay tiers and the attempt header: how a transient failure is retried later."""

from __future__ import annotations

import random

import pytest

from imagebatch.core.delays import Backoff, delay_queue_name, delay_queue_names
from imagebatch.core.headers import ATTEMPT, THROTTLES, attempt_of, throttles_of


def test_the_ceiling_doubles_per_attempt_up_to_the_cap() -> None:
    backoff = Backoff(base=2.0, cap=30.0)
    assert [backoff.ceiling(n) for n in range(1, 7)] == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_each_delay_is_jittered_between_half_and_all_of_the_ceiling() -> None:
    backoff = Backoff(base=2.0, cap=300.0)
    rng = random.Random(7)
    delays = [backoff.delay(3, rng=rng) for _ in range(500)]
    assert min(delays) >= 4.0
    assert max(delays) <= 8.0
    assert len({round(d, 3) for d in delays}) > 100, "jitter spreads retries out"


def test_a_server_asked_delay_is_honoured_up_to_the_cap() -> None:
    backoff = Backoff(base=1.0, cap=60.0)
    rng = random.Random(1)
    assert backoff.delay(1, at_least=20.0, rng=rng) == 20.0
    assert backoff.delay(1, at_least=3600.0, rng=rng) == 60.0


@pytest.mark.parametrize(
    ("delay", "tier"), [(0.1, 2.0), (2.0, 2.0), (2.1, 4.0), (7.9, 8.0), (16.0, 16.0), (99, 30.0)]
)
def test_a_delay_waits_in_the_smallest_tier_that_holds_it(delay: float, tier: float) -> None:
    assert Backoff(base=2.0, cap=30.0).tier(delay) == tier


def test_a_zero_base_retries_at_once_in_the_shortest_tier() -> None:
    backoff = Backoff(base=0.0, cap=300.0)
    rng = random.Random(3)
    assert [backoff.delay(n, rng=rng) for n in (1, 2, 5)] == [0.0, 0.0, 0.0]
    assert backoff.tier(0.0) == 0.0
    assert backoff.tier(3.0) == 4.0, "a server's Retry-After still waits in a seconds tier"


@pytest.mark.parametrize(("base", "cap"), [(2.0, 300.0), (0.0, 300.0), (1.5, 20.0), (3600, 300)])
def test_the_operator_can_name_every_delay_queue_a_worker_may_use(base: float, cap: float) -> None:
    backoff = Backoff(base=base, cap=cap)
    names = set(delay_queue_names("q", base, cap))
    rng = random.Random(5)
    for attempt in range(1, 12):
        for at_least in (None, 0.5, 7.0, 1000.0):
            delay = backoff.delay(attempt, at_least=at_least, rng=rng)
            assert f"q.retry.{max(1, round(backoff.tier(delay) * 1000))}ms" in names


@pytest.mark.parametrize(
    ("delay", "tier"), [(10.0, 16.0), (30.0, 30.0), (31.0, 60.0), (100.0, 120.0), (500, 120.0)]
)
def test_a_throttling_wait_beyond_the_cap_doubles_from_the_cap_up_to_the_longest(
    delay: float, tier: float
) -> None:
    assert Backoff(base=2.0, cap=30.0).tier(delay, longest=120.0) == tier


def test_the_operator_can_name_the_delay_queues_of_throttling_waits_too() -> None:
    backoff = Backoff(base=2.0, cap=30.0)
    names = set(delay_queue_names("q", 2.0, 30.0, longest=600.0))
    for delay in (1.0, 29.0, 31.0, 61.0, 299.0, 599.0, 600.0, 3600.0):
        ttl = round(backoff.tier(delay, longest=600.0) * 1000)
        assert f"q.retry.{ttl}ms" in names, delay
    assert "q.retry.600000ms" in names


def test_delay_queues_are_named_after_their_work_queue_and_ttl() -> None:
    assert delay_queue_name("images.q", 4000) == "images.q.retry.4000ms"


@pytest.mark.parametrize(
    ("headers", "attempt"),
    [
        (None, 1),
        ({}, 1),
        ({ATTEMPT: 2}, 2),
        ({ATTEMPT: b"3"}, 3),
        ({ATTEMPT: "x"}, 1),
        ({ATTEMPT: 0}, 1),
    ],
)
def test_the_attempt_header_is_read_defensively(
    headers: dict[str, object] | None, attempt: int
) -> None:
    assert attempt_of(headers) == attempt


@pytest.mark.parametrize(
    ("headers", "throttles"),
    [(None, 0), ({}, 0), ({THROTTLES: 2}, 2), ({THROTTLES: b"3"}, 3), ({THROTTLES: "x"}, 0)],
)
def test_the_throttle_count_travels_in_a_header_too(
    headers: dict[str, object] | None, throttles: int
) -> None:
    assert throttles_of(headers) == throttles


def test_a_batch_may_ask_its_workers_to_retry_without_delay() -> None:
    from imagebatch.worker.settings import WorkerSettings

    assert WorkerSettings(backoff_seconds=0).backoff_seconds == 0
