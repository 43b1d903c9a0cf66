"""The api's settings: the contract's environment variables plus the limits it enforces.

Read once at start-up by `__main__` (`ApiSettings()`), passed to `create_app`; tests build the
object with explicit values instead of touching the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from imagebatch.core.settings import StorageSettings

AuthMode = Literal["kubernetes", "token", "none"]

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def pod_namespace(path: Path = SERVICE_ACCOUNT_NAMESPACE) -> str:
    """The namespace of the pod the api runs in (its service account's), else `default`: a
    batch posted without a namespace lands next to the api that took it."""
    try:
        return path.read_text().strip() or "default"
    except OSError:
        return "default"


class ApiSettings(StorageSettings):
    """Everything `imagebatch-api` can be told; each field is its upper-cased env variable."""

    host: str = Field(default="0.0.0.0", description="Address uvicorn listens on.")
    port: int = Field(default=8000, ge=0, le=65535, description="Port uvicorn listens on.")
    max_upload_bytes: int = Field(
        default=20 * 1024 * 1024, ge=1, description="Largest original POST /uploads accepts."
    )
    enqueue_default: int = Field(
        default=200, ge=1, description="Rows POST /enqueue takes when no limit is given."
    )
    enqueue_max: int = Field(
        default=5000, ge=1, description="Upper bound of POST /enqueue?limit=N."
    )
    publish_timeout_seconds: float = Field(
        default=10.0, gt=0, description="How long a publish may wait for the broker's confirm."
    )
    startup_timeout_seconds: float = Field(
        default=30.0, ge=0, description="How long start-up waits for PostgreSQL to answer."
    )
    broker_retry_seconds: float = Field(
        default=3.0, gt=0, description="Pause between attempts to (re)connect to RabbitMQ."
    )

    kubeconfig: Path | None = Field(
        default=None,
        description="Kubeconfig for /batches (env KUBECONFIG); in a pod: the service account.",
    )
    kubernetes_service_host: str | None = Field(
        default=None, description="Set by Kubernetes inside a pod; selects in-cluster config."
    )
    kube_namespace: str = Field(
        default_factory=pod_namespace,
        description="Namespace of /batches when a request names none (default: the pod's own).",
    )
    kube_timeout_seconds: float = Field(
        default=10.0, gt=0, description="Timeout of each call to the Kubernetes API server."
    )
    page_refresh_seconds: float = Field(
        default=2.0, gt=0, description="How often the web page polls for progress."
    )
    auth_mode: AuthMode | None = Field(
        default=None,
        description=(
            "Who may call: `kubernetes` (bearer tokens checked with a TokenReview), `token` "
            "(static tokens from AUTH_TOKENS_FILE) or `none` (anyone; local development only). "
            "Unset: `kubernetes` when a cluster is configured, else `token`; never `none`."
        ),
    )
    auth_tokens_file: Path | None = Field(
        default=None,
        description="`token` mode: one `<token> <namespace>` per line (mounted from a Secret).",
    )
    auth_cache_seconds: float = Field(
        default=10.0,
        ge=0,
        description="`kubernetes` mode: how long a TokenReview's answer is reused for a token.",
    )
    rate_limit_per_minute: int = Field(
        default=600,
        ge=0,
        description="POST /tasks, /uploads and /enqueue per caller and minute (0: no limit).",
    )
    upload_bytes_per_minute: int = Field(
        default=512 * 1024 * 1024,
        ge=0,
        description="Bytes of POST /uploads per caller and minute (0: no limit).",
    )
    max_open_tasks: int = Field(
        default=1000,
        ge=0,
        description="Tasks and uploads per caller not yet completed or failed (0: no limit).",
    )

    def effective_auth_mode(self) -> AuthMode:
        """AUTH_MODE, or what an unset one means: the cluster's tokens when there is a cluster,
        else static tokens. Anonymous access is never implied."""
        if self.auth_mode is not None:
            return self.auth_mode
        if self.kubeconfig is not None or self.kubernetes_service_host:
            return "kubernetes"
        return "token"
