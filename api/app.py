"""The application factory: `create_app(settings)` wires routes, errors, metrics and tracing.

Connections are opened by the lifespan, not at import or construction time, so building an app
is cheap and side-effect free (tests build many). PostgreSQL must answer within the start-up
timeout (migrations run then); RabbitMQ may come later — the publisher keeps trying and only
publishing endpoints answer 503 meanwhile.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

from imagebatch.api import (
    routes_batch_retry,
    routes_batches,
    routes_images,
    routes_items,
    routes_ops,
    routes_page,
    routes_tasks,
    routes_uploads,
)
from imagebatch.api.access_middleware import WorkAccessMiddleware
from imagebatch.api.auth_middleware import AuthMiddleware, is_open
from imagebatch.api.authenticators import build_authenticator
from imagebatch.api.deps import Services
from imagebatch.api.errors import install_error_handlers, problem_response, responses
from imagebatch.api.kube import BatchClient
from imagebatch.api.limit_middleware import LimitMiddleware
from imagebatch.api.limits import RateLimiter
from imagebatch.api.metrics import ApiMetrics, MetricsMiddleware
from imagebatch.api.publisher import Publisher
from imagebatch.api.settings import ApiSettings
from imagebatch.core.db import create_pool, migrate
from imagebatch.core.errors import DependencyDown
from imagebatch.core.objectstore import Buckets
from imagebatch.core.startup import retry_until
from imagebatch.core.stores import open_store

log = logging.getLogger(__name__)

DATABASE_DOWN = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InterfaceError,
)
"""Errors that mean PostgreSQL is unreachable rather than that a query is wrong."""

DESCRIPTION = """\
Thumbnails for single images (`POST /tasks`, `POST /uploads`), for the seed table
(`POST /enqueue`) and for whole batches (`/batches`, ImageBatch resources of the cluster).
Every error has the body `{"detail": "...", "errors": [...]}`; 503 means a server the api
depends on is unavailable, and says which. Every route but `/healthz`, `/readyz` and `/metrics`
needs `Authorization: Bearer <token>` unless the api runs with `AUTH_MODE=none` (401 otherwise).
"""


async def open_database(settings: ApiSettings) -> asyncpg.Pool:
    """Apply migrations and open the pool, waiting up to the start-up timeout for PostgreSQL."""

    async def attempt() -> asyncpg.Pool:
        await migrate(settings.database_url)
        return await create_pool(settings.database_url, min_size=1, max_size=10)

    try:
        return await retry_until(
            "PostgreSQL", attempt, DATABASE_DOWN, settings.startup_timeout_seconds
        )
    except DATABASE_DOWN as exc:
        raise RuntimeError(
            f"PostgreSQL did not answer within {settings.startup_timeout_seconds:g}s: {exc}"
        ) from exc


def document_security(app: FastAPI) -> None:
    """Tell OpenAPI readers that every route but the open ones takes a bearer token and may
    answer 401 (the gate is a middleware, which FastAPI's schema cannot see)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = generate()
        schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
        schemes["bearer"] = {
            "type": "http",
            "scheme": "bearer",
            "description": "A Kubernetes token (AUTH_MODE=kubernetes) or a static token "
            "(AUTH_MODE=token); nothing with AUTH_MODE=none.",
        }
        unauthorized = responses(401)[401]
        problem = {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
        for path, item in schema.get("paths", {}).items():
            if is_open(path):
                continue
            for operation in item.values():
                operation["security"] = [{"bearer": []}]
                operation["responses"].setdefault(
                    "401", {"description": unauthorized["description"], "content": problem}
                )
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(settings: ApiSettings) -> FastAPI:
    """A ready-to-serve application for `settings`.

    Raises `AuthConfigError` when callers cannot be authenticated as configured (no tokens file,
    no cluster to review tokens): the api never starts open by accident.
    """
    metrics = ApiMetrics()
    batches = BatchClient(settings)
    authenticator = build_authenticator(settings, batches)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await open_database(settings)
        publisher = Publisher(
            settings,
            confirm_timeout=settings.publish_timeout_seconds,
            retry_every=settings.broker_retry_seconds,
        )
        try:
            await publisher.start()
            buckets = Buckets(settings)
            app.state.services = Services(
                settings,
                pool,
                publisher,
                metrics,
                batches,
                outputs=open_store(settings.output_location, buckets),
                uploads=open_store(settings.uploads_location, buckets, what="uploads"),
                buckets=buckets,
            )
            yield
        finally:
            app.state.services = None
            await publisher.close()
            await pool.close()
            batches.close()

    app = FastAPI(
        title="ImageBatch API",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    install_error_handlers(app)
    document_security(app)

    async def on_database_down(request: Request, exc: Exception) -> JSONResponse:
        return problem_response(
            503,
            f"PostgreSQL is unavailable: {exc or type(exc).__name__}",
            headers={"Retry-After": "5"},
        )

    for error in DATABASE_DOWN:
        app.add_exception_handler(error, on_database_down)

    async def on_dependency_down(request: Request, exc: Exception) -> JSONResponse:
        return problem_response(503, str(exc), headers={"Retry-After": "5"})

    app.add_exception_handler(DependencyDown, on_dependency_down)

    app.include_router(routes_ops.router)
    app.include_router(routes_tasks.build_router(settings))
    app.include_router(routes_uploads.router)
    app.include_router(routes_images.router)
    app.include_router(routes_batches.router)
    app.include_router(routes_batch_retry.router)
    app.include_router(routes_items.router)
    app.include_router(routes_page.router)
    app.mount("/static", routes_page.static_files(), name="static")

    app.add_middleware(routes_uploads.UploadLimitMiddleware, max_bytes=settings.max_upload_bytes)
    app.add_middleware(
        LimitMiddleware,
        requests=RateLimiter(settings.rate_limit_per_minute, "tasks, uploads and enqueues"),
        upload_bytes=RateLimiter(settings.upload_bytes_per_minute, "upload bytes"),
    )
    app.add_middleware(
        WorkAccessMiddleware,
        review=batches.may_create_batches,
        default_namespace=settings.kube_namespace,
        cache_seconds=settings.auth_cache_seconds,
    )
    app.add_middleware(
        AuthMiddleware, authenticator=authenticator, page=routes_page.PAGE_DIR / "index.html"
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics, root=app)
    FastAPIInstrumentor.instrument_app(app, excluded_urls="/healthz$,/readyz$,/metrics$,/static/")
    return app
