"""Per-caller limits on the requests that make work: POST /tasks, POST /uploads, POST /enqueue.

Runs after `AuthMiddleware` (it needs the caller) and before the body is read, so a caller past
its limit is refused without the api reading its upload. An upload's bytes are counted from its
Content-Length; one sent without it is counted as it streams in and charged afterwards. The
buckets live in this process: with several api replicas a caller gets each replica's allowance.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imagebatch.api.auth_middleware import caller_of
from imagebatch.api.errors import problem_response
from imagebatch.api.limits import Limited, RateLimiter, admit

LIMITED = frozenset({("POST", "/tasks"), ("POST", "/uploads"), ("POST", "/enqueue")})


def refusal(decision: Limited) -> str:
    return (
        f"too many {decision.what} from this caller; retry in {decision.retry_after}s "
        "(limits are per caller and minute)"
    )


class LimitMiddleware:
    """429 with `Retry-After` when a caller is past RATE_LIMIT_PER_MINUTE or
    UPLOAD_BYTES_PER_MINUTE; other callers are not affected."""

    def __init__(self, app: ASGIApp, *, requests: RateLimiter, upload_bytes: RateLimiter) -> None:
        self.app = app
        self.requests = requests
        self.upload_bytes = upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        caller = caller_of(scope) if scope["type"] == "http" else None
        if caller is None or (scope["method"], scope["path"]) not in LIMITED:
            await self.app(scope, receive, send)
            return
        key = caller.name
        checks = [(self.requests, key, 1.0)]
        declared = dict(scope["headers"]).get(b"content-length")
        counted = scope["path"] == "/uploads" and self.upload_bytes.enabled
        if counted and declared is not None and declared.isdigit():
            checks.append((self.upload_bytes, key, float(declared)))
            counted = False
        elif counted:
            checks.append((self.upload_bytes, key, 1.0))  # refuse a caller already in debt
        decision = admit(checks)
        if isinstance(decision, Limited):
            response = problem_response(
                429, refusal(decision), headers={"Retry-After": str(decision.retry_after)}
            )
            await response(scope, receive, send)
            return
        if not counted:
            await self.app(scope, receive, send)
            return
        seen = 0

        async def counting() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            return message

        try:
            await self.app(scope, counting, send)
        finally:
            self.upload_bytes.charge(key, seen)
