"""Prometheus metrics of one worker, in a registry of its own.

A private registry (not prometheus_client's global one) lets several workers live in one test
process and keeps the names exactly as documented.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
TIMELINE_BUCKETS = (
    0.0005, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.006, 0.008, 0.01, 0.0125, 0.015,
    0.0175, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
"""Fine below 20 ms, where a message's phases lie when the worker keeps up: a median read off
these buckets (as `histogram_quantile` does) is within a fraction of a millisecond."""


class WorkerMetrics:
    """The counters, gauge and histograms `/metrics` exposes."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.processed = Counter(
            "worker_tasks_processed",
            "Jobs completed (thumbnails written and recorded).",
            registry=self.registry,
        )
        self.failed = Counter(
            "worker_tasks_failed",
            "Jobs dead-lettered, by failure code.",
            ["code"],
            registry=self.registry,
        )
        self.retried = Counter(
            "worker_tasks_retried",
            "Jobs sent to a delay queue for another attempt.",
            registry=self.registry,
        )
        self.duplicates = Counter(
            "worker_tasks_duplicate",
            "Deliveries of jobs already completed (acked without work).",
            registry=self.registry,
        )
        self.requeued = Counter(
            "worker_tasks_requeued",
            "Deliveries returned to the queue because a dependency of ours (PostgreSQL, the "
            "broker, the output store, the disk) failed; no attempt spent.",
            registry=self.registry,
        )
        self.returned = Counter(
            "worker_tasks_returned",
            "Deliveries handed back to the queue unfinished because the worker was stopping "
            "(SIGTERM, past SHUTDOWN_TIMEOUT_SECONDS); no attempt spent.",
            registry=self.registry,
        )
        self.throttled = Counter(
            "worker_tasks_throttled",
            "Waits for an origin that answered 429/503 with Retry-After (no attempt spent).",
            registry=self.registry,
        )
        self.dependency_errors = Counter(
            "imagebatch_worker_dependency_errors",
            "Deliveries that found a dependency of ours down, by dependency: database, broker, "
            "output store, disk.",
            ["dependency"],
            registry=self.registry,
        )
        self.ready = Gauge(
            "worker_ready",
            "1 while the worker consumes (what /readyz answers 200 to), else 0; read at scrape "
            "time, so an alert sees what a readiness probe sees.",
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "worker_tasks_in_flight",
            "Messages being processed now.",
            registry=self.registry,
        )
        self.task_duration = Histogram(
            "worker_task_duration_seconds",
            "Time from delivery to ack, by outcome.",
            ["outcome"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.stage_duration = Histogram(
            "worker_stage_duration_seconds",
            "Time spent in each stage of a job.",
            ["stage"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.phase_duration = Histogram(
            "worker_message_phase_seconds",
            "Time a completed message spent in each phase of its timeline, waits included: "
            "claim (delivered to claimed), slot (waiting for a CONCURRENCY slot), download, "
            "transform (thumbnail thread, its queue included), write (durably on disk), record "
            "(committed in PostgreSQL), ack.",
            ["phase"],
            buckets=TIMELINE_BUCKETS,
            registry=self.registry,
        )
        self.held = Histogram(
            "worker_message_held_seconds",
            "Time from delivery to ack of a completed message (the sum of its phases).",
            buckets=TIMELINE_BUCKETS,
            registry=self.registry,
        )
        self.slot_held = Histogram(
            "worker_slot_held_seconds",
            "Time a job held one of the CONCURRENCY slots (its download and thumbnail).",
            buckets=TIMELINE_BUCKETS,
            registry=self.registry,
        )
        self.write_group_files = Histogram(
            "worker_write_group_files",
            "Thumbnails written (and fsynced) together in one group.",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=self.registry,
        )
        self.downloaded_bytes = Counter(
            "worker_downloaded_bytes",
            "Bytes of originals downloaded.",
            registry=self.registry,
        )

    def sample(self, name: str, **labels: str) -> float:
        """The current value of one exported sample (0 when it was never set): what a scrape
        of /metrics would read, e.g. `sample("worker_tasks_failed_total", code="http_404")`."""
        value = self.registry.get_sample_value(name, labels)
        return float(value) if value is not None else 0.0
