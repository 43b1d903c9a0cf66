"""How long a worker pod is given to stop: the drain plus the longest job a worker may be
holding, so that Kubernetes' SIGKILL never cuts a job off (which would spend an attempt)."""

from __future__ import annotations

import pytest

from imagebatch.core.shutdown import (
    DEFAULT_DOWNLOAD_DEADLINE_SECONDS,
    DEFAULT_SHUTDOWN_TIMEOUT_SECONDS,
    longest_job_seconds,
    termination_grace_seconds,
)
from imagebatch.worker.settings import WorkerSettings


@pytest.mark.parametrize(
    ("shutdown_timeout", "download_deadline", "grace"),
    [
        (25.0, 30.0, 85),  # the defaults: 25 drain + 30 download + 10 thumbnail + 5 record + 15
        (0.0, 30.0, 60),  # no drain: still the longest job and the hand-back
        (25.5, 30.0, 86),  # rounded up, never down
        (120.0, 30.0, 180),
        (25.0, 2.0, 57),  # a shorter download deadline shortens it
        (25.0, 300.0, 355),
    ],
)
def test_grace_covers_the_drain_and_the_longest_job(
    shutdown_timeout: float, download_deadline: float, grace: int
) -> None:
    assert termination_grace_seconds(shutdown_timeout, download_deadline) == grace
    assert grace >= shutdown_timeout + longest_job_seconds(download_deadline)


def test_the_longest_job_includes_the_whole_download_deadline() -> None:
    assert longest_job_seconds(30.0) - longest_job_seconds(10.0) == 20.0


def test_the_defaults_are_the_workers() -> None:
    worker = WorkerSettings(
        rabbit_url="amqp://guest:guest@127.0.0.1/", database_url="postgresql://x@127.0.0.1/x"
    )
    assert worker.shutdown_timeout_seconds == DEFAULT_SHUTDOWN_TIMEOUT_SECONDS
    assert worker.download_deadline_seconds == DEFAULT_DOWNLOAD_DEADLINE_SECONDS
