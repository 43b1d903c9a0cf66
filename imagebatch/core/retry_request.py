"""Asking the operator to retry a batch's failed items: the annotation and its values.

The operator acts on each new value of `imagejobs.io/retry-failed` once (DESIGN.md, "Batch
operations"); the api's `POST /batches/{name}/retry` and `kubectl imagebatch retry` set it.
A value is the time of the request plus a short random suffix, so two requests in the same
second are still two requests, and `status.lastRetry.request` tells a person when it was asked.
"""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

RETRY_FAILED_ANNOTATION = "imagejobs.io/retry-failed"


def new_retry_request(now: dt.datetime | None = None) -> str:
    """A fresh value: an RFC 3339 UTC timestamp and 6 random hex digits, e.g.
    `2026-12-07T02:10:33Z-3f9a1c`."""
    moment = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    return f"{moment.strftime('%Y-%m-%dT%H:%M:%SZ')}-{secrets.token_hex(3)}"


def retry_patch(value: str) -> dict[str, Any]:
    """The merge patch that sets the annotation to `value` and touches nothing else."""
    return {"metadata": {"annotations": {RETRY_FAILED_ANNOTATION: value}}}
