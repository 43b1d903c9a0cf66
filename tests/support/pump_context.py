"""An operator context for running the publish pump without Kubernetes (chaos tests, benchmarks):
the pump never calls the Kubernetes API, and its batches read their Postgres source through the
operator's database, as a cluster admin's `DEFAULT_SOURCE_DATABASE_URL` would have it."""

from __future__ import annotations

from typing import cast

import asyncpg
from aio_pika.abc import AbstractRobustConnection

from imagebatch.operator.context import OperatorContext
from imagebatch.operator.kube import Kube
from imagebatch.operator.metrics import OperatorMetrics
from imagebatch.operator.settings import OperatorSettings
from imagebatch.operator.sources import SourceConnections


class NoSecrets:
    """Stands in for the Kubernetes API where only the connections Secret is asked for: there
    is none, so the admin's default source URL is taken."""

    async def secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        return None


def pump_context(
    settings: OperatorSettings, pool: asyncpg.Pool, broker: AbstractRobustConnection
) -> OperatorContext:
    kube = cast(Kube, NoSecrets())
    sources = SourceConnections(
        kube, settings.worker_connections_secret, settings.database_url, pool
    )
    return OperatorContext(settings, pool, broker, kube, OperatorMetrics(), sources)
