"""A throwaway Jaeger v2 (the OpenTelemetry-Collector-based `jaeger` binary): OTLP receivers in,
in-memory trace storage, and the query API out, every listener on a free 127.0.0.1 port.

The binary comes from `JAEGER_DIR`, else from the cache `hack/jaeger/build.sh` (`make jaeger`)
fills. Its configuration is a small file of our own rather than the built-in all-in-one one,
whose listeners (4317, 4318, 16686, 5778, 13133, 8888 …) are fixed ports on every interface: only
the OTLP receivers (gRPC and HTTP), the memory store, and the query extension (HTTP, the API
`/api/traces` answers on, and its gRPC twin) are configured; the collector's own metrics
listener is turned off, and so is the query service's tracing of itself. The file is JSON, which
is YAML too.

`traces(service)` and `trace(trace_id)` read the query API the Jaeger UI reads (its spans carry
`references`: the parent as `CHILD_OF`, span links as `FOLLOWS_FROM`).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagebatch.devservers.process import (
    OneProcessServer,
    find_cached,
    free_port,
    http_ok,
    spawn,
    tcp_open,
    wait_until,
)

BINARY = "jaeger"
STORE = "memstore"


def find_jaeger() -> Path:
    """The `jaeger` binary from `JAEGER_DIR` or the build cache, or a clear error."""
    folder = find_cached(
        env="JAEGER_DIR", cache=BINARY, needs=[BINARY], what="Jaeger", make="jaeger"
    )
    return folder / BINARY


def jaeger_config(
    *, otlp_grpc_port: int, otlp_http_port: int, query_port: int, query_grpc_port: int
) -> dict[str, Any]:
    """The collector configuration: OTLP in, the memory store, the query API out (loopback)."""
    return {
        "service": {
            "extensions": ["jaeger_storage", "jaeger_query"],
            "pipelines": {
                "traces": {
                    "receivers": ["otlp"],
                    "processors": [],
                    "exporters": ["jaeger_storage_exporter"],
                }
            },
            "telemetry": {"metrics": {"level": "none"}, "logs": {"level": "info"}},
        },
        "extensions": {
            "jaeger_storage": {"backends": {STORE: {"memory": {"max_traces": 100_000}}}},
            "jaeger_query": {
                "storage": {"traces": STORE},
                "enable_tracing": False,
                "http": {"endpoint": f"127.0.0.1:{query_port}"},
                "grpc": {"endpoint": f"127.0.0.1:{query_grpc_port}"},
            },
        },
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": {"endpoint": f"127.0.0.1:{otlp_grpc_port}"},
                    "http": {"endpoint": f"127.0.0.1:{otlp_http_port}"},
                }
            }
        },
        "exporters": {"jaeger_storage_exporter": {"trace_storage": STORE}},
    }


@dataclass
class JaegerServer(OneProcessServer):
    """One Jaeger with in-memory storage; `close()` stops it and removes its folder (and so
    every trace it held)."""

    binary: Path = field(default_factory=find_jaeger)
    otlp_grpc_port: int = field(default_factory=free_port)
    otlp_http_port: int = field(default_factory=free_port)
    query_port: int = field(default_factory=free_port)
    query_grpc_port: int = field(default_factory=free_port)
    startup_seconds: float = 0.0

    def __post_init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="imagebatch-jaeger-"))
        self.config = self.base / "config.yaml"
        self.log = self.base / "jaeger.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def otlp_grpc_endpoint(self) -> str:
        """`OTEL_EXPORTER_OTLP_ENDPOINT` for OTLP/gRPC (the services' default protocol)."""
        return f"http://127.0.0.1:{self.otlp_grpc_port}"

    @property
    def otlp_http_traces_url(self) -> str:
        """The OTLP/HTTP traces URL, in the form of the seed's `http://collector:4318/v1/traces`."""
        return f"http://127.0.0.1:{self.otlp_http_port}/v1/traces"

    @property
    def query_url(self) -> str:
        return f"http://127.0.0.1:{self.query_port}"

    def start(self) -> JaegerServer:
        began = time.monotonic()
        config = jaeger_config(
            otlp_grpc_port=self.otlp_grpc_port,
            otlp_http_port=self.otlp_http_port,
            query_port=self.query_port,
            query_grpc_port=self.query_grpc_port,
        )
        self.config.write_text(json.dumps(config, indent=2))
        self._process = spawn(
            [str(self.binary), "--config", str(self.config)], log=self.log, cwd=self.base
        )
        # The query extension starts before the pipeline's receivers: ready once all answer.
        wait_until(
            lambda: (
                http_ok(f"{self.query_url}/api/services")
                and tcp_open("127.0.0.1", self.otlp_grpc_port)
                and tcp_open("127.0.0.1", self.otlp_http_port)
            ),
            timeout=60,
            what="jaeger",
            process=self._process,
            log=self.log,
        )
        self.startup_seconds = time.monotonic() - began
        return self

    # -- the query API ---------------------------------------------------------------------

    def query(self, path: str, **params: str | int) -> Any:
        """GET `path` of the query API; its JSON `data` (any status but 200 raises)."""
        url = f"{self.query_url}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.load(response)["data"]

    def services(self) -> list[str]:
        return list(self.query("/api/services") or [])

    def traces(self, service: str, *, limit: int = 100, **params: str | int) -> list[JaegerTrace]:
        """The traces with a span of `service` (the UI's search), newest first."""
        found = self.query("/api/traces", service=service, limit=limit, **params) or []
        return [JaegerTrace.from_json(t) for t in found]

    def trace(self, trace_id: str) -> JaegerTrace:
        [found] = self.query(f"/api/traces/{trace_id}")
        return JaegerTrace.from_json(found)


@dataclass(frozen=True)
class JaegerSpan:
    """One span as the query API shows it."""

    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str | None
    """The `CHILD_OF` reference (in this trace), if any."""
    links: tuple[tuple[str, str], ...]
    """(trace id, span id) of each `FOLLOWS_FROM` reference: the span's links."""
    tags: dict[str, Any]


@dataclass(frozen=True)
class JaegerTrace:
    trace_id: str
    spans: tuple[JaegerSpan, ...]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JaegerTrace:
        services = {key: p["serviceName"] for key, p in data.get("processes", {}).items()}
        spans = []
        for span in data.get("spans", []):
            references = span.get("references") or []
            parents = [r["spanID"] for r in references if r["refType"] == "CHILD_OF"]
            spans.append(
                JaegerSpan(
                    service=services.get(span.get("processID", ""), ""),
                    name=span["operationName"],
                    trace_id=span["traceID"],
                    span_id=span["spanID"],
                    parent_id=parents[0] if parents else None,
                    links=tuple(
                        (r["traceID"], r["spanID"])
                        for r in references
                        if r["refType"] == "FOLLOWS_FROM"
                    ),
                    tags={t["key"]: t.get("value") for t in span.get("tags") or []},
                )
            )
        return cls(data["traceID"], tuple(spans))

    def named(self, name: str, service: str | None = None) -> list[JaegerSpan]:
        return [s for s in self.spans if s.name == name and service in (None, s.service)]

    def ancestors(self, span: JaegerSpan) -> list[JaegerSpan]:
        """`span`'s parent, its parent's parent … up to the root (nearest first)."""
        by_id = {s.span_id: s for s in self.spans}
        chain: list[JaegerSpan] = []
        while span.parent_id is not None and span.parent_id in by_id:
            span = by_id[span.parent_id]
            chain.append(span)
        return chain
