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


def attempt_of(headers: Mapping[str, Any] | None) -> int:
    """The attempt number a message's headers carry (1 when absent or unreadable)."""
    value = (headers or {}).get(ATTEMPT)
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    try:
        number = int(value) if value is not None else 1
    except (TypeError, ValueError):
        return 1
    return max(1, number)
