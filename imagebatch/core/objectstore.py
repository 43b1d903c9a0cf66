"""The connection to an S3-compatible object store, and what its errors mean for us.

Connection settings are the standard AWS variables (AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL,
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION), so the connections
Secret of a namespace carries them like RABBIT_URL and any S3 tool reads the same ones. Whenever
an endpoint is set, requests use path-style addressing (`<endpoint>/<bucket>/<key>`): that is
what S3-compatible servers expect, and it needs no wildcard DNS.

The client is obstore (Rust's object_store): the worker's own benchmark measured it against
aiobotocore (README, "Object storage"). Its failures are sorted here into two kinds: the store
being unavailable to us (unreachable, 5xx, throttling, credentials refused, bucket missing) is
`DependencyDown` — nobody's image is at fault — while a missing key is the caller's business.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

import obstore.exceptions as obx
from obstore.store import S3Store
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from imagebatch.core.errors import Dependency, DependencyDown

if TYPE_CHECKING:
    from obstore.store import ClientConfig, RetryConfig, S3Config

DEFAULT_REGION = "us-east-1"


class S3Settings(BaseSettings):
    """The standard AWS variables, read once per service (never at import time)."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    aws_endpoint_url_s3: str | None = Field(
        default=None, description="Endpoint of the S3 API (wins over AWS_ENDPOINT_URL)."
    )
    aws_endpoint_url: str | None = Field(
        default=None, description="Endpoint of every AWS API, the S3 one included."
    )
    aws_access_key_id: str | None = Field(default=None, description="Access key.")
    aws_secret_access_key: str | None = Field(default=None, description="Secret key.")
    aws_session_token: str | None = Field(default=None, description="Temporary credentials.")
    aws_region: str = Field(default=DEFAULT_REGION, description="Region of the buckets.")

    @property
    def endpoint(self) -> str | None:
        return self.aws_endpoint_url_s3 or self.aws_endpoint_url or None


@dataclass(frozen=True)
class Timeouts:
    """How long one request may take, and how long obstore retries before we hear of it.

    Short on purpose: an unavailable store must reach the caller within seconds, so the worker
    can give the message back and say so on /readyz, instead of holding it for obstore's default
    three minutes of retries.
    """

    connect: float = 3.0
    request: float = 30.0
    retries: int = 2
    retry_window: float = 5.0


def open_bucket(settings: S3Settings, bucket: str, timeouts: Timeouts | None = None) -> S3Store:
    """An obstore client for `bucket` (it connects lazily: no request is made here)."""
    limits = timeouts or Timeouts()
    config: S3Config = {"region": settings.aws_region}
    endpoint = settings.endpoint
    if endpoint:
        config["endpoint"] = endpoint
        config["virtual_hosted_style_request"] = False
    if settings.aws_access_key_id and settings.aws_secret_access_key:
        config["access_key_id"] = settings.aws_access_key_id
        config["secret_access_key"] = settings.aws_secret_access_key
        if settings.aws_session_token:
            config["session_token"] = settings.aws_session_token
    client: ClientConfig = {
        "allow_http": bool(endpoint and endpoint.startswith("http://")),
        "connect_timeout": timedelta(seconds=limits.connect),
        "timeout": timedelta(seconds=limits.request),
    }
    retry: RetryConfig = {
        "max_retries": limits.retries,
        "retry_timeout": timedelta(seconds=limits.retry_window),
        "backoff": {
            "init_backoff": timedelta(milliseconds=100),
            "max_backoff": timedelta(seconds=2),
        },
    }
    return S3Store(bucket, config=config, client_options=client, retry_config=retry)


@dataclass
class Buckets:
    """One client per bucket, made on first use: sources may name many buckets."""

    settings: S3Settings
    timeouts: Timeouts = field(default_factory=Timeouts)
    _open: dict[str, S3Store] = field(default_factory=dict)

    def __call__(self, bucket: str) -> S3Store:
        store = self._open.get(bucket)
        if store is None:
            store = self._open[bucket] = open_bucket(self.settings, bucket, self.timeouts)
        return store


def _text(exc: BaseException) -> str:
    """obstore's message without its "Debug source" dump (whose field names, such as
    retry_timeout, would match the words looked for below)."""
    return " ".join(str(exc).split("Debug source:")[0].split())


def _summary(exc: BaseException) -> str:
    """The part of obstore's long, multi-line message a person needs."""
    text = _text(exc)
    for marker in ("<Code>", "<Message>"):
        if marker in text:
            start = text.index(marker) + len(marker)
            end = text.find("<", start)
            return text[start:end] if end > start else text[start:]
    return text[:300]


def is_missing_key(exc: BaseException) -> bool:
    """True when the request failed only because the key does not exist."""
    # obstore raises Python's FileNotFoundError for a 404, not its own NotFoundError.
    missing = isinstance(exc, obx.NotFoundError | FileNotFoundError)
    return missing and "NoSuchBucket" not in _text(exc)


StoreProblem = Literal["bucket_missing", "access_denied", "throttled", "unreachable", "failing"]


class StoreUnavailable(DependencyDown):
    """The object store cannot serve us; `problem` says which way, for callers that treat a
    missing bucket or refused access differently from an outage (a source URL naming a bucket
    we may not read is the item's fault, not ours)."""

    def __init__(self, dependency: Dependency, reason: str, problem: StoreProblem) -> None:
        super().__init__(dependency, reason)
        self.problem: StoreProblem = problem


def store_down(exc: BaseException, *, what: Dependency, bucket: str) -> StoreUnavailable:
    """What an obstore failure (other than a missing key) means, with a reason that names
    what a person can fix."""
    text = _text(exc)
    problem: StoreProblem
    if "NoSuchBucket" in text:
        problem, reason = "bucket_missing", f"bucket {bucket!r} does not exist"
    elif isinstance(exc, obx.UnauthenticatedError | obx.PermissionDeniedError) or any(
        code in text
        for code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403")
    ):
        problem = "access_denied"
        reason = f"credentials refused for bucket {bucket!r}: {_summary(exc)}"
    elif "SlowDown" in text or "503" in text:
        problem = "throttled"
        reason = f"bucket {bucket!r} is throttling requests: {_summary(exc)}"
    elif any(
        word in text.lower()
        for word in ("connect", "refused", "timed out", "timeout", "sending request")
    ):
        problem = "unreachable"
        reason = f"cannot reach the object store for bucket {bucket!r}: {_summary(exc)}"
    else:
        problem, reason = "failing", f"bucket {bucket!r}: {_summary(exc)}"
    down = StoreUnavailable(what, reason, problem)
    down.__cause__ = exc
    return down


OBSTORE_ERRORS: tuple[type[BaseException], ...] = (obx.BaseError, OSError, TimeoutError)
"""What an obstore call can raise (its own errors, and I/O ones from the runtime)."""


def attributes(content_type: str) -> dict[str, Any]:
    return {"Content-Type": content_type}
