"""`make demo`, `KEDA=1 make demo` and `S3=1 make demo`, exactly as the README's quick start gives
them, run in the suite so they cannot rot: the example batch succeeds, its workers are scaled from
0 to 1 and back (by the operator, or by the real KEDA), the thumbnails are where it says (a folder,
or a bucket on a throwaway S3 server), and everything it started stops."""

from __future__ import annotations

import os
import re
import socket
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(600)
@pytest.mark.parametrize("keda", [False, True], ids=["own-scaler", "KEDA=1"])
def test_make_demo_runs_the_example_batch_to_success_and_stops_everything(keda: bool) -> None:
    result = make_demo(KEDA="1") if keda else make_demo()
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
        # The demo polls, so KEDA may scale a Deployment up before the demo first sees it (a
        # loaded machine saw holiday-photos at 1 first); of its two batches, one shows it all.
        # That the operator creates it at 0 is tests/k8s/test_operator_keda.py's to prove.
        assert re.search(
            r"(\S+)-worker: created at 0 replicas.*\1-worker: replicas 0 → 1 \(by KEDA\)",
            output,
            re.S,
        ), output[-4000:]
    scaler = "by KEDA" if keda else "by the operator"
    assert f"holiday-photos-worker: replicas 1 → 0 ({scaler})" in output, output[-4000:]
    assert processes_working_in(REPO / ".cache" / "demo") == [], "the demo stopped all it ran"


@pytest.mark.timeout(600)
def test_s3_make_demo_puts_the_thumbnails_in_a_bucket_and_says_where() -> None:
    result = make_demo(S3="1")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert re.search(r"holiday-photos\s+Succeeded\s+6/6\s+6\s+0\s+0\s", output), output[-4000:]
    assert "demo: status.output: s3://imagebatch-demo/thumbnails/holiday-photos/" in output, output[
        -4000:
    ]
    found = re.search(
        r"demo: (\d+) thumbnails in s3://imagebatch-demo/thumbnails/ at http://127\.0\.0\.1:(\d+):",
        output,
    )
    assert found is not None, output[-4000:]
    assert int(found.group(1)) == 12, "two operations for each of the six images"
    keys = re.findall(r"demo:   (thumbnails/holiday-photos/\S+)", output)
    assert len(keys) == 12
    assert {k.rsplit(".", 1)[1] for k in keys} == {"jpg", "webp"}
    assert "aws s3 ls --recursive s3://imagebatch-demo/thumbnails/" in output
    assert not any(p.is_file() for p in (REPO / ".cache" / "demo" / "data").rglob("*"))
    assert processes_working_in(REPO / ".cache" / "demo") == [], "the demo stopped all it ran"
    assert refuses_connections(int(found.group(2))), "the S3 server stopped too"


def make_demo(**variables: str) -> subprocess.CompletedProcess[str]:
    """`make demo` with `variables` (KEDA=1, S3=1) and none of the caller's demo settings."""
    drop = {"KUBECONFIG", "KEEP", "KEDA", "S3"}
    env = {k: v for k, v in os.environ.items() if k not in drop} | variables
    return subprocess.run(
        ["make", "--no-print-directory", "demo"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )


def refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return True
    return False


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
