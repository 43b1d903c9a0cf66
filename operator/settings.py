"""The operator's settings: the contract's environment variables, read once at start-up.

Every field is the upper-cased environment variable of the same name; tests build the object
with explicit values instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from imagebatch.core.locations import parse_location
from imagebatch.core.settings import CommonSettings
from imagebatch.core.shutdown import DEFAULT_SHUTDOWN_TIMEOUT_SECONDS


class OperatorSettings(CommonSettings):
    """Everything `imagebatch-operator` can be told."""

    kubeconfig: Path | None = Field(
        default=None, description="Kubeconfig to use; unset: the pod's service account."
    )
    watch_namespace: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Namespaces to watch, comma-separated (blanks ignored); empty: all of them.",
    )
    health_port: int = Field(default=8080, ge=0, le=65535, description="/healthz (kopf).")
    health_host: str = Field(default="0.0.0.0", description="Address of /healthz.")
    metrics_port: int = Field(default=9102, ge=0, le=65535, description="Prometheus /metrics.")
    metrics_host: str = Field(default="0.0.0.0", description="Address of /metrics.")
    status_interval_seconds: float = Field(
        default=2.0, gt=0, description="How often each batch's status is recomputed."
    )
    publish_chunk_size: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description="Messages in flight (awaiting confirms) and items materialized per step.",
    )
    worker_image: str = Field(default="imagebatch:dev", description="Image of worker pods.")
    worker_image_pull_policy: str = Field(
        default="IfNotPresent", description="imagePullPolicy of worker pods."
    )
    worker_connections_secret: str = Field(
        default="imagebatch-connections",
        description="Secret in the batch's namespace with the workers' RABBIT_URL/DATABASE_URL.",
    )
    default_source_database_url: str | None = Field(
        default=None,
        description="Where batches read a Postgres source when their namespace's connections "
        "Secret has no SOURCE_DATABASE_URL: a shared source database a cluster admin allows "
        "every namespace to read (give it a read-only role). Unset: such batches fail "
        "SourceInvalid; the operator's own DATABASE_URL is never used for sources.",
    )
    worker_data_claim: str = Field(
        default="imagebatch-data",
        description="PersistentVolumeClaim mounted at /data (for a file:// output only).",
    )
    worker_output_url: str = Field(
        default="file:///data",
        description="The workers' OUTPUT_URL: file:///data (the claim) or s3://bucket[/prefix] "
        "(credentials from the connections Secret); spec.output.url overrides it per batch.",
    )
    worker_data_dir: Path = Field(
        default=Path("/data"),
        description="Where the operator has WORKER_DATA_CLAIM mounted: it writes the manifest "
        "of a batch with a file:// output there (the workers' /data).",
    )
    allow_private_webhooks: bool = Field(
        default=False,
        description="Let spec.notify.url reach loopback, private and link-local addresses "
        "(an in-cluster receiver); refused otherwise, like the workers' downloads.",
    )
    worker_shutdown_timeout_seconds: float = Field(
        default=DEFAULT_SHUTDOWN_TIMEOUT_SECONDS,
        ge=0,
        description="The workers' SHUTDOWN_TIMEOUT_SECONDS (drain on SIGTERM); their pods' "
        "terminationGracePeriodSeconds adds the longest job to it (core/shutdown.py).",
    )
    rabbit_management_url: str | None = Field(
        default=None,
        description="Set: KEDA uses the management API (`protocol: http`, counts unacked "
        "messages) with RABBIT_MANAGEMENT_URL from the connections Secret.",
    )
    keda_polling_interval_seconds: int = Field(default=5, ge=1, description="ScaledObjects' poll.")
    keda_cooldown_seconds: int = Field(
        default=30, ge=0, description="ScaledObjects' cooldownPeriod before scaling to 0."
    )
    log_level: str = Field(default="INFO", description="Python logging level.")

    @field_validator("worker_output_url")
    @classmethod
    def _output_url_parses(cls, value: str) -> str:
        parse_location(value)
        return value

    @field_validator("watch_namespace", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value
