"""A job whose processing kills the worker every time is dead-lettered with `delivery_limit`
once `MAX_ATTEMPTS` deliveries in a row died with it (`imagebatch.worker.poison`), and the
failure policy sends that to the dead-letter queue with its code."""

from __future__ import annotations

import random

import pytest

from imagebatch.core.delays import Backoff
from imagebatch.worker.disposition import DeadLetter, Policy, decide
from imagebatch.worker.poison import delivery_limit


@pytest.mark.parametrize(
    ("died", "max_attempts", "dead_lettered"),
    [
        (0, 3, False),  # a first delivery, or one after any recorded outcome
        (1, 3, False),  # a worker died once (OOM-killed by another job, a node drained): retry
        (2, 3, False),
        (3, 3, True),  # three deliveries died with it: never processed a fourth time
        (7, 3, True),
        (0, 1, False),
        (1, 1, True),
    ],
)
def test_a_job_is_given_up_once_max_attempts_deliveries_died_with_it(
    died: int, max_attempts: int, dead_lettered: bool
) -> None:
    error = delivery_limit(died, max_attempts)
    assert (error is not None) == dead_lettered
    if error is not None:
        assert error.code == "delivery_limit"
        assert f"died {died} times" in str(error)


def test_the_failure_policy_dead_letters_it_with_its_code_whatever_the_attempt() -> None:
    error = delivery_limit(3, 3)
    assert error is not None
    policy = Policy(
        max_attempts=3,
        max_throttles=2,
        retry_after_max=60.0,
        backoff=Backoff(base=2.0, cap=30.0),
        requeue_pause=1.0,
    )
    for attempt in (1, 2, 3):
        assert decide(
            error, attempt=attempt, throttles=0, policy=policy, rng=random.Random(0)
        ) == DeadLetter("delivery_limit", str(error))
