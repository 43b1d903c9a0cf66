"""The gate in front of every route: no caller, no answer (401), except for the open paths.

A pure ASGI middleware rather than a route dependency, so that nothing escapes it: routes added
later, the OpenAPI document, unknown paths (no 404 that tells which exist) and request bodies
(refused before they are read). The caller it finds is left in the request's scope for the
routes and the per-caller limits.
"""

from __future__ import annotations

from pathlib import Path

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from imagebatch.api.auth import AuthFailure, Caller
from imagebatch.api.authenticators import Authenticator
from imagebatch.api.errors import ApiError, problem_response

CALLER_KEY = "imagebatch.caller"
"""Where the caller of a request is kept in its ASGI scope."""

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
"""Probes and scraping: the kubelet and Prometheus come without a token."""

OPEN_PREFIXES = ("/static/",)
"""The page's own script and styles: public code, no data (a <script> tag sends no token)."""


def is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def caller_of(scope: Scope) -> Caller | None:
    caller = scope.get(CALLER_KEY)
    return caller if isinstance(caller, Caller) else None


class AuthMiddleware:
    """Finds the caller of each request, or answers 401 with `WWW-Authenticate: Bearer`.

    `GET /` without a caller answers 401 with the page itself as the body: the page holds no
    data, asks for a token and sends it with each of its own requests.
    """

    def __init__(self, app: ASGIApp, *, authenticator: Authenticator, page: Path) -> None:
        self.app = app
        self.authenticator = authenticator
        self.page = page

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or is_open(scope["path"]):
            await self.app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"authorization")
        client = scope.get("client")
        try:
            outcome = await self.authenticator.authenticate(
                header.decode("latin-1") if header is not None else None,
                client[0] if client else None,
            )
        except ApiError as exc:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1011})
                return
            await problem_response(exc.status_code, exc.detail, headers=exc.headers)(
                scope, receive, send
            )
            return
        if isinstance(outcome, AuthFailure):
            if scope["type"] == "websocket":  # none are served; refuse before routing anyway
                await send({"type": "websocket.close", "code": 1008})
                return
            await self.refuse(outcome, scope)(scope, receive, send)
            return
        scope[CALLER_KEY] = outcome
        await self.app(scope, receive, send)

    def refuse(self, failure: AuthFailure, scope: Scope) -> Response:
        headers = {"WWW-Authenticate": failure.challenge()}
        if scope["path"] == "/" and scope["method"] in ("GET", "HEAD"):
            return Response(
                self.page.read_bytes(),
                status_code=401,
                media_type="text/html; charset=utf-8",
                headers=headers,
            )
        return problem_response(401, failure.detail, headers=headers)
