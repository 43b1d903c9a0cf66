"""How long a worker may take to stop, shared by the worker (its defaults) and the operator
(the worker pods' `terminationGracePeriodSeconds`).

A SIGTERM'd worker stops consuming, gives the jobs in hand `SHUTDOWN_TIMEOUT_SECONDS` to finish
and hands back the rest (worker/consumer.py). Kubernetes SIGKILLs the pod at the end of its grace
period, and a job cut off by that kill counts as one that died with the worker (worker/poison.py):
an attempt spent for nothing. So the grace period covers the drain plus the longest a job can
take — its download deadline (redirects included), its thumbnail, its write and record — plus
the hand-back and closing the connections.
"""

from __future__ import annotations

import math

DEFAULT_SHUTDOWN_TIMEOUT_SECONDS = 25.0
"""The worker's default `SHUTDOWN_TIMEOUT_SECONDS`."""
DEFAULT_DOWNLOAD_DEADLINE_SECONDS = 30.0
"""The worker's default `DOWNLOAD_DEADLINE_SECONDS`: one download, redirects included."""
TRANSFORM_ALLOWANCE_SECONDS = 10.0
"""A thumbnail has no deadline of its own (MAX_PIXELS bounds it): the largest accepted image,
50 MP, took 2.7 s to decode and thumbnail on one core of the development machine (a PNG; a JPEG
1.4 s), and a job may queue behind others for the thumbnail threads."""
RECORD_ALLOWANCE_SECONDS = 5.0
"""Writing the thumbnails and recording the outcome (one group commit each)."""
STOP_ALLOWANCE_SECONDS = 15.0
"""Handing back the unfinished jobs (5 s at most) and closing the broker connection (10 s)."""


def longest_job_seconds(
    download_deadline: float = DEFAULT_DOWNLOAD_DEADLINE_SECONDS,
    transform: float = TRANSFORM_ALLOWANCE_SECONDS,
    record: float = RECORD_ALLOWANCE_SECONDS,
) -> float:
    """The longest one job can take from its claim to its ack."""
    return download_deadline + transform + record


def termination_grace_seconds(
    shutdown_timeout: float,
    download_deadline: float = DEFAULT_DOWNLOAD_DEADLINE_SECONDS,
) -> int:
    """The worker pods' `terminationGracePeriodSeconds`: the drain, the longest job, and the
    hand-back and close after it, in whole seconds (rounded up)."""
    return math.ceil(
        shutdown_timeout + longest_job_seconds(download_deadline) + STOP_ALLOWANCE_SECONDS
    )
