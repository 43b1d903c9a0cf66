"""`imagebatch-api` / `python -m imagebatch.api`: read the settings once, trace, serve."""

from __future__ import annotations

import logging

import uvicorn
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

from imagebatch.api.app import create_app
from imagebatch.api.settings import ApiSettings
from imagebatch.core.telemetry import setup_tracing


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = ApiSettings()
    provider = setup_tracing(
        settings.otel_service_name or "imagebatch-api",
        otlp_endpoint=settings.otel_exporter_otlp_endpoint,
    )
    AsyncPGInstrumentor().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]
    try:
        uvicorn.run(
            create_app(settings),
            host=settings.host,
            port=settings.port,
            proxy_headers=True,
            log_level="info",
        )
    finally:
        provider.shutdown()  # flush the spans still queued for export


if __name__ == "__main__":
    main()
