"""py-spy on the operator during one publish, and the functions its collapsed stacks rank
highest (`--profile PATH`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any


def _frame(frame: str) -> str:
    """`func (path/to/file.py:123)` → `func (file.py)`: one entry per function."""
    name, _, where = frame.partition(" (")
    return f"{name} ({Path(where.rsplit(':', 1)[0]).name})" if where else name


GENERIC_FRAMES = (
    "(base_events.py)",
    "(events.py)",
    "(runners.py)",
    "(<frozen runpy>)",
    "(__main__.py)",
    "(threading.py)",
)
"""Frames under which everything runs: left out of the inclusive ranking."""


def collapsed_profile(path: Path, top: int = 25) -> dict[str, Any]:
    """The functions taking most samples in py-spy's collapsed stacks (`--format raw`): by
    their own samples, and including their callees (the event loop's frames left out)."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in (path.read_text() if path.exists() else "").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count, frames = int(count_text), [_frame(f) for f in stack.split(";")]
        total += count
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            if not frame.endswith(GENERIC_FRAMES) and not frame.startswith("<module>"):
                inclusive[frame] = inclusive.get(frame, 0) + count

    def ranked(table: dict[str, int]) -> list[tuple[str, float]]:
        best = sorted(table.items(), key=lambda kv: -kv[1])[:top]
        return [(frame, round(n / total, 3)) for frame, n in best]

    if not total:
        return {"samples": 0}
    return {"samples": total, "top_self": ranked(own), "top_inclusive": ranked(inclusive)}


@contextlib.asynccontextmanager
async def py_spy(pid: int, output: Path) -> AsyncIterator[dict[str, Any]]:
    """py-spy recording `pid` (on-CPU samples, 100/s, without pausing it) while inside; the
    dict yielded is filled with the top frames afterwards."""
    binary = os.environ.get("PY_SPY") or shutil.which("py-spy")
    if binary is None:
        raise RuntimeError("--profile needs py-spy: pip install py-spy, or set PY_SPY")
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.with_suffix(".log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            binary,
            "record",
            "--pid",
            str(pid),
            "--rate",
            "100",
            "--format",
            "raw",
            "--nonblocking",
            "--output",
            str(output),
            stdout=log,
            stderr=log,
        )
    found: dict[str, Any] = {}
    try:
        await asyncio.sleep(1.0)  # attached
        yield found
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
        await process.wait()
    found.update(collapsed_profile(output))
    found["collapsed_stacks"] = str(output)
