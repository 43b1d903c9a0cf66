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
CONTRACT_ENV: dict[str, frozenset[str]] = {
    "worker": CONNECTION_ENV
    | MESSAGING_ENV
    | {
        "CONCURRENCY",
        "PREFETCH",
        "OUTPUT_DIR",
        "UPLOADS_DIR",
        "METRICS_PORT",
        "ALLOW_PRIVATE_SOURCES",
    },
    "api": CONNECTION_ENV
    | MESSAGING_ENV
    | {
        "HOST",
        "PORT",
        "OUTPUT_DIR",
        "UPLOADS_DIR",
        "AUTH_MODE",
        "AUTH_TOKENS_FILE",
        "RATE_LIMIT_PER_MINUTE",
        "UPLOAD_BYTES_PER_MINUTE",
        "MAX_OPEN_TASKS",
    },
    "samples": frozenset(),
    "operator": CONNECTION_ENV
    | MESSAGING_ENV
    | {
        "KUBECONFIG",
        "WATCH_NAMESPACE",
        "HEALTH_PORT",
        "METRICS_PORT",
        "STATUS_INTERVAL_SECONDS",
        "PUBLISH_CHUNK_SIZE",
        "WORKER_IMAGE",
        "WORKER_CONNECTIONS_SECRET",
        "WORKER_DATA_CLAIM",
        "RABBIT_MANAGEMENT_URL",
    },
}
ANY_PROCESS_ENV = frozenset().union(*CONTRACT_ENV.values())
"""What any of our processes may be given (the operator reads the worker's and the api's)."""
