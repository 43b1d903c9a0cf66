"""`make demo` and `KEDA=1 make demo`, exactly as the README's quick start gives them, run in the
suite so they cannot rot: the example batch succeeds, its workers are scaled from 0 to 1 and back
(by the operator, or by the real KEDA), the thumbnails are where it says, and everything it
started stops."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(600)
@pytest.mark.parametrize("keda", [False, True], ids=["own-scaler", "KEDA=1"])
def test_make_demo_runs_the_example_batch_to_success_and_stops_everything(keda: bool) -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"KUBECONFIG", "KEEP", "KEDA"}}
    if keda:
        env["KEDA"] = "1"
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
    if keda:
        assert "holiday-photos-worker: created at 0 replicas" in output, output[-4000:]
        assert "holiday-photos-worker: replicas 0 → 1 (by KEDA)" in output, output[-4000:]
    scaler = "by KEDA" if keda else "by the operator"
    assert f"holiday-photos-worker: replicas 1 → 0 ({scaler})" in output, output[-4000:]
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
