"""Status conditions with Kubernetes' transition rule: `lastTransitionTime` moves only when a
condition's `status` changes; reason and message may change without a transition."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

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
    previous: list[dict[str, Any]], updates: list[Condition], now: str
) -> list[dict[str, Any]]:
    """The conditions after `updates`, in a stable order; conditions not updated stay as they
    were."""
    by_type = {c.get("type"): dict(c) for c in previous if isinstance(c, dict)}
    for update in updates:
        status = "True" if update.status else "False"
        old = by_type.get(update.type)
        changed = old is None or old.get("status") != status
        by_type[update.type] = {
            "type": update.type,
            "status": status,
            "reason": update.reason,
            "message": update.message,
            "lastTransitionTime": now if changed or old is None else old.get("lastTransitionTime"),
        }
    return [by_type[t] for t in ORDER if t in by_type]


def is_true(conditions: list[dict[str, Any]], kind: ConditionType) -> bool:
    return any(c.get("type") == kind and c.get("status") == "True" for c in conditions)
