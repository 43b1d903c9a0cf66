"""The library exceptions that mean one of our own dependencies failed, in one place for every
service: catch these at the edge and turn them into `DependencyDown` (or ride them out).

asyncpg and aio-pika both raise `OSError` when their server goes away, so an exception's type
cannot say which dependency failed; only the call that raised it can. `failing_as` is how a
caller that talks to both says which one a block of calls talks to."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal

import asyncpg
from aio_pika.exceptions import CONNECTION_EXCEPTIONS

from imagebatch.core.errors import DependencyDown

DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)
"""What a PostgreSQL call raises when the server is down, restarting or unreachable."""

BROKER_ERRORS = (*CONNECTION_EXCEPTIONS, TimeoutError)
"""What an aio-pika call raises when the broker connection or channel is gone or too slow."""

_ERRORS: dict[str, tuple[type[BaseException], ...]] = {
    "database": DB_ERRORS,
    "broker": BROKER_ERRORS,
}


@contextlib.contextmanager
def failing_as(dependency: Literal["database", "broker"]) -> Iterator[None]:
    """Raise what the block's calls raise when `dependency` fails as `DependencyDown` naming
    it (the original chained); anything else passes through unchanged."""
    try:
        yield
    except _ERRORS[dependency] as exc:
        raise DependencyDown(dependency, repr(exc)) from exc
