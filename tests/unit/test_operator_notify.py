"""The pure parts of spec.notify and of a batch's endings: the CloudEvent, the retry schedule,
the Notified condition, and what tells one ending from another."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from imagebatch.core.imagebatch import run_spec
from imagebatch.operator.conditions import Condition
from imagebatch.operator.endings import Ending, ending_key, notified_condition
from imagebatch.operator.notify import cloud_event, retry_delay

STATUS = {"phase": "Succeeded", "total": 3, "succeeded": 3, "kopf": {"progress": {}}}
ENDED = dt.datetime(2026, 12, 7, 2, 30, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("phase", "event_type"),
    [("Succeeded", "io.imagejobs.batch.succeeded"), ("Failed", "io.imagejobs.batch.failed")],
)
def test_an_ending_is_one_structured_cloudevent(phase: str, event_type: str) -> None:
    event = cloud_event("team-a", "photos", "e-1", phase, STATUS, ENDED)

    assert event == {
        "specversion": "1.0",
        "type": event_type,
        "source": "/apis/imagejobs.io/v1alpha1/namespaces/team-a/imagebatches/photos",
        "id": "e-1",
        "time": "2026-12-07T02:30:00Z",
        "subject": "photos",
        "datacontenttype": "application/json",
        "data": {"phase": "Succeeded", "total": 3, "succeeded": 3},  # kopf's bookkeeping left out
    }


@pytest.mark.parametrize(
    ("attempts", "since_ending", "delay"),
    [
        (1, 0.0, 1.0),
        (2, 1.0, 2.0),
        (3, 3.0, 4.0),
        (6, 31.0, 32.0),
        (7, 63.0, 60.0),  # capped at a minute
        (20, 530.0, 60.0),
        (20, 540.0, 60.0),  # the last attempt starts at 600 s
        (20, 541.0, None),  # it would start past 10 minutes: give up
        (1, 599.5, None),
    ],
)
def test_retries_back_off_to_a_minute_and_stop_after_ten_minutes(
    attempts: int, since_ending: float, delay: float | None
) -> None:
    assert retry_delay(attempts, since_ending) == delay


SPEC: dict[str, Any] = {"source": {"urls": ["https://a.test/1.jpg"]}}
NOTIFYING = run_spec("ns", "b", {**SPEC, "notify": {"url": "https://hooks.test/x"}})
SILENT = run_spec("ns", "b", SPEC)


@pytest.mark.parametrize(
    ("spec", "ending", "condition"),
    [
        (SILENT, Ending("e", "Succeeded", notify_error="x"), None),
        (NOTIFYING, None, None),
        (NOTIFYING, Ending("e", "Succeeded"), None),  # the first attempt is on its way
        (
            NOTIFYING,
            Ending("e", "Succeeded", notified=True, notify_attempts=3),
            Condition("Notified", True, "EventAccepted", "the receiver accepted event e"),
        ),
        (
            NOTIFYING,
            Ending("e", "Failed", notify_attempts=2, notify_error="answered 503"),
            Condition(
                "Notified", False, "Retrying", "attempt 2 to deliver event e failed: answered 503"
            ),
        ),
        (
            NOTIFYING,
            Ending("e", "Failed", notify_attempts=19, notify_error="refused", notify_gave_up=True),
            Condition(
                "Notified",
                False,
                "GaveUp",
                "no attempt in 10 minutes delivered event e; the last: refused",
            ),
        ),
    ],
)
def test_the_notified_condition_says_how_the_latest_ending_s_event_fared(
    spec: Any, ending: Ending | None, condition: Condition | None
) -> None:
    assert notified_condition(spec, ending) == condition


@pytest.mark.parametrize(
    ("status", "key"),
    [
        ({"phase": "Running"}, None),
        ({"phase": "Succeeded"}, None),  # no completionTime yet
        ({"phase": "Succeeded", "completionTime": "2026-12-07T02:30:00Z"}, "2026-12-07T02:30:00Z|"),
        (
            {
                "phase": "Failed",
                "completionTime": "2026-12-07T02:30:00Z",
                "lastRetry": {"request": "r2", "items": 3},
            },
            "2026-12-07T02:30:00Z|r2",  # a retried batch that ends again is a new ending
        ),
    ],
)
def test_an_ending_is_told_apart_by_its_completion_time_and_last_retry(
    status: dict[str, Any], key: str | None
) -> None:
    assert ending_key(status) == key
