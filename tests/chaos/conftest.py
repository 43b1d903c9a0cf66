"""Fixtures of the chaos tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from imagebatch.devservers.rabbitmq import RabbitMQServer
from imagebatch.devservers.rabbitmq_cluster import RabbitMQCluster
from tests.support.servers import STARTUP_SECONDS


@pytest.fixture(scope="module")
def own_broker() -> Iterator[RabbitMQServer]:
    """A broker of one test module alone, since its tests stop and restart it (each leaves it
    running)."""
    server = RabbitMQServer(management=False)
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def rabbit_cluster() -> Iterator[RabbitMQCluster]:
    """A 3-node RabbitMQ cluster the chaos tests share; a test that kills a node starts it
    again before it ends, so each test finds all three running."""
    with RabbitMQCluster() as cluster:
        STARTUP_SECONDS["rabbitmq-cluster"] = cluster.startup_seconds
        yield cluster
