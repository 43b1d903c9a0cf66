"""When an `imagejobs.io/retry-failed` value is acted on: a new value, on a batch that ran."""

from __future__ import annotations

import pytest

from imagebatch.core.batch_status import LastRetry, Phase
from imagebatch.core.retry_request import RETRY_FAILED_ANNOTATION as ANNOTATION
from imagebatch.operator.retries import Retries, due, requested

DONE = LastRetry(request="2025-03-01T12:00:00Z", items=30, time="2025-03-01T12:00:01Z")
NONE = Retries()
LAST = Retries(DONE, frozenset({"r0", DONE.request}))
"""r0 acted on first, then DONE's value."""


@pytest.mark.parametrize(
    ("request_value", "phase", "handled", "acted_on"),
    [
        ("r1", "Succeeded", NONE, True),
        ("r1", "Failed", NONE, True),
        ("r1", "Running", NONE, True),
        ("r2", "Succeeded", LAST, True),
        (DONE.request, "Succeeded", LAST, False),
        (DONE.request, "Failed", LAST, False),
        ("r0", "Succeeded", LAST, False),  # an earlier value set again: A, B, then A
        ("r1", "Publishing", NONE, False),
        ("r1", "Suspended", NONE, False),
        ("r1", "Pending", NONE, False),
        ("r1", None, NONE, False),
        (None, "Succeeded", NONE, False),
    ],
)
def test_a_request_is_acted_on_once_and_only_on_a_running_or_finished_batch(
    request_value: str | None, phase: Phase | None, handled: Retries, acted_on: bool
) -> None:
    assert due(request_value, phase, handled) is acted_on


@pytest.mark.parametrize(
    ("annotations", "value"),
    [
        ({ANNOTATION: "r1"}, "r1"),
        ({ANNOTATION: ""}, None),
        ({ANNOTATION: "  "}, None),
        ({"other": "r1"}, None),
        (None, None),
    ],
)
def test_the_request_is_the_annotations_value_when_it_has_one(
    annotations: dict[str, str] | None, value: str | None
) -> None:
    assert requested(annotations) == value
