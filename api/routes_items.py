"""GET /batches/{name}/items and GET /batches/{name}/manifest: a batch's items from PostgreSQL.

The rows are ours, but who may see them is decided by the ImageBatch: each call first reads the
resource as the caller (RBAC in kubernetes mode, the token's namespace in token mode), so a
caller who may not read the batch sees none of its items, and a batch that does not exist is a
404 even when rows of an earlier one with its name remain.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from imagebatch.api.deps import CallerDep, ServicesDep
from imagebatch.api.errors import responses
from imagebatch.api.routes_batches import BatchNamePath, Namespace, namespace_for
from imagebatch.core.batch_items import MAX_PAGE, ItemsPage, all_items, csv_text, items_page
from imagebatch.core.jobs import JobStatus

router = APIRouter(tags=["batches"])

CSV = "text/csv"
JSONL = "application/jsonl"


def wants_csv(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return any(part.split(";")[0].strip().lower() == CSV for part in accept.split(","))


@router.get(
    "/batches/{name}/items",
    operation_id="listBatchItems",
    response_model=ItemsPage,
    responses={
        **responses(403, 404, 422, 503),
        200: {
            "description": "A page of items in id order (JSON, or CSV with `Accept: text/csv`; "
            "the next page's cursor is also in the `Link` header, rel=next)",
            "content": {CSV: {"schema": {"type": "string"}}},
        },
    },
    summary="A batch's items, a page at a time",
)
async def list_items(
    name: BatchNamePath,
    request: Request,
    services: ServicesDep,
    caller: CallerDep,
    namespace: Namespace = None,
    status: Annotated[JobStatus | None, Query(description="Only items in this state.")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    after: Annotated[
        str | None,
        Query(max_length=200, description="The `after` of the previous page: items past it."),
    ] = None,
) -> Response | ItemsPage:
    ns = namespace_for(caller, namespace, services)
    await services.batches.get(ns, name, caller=caller)  # the caller may read it, and it exists
    page = await items_page(services.pool, f"{ns}/{name}", status=status, limit=limit, after=after)
    headers: dict[str, str] = {}
    if page.after is not None:
        query = {"namespace": ns, "limit": limit, "after": page.after}
        if status is not None:
            query["status"] = status
        headers["Link"] = f'</batches/{name}/items?{urlencode(query)}>; rel="next"'
    if wants_csv(request):
        return Response(csv_text(page.items), media_type=CSV, headers=headers)
    return Response(page.model_dump_json(), media_type="application/json", headers=headers)


@router.get(
    "/batches/{name}/manifest",
    operation_id="getBatchManifest",
    responses={
        **responses(403, 404, 422, 503),
        200: {
            "description": "Every item, one JSON object per line (the lines of manifest.jsonl)",
            "content": {JSONL: {"schema": {"type": "string"}}},
        },
    },
    response_class=StreamingResponse,
    summary="A batch's manifest, streamed",
)
async def get_manifest(
    name: BatchNamePath, services: ServicesDep, caller: CallerDep, namespace: Namespace = None
) -> StreamingResponse:
    ns = namespace_for(caller, namespace, services)
    await services.batches.get(ns, name, caller=caller)

    async def lines() -> AsyncIterator[bytes]:
        async with services.pool.acquire() as conn:
            async for item in all_items(conn, f"{ns}/{name}"):
                yield item.line()

    return StreamingResponse(
        lines(),
        media_type=JSONL,
        headers={"Content-Disposition": f'inline; filename="{name}.manifest.jsonl"'},
    )
