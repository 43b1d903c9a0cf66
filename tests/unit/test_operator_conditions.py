"""Status conditions follow Kubernetes' rule: lastTransitionTime moves only when status does."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from imagebatch.core.batch_status import StatusCondition
from imagebatch.operator import conditions
from imagebatch.operator.conditions import Condition, is_true

BEFORE, NOW = "2025-01-01T12:00:00Z", "2025-01-01T12:05:00Z"


def published(status: str, reason: str = "Publishing", message: str = "m") -> StatusCondition:
    return StatusCondition.model_validate(
        {
            "type": "Published",
            "status": status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": BEFORE,
        }
    )


def apply(
    previous: Iterable[StatusCondition], updates: list[Condition], now: str
) -> list[dict[str, Any]]:
    """The conditions as the status carries them (camelCase objects)."""
    return [c.model_dump(by_alias=True) for c in conditions.apply(previous, updates, now)]


def test_a_new_condition_transitions_now() -> None:
    assert apply([], [Condition("Published", False, "Publishing", "0 of 5")], NOW) == [
        {
            "type": "Published",
            "status": "False",
            "reason": "Publishing",
            "message": "0 of 5",
            "lastTransitionTime": NOW,
        }
    ]


@pytest.mark.parametrize(
    ("old_status", "new_status", "transition"),
    [
        ("False", False, BEFORE),
        ("True", True, BEFORE),
        ("False", True, NOW),
        ("True", False, NOW),
        ("Unknown", True, NOW),
    ],
)
def test_last_transition_time_changes_only_when_the_status_changes(
    old_status: str, new_status: bool, transition: str
) -> None:
    update = Condition("Published", new_status, "AllPublished", "5 of 5")
    (result,) = apply([published(old_status)], [update], NOW)
    assert result["lastTransitionTime"] == transition
    assert result["status"] == ("True" if new_status else "False")


def test_reason_and_message_are_updated_without_a_transition() -> None:
    update = Condition("Published", False, "Suspended", "3 of 5 items published")
    (result,) = apply([published("False")], [update], NOW)
    assert (result["reason"], result["message"]) == ("Suspended", "3 of 5 items published")
    assert result["lastTransitionTime"] == BEFORE


def test_conditions_not_updated_stay_as_they_were() -> None:
    old = published("True", "AllPublished")
    result = apply([old], [Condition("Complete", True, "AllItemsDone", "done")], NOW)
    assert result[0] == old.model_dump(by_alias=True)
    assert result[1]["type"] == "Complete"


def test_conditions_come_out_in_a_stable_order_whatever_the_order_of_updates() -> None:
    updates = [
        Condition("Degraded", True, "SecretMissing", "m"),
        Condition("Suspended", True, "Suspended", "m"),
        Condition("Failed", True, "TooManyFailures", "m"),
        Condition("Complete", False, "AllItemsDone", "m"),
        Condition("Published", True, "AllPublished", "m"),
    ]
    types = [c["type"] for c in apply([], updates, NOW)]
    assert types == ["Published", "Complete", "Failed", "Suspended", "Degraded"]


def test_conditions_of_types_the_operator_does_not_know_are_kept_last() -> None:
    notified = StatusCondition(type="Notified", status="True", reason="Sent")
    result = apply([notified, published("False")], [Condition("Failed", True, "X", "m")], NOW)
    assert [c["type"] for c in result] == ["Published", "Failed", "Notified"]


@pytest.mark.parametrize(
    ("status", "expected"), [("True", True), ("False", False), ("Unknown", False)]
)
def test_a_condition_is_true_only_when_its_status_is_the_string_true(
    status: str, expected: bool
) -> None:
    assert is_true([published(status)], "Published") is expected
    assert is_true([published(status)], "Complete") is False
