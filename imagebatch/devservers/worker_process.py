"""Workers as real processes (`python -m imagebatch.worker`), configured from a `WorkerSettings`
through the environment, for the tests that signal, kill or starve them and the benchmarks that
time them: started, waited on until /readyz answers, signalled, waited for or killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from pathlib import Path

import aiohttp
from pydantic import BaseModel

from imagebatch.devservers.process import free_port, spawn_module
from imagebatch.worker.settings import WorkerSettings


def settings_env(settings: BaseModel) -> dict[str, str]:
    """The environment that makes `WorkerSettings()` read back these settings."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump(mode="json").items():
        if value is None:
            continue
        if isinstance(value, bool):
            env[name.upper()] = "true" if value else "false"
        elif isinstance(value, list | dict):
            env[name.upper()] = json.dumps(value)
        else:
            env[name.upper()] = str(value)
    return env


class WorkerProcess:
    """One worker process; its output goes to `log` (shown when a test fails)."""

    def __init__(self, settings: WorkerSettings, log: Path) -> None:
        if settings.metrics_port == 0:
            settings = settings.model_copy(update={"metrics_port": free_port()})
        self.settings = settings
        self.log = log
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> WorkerProcess:
        self.process = await spawn_module(
            "imagebatch.worker", log=self.log, env=settings_env(self.settings), cwd=self.log.parent
        )
        return self

    async def ready(self) -> bool:
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://127.0.0.1:{self.settings.metrics_port}/readyz") as response,
            ):
                return response.status == 200
        except aiohttp.ClientError:
            return False

    async def wait_ready(self, within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        while not await self.ready():
            assert self.process is not None
            if self.process.returncode is not None or time.monotonic() > deadline:
                raise AssertionError(f"worker not ready; log:\n{self.log.read_text()[-4000:]}")
            await asyncio.sleep(0.1)

    def signal(self, signum: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    async def wait(self, within: float = 30.0) -> int:
        assert self.process is not None
        try:
            async with asyncio.timeout(within):
                return await self.process.wait()
        except TimeoutError as exc:
            self.process.kill()
            await self.process.wait()
            log = self.log.read_text()[-4000:]
            raise AssertionError(f"worker did not exit; log:\n{log}") from exc

    async def close(self) -> None:
        """Make sure the process is gone (a test that failed half-way)."""
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()
