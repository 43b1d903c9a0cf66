"""Who is calling: the authentication decisions of every AUTH_MODE, as pure functions.

Each function takes what the request carried (the `Authorization` header) and what the mode
knows (the token table, a TokenReview's answer) and returns a `Caller` or an `AuthFailure`;
reading files and asking the API server happen elsewhere (`authenticators`), so every case here
is covered by a table test.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from imagebatch.core.imagebatch import DNS_LABEL

SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"


@dataclass(frozen=True)
class Caller:
    """Who sent a request, as far as routes and limits need to know."""

    name: str
    """Stable identity: the key of the per-caller limits and `jobs.caller`."""
    namespace: str | None = None
    """Namespace of /batches when the request names none (None: the api's KUBE_NAMESPACE)."""
    only_namespace: bool = False
    """`token` mode: `namespace` is the one namespace this caller may use for batches."""
    kube_token: str | None = field(default=None, repr=False)
    """`kubernetes` mode: batch calls go to the API server with this token, so RBAC decides
    (kept out of `repr`, so a logged caller never shows it)."""


@dataclass(frozen=True)
class AuthFailure:
    """Why a request has no caller; answered with 401 and `WWW-Authenticate: Bearer`."""

    detail: str
    error: str | None = None
    """RFC 6750 error code: None when no credentials were sent, else `invalid_request` or
    `invalid_token`."""

    def challenge(self) -> str:
        """The `WWW-Authenticate` header value."""
        value = 'Bearer realm="imagebatch"'
        return f'{value}, error="{self.error}"' if self.error else value


MISSING = AuthFailure(
    "this api needs a caller: send `Authorization: Bearer <token>` (the page asks for one)"
)


def bearer_token(header: str | None) -> str | AuthFailure:
    """The token of an `Authorization: Bearer <token>` header."""
    if header is None or not header.strip():
        return MISSING
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or any(c.isspace() for c in token):
        return AuthFailure(
            "the Authorization header must be `Bearer <token>`", error="invalid_request"
        )
    return token


def fingerprint(token: str) -> str:
    """A short, stable name for a token that does not reveal it (logs, limits, rows)."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


class TokenFileError(ValueError):
    """AUTH_TOKENS_FILE cannot be used; the message names the line."""


@dataclass(frozen=True)
class TokenTable:
    """The static tokens of `token` mode: SHA-256 of each token → the namespace its holder may
    use (digests, so every comparison is of equal length)."""

    entries: tuple[tuple[bytes, str], ...]


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def parse_tokens(text: str) -> TokenTable:
    """`<token> <namespace>` per line; blank lines and lines starting with `#` are ignored."""
    entries: list[tuple[bytes, str]] = []
    seen: set[str] = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 2:
            raise TokenFileError(f"line {number}: expected `<token> <namespace>`")
        token, namespace = fields
        if len(token) < 16:
            raise TokenFileError(f"line {number}: a token needs at least 16 characters")
        if not _is_namespace(namespace):
            raise TokenFileError(f"line {number}: {namespace!r} is not a namespace name")
        if token in seen:
            raise TokenFileError(f"line {number}: the token is listed twice")
        seen.add(token)
        entries.append((digest(token), namespace))
    return TokenTable(tuple(entries))


def _is_namespace(name: str) -> bool:
    return len(name) <= 63 and re.fullmatch(DNS_LABEL, name) is not None


def token_caller(token: str, table: TokenTable) -> Caller | AuthFailure:
    """The caller a static token stands for.

    Every entry is compared, in constant time, whether or not an earlier one matched: how long
    the answer takes says nothing about how close a guess was.
    """
    sent = digest(token)
    found: str | None = None
    for candidate, namespace in table.entries:
        if hmac.compare_digest(sent, candidate) and found is None:
            found = namespace
    if found is None:
        return AuthFailure("the token is not valid", error="invalid_token")
    return Caller(name=f"token:{found}:{fingerprint(token)}", namespace=found, only_namespace=True)


def review_caller(token: str, status: Mapping[str, Any]) -> Caller | AuthFailure:
    """The caller a TokenReview's `status` says the token belongs to.

    A ServiceAccount's batches default to its own namespace; other users' to the api's.
    """
    user = status.get("user") if isinstance(status.get("user"), Mapping) else None
    name = user.get("username") if user is not None else None
    if status.get("authenticated") is not True or not isinstance(name, str) or not name:
        reason = status.get("error")
        detail = "the token is not valid" + (f": {reason}" if isinstance(reason, str) else "")
        return AuthFailure(detail, error="invalid_token")
    namespace = None
    if name.startswith(SERVICE_ACCOUNT_PREFIX):
        namespace = name.removeprefix(SERVICE_ACCOUNT_PREFIX).partition(":")[0] or None
    return Caller(name=name, namespace=namespace, kube_token=token)


def anonymous(client_host: str | None) -> Caller:
    """`none` mode: every caller is anonymous, told apart (for limits) by its address."""
    return Caller(name=f"anonymous@{client_host or 'unknown'}")


@dataclass(frozen=True)
class NamespaceRefused:
    """The caller may not use the namespace it asked for; answered with 403."""

    detail: str


def batch_namespace(caller: Caller, requested: str | None, default: str) -> str | NamespaceRefused:
    """The namespace a batch call of `caller` works in, or why it may not (403).

    In `kubernetes` mode any namespace passes here: the API server decides with the caller's own
    token. A static token is bound to one namespace.
    """
    namespace = requested or caller.namespace or default
    if caller.only_namespace and namespace != caller.namespace:
        return NamespaceRefused(
            f"this token may only use namespace {caller.namespace!r}, not {namespace!r}"
        )
    return namespace
