"""The two kinds of failure every component distinguishes.

A `TransientError` says "try again later" and carries how long to wait; a `PermanentError` says
"this input will never work" and carries the reason a human reads in the dead-letter queue, in a
status condition or in an HTTP 4xx body. Raise them at the edge (download, decode, database) with
the original exception chained (`raise TransientError(...) from exc`); one place per service maps
them to ack, retry or dead-letter.
"""

from __future__ import annotations


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


class DependencyDown(Exception):
    """One of our own dependencies is unavailable (PostgreSQL, the broker, the output store, a
    full disk): not the job's fault, so no attempt is spent and nothing is dead-lettered; the
    message goes back and readiness says why until the dependency answers again.

    Deliberately not a TransientError: what an outage means must not depend on the order of
    `except` clauses.
    """

    def __init__(self, dependency: str, reason: str) -> None:
        super().__init__(f"{dependency} unavailable: {reason}")
        self.dependency = dependency
        self.reason = reason
