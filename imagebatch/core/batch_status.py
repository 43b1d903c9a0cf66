"""An ImageBatch's status as one typed value: what the operator writes and the api reads.

The operator computes a `BatchStatus` (`operator/progress.decide`) and writes `to_kube()`, the
camelCase object the CRD's status schema describes (crds/); the api reads the same object back
with `BatchStatus.read`. A field is added here, to the CRD and to `decide`, and nowhere else.

`read` is lenient on purpose: a status is written by whichever operator version ran last, or
edited by hand, so a field of the wrong type reads as its default instead of making the whole
batch unreadable.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

Phase = Literal["Pending", "Publishing", "Running", "Succeeded", "Failed", "Suspended"]
FINISHED: frozenset[str] = frozenset({"Succeeded", "Failed"})
ACTIVE: frozenset[str] = frozenset({"Publishing", "Running"})
Count = Annotated[int, Field(ge=0, strict=True)]
"""A count of items (a bool or a negative number reads as unknown)."""
MAX_FAILURE_REASONS = 10
"""`failureReasons` names the most frequent reason codes, at most this many."""


class _Status(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )


class StatusCondition(_Status):
    """One entry of `status.conditions`, as Kubernetes conditions are."""

    type: str
    status: Literal["True", "False", "Unknown"] = "Unknown"
    reason: str | None = None
    message: str | None = None
    last_transition_time: str | None = None

    @property
    def is_true(self) -> bool:
        return self.status == "True"


class FailureReason(_Status):
    """How many of the batch's items failed for one reason code (`http_404`, `not_an_image`…)."""

    reason: str
    count: Count


class LastRetry(_Status):
    """The last `imagejobs.io/retry-failed` request acted on: its value, the failed items it
    sent back to work, and when."""

    request: str
    items: Count
    time: str


class BatchStatus(_Status):
    """`status` of an ImageBatch. Counts are items; times are RFC 3339 strings in UTC."""

    phase: Phase | None = None
    total: Count = 0
    published: Count = 0
    succeeded: Count = 0
    failed: Count = 0
    retried: Count = 0
    """Deliveries beyond the first."""
    queued: Count = 0
    """Messages waiting in the batch's queue."""
    workers: Count = 0
    """Consumers on the batch's queue."""
    progress: str | None = None
    """"<succeeded+failed>/<total>"."""
    output: str | None = None
    """Where the thumbnails are: <output URL>/<prefix>/."""
    manifest: str | None = None
    """The latest ending's manifest: <output URL>/<prefix>/manifest.jsonl."""
    start_time: str | None = None
    completion_time: str | None = None
    observed_generation: int | None = None
    conditions: tuple[StatusCondition, ...] = ()
    failure_reasons: tuple[FailureReason, ...] = ()
    """The failed items' reason codes, most frequent first, at most `MAX_FAILURE_REASONS`."""
    last_retry: LastRetry | None = None

    @classmethod
    def read(cls, raw: Mapping[str, Any] | None) -> BatchStatus:
        """The status as stored; fields that do not parse read as their defaults."""
        data = {k: v for k, v in (raw or {}).items() if k in _ALIASES}
        for key, model in (("conditions", StatusCondition), ("failureReasons", FailureReason)):
            if isinstance(data.get(key), list):  # one bad entry loses itself, not the others
                data[key] = [item for item in data[key] if _valid(model, item)]
        for _ in range(len(data) + 1):
            try:
                return cls.model_validate(data)
            except ValidationError as exc:
                bad = {str(e["loc"][0]) for e in exc.errors() if e["loc"]}
                if not bad & data.keys():
                    break
                data = {k: v for k, v in data.items() if k not in bad}
        return cls()

    def to_kube(self) -> dict[str, Any]:
        """The camelCase object for a merge patch of the status subresource: every field this
        model knows, a None one removing what an earlier status had."""
        return self.model_dump(by_alias=True, mode="json")

    def condition(self, kind: str) -> StatusCondition | None:
        return next((c for c in self.conditions if c.type == kind), None)

    def is_true(self, kind: str) -> bool:
        found = self.condition(kind)
        return found is not None and found.is_true

    @property
    def finished(self) -> bool:
        return self.phase in FINISHED


def _valid(model: type[BaseModel], value: Any) -> bool:
    try:
        model.model_validate(value)
    except ValidationError:
        return False
    return True


_ALIASES = frozenset(
    field.alias or name for name, field in BatchStatus.model_fields.items()
) | frozenset(BatchStatus.model_fields)


def top_reasons(counts: Iterable[tuple[str, int]]) -> tuple[FailureReason, ...]:
    """The reason codes by count, most frequent first (ties by code, so the order is stable),
    at most `MAX_FAILURE_REASONS`; codes with no failed item left are not named."""
    kept = sorted(((code, n) for code, n in counts if n > 0), key=lambda c: (-c[1], c[0]))
    return tuple(FailureReason(reason=code, count=n) for code, n in kept[:MAX_FAILURE_REASONS])
