"""`imagebatch-api` / `python -m imagebatch.api`: read the settings once, trace, serve.

SIGTERM and SIGINT stop uvicorn gracefully (in-flight requests finish); the process then flushes
its spans and exits 0, as a pod's main process should.
"""

from __future__ import annotations

import logging
import signal
from types import FrameType

import uvicorn
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from pydantic import ValidationError

from imagebatch.api.app import create_app
from imagebatch.api.authenticators import AuthConfigError
from imagebatch.api.settings import ApiSettings
from imagebatch.core.telemetry import API_SERVICE, setup_tracing


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    """Outside uvicorn's own handling (before it starts, or when it re-raises the signal it
    handled after shutting down), a stop signal ends the process normally."""
    raise SystemExit(0)


def read_settings() -> ApiSettings:
    """The settings from the environment; a wrong value stops start-up naming its variable."""
    try:
        return ApiSettings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" for err in exc.errors()
        )
        raise SystemExit(f"imagebatch-api: invalid settings: {problems}") from None


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = read_settings()
    provider = setup_tracing(settings.otel_service_name or API_SERVICE, otlp=settings.otlp())
    AsyncPGInstrumentor().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, _exit_cleanly)
    try:
        app = create_app(settings)
    except AuthConfigError as exc:
        provider.shutdown()
        raise SystemExit(f"imagebatch-api: {exc}") from None
    try:
        uvicorn.run(
            app,
            host=settings.host,
            port=settings.port,
            proxy_headers=True,
            log_level="info",
        )
    finally:
        provider.shutdown()  # flush the spans still queued for export


if __name__ == "__main__":
    main()
