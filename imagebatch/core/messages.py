"""The job message of the public contract, and its JSON encoding.

`{"url": "...", "ops": [...], "id": "...", "batch": "ns/name" | null, "output": "prefix"}`.
`ops` accepts the seed's short form `["thumbnail"]` as well as full operation objects, so
producers written against the seed keep working.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from imagebatch.core.errors import PermanentError
from imagebatch.core.locations import OBJECT_SCHEME, object_url_problem

SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
SAFE_PREFIX = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}(/[A-Za-z0-9][A-Za-z0-9._-]{0,62}){0,7}$"
)
MAX_URL_LENGTH = 2048
UPLOAD_SCHEME = "upload:"
"""`upload:<file name>` names an original the api stored under the shared `UPLOADS_DIR`."""
SAFE_UPLOAD_NAME = re.compile(r"^upload:[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class Thumbnail(BaseModel):
    """One thumbnail to make: the box it must fit and how to encode it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    width: int = Field(default=256, ge=1, le=4096)
    height: int = Field(default=256, ge=1, le=4096)
    fit: Literal["contain", "cover"] = "contain"
    format: Literal["jpeg", "png", "webp"] = "jpeg"
    quality: int = Field(default=85, ge=1, le=100)

    @property
    def extension(self) -> str:
        return "jpg" if self.format == "jpeg" else self.format


class Operation(BaseModel):
    """An entry of `ops`; `thumbnail` is the only operation so far."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    thumbnail: Thumbnail = Field(default_factory=Thumbnail)


def _expand_short_ops(value: Any) -> Any:
    if isinstance(value, list):
        return [{"thumbnail": {}} if op == "thumbnail" else op for op in value]
    return value


class ImageJob(BaseModel):
    """One image to process. Names on disk come from `id` and `output`, never from the URL."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    url: str = Field(min_length=1, max_length=MAX_URL_LENGTH)
    ops: list[Operation] = Field(default_factory=lambda: [Operation()], min_length=1, max_length=8)
    id: str
    batch: str | None = None
    output: str | None = None
    short_form: bool = Field(default=False, exclude=True)
    """True for the seed's `["thumbnail"]` with no batch: the output is `<OUTPUT_DIR>/<id>.jpg`."""

    @model_validator(mode="before")
    @classmethod
    def _note_short_form(cls, data: Any) -> Any:
        if isinstance(data, dict):
            ops = data.get("ops")
            short = isinstance(ops, list) and ops == ["thumbnail"] and data.get("batch") is None
            data = {**data, "ops": _expand_short_ops(ops) if ops is not None else None}
            if data["ops"] is None:
                del data["ops"]
            data["short_form"] = short
        return data

    @field_validator("id", mode="before")
    @classmethod
    def _id_is_safe(cls, value: Any) -> str:
        text = str(value) if isinstance(value, int) else value
        if not isinstance(text, str) or not SAFE_ID.fullmatch(text):
            raise ValueError(
                "id must be 1-128 characters of [A-Za-z0-9._-], not starting with . or -"
            )
        return text

    @field_validator("url")
    @classmethod
    def _url_is_http(cls, value: str) -> str:
        if value.startswith(UPLOAD_SCHEME):
            if not SAFE_UPLOAD_NAME.fullmatch(value) or ".." in value:
                raise ValueError("upload: URLs name a file: upload:<safe file name>")
            return value
        if value.startswith(OBJECT_SCHEME):
            problem = object_url_problem(value)
            if problem is not None:
                raise ValueError(problem)
            return value
        if not value.lower().startswith(("http://", "https://")):
            raise ValueError(
                "url must be an http:// or https:// URL (or s3://bucket/key, or upload:<name>)"
            )
        return value

    @property
    def upload_name(self) -> str | None:
        """The stored original's file name for `upload:` jobs, else None."""
        return self.url.removeprefix(UPLOAD_SCHEME) if self.url.startswith(UPLOAD_SCHEME) else None

    @field_validator("output")
    @classmethod
    def _output_is_relative(cls, value: str | None) -> str | None:
        if value is None:
            return None
        cleaned = value.rstrip("/")
        if not SAFE_PREFIX.fullmatch(cleaned) or any(p in {".", ".."} for p in cleaned.split("/")):
            raise ValueError("output must be a relative path of safe segments (no '..')")
        return cleaned


def encode_job(job: ImageJob) -> bytes:
    """The JSON body of a job message.

    Ops are written in full form, except for a short-form job, which keeps the seed's
    `["thumbnail"]`: decoding it again must give a short-form job (output `<OUTPUT_DIR>/<id>.jpg`),
    so encode → decode is lossless.
    """
    body = job.model_dump(mode="json", exclude={"short_form"})
    if job.short_form:
        body["ops"] = ["thumbnail"]
    return json.dumps(body, separators=(",", ":")).encode()


def decode_job(body: bytes) -> ImageJob:
    """Parse a job message; anything malformed is a `PermanentError` naming what is wrong."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PermanentError(f"malformed message: not JSON ({exc})", code="malformed") from exc
    if not isinstance(data, dict):
        raise PermanentError("malformed message: body is not a JSON object", code="malformed")
    try:
        return ImageJob.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}"
            for err in exc.errors()
        )
        raise PermanentError(f"malformed message: {problems}", code="malformed") from exc


def item_problem(job_id: str, url: str) -> str | None:
    """Why a batch item with this id and url cannot be a message (None: it can), by the same
    rules as `ImageJob`'s validators for an http(s) or s3:// job."""
    if not SAFE_ID.fullmatch(job_id):
        return "id must be 1-128 characters of [A-Za-z0-9._-], not starting with . or -"
    if not url or len(url) > MAX_URL_LENGTH:
        return f"url must be 1-{MAX_URL_LENGTH} characters"
    if url.startswith(OBJECT_SCHEME):
        return object_url_problem(url)
    if not url.lower().startswith(("http://", "https://")):
        return "url must be an http:// or https:// URL, or s3://<bucket>/<key>"
    return None


def encode_items(template: ImageJob, items: list[tuple[str, str]]) -> list[bytes]:
    """The bodies `encode_job` gives for jobs equal to `template` but for their (id, url) — a
    batch's items — without a model per item (a batch publishes millions). Check each pair
    with `item_problem` first."""
    parts = {
        key: json.dumps(value, separators=(",", ":"))
        for key, value in json.loads(encode_job(template)).items()
    }
    ops, batch, output = parts["ops"], parts["batch"], parts["output"]
    return [
        f'{{"url":{json.dumps(url)},"ops":{ops},"id":{json.dumps(job_id)},'
        f'"batch":{batch},"output":{output}}}'.encode()
        for job_id, url in items
    ]
