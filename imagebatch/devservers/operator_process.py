"""The operator as a real process (`python -m imagebatch.operator`), for the demo, the tests and
the benchmark: started with an environment, waited on until its /healthz answers, stopped with
SIGTERM — or killed with SIGKILL, which is what the restart tests do to it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Mapping
from pathlib import Path

from imagebatch.devservers.process import free_port, http_ok, spawn_module


class OperatorProcess:
    """One operator; `env` holds its settings (DATABASE_URL, RABBIT_URL, KUBECONFIG, ...)."""

    def __init__(self, env: Mapping[str, str], log: Path) -> None:
        self.health_port = int(env.get("HEALTH_PORT") or free_port())
        self.metrics_port = int(env.get("METRICS_PORT") or free_port())
        self.env = {
            "HEALTH_HOST": "127.0.0.1",
            "METRICS_HOST": "127.0.0.1",
            **env,
            "HEALTH_PORT": str(self.health_port),
            "METRICS_PORT": str(self.metrics_port),
        }
        self.log = log
        self.process: asyncio.subprocess.Process | None = None

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.health_port}/healthz"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    async def start(self, *, within: float = 60.0) -> OperatorProcess:
        self.process = await spawn_module(
            "imagebatch.operator",
            log=self.log,
            env={**self.env, "PYTHONSAFEPATH": "1"},
            cwd=self.log.parent,
            new_session=True,
        )
        await self.wait_healthy(within)
        return self

    async def wait_healthy(self, within: float) -> None:
        deadline = time.monotonic() + within
        while not await asyncio.to_thread(http_ok, self.health_url):
            assert self.process is not None
            if self.process.returncode is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace")[-4000:]
                raise RuntimeError(f"the operator did not become healthy; log:\n{tail}")
            await asyncio.sleep(0.2)

    async def kill(self) -> None:
        """SIGKILL, as a node failure or an OOM kill would end it: no clean-up at all."""
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            await self.process.wait()

    async def stop(self, *, within: float = 30.0) -> int | None:
        """SIGTERM and wait (SIGKILL after `within`); returns the exit code."""
        if self.process is None:
            return None
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(within):
                    await self.process.wait()
            except TimeoutError:
                await self.kill()
        return self.process.returncode
