"""What each `kubectl imagebatch` command does, given a cluster, the api (when named) and where
to write. Each returns the command's exit code: 0 done, 1 the answer is "no" (the batch Failed,
no manifest yet); errors raise `PluginError` (exit 2)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from imagebatch.core.progressbar import ProgressCounts, RateMeter, progress_line
from imagebatch.core.retry_request import RETRY_FAILED_ANNOTATION, new_retry_request, retry_patch

if TYPE_CHECKING:  # httpx is imported only when the api is asked
    from imagebatch.kubectl.api_client import ImageBatchApi

BAR_WIDTH = 30
CLEAR_TO_END = "\x1b[K"


class Batches(Protocol):
    namespace: str

    def get(self, name: str) -> dict[str, Any]: ...

    def patch(self, name: str, patch: dict[str, Any]) -> dict[str, Any]: ...


def _status(obj: dict[str, Any]) -> dict[str, Any]:
    status = obj.get("status")
    return status if isinstance(status, dict) else {}


def watch(
    batches: Batches,
    name: str,
    out: TextIO,
    *,
    interval: float = 1.0,
    live: bool = False,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Show the batch's progress until it is Succeeded (0) or Failed (1).

    `live` (a terminal) redraws one line in place; otherwise a line is printed whenever it
    changes, so a log or a pipe gets a readable history.
    """
    meter, shown = RateMeter(), ""
    while True:
        counts = ProgressCounts.from_status(_status(batches.get(name)))
        line = progress_line(counts, meter.observe(counts.done, clock()), BAR_WIDTH)
        if live:
            out.write(f"\r{line}{CLEAR_TO_END}")
            out.flush()
        elif line != shown:
            out.write(line + "\n")
            out.flush()
        shown = line
        if counts.finished:
            if live:
                out.write("\n")
            return 0 if counts.phase == "Succeeded" else 1
        sleep(interval)


def retry(batches: Batches, name: str, out: TextIO) -> int:
    """Set `imagejobs.io/retry-failed` to a fresh value; the operator does the rest."""
    value = new_retry_request()
    patched = batches.patch(name, retry_patch(value))
    failed = ProgressCounts.from_status(_status(patched)).failed
    out.write(
        f"imagebatch {name}: retry of its failed items requested ({failed} failed now), "
        f"{RETRY_FAILED_ANNOTATION}={value}\n"
    )
    return 0


def _reasons(status: dict[str, Any]) -> list[tuple[str, int]]:
    found = []
    for entry in status.get("failureReasons") or []:
        if isinstance(entry, dict) and isinstance(entry.get("reason"), str):
            count = entry.get("count")
            found.append((entry["reason"], count if isinstance(count, int) else 0))
    return found


def _table(rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def _one_line(text: Any) -> str:
    return re.sub(r"\s+", " ", str(text)).strip() if text is not None else ""


def failures(batches: Batches, name: str, out: TextIO, api: ImageBatchApi | None = None) -> int:
    """The reasons the batch's items failed, with their counts (status.failureReasons); with the
    api, every failed item too."""
    status = _status(batches.get(name))
    counts = ProgressCounts.from_status(status)
    out.write(
        f"imagebatch {name}: {counts.failed} failed of {counts.total} "
        f"({counts.phase or 'Pending'})\n"
    )
    reasons = _reasons(status)
    if reasons:
        rows = [("REASON", "COUNT"), *((r, str(c)) for r, c in reasons)]
        out.writelines(line + "\n" for line in _table(rows))
    elif counts.failed:
        out.write("no reasons reported yet (status.failureReasons)\n")
    if api is None:
        return 0
    out.write("\nID\tATTEMPTS\tERROR\tURL\n")
    for item in api.failed_items(name):
        fields = (item.get("id"), item.get("attempts"), item.get("error"), item.get("url"))
        out.write("\t".join(_one_line(f) for f in fields) + "\n")
    return 0


def manifest(
    batches: Batches, name: str, out: TextIO, err: TextIO, api: ImageBatchApi | None = None
) -> int:
    """Where the batch's manifest is (status.manifest); with the api, its lines."""
    where = _status(batches.get(name)).get("manifest")
    if not isinstance(where, str) or not where:
        err.write(f"imagebatch {name}: no manifest yet (it is written when the batch ends)\n")
        return 1
    if api is None:
        out.write(where + "\n")
        return 0
    for line in api.manifest_lines(name):
        out.write(line + "\n")
    return 0
