"""The library exceptions that mean one of our own dependencies failed, in one place for every
service: catch these at the edge and turn them into `DependencyDown` (or ride them out)."""

from __future__ import annotations

import asyncpg
from aio_pika.exceptions import CONNECTION_EXCEPTIONS

DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)
"""What a PostgreSQL call raises when the server is down, restarting or unreachable."""

BROKER_ERRORS = (*CONNECTION_EXCEPTIONS, TimeoutError)
"""What an aio-pika call raises when the broker connection or channel is gone or too slow."""
