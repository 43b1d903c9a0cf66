"""The shipped dashboard and alerting rules against a real Prometheus: while a batch runs, it
scrapes the operator, the batch's worker, the api and RabbitMQ's per-object endpoint, labelled as
manifests/monitoring/'s PodMonitors label them; every panel query then returns series and every
rule file loads and evaluates."""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from imagebatch.core.settings import CommonSettings
from imagebatch.devservers.operator_process import OperatorProcess
from imagebatch.devservers.prometheus import PrometheusServer, ScrapeJob
from imagebatch.devservers.service_process import api_process
from tests.support.image_server import ImageServer
from tests.support.monitoring import RULES, dashboard_queries, rule_groups
from tests.support.operator import Batches, eventually
from tests.support.servers import ServerHandle

if TYPE_CHECKING:
    from imagebatch.devservers.supervisor import WorkerSupervisor

JOBS = [
    ScrapeJob("operator"),
    ScrapeJob("api"),
    ScrapeJob("worker"),
    ScrapeJob("rabbitmq", metrics_path="/metrics/per-object"),
]


@contextlib.asynccontextmanager
async def prometheus() -> AsyncIterator[PrometheusServer]:
    server = PrometheusServer(JOBS, rule_files=[RULES])
    try:
        yield await asyncio.to_thread(server.start)
    finally:
        await asyncio.to_thread(server.close)


def address(url: str) -> str:
    return urllib.parse.urlsplit(url).netloc


async def test_every_dashboard_panel_and_alert_rule_reads_real_series_while_a_batch_runs(
    operator: OperatorProcess,
    supervisor: WorkerSupervisor,
    batches: Batches,
    image_server: ImageServer,
    messaging: CommonSettings,
    rabbitmq_server: ServerHandle,
    namespace: str,
    tmp_path: Path,
) -> None:
    image_server.photo_delay = 0.2  # ~5 images/s: the batch still runs while the test looks
    urls = [image_server.url("/status/404")] * 2
    urls += [image_server.url(f"/photo/{n}.jpg") for n in range(200)]
    one_slow_worker = {"maxReplicas": 1, "concurrency": 1, "prefetch": 1}
    await batches.create(
        "watched", {"source": {"urls": urls}, "maxFailed": "50%", "workers": one_slow_worker}
    )
    panels = list(dashboard_queries())

    async with prometheus() as server, api_process(messaging, tmp_path) as (api_url, _):
        server.targets("operator", [address(operator.metrics_url)])
        server.targets("api", [address(api_url)])
        server.targets("rabbitmq", [address(rabbitmq_server.extra["prometheus_url"])])
        async with httpx.AsyncClient(base_url=api_url) as client:
            accepted = await client.post("/tasks", json={"url": image_server.url("/photo/1.jpg")})
            assert accepted.status_code == 202, accepted.text

        def workers_scraped() -> None:
            """The batch's running workers, labelled as the batch-workers PodMonitor does."""
            live = supervisor.workers(namespace, "watched-worker")
            server.targets(
                "worker",
                {
                    f"127.0.0.1:{w.metrics_port}": {"namespace": namespace, "batch": "watched"}
                    for w in live
                    if w.state == "running"
                },
            )

        async def empty_panels() -> list[tuple[str, str]]:
            workers_scraped()
            return [
                (title, expr)
                for title, expr in panels
                if not await asyncio.to_thread(server.query, expr)
            ]

        began = time.monotonic()
        await eventually(
            empty_panels, lambda empty: not empty, within=120, what="a series for every panel"
        )
        panels_seconds = time.monotonic() - began
        up = await asyncio.to_thread(server.query, "up == 1")

        async def rules() -> list[dict[str, Any]]:
            groups: list[dict[str, Any]] = (await asyncio.to_thread(server.api, "rules"))["groups"]
            return groups

        def all_healthy(groups: list[dict[str, Any]]) -> bool:
            return bool(groups) and all(
                rule["health"] == "ok" for group in groups for rule in group["rules"]
            )

        loaded = await eventually(
            rules, all_healthy, within=30, what="every rule evaluated without error"
        )
        status = await batches.status("watched")

    assert {series["metric"]["job"] for series in up} == {job.name for job in JOBS}
    assert {group["name"] for group in loaded} == {group["name"] for group in rule_groups()}
    shipped = {rule.get("alert") or rule["record"] for g in rule_groups() for rule in g["rules"]}
    assert {rule["name"] for group in loaded for rule in group["rules"]} == shipped
    assert status["phase"] in ("Publishing", "Running"), "the series were read while it ran"
    print(f"every panel had a series {panels_seconds:.1f}s after Prometheus started")
