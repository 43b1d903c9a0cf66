"""The ImageBatch resource (`imagejobs.io/v1alpha1`): its names, the spec as a client writes it,
and the summary of its status, shared by the api (which creates and shows batches) and the
operator (which runs them).

The create model mirrors the CRD's OpenAPI schema and its CEL rules (crds/), so a bad spec gets
a 422 naming the field before the request reaches the cluster, and `/openapi.json` documents the
same constraints `kubectl apply` would enforce. Field names are the resource's camelCase ones:
the JSON form of `examples/imagebatch.yaml` is a valid request body.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from imagebatch.core.batch_status import BatchStatus, FailureReason, LastRetry
from imagebatch.core.locations import LocationError, parse_bucket_url, parse_location
from imagebatch.core.messages import Thumbnail

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
"""Names and namespaces: lower-case DNS labels (the batch name also names its queue)."""
GROUP, VERSION, PLURAL, KIND = "imagejobs.io", "v1alpha1", "imagebatches", "ImageBatch"

BatchName = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL)]
SourceUrl = Annotated[
    str,
    Field(
        max_length=2048, pattern=r"^(https?://[^\s]+|s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/[^\s]+)$"
    ),
]
"""An item's original: http(s), or an object in a bucket (read with the workers' S3 connection)."""
Percent = Annotated[str, Field(pattern=r"^(100|[1-9]?[0-9])%$")]


NULLABLE = frozenset({"activeDeadlineSeconds", "ttlSecondsAfterFinished"})
"""The only spec fields the CRD lets be null; every other optional field is left out instead."""


def _not_nullable(schema: dict[str, Any]) -> None:
    """Publish optional fields as "may be omitted", not "may be null" (as the CRD has them)."""
    for name, prop in schema.get("properties", {}).items():
        if name in NULLABLE or not isinstance(prop, dict):
            continue
        variants = prop.get("anyOf")
        if isinstance(variants, list):
            kept = [v for v in variants if v != {"type": "null"}]
            if len(kept) == 1:
                del prop["anyOf"]
                prop.update(kept[0])
            else:
                prop["anyOf"] = kept
        if "default" in prop and prop["default"] is None:
            del prop["default"]


def _exactly_one_source(schema: dict[str, Any]) -> None:
    _not_nullable(schema)
    schema["oneOf"] = [{"required": ["postgres"]}, {"required": ["urls"]}]


class _Spec(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, extra="forbid", json_schema_extra=_not_nullable
    )

    @model_validator(mode="before")
    @classmethod
    def _omitted_not_null(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key, value in data.items():
                if value is None and key not in NULLABLE:
                    raise ValueError(f"{key} must not be null; leave it out to get the default")
        return data


class PostgresSource(_Spec):
    """Take the batch's URLs from a table of the shared database."""

    table: str = Field(default="images", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    limit: int = Field(default=200, ge=1, le=10_000_000)
    only_unprocessed: bool = True


class Source(_Spec):
    """Exactly one of `postgres` or `urls`."""

    model_config = ConfigDict(
        alias_generator=to_camel, extra="forbid", json_schema_extra=_exactly_one_source
    )

    postgres: PostgresSource | None = None
    urls: list[SourceUrl] | None = Field(default=None, min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _exactly_one(self) -> Source:
        if (self.postgres is None) == (self.urls is None):
            raise ValueError("source needs exactly one of postgres or urls")
        return self


OUTPUT_URL_PATTERN = r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[A-Za-z0-9!_.*'()-]+)*/?$"
"""spec.output.url: a bucket and key prefix only (a batch may not choose a folder of the
workers' nodes)."""


class OutputSpec(_Spec):
    prefix: str | None = Field(
        default=None,
        max_length=255,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$",
        description="Folder under the workers' /data volume; default <namespace>/<name>.",
    )
    url: str | None = Field(
        default=None,
        max_length=1024,
        pattern=OUTPUT_URL_PATTERN,
        description="A bucket for this batch's thumbnails, s3://<bucket>[/<key prefix>] (the "
        "operator's WORKER_OUTPUT_URL otherwise); the prefix goes below it.",
    )

    @field_validator("url")
    @classmethod
    def _url_names_a_bucket(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_bucket_url(value)
            except LocationError as exc:
                raise ValueError(str(exc)) from exc
        return value


class WorkersSpec(_Spec):
    concurrency: int | None = Field(default=None, ge=1, le=256)
    prefetch: int | None = Field(default=None, ge=1, le=1000)
    min_replicas: int | None = Field(default=None, ge=0, le=100)
    max_replicas: int | None = Field(default=None, ge=1, le=100)
    messages_per_replica: int | None = Field(default=None, ge=1, le=100000)

    @model_validator(mode="after")
    def _min_not_above_max(self) -> WorkersSpec:
        low, high = self.min_replicas, self.max_replicas
        if low is not None and high is not None and low > high:
            raise ValueError("workers.minReplicas must not exceed workers.maxReplicas")
        return self


class RetrySpec(_Spec):
    max_attempts: int | None = Field(default=None, ge=1, le=20)
    backoff_seconds: int | None = Field(default=None, ge=0, le=3600)


class NotifySpec(_Spec):
    """Where the batch's endings are announced (one CloudEvent per ending)."""

    url: str = Field(max_length=2048, pattern=r"^https?://[^\s]+$")


class BatchOperation(_Spec):
    """One entry of `operations`; unlike a task's, the resource always names its kind."""

    thumbnail: Thumbnail


class BatchSpec(_Spec):
    """What to process and how; omitted fields get the CRD's defaults."""

    source: Source
    operations: list[BatchOperation] | None = Field(default=None, min_length=1, max_length=8)
    output: OutputSpec | None = None
    workers: WorkersSpec | None = None
    retry: RetrySpec | None = None
    max_failed: Annotated[int, Field(ge=0)] | Percent | None = Field(
        default=None, description='Failed items tolerated: a count or a percentage like "10%".'
    )
    suspend: bool | None = None
    active_deadline_seconds: int | None = Field(default=None, ge=1)
    ttl_seconds_after_finished: int | None = Field(default=None, ge=0)
    notify: NotifySpec | None = None


class BatchMetadata(_Spec):
    name: BatchName
    namespace: BatchName | None = Field(
        default=None, description="Default: the api's KUBE_NAMESPACE."
    )


class BatchCreate(_Spec):
    """An ImageBatch to create: the resource as in `examples/imagebatch.yaml`, as JSON."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "metadata": {"name": "holiday-photos"},
                    "spec": {"source": {"urls": ["https://example.com/a.jpg"]}},
                }
            ]
        },
    )

    api_version: Literal["imagejobs.io/v1alpha1"] = "imagejobs.io/v1alpha1"
    kind: Literal["ImageBatch"] = "ImageBatch"
    metadata: BatchMetadata
    spec: BatchSpec

    def manifest(self, namespace: str) -> dict[str, Any]:
        """The object to send to the API server; unset fields are left to the CRD's defaults."""
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "metadata": {"name": self.metadata.name, "namespace": namespace},
            "spec": self.spec.model_dump(by_alias=True, exclude_unset=True, mode="json"),
        }


class Condition(BaseModel):
    type: str
    status: str
    reason: str | None = None
    message: str | None = None
    last_transition_time: str | None = None


class Batch(BaseModel):
    """One ImageBatch: its progress in a few fields, plus the raw spec and status."""

    name: str
    namespace: str
    created: datetime | None = None
    phase: str | None = Field(default=None, description="Pending, Publishing, Running, ...")
    progress: str | None = Field(default=None, description='"done/total" as the operator reports.')
    total: int = 0
    published: int = 0
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    queued: int = 0
    workers: int = 0
    percent: float = Field(default=0.0, description="Finished items (succeeded + failed) in %.")
    conditions: list[Condition] = Field(default_factory=list)
    failure_reasons: list[FailureReason] = Field(
        default_factory=list,
        description="The failed items' reason codes with their counts, most frequent first.",
    )
    last_retry: LastRetry | None = Field(
        default=None, description="The last retry of the failed items (imagejobs.io/retry-failed)."
    )
    spec: dict[str, Any] = Field(default_factory=dict)
    status: dict[str, Any] = Field(default_factory=dict)


class BatchList(BaseModel):
    namespace: str
    items: list[Batch]


def _timestamp(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def batch_view(obj: dict[str, Any]) -> Batch:
    """Summarise an ImageBatch object as the API server returned it."""
    meta = obj.get("metadata") or {}
    raw = obj.get("status") if isinstance(obj.get("status"), dict) else {}
    assert isinstance(raw, dict)
    status = BatchStatus.read(raw)
    total, done = status.total, status.succeeded + status.failed
    spec = obj.get("spec")
    return Batch(
        name=str(meta.get("name", "")),
        namespace=str(meta.get("namespace", "")),
        created=_timestamp(meta.get("creationTimestamp")),
        phase=status.phase,
        progress=status.progress,
        total=total,
        published=status.published,
        succeeded=status.succeeded,
        failed=status.failed,
        retried=status.retried,
        queued=status.queued,
        workers=status.workers,
        percent=round(100.0 * min(done, total) / total, 1) if total else 0.0,
        conditions=[
            Condition(
                type=c.type,
                status=c.status,
                reason=c.reason,
                message=c.message,
                last_transition_time=c.last_transition_time,
            )
            for c in status.conditions
        ],
        failure_reasons=list(status.failure_reasons),
        last_retry=status.last_retry,
        spec=spec if isinstance(spec, dict) else {},
        status={k: v for k, v in raw.items() if k != "kopf"},
    )


DEFAULT_OPERATIONS: tuple[Thumbnail, ...] = (Thumbnail(),)
"""What a batch without `operations` makes: one 256x256 JPEG thumbnail (the CRD's default)."""


@dataclass(frozen=True)
class RunSpec:
    """A batch's spec with every default filled in: what the operator runs.

    The API server applies the CRD's defaults only inside objects that are present (a batch
    without `workers` gets no `workers.concurrency`), so the operator resolves the rest here, to
    the same values the CRD names.
    """

    namespace: str
    name: str
    urls: tuple[str, ...] | None
    table: str
    limit: int
    only_unprocessed: bool
    operations: tuple[Thumbnail, ...]
    output_prefix: str
    output_url: str | None
    """spec.output.url (an s3:// URL), or None for the operator's WORKER_OUTPUT_URL."""
    concurrency: int
    prefetch: int
    min_replicas: int
    max_replicas: int
    messages_per_replica: int
    max_attempts: int
    backoff_seconds: int
    max_failed: int | str
    suspend: bool
    active_deadline_seconds: int | None
    ttl_seconds_after_finished: int | None
    notify_url: str | None = None
    """spec.notify.url: where each ending's CloudEvent goes."""

    @property
    def batch(self) -> str:
        """The batch's key in `jobs.batch` and in messages: `<namespace>/<name>`."""
        return f"{self.namespace}/{self.name}"

    def failure_budget(self, total: int) -> int:
        """Failed items tolerated: `maxFailed` as a count, or that percentage of `total`."""
        if isinstance(self.max_failed, int):
            return self.max_failed
        return (total * int(self.max_failed.rstrip("%"))) // 100

    def output_location(self, default_url: str) -> str:
        """Where this batch's thumbnails are, as `status.output` says it: the output URL
        (spec.output.url, else `default_url`, the operator's WORKER_OUTPUT_URL), then the
        prefix, with a trailing slash."""
        base = parse_location(self.output_url or default_url).url.rstrip("/")
        return f"{base}/{self.output_prefix}/"

    def operations_json(self) -> list[dict[str, Any]]:
        """`ops` as messages carry them: full operation objects."""
        return [{"thumbnail": op.model_dump(mode="json")} for op in self.operations]


class SpecInvalid(ValueError):
    """A spec the CRD's schema let through but that cannot be run (only possible when the
    installed CRD is older than the operator, or was edited)."""


def run_spec(namespace: str, name: str, spec: dict[str, Any]) -> RunSpec:
    """Resolve a stored spec; `SpecInvalid` says what is wrong with it."""
    try:
        parsed = BatchSpec.model_validate(spec)
    except ValueError as exc:
        raise SpecInvalid(f"the spec cannot be run: {exc}") from exc
    source, workers = parsed.source, parsed.workers or WorkersSpec()
    retry, postgres = parsed.retry or RetrySpec(), source.postgres or PostgresSource()
    output = parsed.output.prefix if parsed.output and parsed.output.prefix else None
    return RunSpec(
        namespace=namespace,
        name=name,
        urls=tuple(source.urls) if source.urls is not None else None,
        table=postgres.table,
        limit=postgres.limit,
        only_unprocessed=postgres.only_unprocessed,
        operations=tuple(op.thumbnail for op in parsed.operations or ()) or DEFAULT_OPERATIONS,
        output_prefix=output or f"{namespace}/{name}",
        output_url=parsed.output.url if parsed.output and parsed.output.url else None,
        concurrency=workers.concurrency or 8,
        prefetch=workers.prefetch or 16,
        min_replicas=workers.min_replicas if workers.min_replicas is not None else 0,
        max_replicas=workers.max_replicas or 10,
        messages_per_replica=workers.messages_per_replica or 50,
        max_attempts=retry.max_attempts or 3,
        backoff_seconds=retry.backoff_seconds if retry.backoff_seconds is not None else 2,
        max_failed=parsed.max_failed if parsed.max_failed is not None else "10%",
        suspend=bool(parsed.suspend),
        active_deadline_seconds=parsed.active_deadline_seconds,
        ttl_seconds_after_finished=parsed.ttl_seconds_after_finished,
        notify_url=parsed.notify.url if parsed.notify is not None else None,
    )
