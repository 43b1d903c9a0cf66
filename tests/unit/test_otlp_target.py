"""Where the services send traces, from OpenTelemetry's exporter variables (the contract,
"⚑ Observability"): the seed's documented value works as written, an OTel base URL gets the
traces path only for OTLP/HTTP, and nothing is exported without an endpoint."""

from __future__ import annotations

import pytest

from imagebatch.core.otlp import OtlpProtocol, OtlpTarget, otlp_target
from imagebatch.core.settings import CommonSettings

HTTP: OtlpProtocol = "http/protobuf"


@pytest.mark.parametrize(
    ("protocol", "endpoint", "traces_endpoint", "expected"),
    [
        # nothing set, or blank: no export at all (the protocol alone asks for nothing)
        (None, None, None, None),
        ("grpc", None, None, None),
        (HTTP, "  ", "", None),
        # the seed's documented value: OTLP/HTTP to exactly that URL
        (
            None,
            "http://collector:4318/v1/traces",
            None,
            OtlpTarget(HTTP, "http://collector:4318/v1/traces"),
        ),
        (
            HTTP,
            "http://collector:4318/v1/traces",
            None,
            OtlpTarget(HTTP, "http://collector:4318/v1/traces"),
        ),
        # ... even where the protocol says gRPC, which would drop the path and miss the port
        (
            "grpc",
            "http://collector:4318/v1/traces",
            None,
            OtlpTarget(HTTP, "http://collector:4318/v1/traces"),
        ),
        (
            None,
            "http://collector:4318/v1/traces/",
            None,
            OtlpTarget(HTTP, "http://collector:4318/v1/traces/"),
        ),
        # a base URL: gRPC takes it as it is (the default, and docker compose's meaning) ...
        (
            None,
            "http://otel-collector:4317",
            None,
            OtlpTarget("grpc", "http://otel-collector:4317"),
        ),
        (
            "grpc",
            "https://otel.example:4317",
            None,
            OtlpTarget("grpc", "https://otel.example:4317"),
        ),
        # ... OTLP/HTTP appends the signal's path, as the OTel specification says
        (
            HTTP,
            "http://otel-collector:4318",
            None,
            OtlpTarget(HTTP, "http://otel-collector:4318/v1/traces"),
        ),
        (
            HTTP,
            "http://otel-collector:4318/",
            None,
            OtlpTarget(HTTP, "http://otel-collector:4318/v1/traces"),
        ),
        (
            HTTP,
            "https://gw.example/otlp",
            None,
            OtlpTarget(HTTP, "https://gw.example/otlp/v1/traces"),
        ),
        # the traces endpoint is used as it is, and wins over the base URL
        (HTTP, None, "http://c:4318/custom", OtlpTarget(HTTP, "http://c:4318/custom")),
        (
            HTTP,
            "http://base:4318",
            "http://c:4318/custom",
            OtlpTarget(HTTP, "http://c:4318/custom"),
        ),
        (None, "http://base:4318", "http://c:4317", OtlpTarget("grpc", "http://c:4317")),
        (None, None, "http://c:4318/v1/traces", OtlpTarget(HTTP, "http://c:4318/v1/traces")),
        (
            "grpc",
            "http://base:4318/v1/traces",
            "http://c:4317",
            OtlpTarget("grpc", "http://c:4317"),
        ),
    ],
)
def test_the_exporter_variables_choose_one_protocol_and_url(
    protocol: OtlpProtocol | None,
    endpoint: str | None,
    traces_endpoint: str | None,
    expected: OtlpTarget | None,
) -> None:
    chosen = otlp_target(protocol=protocol, endpoint=endpoint, traces_endpoint=traces_endpoint)
    assert chosen == expected


def test_the_settings_read_the_otel_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    assert CommonSettings().otlp() == OtlpTarget(HTTP, "http://collector:4318/v1/traces")


def test_a_protocol_no_exporter_speaks_stops_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
    with pytest.raises(ValueError, match="otel_exporter_otlp_protocol"):
        CommonSettings()
