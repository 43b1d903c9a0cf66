"""Session-wide real servers for the suite: an existing one when the environment names it
(`DATABASE_URL`, `RABBIT_URL`, `KUBECONFIG`), else a throwaway local process. The S3 server is
always a local process: tests stop and start it."""

from __future__ import annotations

import os
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from imagebatch.devservers.s3 import S3Server

STARTUP_SECONDS: dict[str, float] = {}
"""How long each local server took to become ready; printed at the end of the run."""


@dataclass
class ServerHandle:
    """Where a server is, and whether this run started it."""

    url: str
    started_here: bool
    extra: dict[str, str] = field(default_factory=dict)


def postgres() -> Iterator[ServerHandle]:
    external = os.environ.get("DATABASE_URL")
    if external:
        yield ServerHandle(url=external, started_here=False)
        return
    from imagebatch.devservers.postgres import PostgresServer

    with PostgresServer() as server:
        STARTUP_SECONDS["postgresql"] = server.startup_seconds
        yield ServerHandle(url=server.url, started_here=True)


def rabbitmq() -> Iterator[ServerHandle]:
    external = os.environ.get("RABBIT_URL")
    if external:
        host = urllib.parse.urlsplit(external).hostname or "localhost"
        management = os.environ.get("RABBIT_MANAGEMENT_URL", f"http://{host}:15672")
        prometheus = os.environ.get("RABBIT_PROMETHEUS_URL", f"http://{host}:15692")
        yield ServerHandle(
            url=external,
            started_here=False,
            extra={"management_url": management, "prometheus_url": prometheus},
        )
        return
    from imagebatch.devservers.rabbitmq import RabbitMQServer

    began = time.monotonic()
    with RabbitMQServer() as server:
        STARTUP_SECONDS["rabbitmq"] = time.monotonic() - began
        yield ServerHandle(
            url=server.url,
            started_here=True,
            extra={
                "management_url": server.management_url,
                "prometheus_url": server.prometheus_url,
            },
        )


def s3() -> Iterator[S3Server]:
    from imagebatch.devservers.s3 import S3Server

    with S3Server() as server:
        STARTUP_SECONDS["versitygw"] = server.startup_seconds
        yield server
