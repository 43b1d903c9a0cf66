"""The dev-only restart wrapper Tilt puts in front of the services (deploy/docker/rerun.sh, in the
image as `imagebatch-rerun`): `--restart` runs the command again in the same container, so files
live_update synced stay; SIGTERM still reaches the service, and the wrapper exits with its status,
so a worker's graceful drain-and-exit-0 is what Kubernetes sees."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
WRAPPER = REPO / "deploy" / "docker" / "rerun.sh"

# A stand-in service: appends "start <pid>" to a log, exits 0 on SIGTERM like the worker does.
SERVICE = """
import os, signal, sys, time
log = sys.argv[1]
with open(log, "a") as f:
    f.write(f"start {os.getpid()}\\n")
def stop(*_):
    with open(log, "a") as f:
        f.write(f"stop {os.getpid()}\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
while True:
    time.sleep(0.05)
"""


@dataclass
class Wrapped:
    process: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str]

    def events(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def restart(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["sh", str(WRAPPER), "--restart"],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        )


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.fixture
def wrapped(tmp_path: Path) -> Iterator[Wrapped]:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    log = tmp_path / "service.log"
    process = subprocess.Popen(
        ["sh", str(WRAPPER), sys.executable, "-c", SERVICE, str(log)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    handle = Wrapped(process, log, env)
    try:
        wait_for(lambda: len(handle.events()) == 1)
        yield handle
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def test_restart_stops_the_service_and_runs_it_again(wrapped: Wrapped) -> None:
    first = wrapped.events()[0].split()[1]

    result = wrapped.restart()

    assert result.returncode == 0, result.stderr
    wait_for(lambda: len(wrapped.events()) == 3)
    assert wrapped.events()[1] == f"stop {first}"
    second = wrapped.events()[2].split()[1]
    assert wrapped.events()[2].startswith("start ")
    assert second != first
    assert wrapped.process.poll() is None, "the wrapper (the container's PID 1) keeps running"


def test_sigterm_reaches_the_service_and_its_exit_status_is_the_wrappers(wrapped: Wrapped) -> None:
    wrapped.restart()
    wait_for(lambda: len(wrapped.events()) == 3)
    current = wrapped.events()[2].split()[1]

    wrapped.process.send_signal(signal.SIGTERM)

    assert wrapped.process.wait(timeout=10) == 0
    assert wrapped.events()[-1] == f"stop {current}"


def test_a_service_that_exits_by_itself_ends_the_wrapper_with_its_status(tmp_path: Path) -> None:
    result = subprocess.run(
        ["sh", str(WRAPPER), sys.executable, "-c", "raise SystemExit(3)"],
        env={**os.environ, "TMPDIR": str(tmp_path)},
        capture_output=True,
        check=False,
        timeout=10,
    )

    assert result.returncode == 3


def test_restart_without_a_wrapped_service_says_so(tmp_path: Path) -> None:
    result = subprocess.run(
        ["sh", str(WRAPPER), "--restart"],
        env={**os.environ, "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
        timeout=10,
    )

    assert result.returncode == 1
    assert "no process to restart" in result.stderr
