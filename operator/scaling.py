"""How many workers a batch wants when the operator scales them itself (no KEDA): the same rule
as KEDA's QueueLength trigger, over the batch's unfinished items."""

from __future__ import annotations

import math


def desired_replicas(
    remaining: int, *, per_replica: int, minimum: int, maximum: int, active: bool
) -> int:
    """ceil(remaining / per_replica) within [minimum, maximum] while the batch is active (0 when
    it is done, suspended or failed)."""
    if not active:
        return 0
    wanted = math.ceil(max(0, remaining) / per_replica)
    return max(minimum, min(maximum, wanted))
