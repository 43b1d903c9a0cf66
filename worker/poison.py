"""Poison messages: a job whose processing kills the worker every time.

Such a job never records an outcome, so no failure policy sees it: its message goes back to the
queue each time the worker dies, and without a limit it would kill every worker that takes it
for ever. RabbitMQ counts deliveries only on quorum queues (`x-delivery-count`), and that count
also grows each time we hand a message back during an outage of ours (`Requeue`), which must
cost nothing. So the worker counts for itself, in the job's row: a claim adds one to
`jobs.unfinished`, every recorded outcome — completed, failed, retrying, or given back — sets it
to 0, so at claim time `unfinished - 1` is how many deliveries before this one died with the job
in hand (`Claim.died`). That works the same on classic and quorum queues.
"""

from __future__ import annotations

from imagebatch.core.errors import PermanentError

DELIVERY_LIMIT = "delivery_limit"


def delivery_limit(died: int, max_attempts: int) -> PermanentError | None:
    """The error that dead-letters a job once `max_attempts` deliveries in a row died
    processing it (so it is processed at most `max_attempts` times, like any job), else None."""
    if died < max_attempts:
        return None
    return PermanentError(
        f"the worker died {died} times in a row processing this job (MAX_ATTEMPTS "
        f"{max_attempts}): not processed again",
        code=DELIVERY_LIMIT,
    )
