"""The worker's failure policy, case by case: what becomes of a message given what processing
it gave, its attempt and throttle counts, and the limits (`imagebatch.worker.disposition`)."""

from __future__ import annotations

import random

import pytest

from imagebatch.core.delays import Backoff
from imagebatch.core.errors import (
    DEPENDENCIES,
    DependencyDown,
    PermanentError,
    Throttled,
    TransientError,
)
from imagebatch.worker.disposition import (
    Ack,
    DeadLetter,
    Disposition,
    Policy,
    Requeue,
    RetryAfter,
    Wait,
    decide,
)
from imagebatch.worker.pipeline import Outcome
from imagebatch.worker.records import RecordError
from imagebatch.worker.settings import WorkerSettings

POLICY = Policy(
    max_attempts=3,
    max_throttles=2,
    retry_after_max=60.0,
    backoff=Backoff(base=2.0, cap=30.0),
    requeue_pause=1.0,
)


def decided(result: Outcome | Exception, *, attempt: int = 1, throttles: int = 0) -> Disposition:
    return decide(result, attempt=attempt, throttles=throttles, policy=POLICY, rng=random.Random(0))


CASES: list[tuple[str, Outcome | Exception, int, int, Disposition]] = [
    # (case, result, attempt, throttles, disposition)
    ("completed", Outcome("completed"), 1, 0, Ack("completed")),
    ("completed on a later attempt", Outcome("completed"), 3, 2, Ack("completed")),
    ("a duplicate of a job already done", Outcome("duplicate"), 2, 0, Ack("duplicate")),
    (
        "a permanent failure, whatever the attempt",
        PermanentError("HTTP 404 from x", code="http_404"),
        1,
        0,
        DeadLetter("http_404", "HTTP 404 from x"),
    ),
    (
        "a permanent failure on the last attempt keeps its own code",
        PermanentError("not an image: html", code="not_an_image"),
        3,
        0,
        DeadLetter("not_an_image", "not an image: html"),
    ),
    (
        "a transient failure with attempts used up",
        TransientError("HTTP 500 from x"),
        3,
        0,
        DeadLetter("retries_exhausted", "gave up after 3 attempts: HTTP 500 from x"),
    ),
    (
        "a bug with attempts used up",
        KeyError("boom"),
        3,
        0,
        DeadLetter(
            "retries_exhausted", "gave up after 3 attempts: internal error: KeyError: 'boom'"
        ),
    ),
    (
        "PostgreSQL down, on the last attempt",
        RecordError("cannot claim 1 job(s): ConnectionRefusedError()"),
        3,
        0,
        Requeue(1.0, "database", "cannot claim 1 job(s): ConnectionRefusedError()"),
    ),
    (
        "the broker refused a publish",
        DependencyDown("broker", "retry publish failed"),
        1,
        0,
        Requeue(1.0, "broker", "retry publish failed"),
    ),
    (
        "the output store down",
        DependencyDown("output store", "HTTP 503 from the bucket"),
        2,
        5,
        Requeue(1.0, "output store", "HTTP 503 from the bucket"),
    ),
    (
        "a full disk",
        DependencyDown("disk", "cannot write a.jpg: [Errno 28] No space left on device"),
        3,
        0,
        Requeue(1.0, "disk", "cannot write a.jpg: [Errno 28] No space left on device"),
    ),
    (
        "a throttling origin, first time",
        Throttled("HTTP 429 from x, Retry-After 2s", delay=2.0),
        1,
        0,
        Wait(2.0, "throttled", 1, "HTTP 429 from x, Retry-After 2s"),
    ),
    (
        "a throttling origin on the last attempt still spends none",
        Throttled("HTTP 503 from x, Retry-After 5s", delay=5.0),
        3,
        1,
        Wait(5.0, "throttled", 2, "HTTP 503 from x, Retry-After 5s"),
    ),
    (
        "a Retry-After longer than RETRY_AFTER_MAX_SECONDS is cut to it",
        Throttled("HTTP 429 from x, Retry-After 3600s", delay=3600.0),
        1,
        0,
        Wait(60.0, "throttled", 1, "HTTP 429 from x, Retry-After 3600s"),
    ),
    (
        "throttled past MAX_THROTTLES on the last attempt",
        Throttled("HTTP 429 from x, Retry-After 2s", delay=2.0),
        3,
        2,
        DeadLetter(
            "retries_exhausted",
            "gave up after 3 attempts: HTTP 429 from x, Retry-After 2s "
            "(still throttled after 2 waits)",
        ),
    ),
]


@pytest.mark.parametrize(
    ("result", "attempt", "throttles", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_each_outcome_has_its_disposition(
    result: Outcome | Exception, attempt: int, throttles: int, expected: Disposition
) -> None:
    assert decided(result, attempt=attempt, throttles=throttles) == expected


RETRIED: list[tuple[str, Exception, int, int, float, float]] = [
    # (case, error, attempt, throttles, shortest delay, longest delay)
    ("a transient failure, first attempt", TransientError("timeout"), 1, 0, 1.0, 2.0),
    ("a transient failure, second attempt", TransientError("timeout"), 2, 0, 2.0, 4.0),
    ("a bug", RuntimeError("oops"), 1, 0, 1.0, 2.0),
    ("a server-asked delay", TransientError("HTTP 503", delay=20.0), 1, 0, 20.0, 20.0),
    ("a server-asked delay past the cap", TransientError("HTTP 503", delay=99.0), 1, 0, 30, 30),
    ("throttled past MAX_THROTTLES", Throttled("HTTP 429", delay=10.0), 1, 2, 10.0, 10.0),
]


@pytest.mark.parametrize(
    ("error", "attempt", "throttles", "shortest", "longest"),
    [case[1:] for case in RETRIED],
    ids=[case[0] for case in RETRIED],
)
def test_a_failure_with_attempts_left_spends_one_and_waits_a_backoff(
    error: Exception, attempt: int, throttles: int, shortest: float, longest: float
) -> None:
    disposition = decided(error, attempt=attempt, throttles=throttles)
    assert isinstance(disposition, RetryAfter)
    assert disposition.attempt == attempt + 1
    assert shortest <= disposition.delay <= longest
    assert str(error) in disposition.reason or type(error).__name__ in disposition.reason


def test_another_delivery_holding_the_job_means_wait_without_spending_an_attempt() -> None:
    disposition = decided(Outcome("busy"), attempt=2, throttles=1)
    assert isinstance(disposition, Wait)
    assert (disposition.why, disposition.throttles) == ("busy", 1), "throttle count carried"
    assert 1.0 <= disposition.delay <= 2.0


@pytest.mark.parametrize("dependency", DEPENDENCIES)
def test_no_outage_of_ours_spends_an_attempt_or_dead_letters(dependency: str) -> None:
    for attempt in (1, 3, 10):
        error = DependencyDown(dependency, "down")  # type: ignore[arg-type]
        assert decided(error, attempt=attempt) == Requeue(1.0, error.dependency, "down")


def test_a_database_record_error_is_a_dependency_outage_not_a_transient_failure() -> None:
    error = RecordError("cannot record")
    assert isinstance(error, DependencyDown)
    assert not isinstance(error, TransientError)
    assert error.dependency == "database"


def test_the_limits_come_from_the_worker_settings() -> None:
    policy = Policy.from_settings(
        WorkerSettings(
            max_attempts=5,
            max_throttles=4,
            retry_after_max_seconds=120,
            backoff_seconds=0,
            backoff_max_seconds=60,
        )
    )
    assert policy == Policy(
        max_attempts=5,
        max_throttles=4,
        retry_after_max=120.0,
        backoff=Backoff(base=0.0, cap=60.0),
        requeue_pause=0.05,
    ), "even a zero backoff pauses a little before requeueing"
    defaults = WorkerSettings()
    assert (defaults.max_throttles, defaults.retry_after_max_seconds) == (10, 600.0)
