"""POST /batches/{name}/retry: ask the operator to send a batch's failed items back to work.

The route only sets the `imagejobs.io/retry-failed` annotation to a fresh value; the operator
acts on each value once (DESIGN.md, "Batch operations"). The patch is made with the caller's
rights (AUTH_MODE=kubernetes: the caller's own token), so RBAC's `patch imagebatches` in the
batch's namespace decides who may retry.
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from imagebatch.api.deps import CallerDep, ServicesDep
from imagebatch.api.errors import responses
from imagebatch.api.routes_batches import BatchNamePath, Namespace, namespace_for
from imagebatch.core.retry_request import RETRY_FAILED_ANNOTATION, new_retry_request, retry_patch

router = APIRouter(tags=["batches"])


class RetryRequested(BaseModel):
    """The request the operator will act on; `status.lastRetry.request` names it once done."""

    name: str
    namespace: str
    annotation: str = Field(
        default=RETRY_FAILED_ANNOTATION, description="The annotation that was set."
    )
    request: str = Field(description="Its new value: the time of the request and a suffix.")


@router.post(
    "/batches/{name}/retry",
    operation_id="retryFailed",
    status_code=202,
    response_model=RetryRequested,
    responses=responses(403, 404, 422, 503),
    summary="Retry a batch's failed items",
)
async def retry_failed(
    name: BatchNamePath,
    services: ServicesDep,
    caller: CallerDep,
    namespace: Namespace = None,
) -> RetryRequested:
    """Set `imagejobs.io/retry-failed` to a fresh value; the operator sends every failed item
    back to work once (Running, Succeeded or Failed batches alike) and records it in
    `status.lastRetry`. 202: it happens after this answer."""
    ns = namespace_for(caller, namespace, services)
    value = new_retry_request()
    await services.batches.patch(ns, name, retry_patch(value), caller=caller)
    return RetryRequested(name=name, namespace=ns, request=value)
