"""`make demo`, exactly as the README's quick start gives it, runs in the suite so it cannot rot:
the example batch succeeds, the thumbnails are where it says, and everything it started stops."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(600)
def test_make_demo_runs_the_example_batch_to_success_and_stops_everything() -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"KUBECONFIG", "KEEP"}}
    result = subprocess.run(
        ["make", "--no-print-directory", "demo"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert re.search(r"holiday-photos\s+Succeeded\s+6/6\s+6\s+0\s+0\s", output), output[-4000:]
    assert "[##############################] 6/6" in output
    found = re.search(r"demo: (\d+) thumbnails in (\S+):", output)
    assert found is not None, output[-4000:]
    count, folder = int(found.group(1)), Path(found.group(2))
    assert count == 12, "two operations for each of the six images"
    assert len([p for p in folder.rglob("*") if p.is_file()]) == 12
    assert processes_working_in(REPO / ".cache" / "demo") == [], "the demo stopped all it ran"


def processes_working_in(folder: Path) -> list[int]:
    """Processes whose working folder is inside `folder` (the demo runs its services there)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cwd = (proc / "cwd").resolve()
        except OSError:
            continue
        if cwd == folder or folder in cwd.parents:
            found.append(int(proc.name))
    return found
