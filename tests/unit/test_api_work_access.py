"""`AUTH_MODE=kubernetes`: a caller may make work only where RBAC lets it create ImageBatches;
the answer is reused for AUTH_CACHE_SECONDS, and callers without a Kubernetes token (`token`,
`none`) and reads are never asked about. The API server is a test's own function here (the real
one is in tests/k8s/test_api_kubernetes_auth.py)."""

from __future__ import annotations

from typing import Any

from starlette.types import Message, Receive, Scope, Send

from imagebatch.api.access_middleware import WorkAccessMiddleware
from imagebatch.api.auth import Caller
from imagebatch.api.auth_middleware import CALLER_KEY


class Reviews:
    """Answers like the API server would; remembers what it was asked."""

    def __init__(self, allowed: set[tuple[str, str]]) -> None:
        self.allowed = allowed
        self.asked: list[tuple[str, str]] = []

    async def __call__(self, token: str, namespace: str) -> tuple[bool, str]:
        self.asked.append((token, namespace))
        return (token, namespace) in self.allowed, "" if (
            token,
            namespace,
        ) in self.allowed else "no"


async def passed(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 299, "headers": []})
    await send({"type": "http.response.body", "body": b""})


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


async def status(app: WorkAccessMiddleware, method: str, path: str, caller: Caller) -> int:
    scope: dict[str, Any] = {"type": "http", "method": method, "path": path, "headers": []}
    scope[CALLER_KEY] = caller
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return int(sent[0]["status"])


def middleware(reviews: Reviews, clock: Clock) -> WorkAccessMiddleware:
    return WorkAccessMiddleware(
        passed, review=reviews, default_namespace="imagebatch", cache_seconds=10, clock=clock
    )


async def test_only_a_caller_rbac_lets_create_batches_makes_work() -> None:
    reviews = Reviews({("t-a", "team-a")})
    app = middleware(reviews, Clock())
    team_a = Caller("system:serviceaccount:team-a:x", namespace="team-a", kube_token="t-a")
    stranger = Caller("system:serviceaccount:team-b:y", namespace="team-b", kube_token="t-b")
    user = Caller("alice", kube_token="t-c")

    assert await status(app, "POST", "/tasks", team_a) == 299
    assert await status(app, "POST", "/uploads", stranger) == 403
    assert await status(app, "POST", "/enqueue", user) == 403
    assert reviews.asked[-1] == ("t-c", "imagebatch"), "a user without a namespace: KUBE_NAMESPACE"
    assert await status(app, "GET", "/images", stranger) == 299, "reads are not asked about"


async def test_an_answer_is_reused_for_the_cache_time_then_asked_again() -> None:
    reviews, clock = Reviews({("t-a", "team-a")}), Clock()
    app = middleware(reviews, clock)
    team_a = Caller("a", namespace="team-a", kube_token="t-a")

    for _ in range(3):
        assert await status(app, "POST", "/tasks", team_a) == 299
    clock.now = 11
    reviews.allowed.clear()  # the RoleBinding was removed
    assert await status(app, "POST", "/tasks", team_a) == 403
    assert len(reviews.asked) == 2


async def test_callers_without_a_kubernetes_token_are_not_asked() -> None:
    reviews = Reviews(set())
    app = middleware(reviews, Clock())

    assert (
        await status(app, "POST", "/tasks", Caller("token:team-a:0123", namespace="team-a")) == 299
    )
    assert reviews.asked == []
