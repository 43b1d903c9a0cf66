"""The worker's small HTTP server: liveness, readiness and Prometheus metrics.

`/healthz` answers while the event loop runs (a wedged loop fails the probe); `/readyz` answers
200 only while the worker consumes — not before it has connected, not while the broker
connection is being restored, not while a dependency of ours (PostgreSQL, the output store, the
disk) is down, not once SIGTERM started draining — so Kubernetes knows when it is doing work.
A 503 says why in `reason`.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


class HealthServer:
    """Serves /healthz, /readyz and /metrics on `host:port` (port 0: any free port)."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        registry: CollectorRegistry,
        ready: Callable[[], bool],
        reason: Callable[[], str | None] | None = None,
    ) -> None:
        self._host = host
        self._port = port
        self._registry = registry
        self._ready = ready
        self._reason = reason
        self._runner: web.AppRunner | None = None
        self.port = port

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        return app

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def _readyz(self, _request: web.Request) -> web.Response:
        ready = self._ready()
        body: dict[str, object] = {"ready": ready}
        if not ready and self._reason is not None:
            body["reason"] = self._reason()
        return web.json_response(body, status=200 if ready else 503)

    async def _metrics(self, _request: web.Request) -> web.Response:
        body = generate_latest(self._registry)
        response = web.Response(body=body)
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    async def start(self) -> None:
        self._runner = web.AppRunner(self._app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        for address in self._runner.addresses:
            self.port = int(address[1])
            break

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
