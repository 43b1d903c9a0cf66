"""GET /images, /images/{id} and /images/{id}/thumbnail: what happened to a job, and its result.

Ids are job ids: seed rows (`images.id`), tasks and uploads alike. A seed row that was never
enqueued still answers (as pending, or completed when the seed's own worker processed it).
Thumbnails are served from where the worker wrote them: a file through a path that must stay
inside the output folder, an object (`s3://…`) streamed from its bucket through the api, so
browsers never need to reach the store.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, StreamingResponse
from starlette.responses import Response

from imagebatch.api import store
from imagebatch.api.deps import CallerDep, ServicesDep
from imagebatch.api.errors import NotFound, responses
from imagebatch.api.models import Job, OutputFile, RecentJobs
from imagebatch.api.ownership import may_see, viewer_of
from imagebatch.api.routes_tasks import JobId
from imagebatch.core.imagetypes import content_type_for
from imagebatch.core.locations import (
    OBJECT_SCHEME,
    BucketLocation,
    FileLocation,
    LocationError,
    parse_object_url,
)
from imagebatch.core.stores import ObjectStore, Opened

router = APIRouter(tags=["images"])

IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp", "image/gif")


def inside(root: Path, relative: str) -> Path | None:
    """`root/relative` if it stays inside `root` (no `..`, no absolute paths, no symlink escape)."""
    base = root.resolve()
    candidate = (base / relative).resolve()
    return candidate if candidate.is_relative_to(base) and candidate != base else None


async def find_job(services: ServicesDep, image_id: str, viewer: str | None = None) -> Job:
    """The job with this id, or the seed row of that number, else 404; with `viewer`, a job
    that caller may not see (`ownership`) is 404 too."""
    row = await store.get_job(services.pool, image_id)
    if row is not None:
        if may_see(viewer, owner=row["caller"], kind=row["kind"]):
            return store.job_view(row)
        raise NotFound(f"no image or job with id {image_id!r}")
    if image_id.isdigit() and len(image_id) <= 18:
        seed = await store.get_seed_image(services.pool, int(image_id))
        if seed is not None:
            location = services.outputs.location
            folder = location.root if isinstance(location, FileLocation) else None
            return seed_view(seed["id"], seed["url"], seed["processed"], folder)
    raise NotFound(f"no image or job with id {image_id!r}")


def seed_view(image_id: int, url: str, processed: bool, output_dir: Path | None) -> Job:
    """A seed row without a job: pending, or completed by the seed's worker (`<id>.jpg`, in
    the output folder: the seed's worker knew no buckets)."""
    legacy = f"{image_id}.jpg"
    path = inside(output_dir, legacy) if output_dir is not None else None
    done = processed and path is not None and path.is_file()
    return Job(
        id=str(image_id),
        kind="image",
        url=url,
        status="completed" if processed else "pending",
        attempts=0,
        outputs=[OutputFile(path=legacy, format="jpeg")] if done else [],
        thumbnail_url=f"/images/{image_id}/thumbnail" if done else None,
    )


@router.get(
    "/images",
    operation_id="listImages",
    response_model=RecentJobs,
    responses=responses(422, 503),
    summary="Recent jobs",
)
async def recent(
    services: ServicesDep,
    caller: CallerDep,
    limit: Annotated[int, Query(ge=1, le=100, description="How many of the newest jobs.")] = 20,
) -> RecentJobs:
    """The newest jobs first, with totals per state: what the web page polls. With an
    authenticating AUTH_MODE, the caller's own tasks and uploads only."""
    owner = viewer_of(services.settings.effective_auth_mode(), caller)
    rows = await store.recent_jobs(services.pool, limit, owner)
    counts = await store.job_counts(services.pool, owner)
    return RecentJobs(items=[store.job_view(r) for r in rows], counts=counts)


@router.get(
    "/images/{image_id}",
    operation_id="getImage",
    response_model=Job,
    responses=responses(404, 422, 503),
    summary="State of an image job",
)
async def get_image(image_id: JobId, services: ServicesDep, caller: CallerDep) -> Job:
    """Status (pending, processing, completed, failed), output paths and sizes, timestamps."""
    return await find_job(
        services, image_id, viewer_of(services.settings.effective_auth_mode(), caller)
    )


@router.get(
    "/images/{image_id}/thumbnail",
    operation_id="getThumbnail",
    response_class=Response,
    responses={
        200: {
            "description": "The thumbnail's bytes.",
            "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in IMAGE_TYPES},
        },
        **responses(404, 422, 503),
    },
    summary="The thumbnail of a completed job",
)
async def get_thumbnail(
    image_id: JobId,
    services: ServicesDep,
    caller: CallerDep,
    index: Annotated[
        int, Query(ge=0, le=7, description="Which output, for jobs with several operations.")
    ] = 0,
) -> Response:
    """The bytes of the job's output with its content type; 404 until the job has completed."""
    job = await find_job(
        services, image_id, viewer_of(services.settings.effective_auth_mode(), caller)
    )
    if job.status != "completed":
        raise NotFound(
            f"the thumbnail of {image_id!r} is not ready: the job is {job.status}"
            + (f" ({job.error})" if job.error else ""),
            headers={"Retry-After": "1"} if job.status in ("pending", "processing") else None,
        )
    if index >= len(job.outputs):
        raise NotFound(
            f"job {image_id!r} has {len(job.outputs)} output(s); index {index} is out of range"
        )
    output = job.outputs[index]
    media_type = content_type_for(output.path)
    headers = {"Cache-Control": "public, max-age=3600"}
    if output.path.startswith(OBJECT_SCHEME):
        opened = await open_object(services, output.path)
        if opened is None:
            raise NotFound(f"the thumbnail of {image_id!r} is missing from {output.path}")
        headers["Content-Length"] = str(opened.size)
        return StreamingResponse(opened.chunks, media_type=media_type, headers=headers)
    location = services.outputs.location
    path = inside(location.root, output.path) if isinstance(location, FileLocation) else None
    if path is None or not path.is_file():
        raise NotFound(f"the thumbnail file of {image_id!r} is missing from the output folder")
    return FileResponse(path, media_type=media_type, headers=headers)


async def open_object(services: ServicesDep, url: str) -> Opened | None:
    """A streaming read of the object an output names (in whichever bucket that is)."""
    try:
        ref = parse_object_url(url)
    except LocationError:
        return None
    store = ObjectStore(BucketLocation(ref.bucket), services.buckets)
    return await store.open(ref.key)
