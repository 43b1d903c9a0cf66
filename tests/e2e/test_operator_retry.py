"""Operating a batch after it ran: why its items failed (`status.failureReasons`) and the retry
of just those through the `imagejobs.io/retry-failed` annotation, with the operator, local
worker processes and an image origin whose missing photos the test "fixes" in between."""

from __future__ import annotations

from typing import Any

import asyncpg

from imagebatch.core.retry_request import RETRY_FAILED_ANNOTATION as ANNOTATION
from imagebatch.core.settings import CommonSettings
from imagebatch.devservers.operator_process import OperatorProcess
from tests.support.image_server import ImageServer
from tests.support.operator import Batches, OperatorFactory

GENTLE = {"maxReplicas": 2, "messagesPerReplica": 250, "concurrency": 8, "prefetch": 16}
"""Two local worker processes at most: they share two cores with the rest of the suite."""


def urls(server: ImageServer, total: int, missing: int) -> list[str]:
    """`total` photos, every (total / missing)-th one 404 until the origin is fixed."""
    step = total // missing
    return [
        server.url(f"/missing/{n}.jpg" if n % step == 0 else f"/photo/{n}.jpg")
        for n in range(total)
    ]


def retried_as(request: str) -> Any:
    return lambda s: (s.get("lastRetry") or {}).get("request") == request


async def retry_events(batches: Batches, name: str) -> list[str]:
    return [message for reason, message in await batches.events(name) if reason == "RetryingFailed"]


async def test_a_succeeded_batch_says_why_items_failed_and_retries_just_those_once(
    operator: OperatorProcess,
    supervisor: object,
    batches: Batches,
    image_server: ImageServer,
) -> None:
    await batches.create(
        "photos", {"source": {"urls": urls(image_server, 300, 30)}, "workers": GENTLE}
    )

    done = await batches.wait_phase("photos", "Succeeded", within=240)
    assert (done["succeeded"], done["failed"]) == (270, 30), "30 failed is within maxFailed 10%"
    assert done["failureReasons"] == [{"reason": "http_404", "count": 30}]

    image_server.missing_fixed = True
    await batches.annotate("photos", {ANNOTATION: "fix-1"})

    running = await batches.wait_status(
        "photos", lambda s: retried_as("fix-1")(s) and s.get("phase") == "Running", within=60
    )
    assert running["failed"] == 0
    assert running["lastRetry"]["items"] == 30
    assert "completionTime" not in running
    again = await batches.wait_phase("photos", "Succeeded", within=180)
    assert (again["succeeded"], again["failed"], again["total"]) == (300, 0, 300)
    assert again["progress"] == "300/300"
    assert again["failureReasons"] == []
    await batches.wait_replicas("photos", 0)
    missing = [f"/missing/{n}.jpg" for n in range(0, 300, 10)]
    assert {image_server.hits[path] for path in missing} == {2}, "a 404, then the photo"

    # The same value set again (removed, then put back with a spec change the operator shows
    # it has seen) is not acted on.
    await batches.annotate("photos", {ANNOTATION: None})
    await batches.annotate("photos", {ANNOTATION: "fix-1"})
    await batches.patch_spec("photos", {"ttlSecondsAfterFinished": 3600})
    obj = await batches.get("photos")
    assert obj is not None
    generation = obj["metadata"]["generation"]
    seen = await batches.wait_status(
        "photos", lambda s: s.get("observedGeneration") == generation, within=60
    )
    assert seen["lastRetry"] == again["lastRetry"]
    assert seen["phase"] == "Succeeded"
    (event,) = await retry_events(batches, "photos")
    assert "30 failed items" in event


async def test_a_failed_batch_retried_after_the_fix_succeeds(
    operator: OperatorProcess,
    supervisor: object,
    batches: Batches,
    image_server: ImageServer,
) -> None:
    spec = {"source": {"urls": urls(image_server, 40, 10)}, "maxFailed": 2, "workers": GENTLE}
    await batches.create("broken", spec)
    failed = await batches.wait_phase("broken", "Failed", within=180)
    assert any(c["reason"] == "TooManyFailures" for c in failed["conditions"])
    await batches.wait_replicas("broken", 0)

    image_server.missing_fixed = True
    await batches.annotate("broken", {ANNOTATION: "after-fix"})

    done = await batches.wait_phase("broken", "Succeeded", within=180)
    assert (done["succeeded"], done["failed"], done["total"]) == (40, 0, 40)
    assert done["lastRetry"]["request"] == "after-fix"
    assert done["lastRetry"]["items"] > 2, "the failed items, past maxFailed 2"
    kinds = {c["type"]: (c["status"], c["reason"]) for c in done["conditions"]}
    assert kinds["Failed"] == ("False", "RetryingFailed")
    assert kinds["Complete"] == ("True", "AllItemsDone")


async def test_an_operator_killed_right_after_the_annotation_retries_once(
    start_operator: OperatorFactory,
    connections_secret: str,
    supervisor: object,
    batches: Batches,
    image_server: ImageServer,
    messaging: CommonSettings,
    namespace: str,
) -> None:
    first = await start_operator()
    await batches.create(
        "killed", {"source": {"urls": urls(image_server, 40, 4)}, "workers": GENTLE}
    )
    done = await batches.wait_phase("killed", "Succeeded", within=180)
    assert done["failed"] == 4

    image_server.missing_fixed = True
    await batches.annotate("killed", {ANNOTATION: "once"})
    await first.kill()
    await start_operator()

    again = await batches.wait_status(
        "killed",
        lambda s: retried_as("once")(s) and s.get("phase") == "Succeeded",
        within=180,
        what="Succeeded after the retry",
    )
    assert (again["succeeded"], again["failed"], again["lastRetry"]["items"]) == (40, 0, 4)
    conn: asyncpg.Connection = await asyncpg.connect(messaging.database_url)
    try:
        record = await conn.fetchrow(
            "SELECT retry_request, retry_items FROM batches WHERE batch = $1",
            f"{namespace}/killed",
        )
    finally:
        await conn.close()
    assert tuple(record or ()) == ("once", 4)
    missing = [f"/missing/{n}.jpg" for n in range(0, 40, 10)]
    assert {image_server.hits[path] for path in missing} == {2}, "each retried item ran once"
    assert len(await retry_events(batches, "killed")) <= 1
