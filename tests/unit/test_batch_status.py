"""The status of an ImageBatch as one typed value: read leniently from whatever is stored,
written as the CRD's camelCase fields, summarised for the api."""

from __future__ import annotations

from typing import Any

from imagebatch.core.batch_status import BatchStatus, FailureReason, top_reasons
from imagebatch.core.imagebatch import batch_view

STORED: dict[str, Any] = {
    "phase": "Succeeded",
    "total": 300,
    "published": 300,
    "succeeded": 270,
    "failed": 30,
    "progress": "300/300",
    "startTime": "2025-03-01T12:00:00Z",
    "conditions": [
        {"type": "Complete", "status": "True", "reason": "AllItemsDone", "message": "m"},
        {"type": "Notified", "status": "False"},
    ],
    "failureReasons": [{"reason": "http_404", "count": 30}],
    "lastRetry": {"request": "r1", "items": 30, "time": "2025-03-01T12:05:00Z"},
    "kopf": {"progress": {}},
}


def test_a_stored_status_reads_as_the_typed_status_and_writes_back_the_same_fields() -> None:
    status = BatchStatus.read(STORED)
    assert (status.phase, status.total, status.failed) == ("Succeeded", 300, 30)
    assert status.failure_reasons == (FailureReason(reason="http_404", count=30),)
    assert status.last_retry is not None
    assert status.last_retry.items == 30
    assert status.is_true("Complete")
    assert not status.is_true("Notified")
    written = status.to_kube()
    assert {k: v for k, v in written.items() if v is not None} | {"kopf": STORED["kopf"]} == {
        **STORED,
        "conditions": [
            {**c, **{k: None for k in ("reason", "message", "lastTransitionTime") if k not in c}}
            for c in STORED["conditions"]
        ],
        "retried": 0,
        "queued": 0,
        "workers": 0,
    }


def test_a_field_that_does_not_parse_reads_as_its_default_and_spoils_nothing_else() -> None:
    status = BatchStatus.read(
        {
            "phase": "Exploded",
            "total": True,
            "failed": -3,
            "succeeded": 5,
            "conditions": [{"status": "True"}, {"type": "Complete", "status": "True"}],
            "lastRetry": "yesterday",
        }
    )
    assert (status.phase, status.total, status.failed, status.succeeded) == (None, 0, 0, 5)
    assert [c.type for c in status.conditions] == ["Complete"]
    assert status.last_retry is None
    assert BatchStatus.read(None) == BatchStatus.read({}) == BatchStatus()


def test_the_api_summarises_the_same_typed_status() -> None:
    view = batch_view({"metadata": {"name": "b", "namespace": "ns"}, "status": STORED})
    assert (view.phase, view.total, view.failed, view.percent) == ("Succeeded", 300, 30, 100.0)
    assert [(c.type, c.status) for c in view.conditions] == [
        ("Complete", "True"),
        ("Notified", "False"),
    ]
    assert view.failure_reasons == [FailureReason(reason="http_404", count=30)]
    assert view.last_retry is not None
    assert view.last_retry.request == "r1"
    assert "kopf" not in view.status


def test_failure_reasons_are_the_ten_most_frequent_codes_ties_by_name() -> None:
    counts = [(f"code_{n:02}", n % 4) for n in range(16)] + [("http_404", 30), ("gone", 0)]
    reasons = top_reasons(counts)
    assert len(reasons) == 10
    assert reasons[0] == FailureReason(reason="http_404", count=30)
    assert [r.count for r in reasons] == sorted((r.count for r in reasons), reverse=True)
    assert [r.reason for r in reasons[1:5]] == ["code_03", "code_07", "code_11", "code_15"]
    assert all(r.count > 0 for r in reasons), "a code with no failed item left is not named"
    assert top_reasons([]) == ()
