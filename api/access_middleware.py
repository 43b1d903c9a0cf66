"""`AUTH_MODE=kubernetes`: who may make work (POST /tasks, /uploads, /enqueue) is decided by
Kubernetes RBAC, like who may make batches.

A valid token proves who the caller is, not that it may use the cluster's thumbnailing: any
ServiceAccount of any namespace has one. The rule a user of the manifests expects is the one
batches already follow: whoever may create ImageBatches may also ask for single thumbnails.
So the caller must be allowed `create imagebatches` in its default namespace (a
ServiceAccount's own, else KUBE_NAMESPACE); the api asks with a SelfSubjectAccessReview sent
with the caller's own token (no right of the api's involved), reuses the answer for
AUTH_CACHE_SECONDS, and answers 403 with the reason otherwise. Runs after `AuthMiddleware` and
before the limits and the body, so a refused caller spends no allowance and sends no upload.
Other modes pass through: `token` binds each token to its namespace already, `none` is open.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from imagebatch.api.auth_middleware import caller_of
from imagebatch.api.errors import ApiError, problem_response
from imagebatch.api.limit_middleware import LIMITED

Review = Callable[[str, str], Awaitable[tuple[bool, str]]]
"""(token, namespace) → (may create ImageBatches there, the authorizer's reason)."""


def refusal(user: str, namespace: str, reason: str) -> str:
    because = f" ({reason})" if reason else ""
    return (
        f"{user} may not create imagebatches in namespace {namespace!r}{because}; POST /tasks, "
        "/uploads and /enqueue need that right (Kubernetes RBAC: bind the ClusterRole "
        "imagebatch-editor there)"
    )


class WorkAccessMiddleware:
    """403 for a Kubernetes caller that may not create ImageBatches in its namespace."""

    MAX_ENTRIES = 10_000

    def __init__(
        self,
        app: ASGIApp,
        *,
        review: Review,
        default_namespace: str,
        cache_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self._review = review
        self._default_namespace = default_namespace
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._cache: dict[tuple[str, str], tuple[float, bool, str]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        caller = caller_of(scope) if scope["type"] == "http" else None
        token = caller.kube_token if caller is not None else None
        if caller is None or token is None or (scope["method"], scope["path"]) not in LIMITED:
            await self.app(scope, receive, send)
            return
        namespace = caller.namespace or self._default_namespace
        try:
            allowed, reason = await self._allowed(token, namespace)
        except ApiError as exc:
            response = problem_response(exc.status_code, exc.detail, headers=exc.headers)
            await response(scope, receive, send)
            return
        if not allowed:
            response = problem_response(403, refusal(caller.name, namespace, reason))
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _allowed(self, token: str, namespace: str) -> tuple[bool, str]:
        key = (hashlib.sha256(token.encode()).hexdigest(), namespace)
        now = self._clock()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1], cached[2]
        allowed, reason = await self._review(token, namespace)
        if self._cache_seconds > 0:
            if len(self._cache) >= self.MAX_ENTRIES:
                self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
                if len(self._cache) >= self.MAX_ENTRIES:
                    self._cache.clear()
            self._cache[key] = (now + self._cache_seconds, allowed, reason)
        return allowed, reason
