"""What every batch's run shares: settings, the PostgreSQL pool, the broker connection, the
Kubernetes client and the metrics, opened together at start-up and closed in reverse order."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg
from aio_pika.abc import AbstractRobustConnection

from imagebatch.core.broker import connect
from imagebatch.core.db import create_pool, migrate
from imagebatch.core.dependencies import BROKER_ERRORS, DB_ERRORS
from imagebatch.core.startup import retry_until
from imagebatch.operator.kube import Kube, load_client
from imagebatch.operator.metrics import OperatorMetrics
from imagebatch.operator.settings import OperatorSettings
from imagebatch.operator.sources import SourceConnections

log = logging.getLogger(__name__)

STARTUP_TIMEOUT_SECONDS = 60.0
KEDA_CRD = "scaledobjects.keda.sh"
KEDA_RECHECK_SECONDS = 60.0


@dataclass
class OperatorContext:
    settings: OperatorSettings
    pool: asyncpg.Pool
    broker: AbstractRobustConnection
    kube: Kube
    metrics: OperatorMetrics
    sources: SourceConnections
    """Each namespace's connection to its batches' Postgres sources."""
    close: Callable[[], Awaitable[None]] = field(default=lambda: _nothing(), repr=False)
    """Close what `open_context` opened, before it would: kopf's cleanup calls this once every
    handler is done. At its exit kopf waits up to 5 s for each task started after it began (a
    broker channel's reader among them) to end, which every exit would otherwise spend."""
    _keda: tuple[float, bool] | None = field(default=None, repr=False)

    async def keda_installed(self) -> bool:
        """Whether KEDA's ScaledObject CRD is there (looked up again every minute)."""
        now = time.monotonic()
        if self._keda is None or now - self._keda[0] > KEDA_RECHECK_SECONDS:
            self._keda = (now, await self.kube.crd_installed(KEDA_CRD))
        return self._keda[1]


async def _nothing() -> None:
    pass


@contextlib.asynccontextmanager
async def open_context(
    settings: OperatorSettings, metrics: OperatorMetrics | None = None
) -> AsyncIterator[OperatorContext]:
    """Connect to everything (waiting for PostgreSQL and RabbitMQ to come up), then close it all."""
    async with contextlib.AsyncExitStack() as stack:
        await retry_until(
            "PostgreSQL", lambda: migrate(settings.database_url), DB_ERRORS, STARTUP_TIMEOUT_SECONDS
        )
        pool = await create_pool(settings.database_url, min_size=1, max_size=10)
        stack.push_async_callback(pool.close)
        broker = await retry_until(
            "RabbitMQ",
            lambda: connect(settings.rabbit_url),
            BROKER_ERRORS,
            STARTUP_TIMEOUT_SECONDS,
        )
        stack.push_async_callback(broker.close)
        kube = Kube(load_client(settings.kubeconfig))
        stack.callback(kube.close)
        sources = SourceConnections(
            kube,
            settings.worker_connections_secret,
            settings.default_source_database_url,
            pool,
        )
        stack.push_async_callback(sources.close)
        yield OperatorContext(
            settings, pool, broker, kube, metrics or OperatorMetrics(), sources, stack.aclose
        )
