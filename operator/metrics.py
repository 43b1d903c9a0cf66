"""The operator's Prometheus metrics, served on METRICS_PORT at /metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

PHASES = ("Pending", "Publishing", "Running", "Succeeded", "Failed", "Suspended")


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.batches = Gauge(
            "imagebatch_operator_batches",
            "ImageBatch resources this operator runs, by phase.",
            ["phase"],
            registry=self.registry,
        )
        self.items_published = Counter(
            "imagebatch_operator_items_published",
            "Batch items whose messages the broker confirmed.",
            registry=self.registry,
        )
        self.publish_seconds = Histogram(
            "imagebatch_operator_publish_chunk_seconds",
            "Time to publish one chunk of items with confirms and record it.",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.refresh_seconds = Histogram(
            "imagebatch_operator_status_refresh_seconds",
            "Time to recompute one batch's status from PostgreSQL and the broker.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
            registry=self.registry,
        )
        self._phases: dict[str, str] = {}
        for phase in PHASES:
            self.batches.labels(phase).set(0)

    def phase(self, batch: str, phase: str | None) -> None:
        """Record `batch`'s phase (None: the batch is gone); only a change moves the gauge, so
        each refresh costs the same however many batches there are."""
        old = self._phases.pop(batch, None)
        if phase is not None:
            self._phases[batch] = phase
        if old == phase:
            return
        if old is not None:
            self.batches.labels(old).dec()
        if phase is not None:
            self.batches.labels(phase).inc()
