"""Status conditions with Kubernetes' transition rule: `lastTransitionTime` moves only when a
condition's `status` changes; reason and message may change without a transition."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from imagebatch.core.batch_status import StatusCondition

ConditionType = Literal["Published", "Complete", "Failed", "Suspended", "Degraded", "Notified"]
ORDER: tuple[ConditionType, ...] = (
    "Published", "Complete", "Failed", "Suspended", "Degraded", "Notified",
)  # fmt: skip


@dataclass(frozen=True)
class Condition:
    type: ConditionType
    status: bool
    reason: str
    message: str


def apply(
    previous: Iterable[StatusCondition], updates: list[Condition], now: str
) -> tuple[StatusCondition, ...]:
    """The conditions after `updates`, in a stable order; conditions not updated stay as they
    were (those of types this operator does not know last)."""
    by_type = {c.type: c for c in previous}
    for update in updates:
        status: Literal["True", "False"] = "True" if update.status else "False"
        old = by_type.get(update.type)
        changed = old is None or old.status != status
        by_type[update.type] = StatusCondition(
            type=update.type,
            status=status,
            reason=update.reason,
            message=update.message,
            last_transition_time=now if changed or old is None else old.last_transition_time,
        )
    known = [by_type.pop(t) for t in ORDER if t in by_type]
    return (*known, *by_type.values())


def is_true(conditions: Iterable[StatusCondition], kind: ConditionType) -> bool:
    return any(c.type == kind and c.is_true for c in conditions)
