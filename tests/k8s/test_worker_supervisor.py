"""The worker supervisor turns worker Deployments on a node-less API server (envtest) into real
worker processes: as many as `spec.replicas`, configured from the pod template and its Secret,
consuming the queue and writing thumbnails into the data folder; scaled, rolled, replaced and
stopped the way a Deployment's pods would be."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from PIL import Image

from imagebatch.core.broker import connect
from imagebatch.core.settings import CommonSettings
from imagebatch.devservers.supervisor import BATCH_LABEL, WorkerInfo, WorkerSupervisor
from tests.support.image_server import ImageServer
from tests.support.k8s import KubeCluster
from tests.support.worker_fixtures import image_server, job_body, publish

__all__ = ["image_server"]  # a fixture, used by name

SECRET = "imagebatch-connections"
NAME = "demo"


class Cluster:
    """The Secret and Deployment changes the operator (or a person) would make, through kubectl."""

    def __init__(self, kube: KubeCluster, namespace: str, folder: Path) -> None:
        self.kube = kube
        self.namespace = namespace
        self.folder = folder

    async def kubectl(self, *args: str) -> None:
        await asyncio.to_thread(self.kube.kubectl, "-n", self.namespace, *args)

    async def apply(self, manifest: dict[str, Any]) -> None:
        path = self.folder / f"{manifest['kind']}-{uuid.uuid4().hex[:6]}.json"
        path.write_text(json.dumps(manifest))
        await self.kubectl("apply", "-f", str(path))

    async def create_secret(self, messaging: CommonSettings) -> None:
        await self.apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": SECRET},
                "stringData": {
                    "RABBIT_URL": messaging.rabbit_url,
                    "DATABASE_URL": messaging.database_url,
                    "ALLOW_PRIVATE_SOURCES": "true",
                },
            }
        )

    async def create_deployment(
        self, messaging: CommonSettings, *, replicas: int, grace: int = 20
    ) -> None:
        await self.apply(worker_deployment(messaging, replicas=replicas, grace=grace))

    async def scale(self, replicas: int) -> None:
        await self.kubectl("scale", f"deployment/{NAME}", f"--replicas={replicas}")

    async def set_env(self, assignment: str) -> None:
        await self.kubectl("set", "env", f"deployment/{NAME}", "-c", "worker", assignment)

    async def delete_deployment(self) -> None:
        await self.kubectl("delete", "deployment", NAME, "--wait=false")


def worker_deployment(messaging: CommonSettings, *, replicas: int, grace: int) -> dict[str, Any]:
    """A worker Deployment shaped like the operator's (DESIGN.md, "Operator")."""
    labels = {BATCH_LABEL: NAME, "app.kubernetes.io/name": "imagebatch-worker"}
    env = {
        "QUEUE": messaging.queue,
        "ROUTING_KEY": messaging.routing_key,
        "EXCHANGE": messaging.exchange,
        "DLX": messaging.dlx,
        "DLQ": messaging.dlq,
        "OUTPUT_DIR": "/data",
    }
    container = {
        "name": "worker",
        "image": "imagebatch:dev",
        "command": ["imagebatch-worker"],
        "env": [{"name": k, "value": v} for k, v in env.items()],
        "envFrom": [{"secretRef": {"name": SECRET}}],
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": NAME, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "terminationGracePeriodSeconds": grace,
                    "containers": [container],
                    "volumes": [
                        {"name": "data", "persistentVolumeClaim": {"claimName": "imagebatch-data"}}
                    ],
                },
            },
        },
    }


@pytest.fixture
def cluster(kube_cluster: KubeCluster, namespace: str, tmp_path: Path) -> Cluster:
    return Cluster(kube_cluster, namespace, tmp_path)


@pytest.fixture
async def supervisor(
    kube_cluster: KubeCluster, namespace: str, tmp_path: Path
) -> AsyncIterator[WorkerSupervisor]:
    async with WorkerSupervisor(
        kube_cluster.kubeconfig,
        [namespace],
        tmp_path / "data",
        tmp_path / "logs",
        env_overrides={"TRANSFORM_THREADS": "2"},
    ) as running:
        yield running


def log_tails(supervisor: WorkerSupervisor, namespace: str) -> str:
    parts = []
    for path in supervisor.logs(namespace, NAME):
        text = path.read_text(errors="replace") if path.exists() else "(no log)"
        parts.append(f"--- {path.name}\n{text[-2000:]}")
    return "\n".join(parts) or "(no worker was started)"


async def eventually(
    check: Callable[[], Awaitable[bool] | bool],
    supervisor: WorkerSupervisor,
    namespace: str,
    what: str,
    within: float = 60.0,
) -> None:
    """Poll `check` until it holds; on timeout fail with the supervisor's view and worker logs."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if result if isinstance(result, bool) else await result:
            return
        if time.monotonic() > deadline:
            workers = [(w.name, w.state, w.returncode) for w in supervisor.workers(namespace, NAME)]
            reason = supervisor.reason(namespace, NAME)
            raise AssertionError(
                f"{what}: not within {within}s; workers {workers}, reason {reason!r}\n"
                f"{log_tails(supervisor, namespace)}"
            )
        await asyncio.sleep(0.2)


async def consumers(messaging: CommonSettings) -> int:
    """Consumers on the test's work queue, as RabbitMQ counts them (0 before it exists)."""
    connection = await connect(messaging.rabbit_url)
    async with connection:
        channel = await connection.channel()
        try:
            queue = await channel.declare_queue(messaging.queue, passive=True)
        except aio_pika.exceptions.ChannelNotFoundEntity:
            return 0
        return int(queue.declaration_result.consumer_count or 0)


async def consuming(
    supervisor: WorkerSupervisor, messaging: CommonSettings, namespace: str, n: int
) -> None:
    """Wait until `n` processes run and RabbitMQ counts `n` consumers on the queue: each worker is
    ready (a worker signalled before it installed its handlers would not drain, as in a pod)."""

    async def check() -> bool:
        return supervisor.running(namespace, NAME) == n and await consumers(messaging) == n

    await eventually(check, supervisor, namespace, f"{n} workers consume the queue")


def exited(workers: list[WorkerInfo]) -> list[int | None]:
    return [w.returncode for w in workers if w.state == "exited"]


async def test_each_replica_is_a_worker_that_consumes_the_queue_and_fills_the_data_folder(
    cluster: Cluster,
    supervisor: WorkerSupervisor,
    messaging: CommonSettings,
    image_server: ImageServer,
    namespace: str,
    tmp_path: Path,
) -> None:
    await cluster.create_secret(messaging)
    await cluster.create_deployment(messaging, replicas=2)

    await consuming(supervisor, messaging, namespace, 2)
    ports = {w.metrics_port for w in supervisor.workers(namespace, NAME)}
    assert len(ports) == 2, "each worker has a health server of its own"

    await publish(messaging, [job_body(image_server.url("/photo/1.jpg"), "photo-1", output="b")])
    thumbnail = tmp_path / "data" / "b" / "photo-1_256x256.jpg"
    await eventually(thumbnail.exists, supervisor, namespace, "the thumbnail is written")
    with Image.open(thumbnail) as image:
        assert image.size == (256, 192)


async def test_scaling_down_stops_the_newest_workers_first_and_each_drains_to_exit_0(
    cluster: Cluster, supervisor: WorkerSupervisor, messaging: CommonSettings, namespace: str
) -> None:
    await cluster.create_secret(messaging)
    await cluster.create_deployment(messaging, replicas=2)
    await consuming(supervisor, messaging, namespace, 2)
    oldest, newest = supervisor.workers(namespace, NAME)

    await cluster.scale(1)
    await eventually(
        lambda: exited(supervisor.workers(namespace, NAME)) == [0],
        supervisor, namespace, "one worker stopped",
    )  # fmt: skip
    [stopped] = [w for w in supervisor.workers(namespace, NAME) if w.state == "exited"]
    assert stopped.name == newest.name
    assert supervisor.running(namespace, NAME) == 1

    await cluster.scale(0)
    await eventually(
        lambda: exited(supervisor.workers(namespace, NAME)) == [0, 0],
        supervisor, namespace, "both workers stopped",
    )  # fmt: skip
    assert supervisor.running(namespace, NAME) == 0
    assert await consumers(messaging) == 0
    assert "stopped" in oldest.log.read_text()


async def test_a_missing_secret_starts_nothing_and_says_why_until_it_exists(
    cluster: Cluster, supervisor: WorkerSupervisor, messaging: CommonSettings, namespace: str
) -> None:
    await cluster.create_deployment(messaging, replicas=1)

    await eventually(
        lambda: supervisor.reason(namespace, NAME) is not None,
        supervisor, namespace, "a reason is given",
    )  # fmt: skip
    reason = supervisor.reason(namespace, NAME)
    assert reason is not None
    assert "CreateContainerConfigError" in reason
    assert SECRET in reason
    assert supervisor.workers(namespace, NAME) == []

    await cluster.create_secret(messaging)
    await eventually(
        lambda: supervisor.running(namespace, NAME) == 1,
        supervisor, namespace, "the worker starts once the Secret exists",
    )  # fmt: skip
    assert supervisor.reason(namespace, NAME) is None


async def test_deleting_the_deployment_stops_its_workers(
    cluster: Cluster, supervisor: WorkerSupervisor, messaging: CommonSettings, namespace: str
) -> None:
    await cluster.create_secret(messaging)
    await cluster.create_deployment(messaging, replicas=2)
    await consuming(supervisor, messaging, namespace, 2)

    await cluster.delete_deployment()

    await eventually(
        lambda: exited(supervisor.workers(namespace, NAME)) == [0, 0],
        supervisor, namespace, "both workers stopped",
    )  # fmt: skip


async def test_a_changed_container_env_rolls_the_workers_onto_it(
    cluster: Cluster, supervisor: WorkerSupervisor, messaging: CommonSettings, namespace: str
) -> None:
    await cluster.create_secret(messaging)
    await cluster.create_deployment(messaging, replicas=1)
    await consuming(supervisor, messaging, namespace, 1)
    [first] = supervisor.workers(namespace, NAME)
    assert "CONCURRENCY" not in first.env
    assert first.env["OUTPUT_DIR"] == str(supervisor.data_dir)
    assert first.env["RABBIT_URL"] == messaging.rabbit_url, "envFrom the Secret"
    assert first.env["TRANSFORM_THREADS"] == "2", "the supervisor's overrides"

    await cluster.set_env("CONCURRENCY=3")

    def rolled() -> bool:
        workers = supervisor.workers(namespace, NAME)
        running = [w for w in workers if w.state == "running"]
        return (
            exited(workers) == [0]
            and len(running) == 1
            and running[0].env.get("CONCURRENCY") == "3"
        )

    await eventually(rolled, supervisor, namespace, "the worker is replaced with CONCURRENCY=3")
    await consuming(supervisor, messaging, namespace, 1)


async def test_a_worker_that_dies_is_replaced(
    cluster: Cluster, supervisor: WorkerSupervisor, messaging: CommonSettings, namespace: str
) -> None:
    await cluster.create_secret(messaging)
    await cluster.create_deployment(messaging, replicas=1)

    await consuming(supervisor, messaging, namespace, 1)
    [first] = supervisor.workers(namespace, NAME)

    os.kill(first.pid, signal.SIGKILL)

    def replaced() -> bool:
        workers = supervisor.workers(namespace, NAME)
        return exited(workers) == [-signal.SIGKILL] and supervisor.running(namespace, NAME) == 1

    await eventually(replaced, supervisor, namespace, "a new worker replaces the killed one")
    await consuming(supervisor, messaging, namespace, 1)


async def test_a_worker_still_busy_after_the_grace_period_is_killed(
    cluster: Cluster,
    supervisor: WorkerSupervisor,
    messaging: CommonSettings,
    image_server: ImageServer,
    namespace: str,
) -> None:
    await cluster.create_secret(messaging)
    await cluster.create_deployment(messaging, replicas=1, grace=1)
    await consuming(supervisor, messaging, namespace, 1)
    # /slow.jpg answers after 60 s, and the worker would wait 25 s for it before giving up.
    await publish(messaging, [job_body(image_server.url("/slow.jpg"), "slow", output="b")])
    await eventually(
        lambda: image_server.hits["/slow.jpg"] == 1, supervisor, namespace, "the job is in flight"
    )

    began = time.monotonic()
    await cluster.scale(0)

    await eventually(
        lambda: exited(supervisor.workers(namespace, NAME)) == [-signal.SIGKILL],
        supervisor, namespace, "the worker is killed after its grace period", within=15,
    )  # fmt: skip
    assert time.monotonic() - began >= 1.0, "SIGTERM first, SIGKILL only after the grace period"
