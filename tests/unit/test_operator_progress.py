"""A batch's lifecycle as `decide` runs it, tick after tick: phases, counts, conditions, Events,
workers wanted, whether publishing goes on and when the batch is deleted. Pure: no Kubernetes,
no broker, no database."""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Any

import pytest

from imagebatch.core.batch_status import BatchStatus, LastRetry
from imagebatch.core.imagebatch import RunSpec, run_spec
from imagebatch.core.jobs import BatchCounts
from imagebatch.operator.progress import (
    Decision,
    Observation,
    Problem,
    QueueStats,
    decide,
    timestamp,
)

T0 = dt.datetime(2025, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
TOTAL = 100
SOURCE_INVALID = Problem("SourceInvalid", "table 'images' does not exist", fatal=True)
SECRET_MISSING = Problem("SecretMissing", "Secret 'imagebatch-connections' does not exist")
BROKER_DOWN = Problem("BrokerUnavailable", "cannot reach RabbitMQ")
EMPTY_QUEUE = QueueStats(messages=0, consumers=0)


def make_spec(**overrides: Any) -> RunSpec:
    base = run_spec("photos", "holiday", {"source": {"urls": ["https://example.com/a.jpg"]}})
    return dataclasses.replace(base, **overrides)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def observe(
    *,
    seconds: float = 0,
    total: int = TOTAL,
    published: int | None = None,
    completed: int = 0,
    failed: int = 0,
    retried: int = 0,
    queue: QueueStats | None = EMPTY_QUEUE,
    problems: tuple[Problem, ...] = (),
    generation: int = 1,
) -> Observation:
    """What the run loop saw; every item is published unless `published` says otherwise."""
    published = total if published is None else published
    counts = BatchCounts(
        total=total, published=published, completed=completed, failed=failed, retried=retried
    )
    return Observation(
        generation=generation,
        counts=counts,
        queue=queue,
        published_all=published == total,
        problems=problems,
        now=at(seconds),
    )


def condition(status: BatchStatus, kind: str) -> dict[str, Any] | None:
    """The condition as the resource carries it (camelCase), if there is one."""
    found = status.condition(kind)
    return found.model_dump(by_alias=True) if found is not None else None


def reasons(decision: Decision) -> list[str]:
    return [event.reason for event in decision.events]


@dataclass(frozen=True)
class Tick:
    """One round of the run loop: the time since T0, what is counted, the spec's suspend."""

    seconds: float = 0
    published: int = TOTAL
    completed: int = 0
    failed: int = 0
    suspend: bool = False
    problems: tuple[Problem, ...] = ()


def run(spec: RunSpec, ticks: list[Tick]) -> list[Decision]:
    """Feed each tick's observation to `decide` with the status the previous one produced."""
    status = BatchStatus()
    decisions = []
    for tick in ticks:
        obs = observe(
            seconds=tick.seconds,
            published=tick.published,
            completed=tick.completed,
            failed=tick.failed,
            problems=tick.problems,
        )
        decision = decide(dataclasses.replace(spec, suspend=tick.suspend), status, obs)
        decisions.append(decision)
        status = decision.status
    return decisions


LIFECYCLES = [
    pytest.param(
        {},
        [Tick(published=40), Tick(completed=50), Tick(completed=100), Tick(5, completed=100)],
        ["Publishing", "Running", "Succeeded", "Succeeded"],
        ["Published", "Succeeded"],
        id="publishes-runs-succeeds-and-says-so-once",
    ),
    pytest.param(
        {},
        [Tick(completed=90, failed=10)],
        ["Succeeded"],
        ["Published", "Succeeded"],
        id="failures-within-the-budget-still-succeed",
    ),
    pytest.param(
        {"max_failed": "10%"},
        [
            Tick(completed=40, failed=10),
            Tick(completed=60, failed=20),
            Tick(2, completed=80, failed=20),
        ],
        ["Running", "Failed", "Failed"],
        ["Published", "TooManyFailures"],
        id="20-percent-broken-with-10-percent-allowed-fails",
    ),
    pytest.param(
        {"max_failed": 3},
        [Tick(failed=3), Tick(failed=4), Tick(failed=5)],
        ["Running", "Failed", "Failed"],
        ["Published", "TooManyFailures"],
        id="a-count-budget-fails-the-batch-on-the-first-failure-beyond-it",
    ),
    pytest.param(
        {"max_failed": 0},
        [Tick(published=10, failed=1)],
        ["Failed"],
        ["TooManyFailures"],
        id="no-failure-tolerated-fails-even-while-publishing",
    ),
    pytest.param(
        {"active_deadline_seconds": 60},
        [Tick(0, published=10), Tick(59, published=50), Tick(60, published=60)],
        ["Publishing", "Publishing", "Failed"],
        ["DeadlineExceeded"],
        id="the-deadline-counts-from-the-start",
    ),
    pytest.param(
        {"active_deadline_seconds": 60},
        [
            Tick(0, published=10),
            Tick(50, published=10, suspend=True),
            Tick(500, published=10, suspend=True),
            Tick(510, published=10),
            Tick(569, published=10),
            Tick(570, published=10),
        ],
        ["Publishing", "Suspended", "Suspended", "Publishing", "Publishing", "Failed"],
        ["Suspended", "Resumed", "DeadlineExceeded"],
        id="a-suspension-resets-the-deadline",
    ),
    pytest.param(
        {},
        [Tick(published=10), Tick(published=10, suspend=True), Tick(published=20)],
        ["Publishing", "Suspended", "Publishing"],
        ["Suspended", "Resumed"],
        id="suspended-and-resumed-while-publishing",
    ),
    pytest.param(
        {},
        [Tick(completed=30), Tick(completed=30, suspend=True), Tick(completed=100)],
        ["Running", "Suspended", "Succeeded"],
        ["Published", "Suspended", "Resumed", "Succeeded"],
        id="suspended-and-resumed-after-publishing",
    ),
    pytest.param(
        {},
        [Tick(published=10), Tick(published=10, problems=(SOURCE_INVALID,)), Tick(published=10)],
        ["Publishing", "Failed", "Failed"],
        ["SourceInvalid"],
        id="a-fatal-problem-fails-the-batch-with-its-reason",
    ),
    pytest.param(
        {},
        [
            Tick(published=10, problems=(SECRET_MISSING,)),
            Tick(published=20, problems=(SECRET_MISSING,)),
            Tick(published=30),
        ],
        ["Publishing", "Publishing", "Publishing"],
        ["SecretMissing"],
        id="a-non-fatal-problem-degrades-without-failing",
    ),
    pytest.param(
        {"max_failed": 0, "active_deadline_seconds": 10},
        [
            Tick(completed=100),
            Tick(1, completed=100, suspend=True),
            Tick(2, completed=99, failed=1),
            Tick(60, completed=100, problems=(SOURCE_INVALID,)),
        ],
        ["Succeeded", "Succeeded", "Succeeded", "Succeeded"],
        ["Published", "Succeeded"],
        id="succeeded-is-sticky",
    ),
    pytest.param(
        {},
        [Tick(completed=0, failed=20), Tick(completed=80, failed=20), Tick(1, suspend=True)],
        ["Failed", "Failed", "Failed"],
        ["Published", "TooManyFailures"],
        id="failed-is-sticky",
    ),
]


@pytest.mark.parametrize(("overrides", "ticks", "phases", "events"), LIFECYCLES)
def test_lifecycle(
    overrides: dict[str, Any], ticks: list[Tick], phases: list[str], events: list[str]
) -> None:
    decisions = run(make_spec(**overrides), ticks)
    assert [d.status.phase for d in decisions] == phases
    assert [reason for d in decisions for reason in reasons(d)] == events


def test_the_status_carries_the_exact_counts_and_progress_as_done_over_total() -> None:
    obs = observe(
        published=80, completed=30, failed=5, retried=7, queue=QueueStats(messages=40, consumers=3)
    )
    status = decide(make_spec(), BatchStatus(), obs).status.to_kube()
    assert {k: status[k] for k in ("total", "published", "succeeded", "failed", "retried")} == {
        "total": 100,
        "published": 80,
        "succeeded": 30,
        "failed": 5,
        "retried": 7,
    }
    assert (status["queued"], status["workers"]) == (40, 3)
    assert status["progress"] == "35/100"


def test_a_succeeded_batch_is_complete_once_with_a_message_a_person_can_read() -> None:
    first, second = run(
        make_spec(), [Tick(completed=97, failed=3), Tick(30, completed=97, failed=3)]
    )
    complete = condition(first.status, "Complete")
    assert complete is not None
    assert (complete["status"], complete["reason"]) == ("True", "AllItemsDone")
    assert complete["message"] == "97 succeeded, 3 failed of 100"
    assert first.events[-1].type == "Normal"
    assert first.status.progress == "100/100"
    assert first.status.completion_time == timestamp(T0)
    assert condition(second.status, "Complete") == complete, "no second transition"
    assert second.status.completion_time == timestamp(T0)
    assert second.events == ()


@pytest.mark.parametrize(
    ("max_failed", "failed", "budget"),
    [("10%", 20, "10% = 10"), ("10%", 11, "10% = 10"), (4, 5, "4 = 4")],
)
def test_too_many_failures_fail_the_batch_with_the_count_and_the_budget(
    max_failed: int | str, failed: int, budget: str
) -> None:
    decision = decide(
        make_spec(max_failed=max_failed), BatchStatus(), observe(completed=50, failed=failed)
    )
    assert decision.status.phase == "Failed"
    failed_condition = condition(decision.status, "Failed")
    assert failed_condition is not None
    assert (failed_condition["status"], failed_condition["reason"]) == ("True", "TooManyFailures")
    assert f"{failed} of 100 items failed" in failed_condition["message"]
    assert budget in failed_condition["message"]
    (event,) = decision.events[-1:]
    assert (event.type, event.reason) == ("Warning", "TooManyFailures")


@pytest.mark.parametrize(("max_failed", "failed"), [("10%", 10), (4, 4), ("0%", 0), (0, 0)])
def test_failures_up_to_the_budget_keep_the_batch_running(
    max_failed: int | str, failed: int
) -> None:
    decision = decide(
        make_spec(max_failed=max_failed), BatchStatus(), observe(completed=50, failed=failed)
    )
    assert decision.status.phase == "Running"
    assert condition(decision.status, "Failed") is None


def test_a_batch_past_its_deadline_fails_with_deadline_exceeded() -> None:
    spec = make_spec(active_deadline_seconds=60)
    _, late = run(spec, [Tick(0, published=10), Tick(61, published=40, completed=5)])
    failed = condition(late.status, "Failed")
    assert failed is not None
    assert failed["reason"] == "DeadlineExceeded"
    assert "60s" in failed["message"]
    assert "5 of 100 items done" in failed["message"]
    assert late.status.start_time == timestamp(T0)
    assert late.status.completion_time == timestamp(at(61))


def test_the_start_time_is_set_on_the_first_active_tick_and_kept() -> None:
    decisions = run(make_spec(), [Tick(0, published=10), Tick(5, published=50), Tick(9)])
    assert [d.status.start_time for d in decisions] == [timestamp(T0)] * 3
    assert [d.status.completion_time for d in decisions] == [None, None, None]


def test_a_suspended_batch_stops_publishing_holds_its_workers_at_0_and_clears_its_start() -> None:
    _, suspended = run(make_spec(), [Tick(0, published=10), Tick(5, published=10, suspend=True)])
    assert suspended.status.phase == "Suspended"
    assert suspended.status.start_time is None
    assert (suspended.publish, suspended.paused, suspended.replicas) == (False, True, 0)
    assert suspended.delete is False
    held = condition(suspended.status, "Suspended")
    assert held is not None
    assert (held["status"], held["reason"]) == ("True", "Suspended")
    published = condition(suspended.status, "Published")
    assert published is not None
    assert (published["status"], published["reason"]) == ("False", "Suspended")
    assert [(e.type, e.reason) for e in suspended.events] == [("Normal", "Suspended")]


def test_a_resumed_batch_publishes_again_from_a_new_start_time() -> None:
    *_, resumed = run(
        make_spec(),
        [Tick(0, published=10), Tick(5, published=10, suspend=True), Tick(60, published=10)],
    )
    assert resumed.status.phase == "Publishing"
    assert resumed.status.start_time == timestamp(at(60))
    assert (resumed.publish, resumed.paused, resumed.replicas) == (True, False, 2)
    held = condition(resumed.status, "Suspended")
    assert held is not None
    assert (held["status"], held["reason"]) == ("False", "Resumed")
    assert held["lastTransitionTime"] == timestamp(at(60))
    assert [(e.type, e.reason) for e in resumed.events] == [("Normal", "Resumed")]


def test_a_batch_created_suspended_never_starts_its_clock() -> None:
    (decision,) = run(make_spec(active_deadline_seconds=1), [Tick(published=0, suspend=True)])
    assert decision.status.phase == "Suspended"
    assert decision.status.start_time is None
    assert condition(decision.status, "Failed") is None


@pytest.mark.parametrize(
    ("ttl", "seconds_after_finish", "delete"),
    [
        (None, 0, False),
        (None, 10**7, False),
        (0, 0, True),
        (30, 0, False),
        (30, 29, False),
        (30, 30, True),
        (30, 3600, True),
    ],
)
def test_a_finished_batch_is_deleted_only_once_its_ttl_has_passed_since_completion(
    ttl: int | None, seconds_after_finish: int, delete: bool
) -> None:
    spec = make_spec(ttl_seconds_after_finished=ttl)
    finished = decide(spec, BatchStatus(), observe(completed=100))
    assert finished.status.completion_time == timestamp(T0)
    later = decide(spec, finished.status, observe(seconds=seconds_after_finish, completed=100))
    assert later.delete is delete
    assert later.status.completion_time == timestamp(T0)


@pytest.mark.parametrize(
    "tick",
    [Tick(published=10), Tick(completed=50), Tick(published=10, suspend=True)],
    ids=["publishing", "running", "suspended"],
)
def test_a_batch_not_finished_is_never_deleted_whatever_its_ttl(tick: Tick) -> None:
    (decision,) = run(make_spec(ttl_seconds_after_finished=0), [tick])
    assert decision.delete is False
    assert decision.status.completion_time is None


def test_a_failed_batch_is_deleted_after_its_ttl_too() -> None:
    spec = make_spec(ttl_seconds_after_finished=60)
    failed, early, due = run(spec, [Tick(failed=50), Tick(59, failed=50), Tick(60, failed=50)])
    assert failed.status.phase == "Failed"
    assert (failed.delete, early.delete, due.delete) == (False, False, True)


def test_a_fatal_problem_fails_the_batch_with_its_reason_and_message() -> None:
    decision = decide(make_spec(), BatchStatus(), observe(published=0, problems=(SOURCE_INVALID,)))
    assert decision.status.phase == "Failed"
    failed = condition(decision.status, "Failed")
    assert failed is not None
    assert (failed["status"], failed["reason"]) == ("True", "SourceInvalid")
    assert failed["message"] == "table 'images' does not exist"
    assert [(e.type, e.reason) for e in decision.events] == [("Warning", "SourceInvalid")]
    assert (decision.publish, decision.paused, decision.replicas) == (False, True, 0)
    assert condition(decision.status, "Degraded") is None, "fatal is Failed, not Degraded"


@pytest.mark.parametrize("problem", [SECRET_MISSING, BROKER_DOWN], ids=lambda p: p.reason)
def test_a_non_fatal_problem_degrades_the_batch_until_it_is_gone(problem: Problem) -> None:
    spec = make_spec()
    degraded, still, recovered = run(
        spec,
        [
            Tick(0, published=10, problems=(problem,)),
            Tick(5, published=20, problems=(problem,)),
            Tick(9, published=30),
        ],
    )
    assert degraded.status.phase == "Publishing"
    assert degraded.publish is True, "publishing goes on where it can"
    first = condition(degraded.status, "Degraded")
    assert first is not None
    assert (first["status"], first["reason"], first["message"]) == (
        "True",
        problem.reason,
        problem.message,
    )
    assert [(e.type, e.reason) for e in degraded.events] == [("Warning", problem.reason)]
    assert condition(still.status, "Degraded") == first
    assert still.events == ()
    gone = condition(recovered.status, "Degraded")
    assert gone is not None
    assert (gone["status"], gone["reason"]) == ("False", "Recovered")
    assert gone["lastTransitionTime"] == timestamp(at(9))


def test_several_non_fatal_problems_are_named_in_one_degraded_condition() -> None:
    decision = decide(
        make_spec(), BatchStatus(), observe(published=10, problems=(SECRET_MISSING, BROKER_DOWN))
    )
    degraded = condition(decision.status, "Degraded")
    assert degraded is not None
    assert degraded["reason"] == "SecretMissing"
    assert degraded["message"] == f"{SECRET_MISSING.message}; {BROKER_DOWN.message}"
    assert reasons(decision) == ["SecretMissing"]


def test_a_batch_never_degraded_gets_no_degraded_condition() -> None:
    decision = decide(make_spec(), BatchStatus(), observe(published=10))
    assert condition(decision.status, "Degraded") is None


def test_when_the_broker_cannot_be_asked_the_previous_queue_figures_are_kept() -> None:
    spec = make_spec()
    seen = decide(
        spec, BatchStatus(), observe(published=10, queue=QueueStats(messages=9, consumers=2))
    )
    blind = decide(spec, seen.status, observe(published=20, queue=None, problems=(BROKER_DOWN,)))
    assert (blind.status.queued, blind.status.workers) == (9, 2)
    assert blind.status.published == 20


def test_with_no_previous_figures_an_unknown_queue_reads_as_empty() -> None:
    decision = decide(make_spec(), BatchStatus(), observe(published=10, queue=None))
    assert (decision.status.queued, decision.status.workers) == (0, 0)


@pytest.mark.parametrize("generation", [1, 2, 17])
def test_the_status_records_the_generation_it_was_computed_from(generation: int) -> None:
    decision = decide(make_spec(), BatchStatus(), observe(published=10, generation=generation))
    assert decision.status.observed_generation == generation


def test_published_is_announced_once_when_the_last_item_is_confirmed() -> None:
    publishing, published, again = run(
        make_spec(), [Tick(published=99), Tick(published=100), Tick(1, completed=10)]
    )
    first = condition(publishing.status, "Published")
    assert first is not None
    assert (first["status"], first["reason"], first["message"]) == (
        "False",
        "Publishing",
        "99 of 100 items published",
    )
    done = condition(published.status, "Published")
    assert done is not None
    assert (done["status"], done["reason"]) == ("True", "AllPublished")
    assert reasons(published) == ["Published"]
    assert reasons(again) == []


def test_an_empty_source_succeeds_at_once() -> None:
    decision = decide(make_spec(), BatchStatus(), observe(total=0))
    assert decision.status.phase == "Succeeded"
    assert decision.status.progress == "0/0"


@pytest.mark.parametrize(
    ("workers", "tick", "replicas"),
    [
        ({}, Tick(published=10), 2),
        ({}, Tick(completed=49), 2),
        ({}, Tick(completed=51), 1),
        ({}, Tick(completed=99), 1),
        ({"messages_per_replica": 10}, Tick(completed=5), 10),
        ({"messages_per_replica": 10, "max_replicas": 4}, Tick(completed=5), 4),
        ({"messages_per_replica": 1000, "min_replicas": 3}, Tick(completed=5), 3),
        ({"min_replicas": 3}, Tick(completed=100), 0),
        ({"min_replicas": 3}, Tick(failed=50), 0),
        ({"min_replicas": 3}, Tick(published=10, suspend=True), 0),
    ],
)
def test_workers_wanted_are_ceil_remaining_over_messages_per_replica_and_0_when_not_active(
    workers: dict[str, Any], tick: Tick, replicas: int
) -> None:
    (decision,) = run(make_spec(**workers), [tick])
    assert decision.replicas == replicas


@pytest.mark.parametrize(
    ("tick", "publish", "paused"),
    [
        (Tick(published=10), True, False),
        (Tick(completed=10), True, False),
        (Tick(published=10, problems=(SECRET_MISSING,)), True, False),
        (Tick(published=10, suspend=True), False, True),
        (Tick(completed=100), False, True),
        (Tick(failed=50), False, True),
    ],
    ids=["publishing", "running", "degraded", "suspended", "succeeded", "failed"],
)
def test_only_an_active_batch_publishes_and_has_unpaused_workers(
    tick: Tick, publish: bool, paused: bool
) -> None:
    (decision,) = run(make_spec(), [tick])
    assert (decision.publish, decision.paused) == (publish, paused)


def test_a_spec_that_cannot_be_read_fails_the_batch_through_decide_with_its_reason() -> None:
    unreadable = Problem("SpecInvalid", "the spec cannot be run: workers.concurrency", fatal=True)
    obs = observe(published=0, queue=None, problems=(unreadable,))
    first = decide(None, BatchStatus(), obs)
    assert first.status.phase == "Failed"
    failed = condition(first.status, "Failed")
    assert failed is not None
    assert (failed["reason"], failed["message"]) == ("SpecInvalid", unreadable.message)
    assert [(e.type, e.reason) for e in first.events] == [("Warning", "SpecInvalid")]
    assert (first.publish, first.paused, first.replicas, first.delete) == (False, True, 0, False)
    again = decide(None, first.status, observe(seconds=5, published=0, problems=(unreadable,)))
    assert again.events == (), "the Event is posted once, with the transition"
    assert again.status.completion_time == first.status.completion_time


def test_the_status_is_written_as_the_crd_names_its_fields() -> None:
    status = decide(make_spec(), BatchStatus(), observe(completed=100)).status.to_kube()
    assert {"startTime", "completionTime", "observedGeneration", "failureReasons"} <= set(status)
    assert status["conditions"][0]["lastTransitionTime"] == timestamp(T0)
    assert BatchStatus.read(status).to_kube() == status, "what the operator writes, it reads"


def retry(request: str, items: int) -> LastRetry:
    return LastRetry(request=request, items=items, time=timestamp(at(100)))


RETRIES = [
    pytest.param(
        {},
        [Tick(completed=70, failed=30), Tick(100, completed=70), Tick(110, completed=100)],
        ["Failed", "Running", "Succeeded"],
        ["Published", "TooManyFailures", "RetryingFailed", "Succeeded"],
        id="a-failed-batch-retried-is-judged-again-and-succeeds",
    ),
    pytest.param(
        {},
        [Tick(completed=95, failed=5), Tick(100, completed=95), Tick(110, completed=100)],
        ["Succeeded", "Running", "Succeeded"],
        ["Published", "Succeeded", "RetryingFailed", "Succeeded"],
        id="a-succeeded-batch-with-failures-runs-again-and-ends-again",
    ),
    pytest.param(
        {},
        [Tick(completed=50, failed=30), Tick(100, completed=50), Tick(110, completed=100)],
        ["Failed", "Running", "Succeeded"],
        ["Published", "TooManyFailures", "RetryingFailed", "Succeeded"],
        id="the-items-still-queued-when-it-failed-are-done-too",
    ),
    pytest.param(
        {},
        [Tick(completed=70, failed=30), Tick(100, completed=70, failed=30)],
        ["Failed", "Failed"],
        ["Published", "TooManyFailures", "RetryingFailed", "TooManyFailures"],
        id="failing-again-past-max-failed-is-failed-again",
    ),
    pytest.param(
        {},
        [Tick(completed=40), Tick(100, completed=40), Tick(110, completed=100)],
        ["Running", "Running", "Succeeded"],
        ["Published", "RetryingFailed", "Succeeded"],
        id="a-running-batch-goes-on",
    ),
]


@pytest.mark.parametrize(("overrides", "ticks", "phases", "events"), RETRIES)
def test_a_retry_of_the_failed_items(
    overrides: dict[str, Any], ticks: list[Tick], phases: list[str], events: list[str]
) -> None:
    """The first tick before the retry, the others after it (its record in every observation,
    as PostgreSQL keeps it): the items it reset are no longer failed, nor published yet."""
    spec, status, decisions = make_spec(**overrides), BatchStatus(), []
    for n, tick in enumerate(ticks):
        obs = observe(
            seconds=tick.seconds,
            published=tick.completed + tick.failed if n else TOTAL,
            completed=tick.completed,
            failed=tick.failed,
        )
        after = dataclasses.replace(obs, retry=retry("r1", 30), published_all=False) if n else obs
        decisions.append(decide(spec, status, after))
        status = decisions[-1].status
    assert [d.status.phase for d in decisions] == phases
    assert [reason for d in decisions for reason in reasons(d)] == events


def test_a_retried_batch_records_the_request_reopens_and_brings_its_workers_back() -> None:
    spec = make_spec()
    (failed,) = run(spec, [Tick(completed=70, failed=30)])
    obs = observe(seconds=100, published=70, completed=70)
    retried = decide(spec, failed.status, dataclasses.replace(obs, retry=retry("r1", 30)))
    assert retried.status.last_retry == retry("r1", 30)
    assert retried.status.failed == 0
    assert (retried.publish, retried.paused, retried.replicas) == (True, False, 1)
    assert retried.status.completion_time is None
    assert retried.status.start_time == timestamp(at(100)), "its deadline counts again"
    for kind in ("Complete", "Failed"):
        reopened = condition(retried.status, kind)
        assert reopened is not None
        assert (reopened["status"], reopened["reason"]) == ("False", "RetryingFailed")
    (event,) = retried.events
    assert (event.type, event.reason) == ("Normal", "RetryingFailed")
    assert "30 failed items" in event.message
    assert "r1" in event.message
    published = condition(retried.status, "Published")
    assert published is not None
    assert published["status"] == "True", "publishing the retried items again is Running"


def test_the_same_request_seen_again_changes_nothing() -> None:
    spec = make_spec()
    (done,) = run(spec, [Tick(completed=95, failed=5)])
    pending = observe(seconds=100, published=95, completed=95)
    once = decide(spec, done.status, dataclasses.replace(pending, retry=retry("r1", 5)))
    obs = dataclasses.replace(observe(seconds=101, completed=100), retry=retry("r1", 5))
    again = decide(spec, once.status, obs)
    later = decide(spec, again.status, dataclasses.replace(obs, now=at(200)))
    assert reasons(once) == ["RetryingFailed"]
    assert reasons(again) == ["Succeeded"]
    assert reasons(later) == []
    assert later.status.last_retry == retry("r1", 5)
    assert later.status.completion_time == timestamp(at(101))


def test_a_retry_with_no_failed_item_says_so_and_leaves_a_finished_batch_finished() -> None:
    spec = make_spec()
    (done,) = run(spec, [Tick(completed=100)])
    obs = dataclasses.replace(observe(seconds=50, completed=100), retry=retry("r2", 0))
    decision = decide(spec, done.status, obs)
    assert decision.status.phase == "Succeeded"
    assert decision.status.completion_time == timestamp(T0)
    assert [(e.reason, e.message.split(" ")[0]) for e in decision.events] == [
        ("RetryingFailed", "0")
    ]
    assert decision.status.last_retry == retry("r2", 0)


def test_failure_reasons_come_from_the_counts_most_frequent_first() -> None:
    obs = dataclasses.replace(
        observe(completed=60, failed=40),
        counts=BatchCounts(
            total=100,
            published=100,
            completed=60,
            failed=40,
            failure_codes=(("http_404", 30), ("not_an_image", 10)),
        ),
    )
    status = decide(make_spec(max_failed=50), BatchStatus(), obs).status
    assert status.to_kube()["failureReasons"] == [
        {"reason": "http_404", "count": 30},
        {"reason": "not_an_image", "count": 10},
    ]
