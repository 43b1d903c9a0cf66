"""A throwaway RabbitMQ node from Debian's `rabbitmq-server`, with the management plugin and
the `rabbitmq_prometheus` plugin (`/metrics/per-object` on `prometheus_port`).

Each node has its own name, AMQP/distribution/management ports and data folder, so several can run
beside each other and beside a system broker. As root, the node runs as the `rabbitmq` user (as the
Debian wrapper does), so its folders belong to that user.
"""

from __future__ import annotations

import base64
import contextlib
import os
import pwd
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from imagebatch.devservers.process import (
    OneProcessServer,
    ServerStartError,
    free_port,
    spawn,
    stop_group,
    wait_until,
)

RABBITMQ_LIBEXEC = Path("/usr/lib/rabbitmq/bin")
SERVER_USER = "rabbitmq"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is gone for our purposes once its state says so.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1]
    except (OSError, IndexError):
        return False
    return state != "Z"


def amqp_answers(port: int, host: str = "127.0.0.1") -> bool:
    """True once the broker answers an AMQP 0-9-1 protocol header with Connection.Start."""
    with socket.create_connection((host, port), timeout=1.0) as sock:
        sock.sendall(b"AMQP\x00\x00\x09\x01")
        sock.settimeout(2.0)
        first = sock.recv(1)
        return first == b"\x01"


@dataclass
class RabbitMQServer(OneProcessServer):
    """One RabbitMQ node on free loopback ports; `guest`/`guest` may log in from loopback."""

    management: bool = True
    port: int = field(default_factory=free_port)
    dist_port: int = field(default_factory=free_port)
    management_port: int = field(default_factory=free_port)
    prometheus_port: int = field(default_factory=free_port)
    startup_seconds: float = 0.0
    node_name: str = ""
    """The Erlang node name; `imagebatch<port>@localhost` unless a cluster names its nodes."""
    extra_config: tuple[str, ...] = ()
    """More `rabbitmq.conf` lines (a cluster node's peer discovery)."""
    erlang_cookie: str = ""
    """The cookie the nodes of one cluster share; empty: the server user's own."""

    def __post_init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="imagebatch-rabbit-"))
        self.node = self.node_name or f"imagebatch{self.port}@localhost"
        self.log = self.base / "rabbitmq.log"
        self._process: subprocess.Popen[bytes] | None = None
        server = RABBITMQ_LIBEXEC / "rabbitmq-server"
        if not server.exists():
            raise ServerStartError("rabbitmq-server not found (apt-get install rabbitmq-server)")
        self._server = server

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    @property
    def management_url(self) -> str:
        return f"http://127.0.0.1:{self.management_port}"

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.prometheus_port}"

    def _write_config(self) -> dict[str, str]:
        for sub in ("mnesia", "log"):
            (self.base / sub).mkdir(exist_ok=True)
        (self.base / "rabbitmq.conf").write_text(
            "\n".join(
                [
                    f"listeners.tcp.1 = 127.0.0.1:{self.port}",
                    "loopback_users = none",
                    f"management.tcp.port = {self.management_port}",
                    "management.tcp.ip = 127.0.0.1",
                    f"prometheus.tcp.port = {self.prometheus_port}",
                    "prometheus.tcp.ip = 127.0.0.1",
                    "disk_free_limit.absolute = 50MB",
                    "log.console = true",
                    "log.console.level = warning",
                    "log.file = false",
                    *self.extra_config,
                    "",
                ]
            )
        )
        plugins = "[rabbitmq_management,rabbitmq_prometheus]." if self.management else "[]."
        (self.base / "enabled_plugins").write_text(plugins + "\n")
        if os.geteuid() == 0:
            entry = pwd.getpwnam(SERVER_USER)
            for path in [self.base, *self.base.rglob("*")]:
                os.chown(path, entry.pw_uid, entry.pw_gid)
        cookie = {"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": f"-setcookie {self.erlang_cookie}"}
        return {
            **(cookie if self.erlang_cookie else {}),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_PLUGINS_EXPAND_DIR": str(self.base / "plugins-expand"),
            "RABBITMQ_PID_FILE": str(self.base / "rabbitmq.pid"),
            "RABBITMQ_LOGS": "-",
        }

    def start(self) -> RabbitMQServer:
        """Start (or restart, keeping its data) the node and wait until AMQP answers."""
        began = time.monotonic()
        env = self._write_config()
        argv = [str(self._server)]
        if os.geteuid() == 0:
            argv = ["runuser", "-u", SERVER_USER, "--", *argv]
        self._process = spawn(argv, log=self.log, env=env, cwd=self.base)
        wait_until(
            lambda: amqp_answers(self.port),
            timeout=90,
            what="RabbitMQ",
            process=self._process,
            log=self.log,
            interval=0.2,
        )
        if self.management:
            wait_until(
                self._management_answers, timeout=60, what="RabbitMQ management", log=self.log
            )
        self.startup_seconds = time.monotonic() - began
        return self

    def _management_answers(self) -> bool:
        request = urllib.request.Request(
            f"{self.management_url}/api/overview",
            headers={"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode()},
        )
        with urllib.request.urlopen(request, timeout=2) as response:
            return bool(response.status == 200)

    @property
    def node_pid(self) -> int | None:
        """The Erlang VM's pid (the wrapper script's child), while the node runs."""
        return self._node_pid()

    def _node_pid(self) -> int | None:
        try:
            return int((self.base / "rabbitmq.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        """Stop the node, keeping its data so that `start()` brings the same broker back.

        The Erlang VM does not stay in the wrapper's process group, so it is stopped through the
        pid it wrote (SIGTERM is a clean shutdown for it) and waited on until it is gone.
        """
        pid = self._node_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.1)
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            (self.base / "rabbitmq.pid").unlink(missing_ok=True)
        stop_group(self._process, timeout=30)
        self._process = None

    def kill(self) -> None:
        """Kill the node at once (SIGKILL), as a crash would; `start()` brings it back."""
        pid = self._node_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.05)
        self.stop()
