"""The operator as the tests run it: a real process on this test's namespace, database and
queue names, the connections Secret its workers read, and helpers to apply batches and wait on
their status.

Test modules import the fixtures they use by name (`from tests.support.operator import ...`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest
from kubernetes.client.exceptions import ApiException

from imagebatch.core.imagebatch import GROUP, PLURAL, VERSION
from imagebatch.core.settings import CommonSettings
from imagebatch.devservers.operator_process import OperatorProcess
from imagebatch.devservers.process import log_tail
from tests.support.k8s import KubeCluster, api_client

T = TypeVar("T")
SECRET = "imagebatch-connections"


def operator_env(
    cluster: KubeCluster, messaging: CommonSettings, namespace: str, **extra: str
) -> dict[str, str]:
    """The operator's settings for this test: its namespace alone, its names, fast refreshes."""
    return {
        "KUBECONFIG": str(cluster.kubeconfig),
        "WATCH_NAMESPACE": namespace,
        "DATABASE_URL": messaging.database_url,
        "RABBIT_URL": messaging.rabbit_url,
        "EXCHANGE": messaging.exchange,
        "DLX": messaging.dlx,
        "DLQ": messaging.dlq,
        "STATUS_INTERVAL_SECONDS": "0.5",
        "LOG_LEVEL": "INFO",
        **extra,
    }


class Batches:
    """ImageBatch objects (and their children) of one namespace, through the Python client."""

    def __init__(self, cluster: KubeCluster, namespace: str) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self._stack = contextlib.ExitStack()
        import kubernetes

        self._client = self._stack.enter_context(api_client(cluster))
        self.objects = kubernetes.client.CustomObjectsApi(self._client)
        self.apps = kubernetes.client.AppsV1Api(self._client)
        self.core = kubernetes.client.CoreV1Api(self._client)

    def close(self) -> None:
        self._stack.close()

    async def create(self, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ImageBatch",
            "metadata": {"name": name},
            "spec": dict(spec),
        }
        created: object = await asyncio.to_thread(
            self.objects.create_namespaced_custom_object,
            GROUP,
            VERSION,
            self.namespace,
            PLURAL,
            body,
        )
        return cast(dict[str, Any], created)

    async def get(self, name: str) -> dict[str, Any] | None:
        try:
            found: object = await asyncio.to_thread(
                self.objects.get_namespaced_custom_object,
                GROUP,
                VERSION,
                self.namespace,
                PLURAL,
                name,
            )
            return cast(dict[str, Any], found)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    async def status(self, name: str) -> dict[str, Any]:
        obj = await self.get(name)
        return dict((obj or {}).get("status") or {})

    async def patch_spec(self, name: str, spec: Mapping[str, Any]) -> None:
        await asyncio.to_thread(
            self.objects.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            self.namespace,
            PLURAL,
            name,
            {"spec": dict(spec)},
        )

    async def annotate(self, name: str, annotations: Mapping[str, str | None]) -> None:
        """Set (or, with None, remove) annotations of the batch."""
        await asyncio.to_thread(
            self.objects.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            self.namespace,
            PLURAL,
            name,
            {"metadata": {"annotations": dict(annotations)}},
        )

    async def delete(self, name: str) -> None:
        await asyncio.to_thread(
            self.objects.delete_namespaced_custom_object,
            GROUP,
            VERSION,
            self.namespace,
            PLURAL,
            name,
        )

    async def deployment(self, name: str) -> Any | None:
        try:
            return await asyncio.to_thread(
                self.apps.read_namespaced_deployment, f"{name}-worker", self.namespace
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    async def wait_replicas(self, name: str, count: int, *, within: float = 30.0) -> Any:
        """The batch's worker Deployment once it asks for `count` replicas."""
        return await eventually(
            lambda: self.deployment(name),
            lambda d: d is not None and d.spec.replicas == count,
            within=within,
            what=f"{name}'s Deployment at {count} replicas",
        )

    async def events(self, name: str) -> list[tuple[str, str]]:
        """(reason, message) of the Events posted about the batch, oldest first."""
        found = await asyncio.to_thread(
            self.core.list_namespaced_event,
            self.namespace,
            field_selector=f"involvedObject.name={name}",
        )
        return [(str(e.reason), str(e.message)) for e in found.items]

    async def wait_status(
        self,
        name: str,
        check: Callable[[dict[str, Any]], bool],
        *,
        within: float = 60.0,
        what: str = "the expected status",
    ) -> dict[str, Any]:
        """Poll the batch's status until `check` holds (AssertionError naming the last status)."""
        status: dict[str, Any] = {}
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            status = await self.status(name)
            if check(status):
                return status
            await asyncio.sleep(0.2)
        raise AssertionError(f"{name}: no {what} within {within:.0f}s; last status: {status}")

    async def wait_phase(self, name: str, phase: str, *, within: float = 60.0) -> dict[str, Any]:
        return await self.wait_status(
            name, lambda s: s.get("phase") == phase, within=within, what=f"phase {phase}"
        )


async def eventually(
    probe: Callable[[], Awaitable[T]],
    check: Callable[[T], bool],
    *,
    within: float = 30.0,
    what: str = "the condition",
) -> T:
    """Poll `probe()` until `check` holds on its result."""
    deadline = time.monotonic() + within
    value = await probe()
    while not check(value):
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {within:.0f}s; last seen: {value!r}")
        await asyncio.sleep(0.2)
        value = await probe()
    return value


@pytest.fixture
def batches(kube_cluster: KubeCluster, namespace: str) -> Iterator[Batches]:
    helper = Batches(kube_cluster, namespace)
    yield helper
    helper.close()


def create_connections_secret(
    cluster: KubeCluster, namespace: str, messaging: CommonSettings, **extra: str
) -> str:
    """The Secret worker pods take RABBIT_URL/DATABASE_URL (and `extra`, e.g. the AWS
    variables of an object store) from, and the operator the namespace's source database
    (`SOURCE_DATABASE_URL`: the test's own database); the local workers trust the loopback
    image server, as a dev cluster trusts its sample server."""
    values = {
        "RABBIT_URL": messaging.rabbit_url,
        "DATABASE_URL": messaging.database_url,
        "SOURCE_DATABASE_URL": messaging.database_url,
        "ALLOW_PRIVATE_SOURCES": "true",
        **extra,
    }
    literals = [f"--from-literal={key}={value}" for key, value in values.items()]
    cluster.kubectl("-n", namespace, "create", "secret", "generic", SECRET, *literals)
    return SECRET


@pytest.fixture
def connections_secret(kube_cluster: KubeCluster, namespace: str, messaging: CommonSettings) -> str:
    return create_connections_secret(kube_cluster, namespace, messaging)


OperatorFactory = Callable[..., Awaitable[OperatorProcess]]


@pytest.fixture
async def start_operator(
    kube_cluster: KubeCluster, messaging: CommonSettings, namespace: str, tmp_path: Path
) -> AsyncIterator[OperatorFactory]:
    """`await start_operator(**env)` starts an operator on this test's namespace; every one
    started is stopped at the end."""
    async with operators(
        lambda **extra: operator_env(kube_cluster, messaging, namespace, **extra), tmp_path
    ) as start:
        yield start


@contextlib.asynccontextmanager
async def operators(
    env: Callable[..., dict[str, str]], folder: Path
) -> AsyncIterator[OperatorFactory]:
    """A factory of operator processes, `env(**extra)` giving each one's settings, its log in
    `folder`; every one started is stopped on exit, and the tail of its log printed (captured:
    shown only when the test failed)."""
    started: list[OperatorProcess] = []

    async def start(**extra: str) -> OperatorProcess:
        process = OperatorProcess(env(**extra), folder / f"operator-{len(started)}.log")
        started.append(process)
        return await process.start()

    try:
        yield start
    finally:
        for process in started:
            await process.stop()
            print(f"--- {process.log.name} ---\n{log_tail(process.log, 60)}")


@pytest.fixture
async def operator(start_operator: OperatorFactory, connections_secret: str) -> OperatorProcess:
    return await start_operator()


WORKER_OVERRIDES = {
    "TRANSFORM_THREADS": "1",
    "STARTUP_TIMEOUT_SECONDS": "30",
    "CONNECT_TIMEOUT_SECONDS": "2",
    "READ_TIMEOUT_SECONDS": "5",
    "LOG_LEVEL": "WARNING",
}
"""Local workers share two cores with everything else: one thumbnail thread each."""


def supervise(cluster: KubeCluster, namespace: str, folder: Path) -> Any:
    """Local worker processes for the batches' Deployments (pods never start under envtest);
    `async with` it."""
    from imagebatch.devservers.supervisor import WorkerSupervisor

    return WorkerSupervisor(
        cluster.kubeconfig,
        [namespace],
        folder / "data",
        folder / "worker-logs",
        env_overrides=WORKER_OVERRIDES,
    )


@pytest.fixture
async def supervisor(
    kube_cluster: KubeCluster, namespace: str, tmp_path: Path
) -> AsyncIterator[Any]:
    async with supervise(kube_cluster, namespace, tmp_path) as running:
        yield running


def outputs(data_dir: Path) -> list[Path]:
    """Thumbnail files written under `data_dir` (temp files excluded)."""
    return sorted(p for p in data_dir.rglob("*") if p.is_file() and not p.name.startswith("."))
