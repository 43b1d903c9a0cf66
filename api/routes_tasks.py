"""POST /tasks, GET /tasks/{id} and POST /enqueue: jobs by URL.

(No `from __future__ import annotations` here: the enqueue bound is a runtime value the route
signature closes over, which string annotations cannot see.)

Every job is recorded as `pending` before it is published, so a worker always finds its row; a
publish the broker does not confirm is undone (the row is removed, or for seed rows marked
retryable) and answered with 503, so nothing is left half-done.
"""

import hashlib
import json
import uuid
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Header, Path, Query, Response

from imagebatch.api import store
from imagebatch.api.auth import Caller
from imagebatch.api.deps import CallerDep, Services, ServicesDep
from imagebatch.api.errors import Conflict, NotFound, TooManyRequests, responses
from imagebatch.api.models import (
    IDEMPOTENCY_KEY_PATTERN,
    Accepted,
    EnqueueResult,
    Job,
    TaskRequest,
)
from imagebatch.api.ownership import may_see, viewer_of
from imagebatch.api.publisher import PublishFailed
from imagebatch.api.settings import ApiSettings
from imagebatch.core.jobs import mark_published
from imagebatch.core.messages import SAFE_ID, ImageJob

JobId = Annotated[
    str,
    Path(
        max_length=128,
        pattern=SAFE_ID.pattern,
        description="Id returned when the job was accepted.",
    ),
]


OPEN_TASKS_RETRY_AFTER = 10
"""Seconds a caller at MAX_OPEN_TASKS is told to wait: about what a few thumbnails take."""


async def require_room(services: Services, caller: Caller) -> None:
    """429 when `caller` already has MAX_OPEN_TASKS tasks and uploads not yet finished.

    Counted, not reserved: requests of one caller racing each other may pass it by a few.
    """
    limit = services.settings.max_open_tasks
    if limit and await store.open_jobs(services.pool, caller.name) >= limit:
        raise TooManyRequests(
            f"this caller already has {limit} unfinished tasks and uploads (MAX_OPEN_TASKS); "
            "retry when some have completed",
            retry_after=OPEN_TASKS_RETRY_AFTER,
        )


def request_hash(url: str, ops: list[Any]) -> str:
    """Fingerprint of a task request: same key + same fingerprint = a retry of the same task."""
    canonical = json.dumps({"url": url, "ops": ops}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def accepted(row: asyncpg.Record, *, status_url: str) -> Accepted:
    return Accepted(
        id=row["id"],
        status="pending",
        status_url=status_url,
        thumbnail_url=f"/images/{row['id']}/thumbnail",
    )


def job_links(status_operation: str, parameter: str) -> dict[str, Any]:
    """OpenAPI links from an accepted job to where its state and thumbnail are read."""
    job_id = "$response.body#/id"
    return {
        "status": {"operationId": status_operation, "parameters": {parameter: job_id}},
        "image": {"operationId": "getImage", "parameters": {"image_id": job_id}},
        "thumbnail": {"operationId": "getThumbnail", "parameters": {"image_id": job_id}},
    }


def build_router(settings: ApiSettings) -> APIRouter:
    """The task routes; the enqueue bound comes from `settings` so the schema shows it."""
    router = APIRouter(tags=["tasks"])

    @router.post(
        "/tasks",
        operation_id="createTask",
        status_code=202,
        response_model=Accepted,
        responses={
            202: {"links": job_links("getTask", "task_id")},
            **responses(400, 403, 409, 422, 429, 503),
        },
        summary="Thumbnail one image by URL",
    )
    async def create_task(
        body: TaskRequest,
        response: Response,
        services: ServicesDep,
        caller: CallerDep,
        idempotency_key: Annotated[
            str | None,
            Header(
                alias="Idempotency-Key",
                pattern=IDEMPOTENCY_KEY_PATTERN,
                description="A retry with the same key returns the same task, not a new one.",
            ),
        ] = None,
    ) -> Accepted:
        """Record the task, publish it, answer 202 with its id.

        The same `Idempotency-Key` with the same body returns the first task; with another body
        it is a 409, because the key already names a different request.
        """
        ops: list[Any] = [op if isinstance(op, str) else op.model_dump() for op in body.ops]
        fingerprint = request_hash(body.url, ops)
        replay = idempotency_key is not None and (
            await store.task_by_key(services.pool, idempotency_key) is not None
        )
        if not replay:
            await require_room(services, caller)
        row, created = await store.insert_task(
            services.pool,
            job_id=str(uuid.uuid4()),
            url=body.url,
            ops=ops,
            idempotency_key=idempotency_key,
            request_hash=fingerprint,
            caller=caller.name,
        )
        status_url = f"/tasks/{row['id']}"
        response.headers["Location"] = status_url
        if not created:
            if row["caller"] not in (None, caller.name):
                raise Conflict(
                    f"Idempotency-Key {idempotency_key!r} is already taken; send a new key"
                )
            if row["request_hash"] != fingerprint:
                raise Conflict(
                    f"Idempotency-Key {idempotency_key!r} was already used for task {row['id']} "
                    "with a different body; send a new key for a new task"
                )
            response.headers["Idempotent-Replayed"] = "true"
            return accepted(row, status_url=status_url)
        job = ImageJob.model_validate({"url": body.url, "ops": ops, "id": row["id"]})
        try:
            await services.publisher.publish([job])
        except PublishFailed:
            await store.delete_job(services.pool, row["id"])
            raise
        await mark_published(services.pool, [row["id"]])
        services.metrics.jobs_accepted.labels("task").inc()
        return accepted(row, status_url=status_url)

    @router.get(
        "/tasks/{task_id}",
        operation_id="getTask",
        response_model=Job,
        responses=responses(404, 422, 503),
        summary="State of a task",
    )
    async def get_task(task_id: JobId, services: ServicesDep, caller: CallerDep) -> Job:
        row = await store.get_job(services.pool, task_id)
        viewer = viewer_of(services.settings.effective_auth_mode(), caller)
        if (
            row is None
            or row["kind"] != "task"
            or not may_see(viewer, owner=row["caller"], kind=row["kind"])
        ):
            raise NotFound(f"no task with id {task_id!r} (uploads and seed images: /images/{{id}})")
        return store.job_view(row)

    @router.post(
        "/enqueue",
        operation_id="enqueue",
        response_model=EnqueueResult,
        responses=responses(403, 422, 429, 503),
        summary="Publish unprocessed rows of the images table",
    )
    async def enqueue(
        services: ServicesDep,
        limit: Annotated[
            int | None,
            Query(
                ge=1,
                le=settings.enqueue_max,
                description=f"Rows to take (default {settings.enqueue_default}).",
            ),
        ] = None,
    ) -> EnqueueResult:
        """Claim up to `limit` unprocessed rows that have no pending job and publish them.

        Rows already pending, processing or completed are never published twice; rows whose
        earlier publish failed are taken again. Rows whose url is not http(s) are skipped.
        Calls racing each other never take a row twice, but may take fewer than `limit`.
        """
        take = limit if limit is not None else settings.enqueue_default
        claimed = await store.claim_images(services.pool, take)
        jobs = [
            ImageJob.model_validate({"url": c.url, "ops": ["thumbnail"], "id": c.id})
            for c in claimed
        ]
        try:
            published = await services.publisher.publish(jobs)
        except PublishFailed as exc:
            await mark_published(services.pool, exc.published)
            failed = sorted({c.id for c in claimed} - set(exc.published))
            await store.mark_unpublished(services.pool, failed, f"not published: {exc.detail}")
            services.metrics.jobs_accepted.labels("image").inc(len(exc.published))
            exc.detail = (
                f"published {len(exc.published)} of {len(jobs)} row(s); the rest are taken again "
                f"by the next /enqueue. {exc.detail}"
            )
            raise
        await mark_published(services.pool, published)
        services.metrics.jobs_accepted.labels("image").inc(len(published))
        return EnqueueResult(enqueued=len(published), limit=take)

    return router
