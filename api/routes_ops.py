"""Operational endpoints: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from imagebatch.api.deps import ServicesDep
from imagebatch.api.metrics import CONTENT_TYPE
from imagebatch.api.models import Health, Readiness

router = APIRouter(tags=["operations"])

CHECK_TIMEOUT = 2.0


@router.get("/healthz", response_model=Health, summary="Liveness", operation_id="healthz")
async def healthz() -> Health:
    """The process answers; says nothing about its dependencies (that is /readyz)."""
    return Health(ok=True)


@router.get(
    "/readyz",
    operation_id="readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "A dependency does not answer."}},
    summary="Readiness: PostgreSQL and RabbitMQ answer",
)
async def readyz(services: ServicesDep) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(services.pool.fetchval("SELECT 1"), CHECK_TIMEOUT)
        checks["postgresql"] = "ok"
    except Exception as exc:  # any failure means "not ready", and its text says why
        checks["postgresql"] = f"unavailable: {exc or type(exc).__name__}"
    checks["rabbitmq"] = services.publisher.problem() or "ok"
    ready = all(v == "ok" for v in checks.values())
    body = Readiness(ok=ready, checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@router.get(
    "/metrics",
    operation_id="metrics",
    response_class=Response,
    responses={200: {"description": "Prometheus text format.", "content": {CONTENT_TYPE: {}}}},
    summary="Prometheus metrics",
)
async def metrics(services: ServicesDep) -> Response:
    return Response(services.metrics.render(), media_type=CONTENT_TYPE)
