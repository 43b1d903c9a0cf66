"""ImageBatch with its thumbnails in a bucket, end to end: the operator, the API server, local
worker processes for the batch's Deployment, RabbitMQ, PostgreSQL and a real S3 server
(versitygw) — the setup a worker fleet spread over nodes uses, where no volume is shared.

The connections Secret carries the standard AWS variables beside RABBIT_URL/DATABASE_URL, the
way `manifests/s3/` ships it.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
from collections.abc import Callable
from typing import Any

import aiohttp
import asyncpg
import pytest
from PIL import Image

from imagebatch.core.settings import CommonSettings
from imagebatch.devservers.operator_process import OperatorProcess
from imagebatch.devservers.s3 import S3Server
from imagebatch.devservers.supervisor import WorkerSupervisor
from tests.support.image_server import ImageServer
from tests.support.k8s import KubeCluster
from tests.support.operator import (
    Batches,
    OperatorFactory,
    create_connections_secret,
    eventually,
)
from tests.support.photos import photos
from tests.support.worker_fixtures import queue_depth

pytestmark = pytest.mark.slow

GENTLE = {"maxReplicas": 2, "messagesPerReplica": 250, "concurrency": 8, "prefetch": 16}
TWO_SIZES = [
    {"thumbnail": {"width": 200, "height": 200}},
    {"thumbnail": {"width": 64, "height": 64, "format": "png"}},
]


@pytest.fixture
def s3_connections(
    kube_cluster: KubeCluster, namespace: str, messaging: CommonSettings, s3_server: S3Server
) -> str:
    """The connections Secret with the S3 server's AWS variables (an object-storage install)."""
    return create_connections_secret(kube_cluster, namespace, messaging, **s3_server.aws_env())


@pytest.fixture
async def s3_operator(start_operator: OperatorFactory, s3_connections: str) -> OperatorProcess:
    return await start_operator()


def decodes(server: S3Server, bucket: str, key: str) -> str:
    response = server.request("GET", f"/{bucket}/{key}")
    assert response.status == 200, key
    with Image.open(io.BytesIO(response.body)) as image:
        image.load()
        return str(image.format)


def thumbnail_keys(server: S3Server, bucket: str, prefix: str) -> list[str]:
    """The batch's thumbnails under `prefix`: everything but the manifest.jsonl the operator
    writes beside them when the batch ends (tested on its own in tests/integration)."""
    return [k for k in server.object_keys(bucket, prefix) if not k.endswith("/manifest.jsonl")]


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str, str]]:
    return {
        c["type"]: (c["status"], c.get("reason", ""), c.get("message", ""))
        for c in status.get("conditions") or []
    }


async def completions(database_url: str, batch: str) -> dict[str, int]:
    conn: asyncpg.Connection = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT status, count(*) AS n, max(attempts) AS most FROM jobs"
            " WHERE batch = $1 GROUP BY status",
            batch,
        )
    finally:
        await conn.close()
    found = {r["status"]: int(r["n"]) for r in rows}
    found["most_attempts"] = max((int(r["most"]) for r in rows), default=0)
    return found


async def test_a_batch_of_500_writes_1000_thumbnails_to_its_bucket_and_mounts_no_volume(
    s3_operator: OperatorProcess,
    supervisor: WorkerSupervisor,
    batches: Batches,
    image_server: ImageServer,
    s3_server: S3Server,
    s3_bucket: str,
    namespace: str,
) -> None:
    urls = [image_server.url(f"/photo/{n}.jpg") for n in range(500)]
    await batches.create(
        "to-bucket",
        {
            "source": {"urls": urls},
            "operations": TWO_SIZES,
            "output": {"url": f"s3://{s3_bucket}/fleet"},
            "workers": GENTLE,
        },
    )
    deployment = await eventually(
        lambda: batches.deployment("to-bucket"),
        lambda found: found is not None,
        what="the worker Deployment",
    )
    assert deployment is not None
    pod = deployment.spec.template.spec
    claims = [v.name for v in pod.volumes or [] if v.persistent_volume_claim is not None]
    assert not claims, "a bucket's workers share no volume"
    assert all(v.empty_dir is not None for v in pod.volumes or []), "only scratch space (/tmp)"
    env = {e.name: e.value for e in pod.containers[0].env}
    assert env["OUTPUT_URL"] == f"s3://{s3_bucket}/fleet"

    status = await batches.wait_phase("to-bucket", "Succeeded", within=240)

    assert {k: status[k] for k in ("total", "published", "succeeded", "failed")} == {
        "total": 500,
        "published": 500,
        "succeeded": 500,
        "failed": 0,
    }
    assert status["output"] == f"s3://{s3_bucket}/fleet/{namespace}/to-bucket/"
    keys = thumbnail_keys(s3_server, s3_bucket, f"fleet/{namespace}/to-bucket/")
    assert len(keys) == 1000
    assert sum(k.endswith("_200x200.jpg") for k in keys) == 500
    assert sum(k.endswith("_64x64.png") for k in keys) == 500
    assert {decodes(s3_server, s3_bucket, k) for k in keys[::49]} == {"JPEG", "PNG"}
    assert s3_server.multipart_uploads(s3_bucket) == []


async def test_a_postgres_batch_whose_rows_name_objects_in_a_bucket_completes(
    s3_operator: OperatorProcess,
    supervisor: WorkerSupervisor,
    batches: Batches,
    s3_server: S3Server,
    s3_bucket: str,
    messaging: CommonSettings,
    namespace: str,
) -> None:
    originals = photos()
    for n in range(30):
        s3_server.request("PUT", f"/{s3_bucket}/in/{n}.jpg", body=originals[n % len(originals)])
    conn: asyncpg.Connection = await asyncpg.connect(messaging.database_url)
    try:
        await conn.execute("CREATE TABLE bucket_photos (id bigserial PRIMARY KEY, url text)")
        await conn.executemany(
            "INSERT INTO bucket_photos (url) VALUES ($1)",
            [(f"s3://{s3_bucket}/in/{n}.jpg",) for n in range(30)],
        )
    finally:
        await conn.close()
    await batches.create(
        "from-bucket",
        {
            "source": {
                "postgres": {"table": "bucket_photos", "limit": 30, "onlyUnprocessed": False}
            },
            "output": {"url": f"s3://{s3_bucket}/out"},
            "workers": GENTLE,
        },
    )
    status = await batches.wait_phase("from-bucket", "Succeeded", within=120)
    assert (status["succeeded"], status["failed"]) == (30, 0)
    assert len(thumbnail_keys(s3_server, s3_bucket, f"out/{namespace}/from-bucket/")) == 30


async def test_the_store_stopped_for_20s_mid_batch_degrades_the_batch_which_then_completes(
    s3_operator: OperatorProcess,
    supervisor: WorkerSupervisor,
    batches: Batches,
    image_server: ImageServer,
    s3_server: S3Server,
    s3_bucket: str,
    messaging: CommonSettings,
    namespace: str,
) -> None:
    urls = [image_server.url(f"/photo/{n}.jpg") for n in range(300)]
    await batches.create(
        "outage",
        {
            "source": {"urls": urls},
            "output": {"url": f"s3://{s3_bucket}"},
            "workers": {**GENTLE, "maxReplicas": 1},
            "retry": {"maxAttempts": 2, "backoffSeconds": 1},
        },
    )
    await batches.wait_status("outage", lambda s: int(s.get("succeeded") or 0) >= 20, within=120)
    seen_degraded: tuple[str, str, str] | None = None
    not_ready: list[str] = []
    with s3_server.stopped():
        loop = asyncio.get_running_loop()
        until = loop.time() + 20
        while loop.time() < until:
            status = await batches.status("outage")
            degraded = conditions(status).get("Degraded")
            if degraded and degraded[0] == "True":
                seen_degraded = degraded
            not_ready += [r for r in await readiness(supervisor, namespace, "outage") if r]
            await asyncio.sleep(1)
    assert seen_degraded is not None, "Degraded while the store was down"
    assert seen_degraded[1] == "OutputUnavailable"
    assert "cannot reach the object store" in seen_degraded[2]
    assert any("output store unavailable" in reason for reason in not_ready), not_ready

    status = await batches.wait_phase("outage", "Succeeded", within=240)
    assert (status["succeeded"], status["failed"]) == (300, 0)
    counts = await completions(messaging.database_url, f"{namespace}/outage")
    assert counts["most_attempts"] == 1, "no attempt spent on our own outage"
    assert await queue_depth(messaging, messaging.dlq) == 0
    await eventually(
        lambda: batches.status("outage"),
        lambda s: conditions(s).get("Degraded", ("False",))[0] == "False",
        within=30,
        what="Degraded cleared after the outage",
    )


async def test_wrong_credentials_say_so_and_dead_letter_nothing(
    start_operator: OperatorFactory,
    kube_cluster: KubeCluster,
    supervisor: WorkerSupervisor,
    batches: Batches,
    image_server: ImageServer,
    s3_server: S3Server,
    s3_bucket: str,
    messaging: CommonSettings,
    namespace: str,
) -> None:
    aws = {**s3_server.aws_env(), "AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    create_connections_secret(kube_cluster, namespace, messaging, **aws)
    await start_operator()
    await degraded_and_nothing_lost(
        batches, image_server, messaging, "bad-creds", f"s3://{s3_bucket}", "credentials refused"
    )


async def test_a_missing_bucket_says_so_and_dead_letters_nothing(
    s3_operator: OperatorProcess,
    supervisor: WorkerSupervisor,
    batches: Batches,
    image_server: ImageServer,
    messaging: CommonSettings,
) -> None:
    await degraded_and_nothing_lost(
        batches,
        image_server,
        messaging,
        "no-bucket",
        "s3://no-such-bucket-here",
        "bucket 'no-such-bucket-here' does not exist",
    )


async def degraded_and_nothing_lost(
    batches: Batches,
    image_server: ImageServer,
    messaging: CommonSettings,
    name: str,
    output_url: str,
    words: str,
) -> None:
    urls = [image_server.url(f"/photo/{n}.jpg") for n in range(5)]
    await batches.create(
        name,
        {
            "source": {"urls": urls},
            "output": {"url": output_url},
            "workers": {**GENTLE, "maxReplicas": 1},
        },
    )
    status = await batches.wait_status(name, lambda s: "Degraded" in conditions(s), within=120)
    state, reason, message = conditions(status)["Degraded"]
    assert (state, reason) == ("True", "OutputUnavailable")
    assert words in message
    assert status["failed"] == 0
    assert status["phase"] == "Running"
    assert await queue_depth(messaging, messaging.dlq) == 0


async def test_workers_killed_mid_batch_leave_every_object_once_and_whole(
    s3_operator: OperatorProcess,
    supervisor: WorkerSupervisor,
    batches: Batches,
    image_server: ImageServer,
    s3_server: S3Server,
    s3_bucket: str,
    messaging: CommonSettings,
    namespace: str,
) -> None:
    urls = [image_server.url(f"/photo/{n}.jpg") for n in range(300)]
    await batches.create(
        "killed",
        {"source": {"urls": urls}, "output": {"url": f"s3://{s3_bucket}"}, "workers": GENTLE},
    )
    kills = 0
    for threshold in (40, 110, 180):
        await batches.wait_status("killed", reached(threshold), within=120)
        workers = supervisor.workers(namespace, "killed-worker")
        running = [w for w in workers if w.state == "running"]
        if running:
            os.killpg(running[0].pid, signal.SIGKILL)
            kills += 1
    status = await batches.wait_phase("killed", "Succeeded", within=240)
    assert kills >= 2
    assert (status["succeeded"], status["failed"]) == (300, 0)
    counts = await completions(messaging.database_url, f"{namespace}/killed")
    assert counts.get("completed") == 300, "exactly one completion per item"
    keys = thumbnail_keys(s3_server, s3_bucket, f"{namespace}/killed/")
    assert len(keys) == len(set(keys)) == 300
    assert {decodes(s3_server, s3_bucket, k) for k in keys} == {"JPEG"}
    assert s3_server.multipart_uploads(s3_bucket) == []


def reached(succeeded: int) -> Callable[[dict[str, Any]], bool]:
    return lambda status: int(status.get("succeeded") or 0) >= succeeded


async def readiness(supervisor: WorkerSupervisor, namespace: str, name: str) -> list[str]:
    """The /readyz reason of each running worker of the batch ('' when ready)."""
    reasons = []
    async with aiohttp.ClientSession() as session:
        for worker in supervisor.workers(namespace, f"{name}-worker"):
            if worker.state != "running":
                continue
            try:
                url = f"http://127.0.0.1:{worker.metrics_port}/readyz"
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as response:
                    body = await response.json()
            except (aiohttp.ClientError, TimeoutError):
                continue
            reasons.append("" if body.get("ready") else str(body.get("reason", "")))
    return reasons
