"""The three AUTH_MODEs as authenticators: the effects around the decisions of `auth`.

`none` names every caller after its address; `token` reads AUTH_TOKENS_FILE (again whenever the
file changes, so a rotated Secret takes effect without a restart); `kubernetes` asks the API
server with a TokenReview and reuses each answer for AUTH_CACHE_SECONDS.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from imagebatch.api.auth import (
    AuthFailure,
    Caller,
    TokenFileError,
    TokenTable,
    anonymous,
    bearer_token,
    parse_tokens,
    review_caller,
    token_caller,
)
from imagebatch.api.kube import BatchClient
from imagebatch.api.settings import ApiSettings

log = logging.getLogger(__name__)

Outcome = Caller | AuthFailure


class AuthConfigError(RuntimeError):
    """The api cannot authenticate callers as configured; start-up stops with this message."""


class Authenticator(Protocol):
    mode: str

    async def authenticate(self, authorization: str | None, client_host: str | None) -> Outcome:
        """The caller of a request with this `Authorization` header, or why there is none.

        May raise `DependencyUnavailable` when the server that decides cannot be asked.
        """
        ...


class Anonymous:
    """`AUTH_MODE=none`: nobody is asked for anything."""

    mode = "none"

    async def authenticate(self, authorization: str | None, client_host: str | None) -> Outcome:
        return anonymous(client_host)


class StaticTokens:
    """`AUTH_MODE=token`: the tokens of AUTH_TOKENS_FILE, each bound to one namespace."""

    mode = "token"

    def __init__(self, path: Path) -> None:
        self._path = path
        self._stamp: tuple[int, int, int] | None = None
        self._table = TokenTable(())
        self._reload()  # at start-up a missing or broken file stops the api

    def _reload(self) -> None:
        info = os.stat(self._path)
        stamp = (info.st_mtime_ns, info.st_size, info.st_ino)
        if stamp == self._stamp:
            return
        self._table = parse_tokens(self._path.read_text())
        self._stamp = stamp
        log.info("AUTH_TOKENS_FILE %s: %d token(s)", self._path, len(self._table.entries))

    async def authenticate(self, authorization: str | None, client_host: str | None) -> Outcome:
        token = bearer_token(authorization)
        if isinstance(token, AuthFailure):
            return token
        try:
            self._reload()
        except (OSError, TokenFileError) as exc:  # keep serving with the tokens last read
            log.warning("AUTH_TOKENS_FILE %s not re-read: %s", self._path, exc)
        return token_caller(token, self._table)


class KubernetesTokens:
    """`AUTH_MODE=kubernetes`: the API server says whose token it is (TokenReview)."""

    mode = "kubernetes"
    MAX_ENTRIES = 10_000

    def __init__(
        self,
        review: Callable[[str], Awaitable[Mapping[str, Any]]],
        *,
        cache_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._review = review
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._cache: dict[str, tuple[float, Outcome]] = {}

    async def authenticate(self, authorization: str | None, client_host: str | None) -> Outcome:
        token = bearer_token(authorization)
        if isinstance(token, AuthFailure):
            return token
        key = hashlib.sha256(token.encode()).hexdigest()
        now = self._clock()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        outcome = review_caller(token, await self._review(token))
        if self._cache_seconds > 0:
            self._remember(key, now + self._cache_seconds, outcome, now)
        return outcome

    def _remember(self, key: str, until: float, outcome: Outcome, now: float) -> None:
        if len(self._cache) >= self.MAX_ENTRIES:
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
            if len(self._cache) >= self.MAX_ENTRIES:
                self._cache.clear()
        self._cache[key] = (until, outcome)


def build_authenticator(settings: ApiSettings, batches: BatchClient) -> Authenticator:
    """The authenticator of the configured mode; `AuthConfigError` says what is missing."""
    mode = settings.effective_auth_mode()
    if mode == "none":
        log.warning(
            "AUTH_MODE=none: the api accepts every caller without authentication; use it only "
            "where nobody else can reach the api (local development, tests)"
        )
        return Anonymous()
    if mode == "token":
        unset = "" if settings.auth_mode else " (AUTH_MODE is unset and no cluster is configured)"
        if settings.auth_tokens_file is None:
            raise AuthConfigError(
                f"AUTH_MODE=token{unset} needs AUTH_TOKENS_FILE (one `<token> <namespace>` per "
                "line); for local development only, set AUTH_MODE=none to accept anyone"
            )
        try:
            return StaticTokens(settings.auth_tokens_file)
        except (OSError, TokenFileError) as exc:
            raise AuthConfigError(f"AUTH_TOKENS_FILE {settings.auth_tokens_file}: {exc}") from exc
    if batches.configured() is None:
        raise AuthConfigError(
            "AUTH_MODE=kubernetes needs a cluster to review tokens: set KUBECONFIG, or run the "
            "api in a pod with a service account"
        )
    log.info("AUTH_MODE=kubernetes: callers' bearer tokens are checked with TokenReviews")
    return KubernetesTokens(batches.review_token, cache_seconds=settings.auth_cache_seconds)
