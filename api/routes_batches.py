"""GET/POST /batches and GET /batches/{name}: ImageBatch resources of the configured cluster."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from imagebatch.api.auth import Caller, NamespaceRefused, batch_namespace
from imagebatch.api.deps import CallerDep, ServicesDep
from imagebatch.api.errors import Forbidden, responses
from imagebatch.core.imagebatch import (
    DNS_LABEL,
    Batch,
    BatchCreate,
    BatchList,
    batch_view,
)

router = APIRouter(tags=["batches"])


def namespace_for(caller: Caller, requested: str | None, services: ServicesDep) -> str:
    """The namespace of this call; 403 when the caller's token is bound to another one."""
    namespace = batch_namespace(caller, requested, services.settings.kube_namespace)
    if isinstance(namespace, NamespaceRefused):
        raise Forbidden(namespace.detail)
    return namespace


BatchNamePath = Annotated[str, Path(min_length=1, max_length=63, pattern=DNS_LABEL)]
"""An ImageBatch's name in a route's path: a DNS label, as Kubernetes names it."""

Namespace = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=63,
        pattern=DNS_LABEL,
        description=(
            "Namespace of the batches (default: the caller's token's namespace, a "
            "ServiceAccount's own, else the api's KUBE_NAMESPACE)."
        ),
    ),
]


@router.get(
    "/batches",
    operation_id="listBatches",
    response_model=BatchList,
    responses=responses(403, 422, 503),
    summary="ImageBatch resources and their progress",
)
async def list_batches(
    services: ServicesDep, caller: CallerDep, namespace: Namespace = None
) -> BatchList:
    ns = namespace_for(caller, namespace, services)
    items = await services.batches.list(ns, caller=caller)
    batches = sorted((batch_view(i) for i in items), key=lambda b: b.name)
    return BatchList(namespace=ns, items=batches)


@router.post(
    "/batches",
    operation_id="createBatch",
    status_code=201,
    response_model=Batch,
    responses=responses(400, 403, 404, 409, 422, 503),
    summary="Create an ImageBatch",
)
async def create_batch(
    body: BatchCreate, response: Response, services: ServicesDep, caller: CallerDep
) -> Batch:
    """Create the resource; the operator takes it from there. 409 if the name is taken."""
    ns = namespace_for(caller, body.metadata.namespace, services)
    created = await services.batches.create(ns, body.manifest(ns), caller=caller)
    view = batch_view(created)
    response.headers["Location"] = f"/batches/{view.name}?namespace={ns}"
    return view


@router.get(
    "/batches/{name}",
    operation_id="getBatch",
    response_model=Batch,
    responses=responses(403, 404, 422, 503),
    summary="One ImageBatch",
)
async def get_batch(
    name: BatchNamePath,
    services: ServicesDep,
    caller: CallerDep,
    namespace: Namespace = None,
) -> Batch:
    ns = namespace_for(caller, namespace, services)
    return batch_view(await services.batches.get(ns, name, caller=caller))
