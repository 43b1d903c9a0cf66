"""Settings shared by every service, read from environment variables once at start-up.

Each service extends `CommonSettings` with its own fields in its own package; nothing reads the
environment at import time, so tests can build settings objects with explicit values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from imagebatch.core.locations import Location, parse_location, resolve_location
from imagebatch.core.objectstore import S3Settings
from imagebatch.core.otlp import OtlpProtocol, OtlpTarget, otlp_target


class CommonSettings(S3Settings):
    """Connection strings and the messaging names of the public contract, plus the standard
    AWS variables of an S3-compatible store (every service may read or write one)."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    rabbit_url: str = Field(
        default="amqp://guest:guest@localhost:5672/",
        description="AMQP URL of the RabbitMQ broker, or several comma-separated URLs (the "
        "nodes of one cluster), tried in turn on connect and on every reconnect.",
    )
    database_url: str = Field(
        default="postgresql://postgres:postgres@localhost:5432/images",
        description="PostgreSQL DSN; migrations are applied to it at start-up.",
    )
    exchange: str = Field(default="images", description="Direct exchange jobs are published to.")
    queue: str = Field(default="images.q", description="Work queue consumed by workers.")
    dlx: str = Field(default="images.dlx", description="Dead-letter exchange.")
    dlq: str = Field(default="images.dlx.q", description="Dead-letter queue.")
    routing_key: str = Field(default="process_image", description="Routing key of the work queue.")
    queue_type: Literal["classic", "quorum"] = Field(
        default="classic",
        description="Type of every queue declared: work, batch, retry-delay and dead-letter "
        "queues. All services of one deployment must agree (RabbitMQ refuses to redeclare a "
        "queue with another type).",
    )
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None,
        description="OTLP base URL (OTel's meaning); tracing exports nothing when no endpoint "
        "is set. A URL ending in /v1/traces is OTLP/HTTP to exactly that URL.",
    )
    otel_exporter_otlp_traces_endpoint: str | None = Field(
        default=None, description="OTLP URL for traces, used as it is; wins over the base URL."
    )
    otel_exporter_otlp_protocol: OtlpProtocol | None = Field(
        default=None, description="`grpc` (when unset) or `http/protobuf`."
    )
    otel_service_name: str | None = Field(
        default=None, description="Overrides the service name reported in traces."
    )

    def otlp(self) -> OtlpTarget | None:
        """Where this service exports its traces, or None: no export."""
        return otlp_target(
            protocol=self.otel_exporter_otlp_protocol,
            endpoint=self.otel_exporter_otlp_endpoint,
            traces_endpoint=self.otel_exporter_otlp_traces_endpoint,
        )


class StorageSettings(CommonSettings):
    """Where thumbnails and uploaded originals are kept: the api and the worker read the same
    four variables the same way (the URL wins; the folder settings are the older names)."""

    output_url: str | None = Field(
        default=None,
        description="Where thumbnails are: file:///folder or s3://bucket[/prefix] (default: "
        "OUTPUT_DIR as a file URL).",
    )
    output_dir: Path = Field(
        default=Path("/data"), description="Folder of thumbnails when OUTPUT_URL is unset."
    )
    uploads_url: str | None = Field(
        default=None,
        description="Where the api stores `upload:` originals for the workers: file:// or "
        "s3:// (default: UPLOADS_DIR as a file URL).",
    )
    uploads_dir: Path = Field(
        default=Path("/data/uploads"), description="Folder of uploads when UPLOADS_URL is unset."
    )

    @property
    def output_location(self) -> Location:
        return resolve_location(self.output_url, self.output_dir, "file:///data")

    @property
    def uploads_location(self) -> Location:
        return resolve_location(self.uploads_url, self.uploads_dir, "file:///data/uploads")

    @field_validator("output_url", "uploads_url")
    @classmethod
    def _location_parses(cls, value: str | None) -> str | None:
        if value:
            parse_location(value)
        return value
