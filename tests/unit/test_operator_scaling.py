"""Workers wanted without KEDA: KEDA's QueueLength rule over the batch's unfinished items."""

from __future__ import annotations

import pytest

from imagebatch.operator.scaling import desired_replicas


@pytest.mark.parametrize(
    ("remaining", "per_replica", "minimum", "maximum", "replicas"),
    [
        (100, 50, 0, 10, 2),
        (101, 50, 0, 10, 3),
        (1, 50, 0, 10, 1),
        (0, 50, 0, 10, 0),
        (0, 50, 2, 10, 2),
        (10, 50, 3, 10, 3),
        (10_000, 50, 0, 10, 10),
        (10_000, 1, 0, 100, 100),
        (-5, 50, 0, 10, 0),
    ],
)
def test_an_active_batch_wants_ceil_remaining_over_per_replica_within_its_bounds(
    remaining: int, per_replica: int, minimum: int, maximum: int, replicas: int
) -> None:
    wanted = desired_replicas(
        remaining, per_replica=per_replica, minimum=minimum, maximum=maximum, active=True
    )
    assert wanted == replicas


@pytest.mark.parametrize(("remaining", "minimum"), [(0, 0), (500, 0), (500, 3)])
def test_a_batch_that_is_not_active_wants_no_workers_even_above_its_minimum(
    remaining: int, minimum: int
) -> None:
    wanted = desired_replicas(remaining, per_replica=50, minimum=minimum, maximum=10, active=False)
    assert wanted == 0
