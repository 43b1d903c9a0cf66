"""The worker's settings: the contract's environment variables plus its own limits.

Read once by `__main__` (`WorkerSettings()`), then passed down; tests build the object with
explicit values instead of touching the environment. Every field is the upper-cased environment
variable of the same name.
"""

from __future__ import annotations

import ipaddress
import os

from pydantic import Field, field_validator

from imagebatch.core.delays import DEFAULT_RETRY_AFTER_MAX_SECONDS
from imagebatch.core.settings import StorageSettings
from imagebatch.core.shutdown import (
    DEFAULT_DOWNLOAD_DEADLINE_SECONDS,
    DEFAULT_SHUTDOWN_TIMEOUT_SECONDS,
)


def _default_threads() -> int:
    return max(1, os.cpu_count() or 1)


class WorkerSettings(StorageSettings):
    """Everything `imagebatch-worker` can be told."""

    concurrency: int = Field(
        default=8,
        ge=1,
        le=1024,
        description="Jobs downloading or being thumbnailed at once (waits on PostgreSQL and on "
        "the disk hold no slot).",
    )
    prefetch: int = Field(
        default=16, ge=1, le=65535, description="Unacked messages the broker may hand us (QoS)."
    )
    metrics_host: str = Field(default="0.0.0.0", description="Address of the health server.")
    metrics_port: int = Field(
        default=9100, ge=0, le=65535, description="/healthz, /readyz, /metrics (0: any free port)."
    )
    allow_private_sources: bool = Field(
        default=False,
        description="Allow downloads from loopback/private/link-local addresses (tests, dev).",
    )
    allowed_source_networks: list[str] = Field(
        default_factory=list,
        description="CIDRs allowed even when private (e.g. an internal image store), JSON list.",
    )
    max_download_bytes: int = Field(
        default=25 * 1024 * 1024, ge=1024, description="Largest original accepted (streamed)."
    )
    max_pixels: int = Field(
        default=50_000_000, ge=1, description="Largest width*height decoded (bomb guard)."
    )
    connect_timeout_seconds: float = Field(default=5.0, gt=0, description="TCP connect timeout.")
    read_timeout_seconds: float = Field(
        default=10.0, gt=0, description="Longest silence between two reads of a download."
    )
    download_deadline_seconds: float = Field(
        default=DEFAULT_DOWNLOAD_DEADLINE_SECONDS,
        gt=0,
        description="Total time one download may take, redirects included.",
    )
    max_redirects: int = Field(default=5, ge=0, le=20, description="Redirect hops followed.")
    max_attempts: int = Field(
        default=3, ge=1, le=100, description="Deliveries of a job before it is dead-lettered."
    )
    backoff_seconds: float = Field(
        default=2.0,
        ge=0,
        description="First retry delay; doubles each attempt, with jitter (0: retry at once).",
    )
    backoff_max_seconds: float = Field(default=300.0, gt=0, description="Cap of one retry delay.")
    max_throttles: int = Field(
        default=10,
        ge=0,
        le=1000,
        description="Waits per job for an origin answering 429/503 with Retry-After (no attempt "
        "spent); past that a throttle counts as a transient failure.",
    )
    retry_after_max_seconds: float = Field(
        default=DEFAULT_RETRY_AFTER_MAX_SECONDS,
        ge=0,
        description="Longest Retry-After honoured; a longer one is cut to this.",
    )
    transform_threads: int = Field(
        default_factory=_default_threads, ge=1, le=256, description="Pillow worker threads."
    )
    fsync: bool = Field(default=True, description="fsync each thumbnail and its folder.")
    stale_temp_seconds: float = Field(
        default=300.0,
        ge=0,
        description="Age after which the start-up sweep deletes temp files (written only where "
        "the filesystem has no O_TMPFILE).",
    )
    shutdown_timeout_seconds: float = Field(
        default=DEFAULT_SHUTDOWN_TIMEOUT_SECONDS,
        ge=0,
        description="How long SIGTERM waits for in-flight jobs; the ones still unfinished then "
        "go back to the queue (no attempt spent).",
    )
    startup_timeout_seconds: float = Field(
        default=60.0, ge=0, description="How long start-up waits for PostgreSQL and RabbitMQ."
    )
    user_agent: str = Field(default="imagebatch-worker/0.1", description="Sent with downloads.")
    log_level: str = Field(default="INFO", description="Python logging level.")

    @field_validator("allowed_source_networks")
    @classmethod
    def _networks_parse(cls, value: list[str]) -> list[str]:
        for item in value:
            ipaddress.ip_network(item, strict=False)
        return value
