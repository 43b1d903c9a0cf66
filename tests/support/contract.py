"""The environment each ImageBatch process is documented to read (DESIGN.md ⚑ sections): what
deployment files (docker-compose.yml, manifests/) may set on our containers."""

from __future__ import annotations

MESSAGING_ENV = frozenset({"EXCHANGE", "QUEUE", "DLX", "DLQ", "ROUTING_KEY"})
CONNECTION_ENV = frozenset(
    {
        "RABBIT_URL",
        "DATABASE_URL",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    }
)
SOURCE_ENV = frozenset({"SOURCE_DATABASE_URL"})
"""The connections Secret's source key (⚑ Security): only the operator reads it (from the
batch's namespace), but every container that takes that Secret through envFrom sees it."""
STORE_ENV = frozenset(
    {
        "AWS_ENDPOINT_URL_S3",
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_REGION",
    }
)
"""The object store's connection (DESIGN.md ⚑ Storage): read by every process that reads or
writes a bucket, in Kubernetes from the connections Secret."""
CONTRACT_ENV: dict[str, frozenset[str]] = {
    "worker": CONNECTION_ENV
    | SOURCE_ENV
    | MESSAGING_ENV
    | STORE_ENV
    | {
        "CONCURRENCY",
        "PREFETCH",
        "OUTPUT_DIR",
        "UPLOADS_DIR",
        "OUTPUT_URL",
        "UPLOADS_URL",
        "METRICS_PORT",
        "ALLOW_PRIVATE_SOURCES",
    },
    "api": CONNECTION_ENV
    | SOURCE_ENV
    | MESSAGING_ENV
    | STORE_ENV
    | {
        "HOST",
        "PORT",
        "OUTPUT_DIR",
        "UPLOADS_DIR",
        "OUTPUT_URL",
        "UPLOADS_URL",
        "AUTH_MODE",
        "AUTH_TOKENS_FILE",
        "RATE_LIMIT_PER_MINUTE",
        "UPLOAD_BYTES_PER_MINUTE",
        "MAX_OPEN_TASKS",
    },
    "samples": frozenset(),
    "operator": CONNECTION_ENV
    | SOURCE_ENV
    | MESSAGING_ENV
    | STORE_ENV
    | {
        "KUBECONFIG",
        "WATCH_NAMESPACE",
        "HEALTH_PORT",
        "METRICS_PORT",
        "STATUS_INTERVAL_SECONDS",
        "PUBLISH_CHUNK_SIZE",
        "WORKER_IMAGE",
        "WORKER_CONNECTIONS_SECRET",
        "DEFAULT_SOURCE_DATABASE_URL",
        "WORKER_DATA_CLAIM",
        "WORKER_OUTPUT_URL",
        "RABBIT_MANAGEMENT_URL",
    },
}
ANY_PROCESS_ENV = frozenset().union(*CONTRACT_ENV.values())
"""What any of our processes may be given (the operator reads the worker's and the api's)."""
