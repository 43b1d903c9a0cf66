"""POST /uploads: an original sent by a person, stored at UPLOADS_URL (a shared folder or a
bucket) and queued.

The type comes from the file's magic bytes (and Pillow must be able to read its header), the
stored name from the new id (`<id>.<ext>`), never from the client. The size limit is enforced
twice: from Content-Length before the body is read, and while it streams in.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import unicodedata
import uuid
from typing import Annotated, BinaryIO

from fastapi import APIRouter, File, Response, UploadFile
from PIL import Image, UnidentifiedImageError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imagebatch.api import store
from imagebatch.api.deps import CallerDep, ServicesDep
from imagebatch.api.errors import (
    PayloadTooLarge,
    UnsupportedMedia,
    problem_response,
    responses,
)
from imagebatch.api.models import UploadAccepted
from imagebatch.api.routes_tasks import job_links, require_room
from imagebatch.core.imagetypes import ACCEPTED, SNIFF_BYTES, ImageType, sniff
from imagebatch.core.jobs import mark_published
from imagebatch.core.messages import UPLOAD_SCHEME, ImageJob

MULTIPART_OVERHEAD = 64 * 1024
"""Room for multipart boundaries and part headers on top of the file itself."""

router = APIRouter(tags=["uploads"])


def too_large(limit: int) -> str:
    return f"the upload is larger than the limit of {limit} bytes; send a smaller image"


class UploadLimitMiddleware:
    """Refuses oversize POST /uploads bodies early, by header and while streaming."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, path: str = "/uploads") -> None:
        self.app = app
        self.max_body = max_bytes + MULTIPART_OVERHEAD
        self.max_bytes = max_bytes
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            await problem_response(413, too_large(self.max_bytes))(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_body:
                raise StarletteHTTPException(413, too_large(self.max_bytes))
            return message

        await self.app(scope, counted, send)


def read_all(source: BinaryIO) -> bytes:
    source.seek(0)
    return source.read()


def clean_filename(name: str | None) -> str | None:
    """The client's file name, fit for display and storage (no control characters, ≤ 255)."""
    if not name:
        return None
    text = name.encode("utf-8", "replace").decode("utf-8")
    text = "".join(ch for ch in text if unicodedata.category(ch)[0] != "C")
    return text[:255] or None


def readable_header(data: bytes, kind: ImageType) -> str | None:
    """None when Pillow reads the header as `kind`, else why not."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except Image.DecompressionBombError as exc:
        return f"the image has too many pixels: {exc}"
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        return f"the file starts like {kind.content_type} but cannot be read as one ({exc})"
    if width < 1 or height < 1:
        return "the image has no pixels"
    return None


@router.post(
    "/uploads",
    operation_id="createUpload",
    status_code=202,
    response_model=UploadAccepted,
    responses={
        202: {"links": job_links("getImage", "image_id")},
        **responses(400, 403, 413, 415, 422, 429, 503),
    },
    summary="Upload an image to thumbnail",
)
async def create_upload(
    file: Annotated[UploadFile, File(description="The image (JPEG, PNG, GIF, WebP, BMP or TIFF).")],
    response: Response,
    services: ServicesDep,
    caller: CallerDep,
) -> UploadAccepted:
    """Store the original as `<id>.<ext>` at UPLOADS_URL, record it, publish its job."""
    settings = services.settings
    await require_room(services, caller)
    head = await file.read(SNIFF_BYTES)
    size = file.size if file.size is not None else len(head)
    if size > settings.max_upload_bytes:
        raise PayloadTooLarge(too_large(settings.max_upload_bytes))
    kind = sniff(head)
    if kind is None:
        names = ", ".join(t.content_type for t in ACCEPTED)
        what = "the file is empty" if not head else "the file is not an image the workers can read"
        raise UnsupportedMedia(f"{what}; accepted types (recognised by content): {names}")
    upload_id = str(uuid.uuid4())
    name = f"{upload_id}.{kind.extension}"
    # Bounded by MAX_UPLOAD_BYTES (checked above and while the body streamed in).
    data = await asyncio.to_thread(read_all, file.file)
    problem = await asyncio.to_thread(readable_header, data, kind)
    if problem is not None:
        raise UnsupportedMedia(problem)
    await services.uploads.put_new(name, data, kind.content_type)
    record = store.UploadRecord(
        id=upload_id,
        url=f"{UPLOAD_SCHEME}{name}",
        filename=clean_filename(file.filename),
        content_type=kind.content_type,
        bytes=size,
        path=name,
        caller=caller.name,
    )
    try:
        await store.insert_upload(services.pool, record)
        job = ImageJob.model_validate({"url": record.url, "ops": ["thumbnail"], "id": upload_id})
        await services.publisher.publish([job])
    except BaseException:
        # Nothing is kept for an upload that was not queued (its id was never handed out).
        with contextlib.suppress(Exception):
            await services.uploads.delete(name)
        with contextlib.suppress(Exception):
            await store.delete_job(services.pool, upload_id)
        raise
    await mark_published(services.pool, [upload_id])
    services.metrics.jobs_accepted.labels("upload").inc()
    response.headers["Location"] = f"/images/{upload_id}"
    return UploadAccepted(
        id=upload_id,
        status="pending",
        status_url=f"/images/{upload_id}",
        thumbnail_url=f"/images/{upload_id}/thumbnail",
        filename=record.filename,
        content_type=kind.content_type,
        bytes=size,
    )
