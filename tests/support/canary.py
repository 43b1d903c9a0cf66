"""A listener that must never be reached: proof that the address guard stopped a connection.

It binds one port on 127.0.0.1, 127.0.0.2 and ::1 — every address the loopback spellings of the
guard tests lead to (0.0.0.0 and ::ffff:127.0.0.1 arrive at 127.0.0.1) — and records every
connection, whatever was sent. Only loopback: a broken guard would still send nothing off this
machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass, field

CANARY_HOSTS = ("127.0.0.1", "127.0.0.2", "::1")


def _port_free_everywhere() -> int:
    for _ in range(50):
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
            port = int(probe.getsockname()[1])
        try:
            for host in CANARY_HOSTS[:2]:
                with socket.socket() as other:
                    other.bind((host, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no port free on every canary address")


@dataclass
class Canary:
    """`async with Canary() as canary:` … `assert canary.connections == []`."""

    port: int = 0
    connections: list[str] = field(default_factory=list)

    async def __aenter__(self) -> Canary:
        self.port = self.port or _port_free_everywhere()
        self._servers = [
            await asyncio.start_server(self._seen, host, self.port) for host in CANARY_HOSTS
        ]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for server in self._servers:
            server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)

    async def _seen(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections.append(str(writer.get_extra_info("sockname")))
        writer.close()
