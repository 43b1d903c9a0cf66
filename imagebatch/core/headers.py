"""Message headers the project sets itself, shared by the worker, the replay command and anyone
reading the dead-letter queue.

Attempts are counted in our own header rather than RabbitMQ's `x-death`, whose counts are per
queue and reason and restart whenever a message is replayed or republished.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ATTEMPT = "x-imagebatch-attempt"
"""1-based number of the delivery attempt this message is (absent: the first)."""
THROTTLES = "x-imagebatch-throttles"
"""How many times this job waited for a throttling origin (429/503 + Retry-After) so far
(absent: none). Those waits spend no attempt; `MAX_THROTTLES` bounds them."""
REASON = "x-imagebatch-reason"
"""Why a dead-lettered message failed, for a human."""
CODE = "x-imagebatch-code"
"""Why it failed, for a program: `http_404`, `not_an_image`, `retries_exhausted`…"""
QUEUE = "x-imagebatch-queue"
"""The work queue a dead-lettered or delayed message came from; replay sends it back there."""
FAILED_AT = "x-imagebatch-failed-at"
"""ISO-8601 time the message was dead-lettered."""
REPLAYS = "x-imagebatch-replays"
"""How many times `imagebatch dlq replay` sent this message back."""
DEAD_LETTER_ONLY = (
    REASON,
    CODE,
    FAILED_AT,
    "x-death",
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
)
"""Headers that describe a failure; a replayed message drops them."""


def _count(headers: Mapping[str, Any] | None, name: str, default: int) -> int:
    """A non-negative count from a header, `default` when absent or unreadable."""
    value = (headers or {}).get(name)
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    try:
        return int(value) if value is not None else default
    except (TypeError, ValueError):
        return default


def attempt_of(headers: Mapping[str, Any] | None) -> int:
    """The attempt number a message's headers carry (1 when absent or unreadable)."""
    return max(1, _count(headers, ATTEMPT, 1))


def throttles_of(headers: Mapping[str, Any] | None) -> int:
    """How many throttling waits a message's headers record (0 when absent or unreadable)."""
    return max(0, _count(headers, THROTTLES, 0))
