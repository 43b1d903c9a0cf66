"""GET/POST /batches and GET /batches/{name}: ImageBatch resources of the configured cluster."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from imagebatch.api.deps import ServicesDep
from imagebatch.api.errors import responses
from imagebatch.core.imagebatch import (
    DNS_LABEL,
    Batch,
    BatchCreate,
    BatchList,
    batch_view,
)

router = APIRouter(tags=["batches"])

Namespace = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=63,
        pattern=DNS_LABEL,
        description="Namespace of the batches (default: the api's KUBE_NAMESPACE).",
    ),
]


@router.get(
    "/batches",
    operation_id="listBatches",
    response_model=BatchList,
    responses=responses(422, 503),
    summary="ImageBatch resources and their progress",
)
async def list_batches(services: ServicesDep, namespace: Namespace = None) -> BatchList:
    ns = namespace or services.settings.kube_namespace
    items = await services.batches.list(ns)
    batches = sorted((batch_view(i) for i in items), key=lambda b: b.name)
    return BatchList(namespace=ns, items=batches)


@router.post(
    "/batches",
    operation_id="createBatch",
    status_code=201,
    response_model=Batch,
    responses=responses(400, 404, 409, 422, 503),
    summary="Create an ImageBatch",
)
async def create_batch(body: BatchCreate, response: Response, services: ServicesDep) -> Batch:
    """Create the resource; the operator takes it from there. 409 if the name is taken."""
    ns = body.metadata.namespace or services.settings.kube_namespace
    created = await services.batches.create(ns, body.manifest(ns))
    view = batch_view(created)
    response.headers["Location"] = f"/batches/{view.name}?namespace={ns}"
    return view


@router.get(
    "/batches/{name}",
    operation_id="getBatch",
    response_model=Batch,
    responses=responses(404, 422, 503),
    summary="One ImageBatch",
)
async def get_batch(
    name: Annotated[str, Path(min_length=1, max_length=63, pattern=DNS_LABEL)],
    services: ServicesDep,
    namespace: Namespace = None,
) -> Batch:
    ns = namespace or services.settings.kube_namespace
    return batch_view(await services.batches.get(ns, name))
