"""Fixtures every test folder shares: real servers and fresh, isolated resources on them.

Servers are session-scoped (one PostgreSQL, one RabbitMQ, one Kubernetes API server, one S3
server per run); each test gets its own database, its own exchange/queue names and its own bucket
on them, so tests never see each other's data.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from imagebatch.core.db import apply_migrations
from imagebatch.core.settings import CommonSettings
from imagebatch.devservers.s3 import S3Server
from tests.support import servers
from tests.support.k8s import kube_cluster, namespace  # noqa: F401  (fixture re-exports)
from tests.support.keda import (  # noqa: F401  (fixture re-exports)
    keda,
    keda_batches,
    keda_cluster,
    keda_namespace,
    keda_objects,
    keda_supervisor,
    start_keda_operator,
)
from tests.support.operator import (  # noqa: F401  (fixture re-exports)
    batches,
    connections_secret,
    operator,
    start_operator,
    supervisor,
)
from tests.support.worker_fixtures import image_server  # noqa: F401  (fixture re-export)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[servers.ServerHandle]:
    yield from servers.postgres()


@pytest.fixture(scope="session")
def rabbitmq_server() -> Iterator[servers.ServerHandle]:
    yield from servers.rabbitmq()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """The S3 server (versitygw) of the whole run; a test may stop and start it
    (`with s3_server.stopped(): …`), which keeps its objects, port and credentials."""
    yield from servers.s3()


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """A fresh, empty bucket of this test alone on the session's S3 server."""
    return s3_server.create_bucket(f"test-{uuid.uuid4().hex[:12]}")


def _with_database(url: str, database: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{database}"


@pytest.fixture
async def database_url(postgres_server: servers.ServerHandle) -> AsyncIterator[str]:
    """A fresh database with the project's migrations applied, dropped after the test."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    admin: asyncpg.Connection = await asyncpg.connect(postgres_server.url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = _with_database(postgres_server.url, name)
        conn: asyncpg.Connection = await asyncpg.connect(url)
        try:
            await apply_migrations(conn)
        finally:
            await conn.close()
        yield url
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
def rabbit_url(rabbitmq_server: servers.ServerHandle) -> str:
    return rabbitmq_server.url


@pytest.fixture
def messaging(rabbit_url: str, database_url: str) -> CommonSettings:
    """Settings with exchange and queue names of this test alone."""
    suffix = uuid.uuid4().hex[:8]
    return CommonSettings(
        rabbit_url=rabbit_url,
        database_url=database_url,
        exchange=f"images.{suffix}",
        queue=f"images.{suffix}.q",
        dlx=f"images.{suffix}.dlx",
        dlq=f"images.{suffix}.dlx.q",
        routing_key="process_image",
    )


FOLDER_MARKERS = {"k8s": ("k8s",), "e2e": ("slow",), "chaos": ("slow",)}
"""Markers every test in a folder carries, so `-m "not slow"` and `-m k8s` select by kind."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = item.path.parts
        folder = parts[parts.index("tests") + 1] if "tests" in parts else ""
        for marker in FOLDER_MARKERS.get(folder, ()):
            item.add_marker(marker)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if servers.STARTUP_SECONDS:
        terminalreporter.section("server start-up")
        for name, seconds in servers.STARTUP_SECONDS.items():
            terminalreporter.write_line(f"{name}: ready in {seconds:.1f}s")
