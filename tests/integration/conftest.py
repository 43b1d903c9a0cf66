"""Fixtures of the integration tests (real PostgreSQL and RabbitMQ, services in-process)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from imagebatch.api.settings import ApiSettings
from imagebatch.core.settings import CommonSettings
from imagebatch.core.telemetry import setup_tracing
from tests.support.api import Inbox, api_settings, running_api


@pytest.fixture
def api_config(messaging: CommonSettings, tmp_path: Path) -> ApiSettings:
    """The api's settings on this test's database, exchange and folders."""
    return api_settings(messaging, tmp_path)


@pytest.fixture
async def api(api_config: ApiSettings) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client talking to the running api in-process."""
    async with running_api(api_config) as client:
        yield client


@pytest.fixture
async def job_inbox(messaging: CommonSettings) -> AsyncIterator[Inbox]:
    """The work queue the api publishes to, read as a worker would."""
    async with Inbox(messaging) as queue:
        yield queue


@pytest.fixture(scope="session")
def span_exporter() -> InMemorySpanExporter:
    """Spans this process records (tracing installed once per process, like the services do)."""
    exporter = InMemorySpanExporter()
    setup_tracing("imagebatch-tests", processor=SimpleSpanProcessor(exporter))
    return exporter


@pytest.fixture
def spans(span_exporter: InMemorySpanExporter) -> InMemorySpanExporter:
    """The span exporter, emptied for this test."""
    span_exporter.clear()
    return span_exporter
