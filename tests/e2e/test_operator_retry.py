"""Operating a batch after it ran: why its items failed (`status.failureReasons`), the manifest
of every item, and the retry of just the failed ones — through the `imagejobs.io/retry-failed`
annotation, `POST /batches/{name}/retry` and `kubectl imagebatch retry` — with the operator, the
api and local worker processes, and an image origin whose missing photos the test "fixes" in
between."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from imagebatch.core.retry_request import RETRY_FAILED_ANNOTATION as ANNOTATION
from imagebatch.core.settings import CommonSettings
from imagebatch.devservers.operator_process import OperatorProcess
from imagebatch.devservers.service_process import api_process
from tests.support.image_server import ImageServer
from tests.support.k8s import KubeCluster
from tests.support.kubectl_plugin import kubectl_imagebatch
from tests.support.operator import Batches, OperatorFactory, eventually

GENTLE = {"maxReplicas": 2, "messagesPerReplica": 250, "concurrency": 8, "prefetch": 16}
"""Two local worker processes at most: they share two cores with the rest of the suite."""


def urls(server: ImageServer, total: int, missing: int) -> list[str]:
    """`total` photos, every (total / missing)-th one 404 until the origin is fixed."""
    step = total // missing
    return [
        server.url(f"/missing/{n}.jpg" if n % step == 0 else f"/photo/{n}.jpg")
        for n in range(total)
    ]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """The local workers' /data (tests/support/operator.py `supervise`)."""
    folder = tmp_path / "data"
    folder.mkdir(exist_ok=True)
    return folder


@pytest.fixture
async def operator(
    start_operator: OperatorFactory, connections_secret: str, data_dir: Path
) -> OperatorProcess:
    """The operator with the workers' folder mounted, as a cluster mounts their claim: it writes
    the manifests of file outputs there."""
    return await start_operator(WORKER_DATA_DIR=str(data_dir))


def manifest(data_dir: Path, namespace: str, name: str) -> list[dict[str, Any]]:
    """The lines of the batch's manifest.jsonl ([] while there is none)."""
    path = data_dir / namespace / name / "manifest.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def statuses(lines: list[dict[str, Any]]) -> dict[str, int]:
    return dict(Counter(line["status"] for line in lines))


def retried_as(request: str) -> Any:
    return lambda s: (s.get("lastRetry") or {}).get("request") == request


async def retry_events(batches: Batches, name: str) -> list[str]:
    return [message for reason, message in await batches.events(name) if reason == "RetryingFailed"]


async def test_a_succeeded_batch_says_why_items_failed_and_retries_just_those_once(
    operator: OperatorProcess,
    supervisor: object,
    batches: Batches,
    image_server: ImageServer,
    data_dir: Path,
    namespace: str,
) -> None:
    await batches.create(
        "photos", {"source": {"urls": urls(image_server, 300, 30)}, "workers": GENTLE}
    )

    done = await batches.wait_phase("photos", "Succeeded", within=240)
    assert (done["succeeded"], done["failed"]) == (270, 30), "30 failed is within maxFailed 10%"
    assert done["failureReasons"] == [{"reason": "http_404", "count": 30}]
    ended = await batches.wait_status("photos", lambda s: "manifest" in s, what="a manifest")
    assert ended["manifest"] == f"file:///data/{namespace}/photos/manifest.jsonl"
    lines = manifest(data_dir, namespace, "photos")
    assert statuses(lines) == {"completed": 270, "failed": 30}
    assert len({line["id"] for line in lines}) == 300
    failed = [line for line in lines if line["status"] == "failed"]
    assert all("/missing/" in line["url"] and "404" in line["error"] for line in failed)
    assert all(line["outputs"] for line in lines if line["status"] == "completed")

    image_server.missing_fixed = True
    await batches.annotate("photos", {ANNOTATION: "fix-1"})

    running = await batches.wait_status(
        "photos", lambda s: retried_as("fix-1")(s) and s.get("phase") == "Running", within=60
    )
    assert running["failed"] == 0
    assert running["lastRetry"]["items"] == 30
    assert "completionTime" not in running
    again = await batches.wait_phase("photos", "Succeeded", within=180)
    assert (again["succeeded"], again["failed"], again["total"]) == (300, 0, 300)
    assert again["progress"] == "300/300"
    assert again["failureReasons"] == []
    await batches.wait_replicas("photos", 0)
    missing = [f"/missing/{n}.jpg" for n in range(0, 300, 10)]
    assert {image_server.hits[path] for path in missing} == {2}, "a 404, then the photo"
    rewritten = await eventually(
        lambda: asyncio.to_thread(manifest, data_dir, namespace, "photos"),
        lambda lines: statuses(lines) == {"completed": 300},
        what="the manifest rewritten after the retried batch ended",
    )
    assert len({line["id"] for line in rewritten}) == 300
    assert (await batches.status("photos"))["manifest"] == ended["manifest"]

    # The same value set again (removed, then put back with a spec change the operator shows
    # it has seen) is not acted on.
    await batches.annotate("photos", {ANNOTATION: None})
    await batches.annotate("photos", {ANNOTATION: "fix-1"})
    await batches.patch_spec("photos", {"ttlSecondsAfterFinished": 3600})
    obj = await batches.get("photos")
    assert obj is not None
    generation = obj["metadata"]["generation"]
    seen = await batches.wait_status(
        "photos", lambda s: s.get("observedGeneration") == generation, within=60
    )
    assert seen["lastRetry"] == again["lastRetry"]
    assert seen["phase"] == "Succeeded"
    (event,) = await retry_events(batches, "photos")
    assert "30 failed items" in event


def failed_rows(failures_output: str) -> list[list[str]]:
    """The failed items `kubectl imagebatch failures --api` lists after its reason table."""
    rows = failures_output.split("ID\tATTEMPTS\tERROR\tURL\n", 1)[1]
    return [row.split("\t") for row in rows.splitlines()]


async def test_a_failed_batch_retried_through_the_api_after_the_fix_succeeds(
    operator: OperatorProcess,
    supervisor: object,
    batches: Batches,
    image_server: ImageServer,
    kube_cluster: KubeCluster,
    messaging: CommonSettings,
    namespace: str,
    tmp_path: Path,
) -> None:
    spec = {"source": {"urls": urls(image_server, 40, 10)}, "maxFailed": 2, "workers": GENTLE}
    await batches.create("broken", spec)
    kube = {"KUBECONFIG": str(kube_cluster.kubeconfig), "KUBE_NAMESPACE": namespace}
    async with api_process(messaging, tmp_path, **kube) as (api, _):  # starts as the batch runs
        failed = await batches.wait_phase("broken", "Failed", within=180)
        assert any(c["reason"] == "TooManyFailures" for c in failed["conditions"])
        await batches.wait_replicas("broken", 0)
        await batches.wait_status("broken", lambda s: "manifest" in s, what="a manifest")

        plugin = ("-n", namespace, "--api", api)
        listed = await asyncio.to_thread(
            kubectl_imagebatch, kube_cluster, "failures", "broken", *plugin
        )
        lines = await asyncio.to_thread(
            kubectl_imagebatch, kube_cluster, "manifest", "broken", *plugin
        )
        assert (listed.returncode, lines.returncode) == (0, 0), listed.stderr + lines.stderr

        image_server.missing_fixed = True
        async with httpx.AsyncClient(base_url=api, timeout=10) as client:
            answer = await client.post("/batches/broken/retry", params={"namespace": namespace})
    assert answer.status_code == 202, answer.text

    rows = failed_rows(listed.stdout)
    assert len(rows) > 2, "past maxFailed 2"
    assert all("404" in error and "/missing/" in url for _, _, error, url in rows)
    items = [json.loads(line) for line in lines.stdout.splitlines()]
    assert len(items) == 40
    assert sorted(i["id"] for i in items if i["status"] == "failed") == sorted(r[0] for r in rows)

    done = await batches.wait_phase("broken", "Succeeded", within=180)
    assert (done["succeeded"], done["failed"], done["total"]) == (40, 0, 40)
    assert done["lastRetry"]["request"] == answer.json()["request"]
    assert done["lastRetry"]["items"] == len(rows), "the failed items the api listed"
    kinds = {c["type"]: (c["status"], c["reason"]) for c in done["conditions"]}
    assert kinds["Failed"] == ("False", "RetryingFailed")
    assert kinds["Complete"] == ("True", "AllItemsDone")


async def test_an_operator_killed_right_after_kubectl_imagebatch_retry_retries_once(
    start_operator: OperatorFactory,
    kube_cluster: KubeCluster,
    connections_secret: str,
    supervisor: object,
    batches: Batches,
    image_server: ImageServer,
    messaging: CommonSettings,
    namespace: str,
) -> None:
    first = await start_operator()
    await batches.create(
        "killed", {"source": {"urls": urls(image_server, 40, 4)}, "workers": GENTLE}
    )
    done = await batches.wait_phase("killed", "Succeeded", within=180)
    assert done["failed"] == 4

    image_server.missing_fixed = True
    asked = await asyncio.to_thread(
        kubectl_imagebatch, kube_cluster, "retry", "killed", "-n", namespace
    )
    assert asked.returncode == 0, asked.stderr
    obj = await batches.get("killed")
    assert obj is not None
    request = obj["metadata"]["annotations"][ANNOTATION]
    assert f"{ANNOTATION}={request} " in f"{asked.stdout.strip()} "
    await first.kill()
    await start_operator()

    again = await batches.wait_status(
        "killed",
        lambda s: retried_as(request)(s) and s.get("phase") == "Succeeded",
        within=180,
        what="Succeeded after the retry",
    )
    assert (again["succeeded"], again["failed"], again["lastRetry"]["items"]) == (40, 0, 4)
    conn: asyncpg.Connection = await asyncpg.connect(messaging.database_url)
    try:
        record = await conn.fetchrow(
            "SELECT retry_request, retry_items FROM batches WHERE batch = $1",
            f"{namespace}/killed",
        )
    finally:
        await conn.close()
    assert tuple(record or ()) == (request, 4)
    missing = [f"/missing/{n}.jpg" for n in range(0, 40, 10)]
    assert {image_server.hits[path] for path in missing} == {2}, "each retried item ran once"
    assert len(await retry_events(batches, "killed")) <= 1
