"""Request and response bodies of the task, upload, enqueue and image endpoints.

They are the api's half of the contract: FastAPI turns them into `/openapi.json`, so every field
carries a description and every constraint the handlers enforce is visible in the schema.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from imagebatch.core.jobs import JobKind, JobStatus
from imagebatch.core.locations import OBJECT_SCHEME, object_url_problem
from imagebatch.core.messages import MAX_URL_LENGTH, Operation

_PORT = r"([0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
_H = r"[0-9A-Fa-f]{1,4}"
_IPV6 = "|".join(
    (
        rf"({_H}:){{7}}{_H}",
        rf"({_H}:){{1,7}}:",
        rf"({_H}:){{1,6}}:{_H}",
        rf"({_H}:){{1,5}}(:{_H}){{1,2}}",
        rf"({_H}:){{1,4}}(:{_H}){{1,3}}",
        rf"({_H}:){{1,3}}(:{_H}){{1,4}}",
        rf"({_H}:){{1,2}}(:{_H}){{1,5}}",
        rf"{_H}:(:{_H}){{1,6}}",
        rf":((:{_H}){{1,7}}|:)",
    )
)
HTTP_URL_PATTERN = (
    rf"[Hh][Tt][Tt][Pp][Ss]?://({_LABEL}(\.{_LABEL})*\.?|\[({_IPV6})\])(:{_PORT})?"
    r"([/?#][!-~]*)?"
)
OBJECT_URL_PATTERN = r"s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]/[!-~]+"
URL_PATTERN = rf"^({HTTP_URL_PATTERN}|{OBJECT_URL_PATTERN})$"
"""Absolute http(s) URL — a host name or bracketed IPv6 literal, an optional port, then
printable ASCII only — or an object in a bucket, `s3://<bucket>/<key>`. The schema publishes
this pattern, so generated "valid" URLs are valid here too."""
_URL_RE = re.compile(URL_PATTERN)

IDEMPOTENCY_KEY_PATTERN = r"^[!-~]{1,255}$"


def check_source_url(value: str) -> str:
    """Accept the URLs a worker can fetch; explain what is wrong with the others."""
    if not _URL_RE.fullmatch(value):
        raise ValueError(
            "url must be an absolute http:// or https:// URL with a host name, written in "
            "printable ASCII (percent-encode spaces and non-ASCII characters), or "
            "s3://<bucket>/<key>"
        )
    if value.startswith(OBJECT_SCHEME):
        problem = object_url_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value
    try:
        urlsplit(value).port  # noqa: B018  (validates IP literals as a side effect)
    except ValueError as exc:
        raise ValueError(f"url has an invalid host or port: {exc}") from exc
    return value


def _one_thumbnail() -> list[Literal["thumbnail"] | Operation]:
    return ["thumbnail"]


class TaskRequest(BaseModel):
    """One image to thumbnail, by URL."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"url": "https://example.com/cat.jpg", "ops": ["thumbnail"]}]
        },
    )

    url: str = Field(
        min_length=1,
        max_length=MAX_URL_LENGTH,
        json_schema_extra={"pattern": URL_PATTERN},
        description="http:// or https:// URL of the original image, or s3://<bucket>/<key> "
        "(read with the workers' S3 connection).",
    )
    ops: list[Literal["thumbnail"] | Operation] = Field(
        default_factory=_one_thumbnail,
        min_length=1,
        max_length=8,
        description='"thumbnail" (a 256x256 JPEG at <id>.jpg) or full operation objects.',
    )

    @field_validator("url")
    @classmethod
    def _url_is_fetchable(cls, value: str) -> str:
        return check_source_url(value)


class Accepted(BaseModel):
    """A unit of work the api has recorded and handed to the workers."""

    id: str = Field(description="Id of the job; also the message id on the broker.")
    status: JobStatus = Field(description="Always pending right after acceptance.")
    status_url: str = Field(description="Where to poll the job's state.")
    thumbnail_url: str = Field(description="Where the first thumbnail appears once completed.")


class UploadAccepted(Accepted):
    """An uploaded original, stored and queued."""

    filename: str | None = Field(description="The client's file name, for display only.")
    content_type: str = Field(description="Image type recognised from the file's magic bytes.")
    bytes: int = Field(description="Size of the stored original.")


class OutputFile(BaseModel):
    """One file a worker wrote for a job."""

    model_config = ConfigDict(extra="ignore")

    path: str = Field(description="Path relative to OUTPUT_DIR.")
    width: int | None = None
    height: int | None = None
    bytes: int | None = None
    format: str | None = None


class SourceInfo(BaseModel):
    """What the worker found at the source URL."""

    bytes: int | None = None
    width: int | None = None
    height: int | None = None


class Job(BaseModel):
    """State of one image job (a seed row, task, upload or batch item)."""

    id: str
    kind: JobKind
    url: str = Field(description="Source URL, or upload:<file> for uploads.")
    filename: str | None = Field(default=None, description="For uploads: the client's file name.")
    status: JobStatus
    attempts: int = Field(description="Processing attempts the workers have made.")
    error: str | None = Field(default=None, description="Why the job failed, when it did.")
    batch: str | None = Field(default=None, description="namespace/name of the ImageBatch, if any.")
    outputs: list[OutputFile] = Field(description="Files written, once completed.")
    source: SourceInfo | None = None
    thumbnail_url: str | None = Field(
        default=None, description="Where the first output is served, once completed."
    )
    created_at: datetime | None = None
    updated_at: datetime | None = None
    published_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None


class JobCounts(BaseModel):
    """How many jobs are in each state."""

    pending: int = 0
    processing: int = 0
    completed: int = 0
    failed: int = 0


class RecentJobs(BaseModel):
    """The newest jobs and the totals per state (what the web page shows)."""

    items: list[Job]
    counts: JobCounts


class EnqueueResult(BaseModel):
    """Outcome of POST /enqueue."""

    enqueued: int = Field(description="Rows of `images` published just now.")
    limit: int = Field(description="The limit that applied.")


class Health(BaseModel):
    """Liveness: the process answers."""

    ok: bool


class Readiness(BaseModel):
    """Readiness: the servers the api depends on answer."""

    ok: bool
    checks: dict[str, str] = Field(description='Per dependency: "ok" or why not.')
