"""A throwaway Prometheus from Debian's `prometheus` package, scraping loopback targets.

Debian's 2.42 rather than Prometheus 3 built from its Go module: apt installs it in seconds (CI
already installs the package for `promtool`), a build takes minutes, and what is tested here —
PromQL, scraping, loading rule files — reads the same in both for our queries and rules.

Every job is discovered from a file (`file_sd_configs`) that `targets()` rewrites, so a test can
add the worker processes it only learns about while a batch runs, with the labels a PodMonitor
would give them. Scrapes and rule evaluations run every second, so a query finds rates within
seconds of the first sample.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagebatch.devservers.process import (
    OneProcessServer,
    ServerStartError,
    find_binary,
    free_port,
    http_ok,
    spawn,
    wait_until,
)


@dataclass(frozen=True)
class ScrapeJob:
    """One scrape job: its `job` label and the path its targets serve metrics on."""

    name: str
    metrics_path: str = "/metrics"


@dataclass
class PrometheusServer(OneProcessServer):
    """Prometheus on a free loopback port with a temporary TSDB, loading `rule_files`."""

    jobs: Sequence[ScrapeJob]
    rule_files: Sequence[Path] = ()
    interval: str = "1s"
    port: int = field(default_factory=free_port)
    startup_seconds: float = 0.0
    stop_timeout = 20.0

    def __post_init__(self) -> None:
        binary = find_binary("prometheus")
        if binary is None:
            raise ServerStartError("prometheus not found (apt-get install prometheus)")
        self._binary = binary
        self.base = Path(tempfile.mkdtemp(prefix="imagebatch-prometheus-"))
        self.log = self.base / "prometheus.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _targets_file(self, job: str) -> Path:
        return self.base / f"targets-{job}.json"

    def _write_config(self) -> Path:
        scrape_configs = [
            {
                "job_name": job.name,
                "metrics_path": job.metrics_path,
                "file_sd_configs": [
                    {"files": [str(self._targets_file(job.name))], "refresh_interval": "1s"}
                ],
            }
            for job in self.jobs
        ]
        config = {
            "global": {
                "scrape_interval": self.interval,
                "scrape_timeout": self.interval,
                "evaluation_interval": self.interval,
            },
            "rule_files": [str(Path(path).absolute()) for path in self.rule_files],
            "scrape_configs": scrape_configs,
        }
        for job in self.jobs:
            self.targets(job.name, [])
        path = self.base / "prometheus.yml"
        path.write_text(json.dumps(config, indent=2))  # JSON is YAML
        return path

    def targets(self, job: str, addresses: Mapping[str, Mapping[str, str]] | Sequence[str]) -> None:
        """Scrape `job` at these `host:port` addresses from now on (a mapping gives each its own
        extra labels); written atomically, so Prometheus never reads half a file."""
        labelled = addresses if isinstance(addresses, Mapping) else {a: {} for a in addresses}
        groups = [
            {"targets": [address], "labels": dict(labels)} for address, labels in labelled.items()
        ]
        path = self._targets_file(job)
        partial = path.with_suffix(".tmp")
        partial.write_text(json.dumps(groups))
        os.replace(partial, path)

    def start(self) -> PrometheusServer:
        began = time.monotonic()
        config = self._write_config()
        self._process = spawn(
            [
                self._binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.base / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            log=self.log,
            cwd=self.base,
        )
        wait_until(
            lambda: http_ok(f"{self.url}/-/ready"),
            timeout=60,
            what="Prometheus",
            process=self._process,
            log=self.log,
            interval=0.2,
        )
        self.startup_seconds = time.monotonic() - began
        return self

    def api(self, path: str, **params: str) -> Any:
        """The `data` of one HTTP API answer (`/api/v1/...`); an error answer raises."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=10) as response:
            body = json.load(response)
        if body.get("status") != "success":
            raise RuntimeError(f"Prometheus answered {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The series an instant query returns now (`/api/v1/query`)."""
        data = self.api("query", query=expr)
        result: list[dict[str, Any]] = data["result"] if data["resultType"] == "vector" else []
        return result
