"""A stored ImageBatch spec resolved to what the operator runs: the CRD's defaults filled in,
explicit values (zeros included) kept, and the failure budget in both of its forms."""

from __future__ import annotations

from typing import Any

import pytest

from imagebatch.core.imagebatch import RunSpec, SpecInvalid, run_spec
from imagebatch.core.messages import Thumbnail

URLS = {"urls": ["https://example.com/a.jpg", "https://example.com/b.jpg"]}


def resolve(**spec: Any) -> RunSpec:
    return run_spec("photos", "holiday", {"source": URLS, **spec})


def test_a_spec_with_only_a_source_gets_every_default_the_crd_names() -> None:
    spec = resolve()
    assert (spec.namespace, spec.name, spec.batch) == ("photos", "holiday", "photos/holiday")
    assert spec.urls == ("https://example.com/a.jpg", "https://example.com/b.jpg")
    assert spec.operations == (Thumbnail(width=256, height=256, fit="contain", format="jpeg"),)
    assert spec.operations[0].quality == 85
    assert spec.output_prefix == "photos/holiday"
    assert (spec.concurrency, spec.prefetch) == (8, 16)
    assert (spec.min_replicas, spec.max_replicas, spec.messages_per_replica) == (0, 10, 50)
    assert (spec.max_attempts, spec.backoff_seconds) == (3, 2)
    assert spec.max_failed == "10%"
    assert spec.suspend is False
    assert spec.active_deadline_seconds is None
    assert spec.ttl_seconds_after_finished is None


def test_a_postgres_source_defaults_to_200_unprocessed_rows_of_images() -> None:
    spec = run_spec("photos", "holiday", {"source": {"postgres": {}}})
    assert spec.urls is None
    assert (spec.table, spec.limit, spec.only_unprocessed) == ("images", 200, True)


def test_a_postgres_source_keeps_what_it_names() -> None:
    source = {"postgres": {"table": "shots", "limit": 300, "onlyUnprocessed": False}}
    spec = run_spec("photos", "holiday", {"source": source})
    assert (spec.table, spec.limit, spec.only_unprocessed) == ("shots", 300, False)


@pytest.mark.parametrize(
    ("given", "field", "value"),
    [
        ({"workers": {"concurrency": 4}}, "concurrency", 4),
        ({"workers": {"prefetch": 32}}, "prefetch", 32),
        ({"workers": {"minReplicas": 2}}, "min_replicas", 2),
        ({"workers": {"maxReplicas": 3}}, "max_replicas", 3),
        ({"workers": {"messagesPerReplica": 7}}, "messages_per_replica", 7),
        ({"retry": {"maxAttempts": 5}}, "max_attempts", 5),
        ({"retry": {"backoffSeconds": 30}}, "backoff_seconds", 30),
        ({"maxFailed": 4}, "max_failed", 4),
        ({"maxFailed": "25%"}, "max_failed", "25%"),
        ({"suspend": True}, "suspend", True),
        ({"activeDeadlineSeconds": 600}, "active_deadline_seconds", 600),
        ({"ttlSecondsAfterFinished": 60}, "ttl_seconds_after_finished", 60),
        ({"output": {"prefix": "trips/2024"}}, "output_prefix", "trips/2024"),
    ],
)
def test_what_the_spec_names_wins_over_the_default(
    given: dict[str, Any], field: str, value: object
) -> None:
    assert getattr(resolve(**given), field) == value


@pytest.mark.parametrize(
    ("given", "field"),
    [
        ({"workers": {"minReplicas": 0, "maxReplicas": 1}}, "min_replicas"),
        ({"retry": {"backoffSeconds": 0}}, "backoff_seconds"),
        ({"maxFailed": 0}, "max_failed"),
        ({"ttlSecondsAfterFinished": 0}, "ttl_seconds_after_finished"),
    ],
)
def test_an_explicit_zero_is_kept_not_replaced_by_the_default(
    given: dict[str, Any], field: str
) -> None:
    assert getattr(resolve(**given), field) == 0


def test_an_empty_workers_object_gets_the_same_defaults_as_none() -> None:
    assert resolve(workers={}, retry={}, output={}) == resolve()


def test_the_operations_named_replace_the_default_thumbnail() -> None:
    ops = [{"thumbnail": {"width": 64, "height": 64, "format": "png"}}, {"thumbnail": {}}]
    spec = resolve(operations=ops)
    assert [(op.width, op.height, op.format) for op in spec.operations] == [
        (64, 64, "png"),
        (256, 256, "jpeg"),
    ]
    assert spec.operations_json()[0]["thumbnail"]["width"] == 64


@pytest.mark.parametrize(
    ("max_failed", "total", "budget"),
    [
        (0, 100, 0),
        (5, 100, 5),
        (5, 0, 5),
        ("10%", 100, 10),
        ("10%", 15, 1),
        ("10%", 9, 0),
        ("0%", 1000, 0),
        ("100%", 37, 37),
        ("25%", 0, 0),
    ],
)
def test_the_failure_budget_is_a_count_or_that_percent_of_the_items_rounded_down(
    max_failed: int | str, total: int, budget: int
) -> None:
    assert resolve(maxFailed=max_failed).failure_budget(total) == budget


@pytest.mark.parametrize(
    "spec",
    [
        {"source": {"urls": ["https://example.com/a.jpg"], "postgres": {}}},
        {"source": {}},
        {"source": URLS, "workers": {"minReplicas": 5, "maxReplicas": 2}},
        {"source": URLS, "maxFailed": "ten"},
        {"source": URLS, "suspend": None},
        {"source": URLS, "colour": "blue"},
        {},
    ],
)
def test_a_spec_that_cannot_be_run_says_so_instead_of_crashing(spec: dict[str, Any]) -> None:
    with pytest.raises(SpecInvalid, match="the spec cannot be run"):
        run_spec("photos", "holiday", spec)


def test_the_deadline_and_ttl_may_be_null_as_the_crd_allows() -> None:
    spec = resolve(activeDeadlineSeconds=None, ttlSecondsAfterFinished=None)
    assert spec.active_deadline_seconds is None
    assert spec.ttl_seconds_after_finished is None
