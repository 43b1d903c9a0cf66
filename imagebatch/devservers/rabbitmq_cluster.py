"""A throwaway 3-node RabbitMQ cluster on loopback: `RabbitMQServer` nodes that share an Erlang
cookie and join the first one through classic-config peer discovery.

The first node (`a`) starts alone; the others start together once it answers and, being new
(empty data folders), join it on their first boot — no `stop_app`/`join_cluster`/`start_app`
round, which would boot each of them twice. A node killed and started again comes back from its
own data as a member of the cluster. Node names carry the first node's AMQP port, so clusters of
parallel runs never meet in the machine's one epmd.
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from imagebatch.devservers.process import ServerStartError, ThrowawayServer, free_port
from imagebatch.devservers.rabbitmq import RABBITMQ_LIBEXEC, RabbitMQServer

LETTERS = "abcdefg"


@dataclass
class RabbitMQCluster(ThrowawayServer):
    """`size` RabbitMQ nodes (`a`, `b`, `c`, …) joined into one cluster; `guest`/`guest`."""

    size: int = 3
    management: bool = True
    startup_seconds: float = 0.0
    nodes: dict[str, RabbitMQServer] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 1 <= self.size <= len(LETTERS):
            raise ValueError(f"a cluster of 1 to {len(LETTERS)} nodes, not {self.size}")
        self.cookie = secrets.token_hex(16)
        ports = [free_port() for _ in range(self.size)]
        tag = ports[0]
        names = [f"rabbit-{letter}-{tag}@localhost" for letter in LETTERS[: self.size]]
        for index, (letter, name, port) in enumerate(
            zip(LETTERS[: self.size], names, ports, strict=True)
        ):
            seed = [] if index == 0 else [f"cluster_formation.classic_config.nodes.1 = {names[0]}"]
            self.nodes[letter] = RabbitMQServer(
                management=self.management,
                port=port,
                node_name=name,
                erlang_cookie=self.cookie,
                extra_config=(
                    "cluster_formation.peer_discovery_backend = classic_config",
                    *seed,
                ),
            )

    @property
    def urls(self) -> list[str]:
        """Each node's AMQP URL, in node order."""
        return [node.url for node in self.nodes.values()]

    @property
    def url(self) -> str:
        """`RABBIT_URL` naming every node of the cluster (comma-separated)."""
        return ",".join(self.urls)

    def node(self, letter: str) -> RabbitMQServer:
        return self.nodes[letter]

    def letter_of(self, node_name: str) -> str:
        """The letter of the node called `node_name` (`rabbit-b-…@localhost` → `b`)."""
        for letter, node in self.nodes.items():
            if node.node == node_name:
                return letter
        raise KeyError(node_name)

    def start(self) -> RabbitMQCluster:
        """Start the first node, then the others at once, and wait until all are members."""
        began = time.monotonic()
        first, *others = self.nodes.values()
        first.start()
        if others:
            with ThreadPoolExecutor(len(others)) as pool:
                for started in pool.map(lambda n: n.start(), others):
                    assert started is not None
        members = self.running_members()
        if members != {n.node for n in self.nodes.values()}:
            raise ServerStartError(f"the cluster formed with {sorted(members)} only")
        self.startup_seconds = time.monotonic() - began
        return self

    def kill(self, letter: str) -> None:
        """SIGKILL one node, as a crash would; `restart(letter)` brings it back."""
        self.nodes[letter].kill()

    def restart(self, letter: str) -> None:
        """Start a stopped or killed node again; it rejoins from its own data."""
        self.nodes[letter].start()

    def close(self) -> None:
        """Stop every node (all at once) and remove their data."""
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(lambda n: n.close(), self.nodes.values()))

    def ctl(self, letter: str, *args: str, timeout: float = 60) -> str:
        """`rabbitmqctl` against one node (with the cluster's cookie); its standard output."""
        argv = [
            str(RABBITMQ_LIBEXEC / "rabbitmqctl"),
            "--erlang-cookie",
            self.cookie,
            "-n",
            self.nodes[letter].node,
            *args,
        ]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def management_get(self, path: str, *, letter: str | None = None) -> Any:
        """GET `/api/<path>` from the first running node's management API (or `letter`'s)."""
        candidates = [letter] if letter else list(self.nodes)
        error: Exception | None = None
        for candidate in candidates:
            request = urllib.request.Request(
                f"{self.nodes[candidate].management_url}/api/{path}",
                headers={"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode()},
            )
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    return json.loads(response.read())
            except OSError as exc:
                error = exc
        raise RuntimeError(f"no management API answered /api/{path}: {error!r}")

    def running_members(self) -> set[str]:
        """The node names the cluster reports running (from the management API)."""
        return {n["name"] for n in self.management_get("nodes") if n.get("running")}

    def queue_leader(self, queue: str, vhost: str = "/") -> str:
        """The letter of the node that leads (quorum) or hosts (classic) `queue`."""
        path = f"queues/{urllib.parse.quote(vhost, safe='')}/{urllib.parse.quote(queue, safe='')}"
        info = self.management_get(path)
        return self.letter_of(str(info.get("leader") or info["node"]))
