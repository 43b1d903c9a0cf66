"""Starting, waiting on and stopping server processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import ClassVar, Self


class ServerStartError(RuntimeError):
    """A server did not become ready; the message includes the tail of its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def find_binary(name: str, *extra_dirs: str | Path) -> str | None:
    """The first executable called `name` in `extra_dirs`, then on PATH."""
    for folder in extra_dirs:
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which(name)


def find_cached(*, env: str, cache: str, needs: Sequence[str], what: str, make: str) -> Path:
    """The folder holding every file or folder in `needs`: `$env` when it is set, else the newest
    build in `$XDG_CACHE_HOME/imagebatch/<cache>/` (where `make <make>` puts one), or an error
    that says how to build it.

    One search for every Go-built server (envtest, KEDA, versitygw, Jaeger): the hack/ build
    scripts cache each version in its own subfolder, so the newest name wins.
    """
    candidates: list[Path] = []
    if os.environ.get(env):
        candidates.append(Path(os.environ[env]))
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "imagebatch" / cache
    if root.is_dir():
        candidates += sorted(root.iterdir(), reverse=True)
    for folder in candidates:
        if all((folder / name).exists() for name in needs):
            return folder
    raise ServerStartError(
        f"{what} not found in {env} or {root}: run `make {make}` to build it from the Go "
        "module proxy"
    )


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def spawn(
    argv: Sequence[str], *, log: Path, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start `argv` in its own session (so the whole group can be stopped), output into `log`."""
    with log.open("ab") as out:
        return subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )


async def spawn_module(
    module: str, *, log: Path, env: Mapping[str, str], cwd: Path, new_session: bool = False
) -> asyncio.subprocess.Process:
    """`python -m module` with os.environ + `env`, unbuffered, its output appended to `log`;
    `new_session` puts it in a process group of its own (stopped or killed as a whole)."""
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
            cwd=cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=new_session,
        )


def wait_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    process: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
    interval: float = 0.1,
) -> None:
    """Poll `check` until it is true; fail early if `process` exits, and show its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            tail = log_tail(log) if log else ""
            raise ServerStartError(f"{what} exited with {process.returncode} before ready:\n{tail}")
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(interval)
    tail = log_tail(log) if log else ""
    raise ServerStartError(f"{what} not ready after {timeout:.0f}s:\n{tail}")


def stop_group(process: subprocess.Popen[bytes] | None, *, timeout: float = 20.0) -> None:
    """SIGTERM the process group, then SIGKILL what is left after `timeout`."""
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def http_ok(url: str, *, timeout: float = 1.0) -> bool:
    """Whether `url` answers 200 right now (False when nothing listens yet)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def tcp_open(host: str, port: int) -> bool:
    with socket.create_connection((host, port), timeout=0.5):
        return True


class ThrowawayServer:
    """A server that is started, used and then removed with its data: `with Server() as s:`.

    A start that fails half-way still removes what it started, so no process outlives a failed
    fixture.
    """

    def start(self) -> Self:
        raise NotImplementedError

    def close(self) -> None:
        """Stop every process and remove the server's data."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class OneProcessServer(ThrowawayServer):
    """A throwaway server that is one process group (`_process`) keeping its data under `base`:
    `stop()` leaves the data so that `start()` brings the same server back, `close()` removes
    it too."""

    base: Path
    _process: subprocess.Popen[bytes] | None
    stop_timeout: ClassVar[float] = 10.0
    """Seconds between SIGTERM and SIGKILL."""

    def stop(self) -> None:
        """SIGTERM the process group (SIGKILL after `stop_timeout`)."""
        stop_group(self._process, timeout=self.stop_timeout)
        self._process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)
