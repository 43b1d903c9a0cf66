"""The api's error model: one JSON shape for every 4xx/5xx, and the handlers that produce it.

Route code raises `ApiError` subclasses that say what the client (or operator) can do next;
FastAPI's own validation errors and Starlette's 404/405 are rewritten into the same `Problem`
shape, so a client parses one format and a person reads one `detail` sentence.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException


class FieldProblem(BaseModel):
    """One invalid input: where it is and what is wrong with it."""

    loc: list[str | int] = Field(description='Path to the value, e.g. ["body", "url"].')
    msg: str = Field(description="What is wrong, in words.")
    type: str = Field(description="Machine-readable error type.")


class Problem(BaseModel):
    """Body of every error response."""

    detail: str = Field(description="What went wrong and what to do about it.")
    errors: list[FieldProblem] | None = Field(
        default=None, description="Per-field problems, for invalid requests."
    )


class ApiError(Exception):
    """An error with its HTTP status and a reason a person can act on."""

    status_code = 400

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers


class Unauthorized(ApiError):
    """No valid caller; the header tells a client how to authenticate."""

    status_code = 401

    def __init__(self, detail: str, *, challenge: str = 'Bearer realm="imagebatch"') -> None:
        super().__init__(detail, headers={"WWW-Authenticate": challenge})


class Forbidden(ApiError):
    """The caller is known but may not do this (RBAC, or its token's namespace)."""

    status_code = 403


class TooManyRequests(ApiError):
    """A per-caller limit is reached; `Retry-After` says when to try again."""

    status_code = 429

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, retry_after))})


class NotFound(ApiError):
    status_code = 404


class Conflict(ApiError):
    status_code = 409


class PayloadTooLarge(ApiError):
    status_code = 413


class UnsupportedMedia(ApiError):
    status_code = 415


class Unprocessable(ApiError):
    status_code = 422


class DependencyUnavailable(ApiError):
    """A server the api needs (RabbitMQ, PostgreSQL, Kubernetes) is missing or down: 503."""

    status_code = 503

    def __init__(self, detail: str, *, retry_after: int | None = 5) -> None:
        headers = {"Retry-After": str(retry_after)} if retry_after else None
        super().__init__(detail, headers=headers)


def problem_response(
    status_code: int,
    detail: str,
    *,
    errors: Sequence[FieldProblem] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = Problem(detail=detail, errors=list(errors) if errors is not None else None)
    return JSONResponse(
        body.model_dump(exclude_none=True), status_code=status_code, headers=headers
    )


def _field_problems(raw: Sequence[Any]) -> list[FieldProblem]:
    problems = []
    for err in raw:
        loc = [p if isinstance(p, int) else str(p) for p in err.get("loc", ())]
        problems.append(
            FieldProblem(loc=loc, msg=str(err.get("msg", "")), type=str(err.get("type", "")))
        )
    return problems


def _summary(problems: Sequence[FieldProblem]) -> str:
    parts = [f"{'.'.join(str(p) for p in pr.loc) or 'request'}: {pr.msg}" for pr in problems[:5]]
    more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
    return "invalid request: " + "; ".join(parts) + more


async def _on_api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return problem_response(exc.status_code, exc.detail, headers=exc.headers)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = _field_problems(exc.errors())
    return problem_response(422, _summary(problems), errors=problems)


UNPARSABLE_BODY = (
    "the body could not be parsed; send UTF-8 JSON, or multipart/form-data for uploads, "
    "as /openapi.json describes"
)


def allowed_methods(request: Request) -> list[str]:
    """Every documented method of this path (Starlette names only the first route's).

    Read from the OpenAPI document, the public contract, so `Allow` and `/openapi.json` agree.
    """
    methods: set[str] = set()
    for template, item in request.app.openapi().get("paths", {}).items():
        pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, request.url.path):
            methods.update(m.upper() for m in item)
    return sorted(methods)


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 400:
        detail = f"{detail.rstrip('.')}: {UNPARSABLE_BODY}"
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(allowed_methods(request))
    return problem_response(exc.status_code, detail, headers=headers or None)


def install_error_handlers(app: FastAPI) -> None:
    """Route every error through `Problem`."""
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for the error codes a route can answer with."""
    descriptions = {
        400: "The body cannot be parsed (not UTF-8 JSON, or broken multipart).",
        401: "No valid caller: send `Authorization: Bearer <token>`.",
        403: "The caller may not do this (Kubernetes RBAC, or its token's namespace).",
        404: "No such resource.",
        409: "Conflicts with an existing resource (e.g. Idempotency-Key reused with another body).",
        413: "The upload is larger than the configured limit.",
        415: "The upload is not an image type the workers can read.",
        422: "The request does not validate; `errors` lists each field.",
        429: "A per-caller limit is reached; retry after `Retry-After` seconds.",
        503: "A server the api depends on (RabbitMQ, PostgreSQL, Kubernetes) is unavailable.",
    }
    return {code: {"model": Problem, "description": descriptions[code]} for code in codes}
