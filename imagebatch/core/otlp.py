"""Where traces go: OpenTelemetry's exporter variables turned into one (protocol, URL) choice.

The services follow OpenTelemetry's own variables so an operator's existing collector settings
work unchanged, with two of the project's rules on top (the contract, "⚑ Observability"):

- nothing is exported unless an endpoint is set (tracing costs a worker measurably);
- a URL ending in `/v1/traces` is OTLP/HTTP to exactly that URL, whatever the protocol says: it
  is the seed's documented `http://collector:4318/v1/traces`, and a gRPC exporter would silently
  drop the path and send to the wrong port.

Otherwise, as the OTel specification says: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is used as it is;
`OTEL_EXPORTER_OTLP_ENDPOINT` is a base URL, to which OTLP/HTTP appends `/v1/traces`. When
`OTEL_EXPORTER_OTLP_PROTOCOL` is unset the protocol is gRPC (the Python exporter's default, and
what docker compose's `http://otel-collector:4317` has always meant here).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

OtlpProtocol = Literal["grpc", "http/protobuf"]
"""The protocols the installed exporters speak (`http/json` has no Python exporter)."""

TRACES_PATH = "/v1/traces"


@dataclass(frozen=True)
class OtlpTarget:
    """One exporter's protocol and the URL it sends to."""

    protocol: OtlpProtocol
    url: str


def _is_traces_url(url: str) -> bool:
    return urlsplit(url).path.rstrip("/").endswith(TRACES_PATH)


def otlp_target(
    *,
    protocol: OtlpProtocol | None,
    endpoint: str | None,
    traces_endpoint: str | None,
) -> OtlpTarget | None:
    """The exporter the variables ask for, or None when they ask for no export.

    `protocol`, `endpoint` and `traces_endpoint` are `OTEL_EXPORTER_OTLP_PROTOCOL`,
    `OTEL_EXPORTER_OTLP_ENDPOINT` and `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`; blank means unset.
    """
    traces_endpoint = (traces_endpoint or "").strip() or None
    endpoint = (endpoint or "").strip() or None
    url = traces_endpoint or endpoint
    if url is None:
        return None
    if _is_traces_url(url):
        return OtlpTarget("http/protobuf", url)
    chosen: OtlpProtocol = protocol or "grpc"
    if chosen == "http/protobuf" and traces_endpoint is None:
        url = url.rstrip("/") + TRACES_PATH
    return OtlpTarget(chosen, url)
