"""The long-lived objects routes work with, built by the app's lifespan and injected per request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import asyncpg
from fastapi import Depends, Request

from imagebatch.api.auth import Caller
from imagebatch.api.auth_middleware import caller_of
from imagebatch.api.errors import DependencyUnavailable, Unauthorized
from imagebatch.api.kube import BatchClient
from imagebatch.api.metrics import ApiMetrics
from imagebatch.api.publisher import Publisher
from imagebatch.api.settings import ApiSettings
from imagebatch.core.objectstore import Buckets
from imagebatch.core.stores import Store


@dataclass(frozen=True)
class Services:
    """Everything a request handler may need; one instance per running app."""

    settings: ApiSettings
    pool: asyncpg.Pool
    publisher: Publisher
    metrics: ApiMetrics
    batches: BatchClient
    outputs: Store
    """Where workers write thumbnails (OUTPUT_URL)."""
    uploads: Store
    """Where uploaded originals go (UPLOADS_URL)."""
    buckets: Buckets
    """Clients of the buckets outputs name (a batch's spec.output.url may differ from ours)."""


def get_services(request: Request) -> Services:
    services: Services | None = getattr(request.app.state, "services", None)
    if services is None:
        raise DependencyUnavailable("the api is still starting")
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_caller(request: Request) -> Caller:
    """The caller `AuthMiddleware` found (every route but the open ones has one)."""
    caller = caller_of(request.scope)
    if caller is None:
        raise Unauthorized("this api needs a caller: send `Authorization: Bearer <token>`")
    return caller


CallerDep = Annotated[Caller, Depends(get_caller)]
