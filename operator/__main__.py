"""`imagebatch-operator` / `python -m imagebatch.operator`: read the settings once, connect,
run kopf for the configured namespaces until SIGTERM or SIGINT, then close everything."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys

import kopf
from prometheus_client import start_http_server

from imagebatch.core.telemetry import OPERATOR_SERVICE, setup_tracing
from imagebatch.operator.context import open_context
from imagebatch.operator.handlers import configure, register
from imagebatch.operator.metrics import OperatorMetrics
from imagebatch.operator.settings import OperatorSettings

log = logging.getLogger("imagebatch.operator")


async def serve(settings: OperatorSettings) -> None:
    """Run until SIGTERM or SIGINT, which kopf itself handles (in the main thread, as here).

    No `stop_flag` of our own: kopf replaces our signal handlers with its own, so such a flag
    would never be set, and at every exit kopf waits 5 s for its task waiting on the flag."""
    otlp = settings.otlp()
    if otlp is not None:
        setup_tracing(settings.otel_service_name or OPERATOR_SERVICE, otlp=otlp)
    metrics = OperatorMetrics()
    server, _thread = start_http_server(
        settings.metrics_port, addr=settings.metrics_host, registry=metrics.registry
    )
    try:
        async with open_context(settings, metrics) as ctx:
            registry = kopf.OperatorRegistry()
            register(registry, ctx)
            namespaces = settings.watch_namespace
            await kopf.operator(
                registry=registry,
                settings=configure(kopf.OperatorSettings()),
                clusterwide=not namespaces,
                namespaces=namespaces,
                liveness_endpoint=f"http://{settings.health_host}:{settings.health_port}/healthz",
                standalone=True,
            )
    finally:
        server.shutdown()


def main() -> int:
    settings = OperatorSettings()
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        asyncio.run(serve(settings))
    except Exception:
        log.exception("operator failed")
        return 1
    log.info("operator stopped")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
