"""The kinds of failure every component distinguishes, each saying what happens next.

A `TransientError` says "try again later" and carries how long to wait; a `PermanentError` says
"this input will never work" and carries the reason a human reads in the dead-letter queue, in a
status condition or in an HTTP 4xx body. `Throttled` says "the origin asked us to come back after
`delay`": a wait that is not the job's failure. `DependencyDown` says "one of *our* dependencies
(PostgreSQL, the broker, the output store, the disk) failed": never the job's fault, so it spends
no attempt and dead-letters nothing. None of them subclasses another, so what a failure means
never depends on the order of `except` clauses. Raise them at the edge (download, decode,
database, storage) with the original exception chained (`raise TransientError(...) from exc`);
one place per service maps them to ack, retry, wait, requeue or dead-letter.
"""

from __future__ import annotations

from typing import Literal

Dependency = Literal["database", "broker", "output store", "uploads", "source store", "disk"]
"""What `DependencyDown` names (the `dependency` label of the worker's metric): the output
store and the uploads are a folder or a bucket of ours; the source store is the object store an
item's `s3://` URL is read from (only its being unreachable or failing is ours)."""
DEPENDENCIES: tuple[Dependency, ...] = (
    "database",
    "broker",
    "output store",
    "uploads",
    "source store",
    "disk",
)


class ImageBatchError(Exception):
    """Base of the project's own errors."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TransientError(ImageBatchError):
    """A failure that may succeed on a later attempt (timeouts, 5xx, 429, broken connections)."""

    def __init__(self, reason: str, *, delay: float | None = None) -> None:
        super().__init__(reason)
        self.delay = delay


class PermanentError(ImageBatchError):
    """A failure that retrying cannot fix (4xx, not an image, too large, blocked address)."""

    def __init__(self, reason: str, *, code: str = "permanent") -> None:
        super().__init__(reason)
        self.code = code


class Throttled(ImageBatchError):
    """The origin answered 429 or 503 with a `Retry-After` of `delay` seconds: wait that long
    without spending an attempt (up to a limit of waits per job, then it is a transient
    failure)."""

    def __init__(self, reason: str, *, delay: float) -> None:
        super().__init__(reason)
        self.delay = delay


class DependencyDown(ImageBatchError):
    """A dependency of ours — `dependency` is one of `DEPENDENCIES` — did not do its part.
    Not the job's fault: the message goes back to the queue after a pause, no attempt is spent,
    nothing is dead-lettered, and the worker reports itself not ready until it works again."""

    def __init__(self, dependency: Dependency, reason: str) -> None:
        super().__init__(reason)
        self.dependency: Dependency = dependency

    def __str__(self) -> str:
        return f"{self.dependency} unavailable: {self.reason}"
