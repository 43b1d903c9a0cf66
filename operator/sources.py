"""Where a namespace's batches read their Postgres source: the connection that namespace
provides, never the operator's own database by default.

A batch in namespace A reads its table through `SOURCE_DATABASE_URL` of the connections Secret
(`WORKER_CONNECTIONS_SECRET`) in A, so it can read exactly what the role in that URL may read:
another tenant's tables stay out of reach as far as their database or their grants keep them
apart. A cluster admin who wants one shared source database for every namespace sets the
operator's `DEFAULT_SOURCE_DATABASE_URL` (ideally a read-only role); a namespace's own
`SOURCE_DATABASE_URL` still wins. Without either, a postgres-source batch fails `SourceInvalid`
with what to set.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import asyncpg

from imagebatch.core.db import create_pool
from imagebatch.operator.kube import Kube

SOURCE_KEY = "SOURCE_DATABASE_URL"
POOL_SIZE = 2
"""Connections per source database: the checks and one materializing step at a time."""
IDENTITY_SQL = "SELECT current_database() AS db, pg_postmaster_start_time() AS started"
"""Tells the operator's own database from any other without any privilege: the same server
(started at the same instant) and the same database name."""
PERMANENT_ERRORS = (
    asyncpg.InvalidAuthorizationSpecificationError,  # a wrong password, an unknown role
    asyncpg.InvalidCatalogNameError,  # no such database
    asyncpg.InsufficientPrivilegeError,  # e.g. no CONNECT on it
    asyncpg.ClientConfigurationError,
    ValueError,  # a URL asyncpg cannot parse
)
"""A source connection these stop will not work until a person changes it."""


class NoSourceConnection(Exception):
    """The namespace provides no usable source connection; the message says what to set."""


@dataclass(frozen=True)
class SourceConnection:
    pool: asyncpg.Pool
    own_database: bool
    """The operator's own database: the seed table's ids are the `images` rows workers mark."""
    origin: str
    """Where the URL came from, for messages."""


class SourceConnections:
    """One small pool per source URL, opened on first use and closed with the operator."""

    def __init__(self, kube: Kube, secret: str, default_url: str | None, own: asyncpg.Pool):
        self._kube = kube
        self._secret = secret
        self._default_url = default_url
        self._own = own
        self._pools: dict[str, tuple[asyncpg.Pool, bool]] = {}
        self._lock = asyncio.Lock()

    async def _url(self, namespace: str) -> tuple[str, str]:
        """(URL, where it came from) for the namespace's batches."""
        data = await self._kube.secret_data(namespace, self._secret)
        url = (data or {}).get(SOURCE_KEY, "").strip()
        if url:
            return url, f"{SOURCE_KEY} of Secret {self._secret!r} in namespace {namespace!r}"
        if self._default_url:
            return self._default_url, "the operator's DEFAULT_SOURCE_DATABASE_URL"
        where = "has no" if data is not None else "does not exist, so it has no"
        raise NoSourceConnection(
            f"no source database for namespace {namespace!r}: Secret {self._secret!r} there "
            f"{where} {SOURCE_KEY} (postgresql://<read-only role>:<password>@<host>/<db>). "
            "Add it, or ask the cluster admin to set the operator's DEFAULT_SOURCE_DATABASE_URL"
        )

    async def for_namespace(self, namespace: str) -> SourceConnection:
        """The namespace's source connection; `NoSourceConnection` when it has none (or one
        that cannot work), the database errors when it is just unreachable."""
        url, origin = await self._url(namespace)
        async with self._lock:
            if url not in self._pools:
                try:
                    pool = await create_pool(url, min_size=1, max_size=POOL_SIZE)
                except PERMANENT_ERRORS as exc:
                    raise NoSourceConnection(f"cannot connect with {origin}: {exc}") from exc
                try:
                    theirs = await pool.fetchrow(IDENTITY_SQL)
                    ours = await self._own.fetchrow(IDENTITY_SQL)
                except BaseException:
                    await pool.close()
                    raise
                self._pools[url] = (pool, theirs == ours)
        pool, own_database = self._pools[url]
        return SourceConnection(pool, own_database, origin)

    async def close(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool, _ in pools:
            with contextlib.suppress(Exception):
                await pool.close()
