"""A throwaway PostgreSQL cluster from the distribution's server binaries (initdb + pg_ctl)."""

from __future__ import annotations

import getpass
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from imagebatch.devservers.process import (
    ServerStartError,
    ThrowawayServer,
    find_binary,
    free_port,
    log_tail,
    wait_until,
)

SERVER_USER = "postgres"
"""initdb and postgres refuse to run as root; as root we run them as this user."""


def postgres_bindir() -> Path | None:
    """The newest /usr/lib/postgresql/<major>/bin, else the folder of `initdb` on PATH."""
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    for folder in versions:
        if (folder / "initdb").exists():
            return folder
    initdb = shutil.which("initdb")
    return Path(os.path.realpath(initdb)).parent if initdb else None


@dataclass
class PostgresServer(ThrowawayServer):
    """One cluster on a free loopback port, trust auth for user `postgres`, fsync off by default.

    `start()` returns once a client can connect; `stop()` removes the data folder.
    """

    port: int = field(default_factory=free_port)
    durable: bool = False
    base_dir: Path | None = None
    startup_seconds: float = 0.0

    def __post_init__(self) -> None:
        self._as_other_user = os.geteuid() == 0
        self._owns_base = self.base_dir is None
        self.base = Path(self.base_dir or tempfile.mkdtemp(prefix="imagebatch-pg-"))
        self.data = self.base / "data"
        self.log = self.base / "postgres.log"
        bindir = postgres_bindir()
        if bindir is None:
            raise ServerStartError(
                "PostgreSQL server binaries not found (apt-get install postgresql)"
            )
        self.bindir = bindir

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def dsn(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        if self._as_other_user:
            argv = ["runuser", "-u", SERVER_USER, "--", *argv]
        return subprocess.run(argv, capture_output=True, text=True, check=False)

    def start(self) -> PostgresServer:
        began = time.monotonic()
        if self._as_other_user:
            entry = pwd.getpwnam(SERVER_USER)
            os.chmod(self.base, 0o755)
            os.chown(self.base, entry.pw_uid, entry.pw_gid)
        user = getpass.getuser() if not self._as_other_user else SERVER_USER
        result = self._run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
                "--no-instructions",
            ]
        )
        if result.returncode != 0:
            raise ServerStartError(f"initdb failed as {user}: {result.stderr or result.stdout}")
        options = [
            f"-p {self.port}",
            "-c listen_addresses=127.0.0.1",
            f"-c unix_socket_directories={self.data}",
            "-c max_connections=200",
        ]
        if not self.durable:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        self._options = " ".join(options)
        self._pg_ctl_start()
        self.startup_seconds = time.monotonic() - began
        return self

    def _pg_ctl_start(self) -> None:
        """Start the cluster initdb made (again) and wait until it takes connections."""
        result = self._run(
            [
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.log),
                "-o",
                self._options,
                "-w",
                "-t",
                "60",
                "start",
            ]
        )
        if result.returncode != 0:
            raise ServerStartError(f"pg_ctl start failed: {result.stderr}\n{log_tail(self.log)}")
        self._wait_ready()

    def _wait_ready(self) -> None:
        pg_isready = find_binary("pg_isready", self.bindir)
        if pg_isready:
            wait_until(
                lambda: (
                    subprocess.run(
                        [pg_isready, "-h", "127.0.0.1", "-p", str(self.port)], capture_output=True
                    ).returncode
                    == 0
                ),
                timeout=30,
                what="PostgreSQL",
                log=self.log,
            )

    def crash(self) -> None:
        """`pg_ctl stop -m immediate`: every backend quits at once, without a checkpoint, as in
        a crash; the data folder stays for `recover` (the two halves of `pg_ctl restart -m
        immediate`, with the outage as long as the caller wants)."""
        result = self._run(
            [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"]
        )
        if result.returncode != 0:
            raise ServerStartError(f"pg_ctl stop failed: {result.stderr}")

    def recover(self) -> None:
        """Start again after `crash` (PostgreSQL replays its WAL first) and wait until it takes
        connections."""
        self._pg_ctl_start()

    def close(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(
                [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"]
            )
        if self._owns_base:
            shutil.rmtree(self.base, ignore_errors=True)
