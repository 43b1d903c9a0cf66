"""Fixtures of the chaos tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from imagebatch.devservers.rabbitmq import RabbitMQServer


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
