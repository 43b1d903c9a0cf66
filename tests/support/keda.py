"""The real KEDA beside the real operator: a control plane of the session with KEDA's own CRDs
(from the pinned KEDA module, `make keda`), a KEDA operator process per test, and helpers to
read what KEDA made of a batch's ScaledObject.

The control plane is not the suite's `kube_cluster`: where KEDA's CRDs are installed, the
operator hands scaling to KEDA, and every other test expects the operator's own scaling.

Test modules import the fixtures they use by name (`from tests.support.keda import ...`).
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from kubernetes import client

from imagebatch.core.settings import CommonSettings
from imagebatch.devservers.keda import KedaOperator, keda_crds
from imagebatch.devservers.kube import KubeControlPlane
from imagebatch.devservers.process import log_tail
from tests.support.k8s import CRDS, KubeCluster, api_client
from tests.support.operator import (
    SECRET,
    Batches,
    OperatorFactory,
    eventually,
    operator_env,
    operators,
    supervise,
)
from tests.support.servers import STARTUP_SECONDS, ServerHandle

KEDA_GROUP, KEDA_VERSION = "keda.sh", "v1alpha1"
PAUSED = "autoscaling.keda.sh/paused-replicas"
POLLING_SECONDS = 1
COOLDOWN_SECONDS = 3
"""The operator's KEDA settings for the tests: KEDA looks at the queue every second and scales
to 0 three seconds after it last saw work."""


@pytest.fixture(scope="session")
def keda_cluster() -> Iterator[KubeCluster]:
    """etcd + kube-apiserver + kube-controller-manager (its garbage collector removes a deleted
    batch's children) with the ImageBatch CRD and KEDA's real CRDs."""
    plane = KubeControlPlane()
    try:
        plane.start(CRDS, *keda_crds())
        STARTUP_SECONDS["kubernetes with KEDA's CRDs"] = plane.startup_seconds
        yield KubeCluster(plane.kubeconfig, plane.kubectl(), started_here=True)
    finally:
        plane.close()


@pytest.fixture
def keda(keda_cluster: KubeCluster) -> Iterator[KedaOperator]:
    """The KEDA operator, watching every namespace; a test may stop it (`keda.stop()`)."""
    with KedaOperator(keda_cluster.kubeconfig) as running:
        yield running
        # Captured, so shown only when the test failed: what KEDA made of the test's objects.
        print(f"--- the KEDA operator's log ({running.log}) ---\n{log_tail(running.log, 80)}")


def with_credentials(url: str) -> str:
    """The management URL as KEDA's `host` takes it: credentials in it (the test broker's
    guest/guest unless it names its own) and the vhost as its path."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc if "@" in parts.netloc else f"guest:guest@{parts.netloc}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, "/%2F", "", ""))


@pytest.fixture
def keda_namespace(
    keda_cluster: KubeCluster, messaging: CommonSettings, rabbitmq_server: ServerHandle
) -> Iterator[str]:
    """A namespace of this test on the KEDA cluster, with the connections Secret: the workers'
    settings and the broker addresses KEDA's TriggerAuthentication points at."""
    name = f"k-{uuid.uuid4().hex[:8]}"
    keda_cluster.kubectl("create", "namespace", name)
    management = with_credentials(rabbitmq_server.extra["management_url"])
    keda_cluster.kubectl(
        "-n", name, "create", "secret", "generic", SECRET,
        f"--from-literal=RABBIT_URL={messaging.rabbit_url}",
        f"--from-literal=DATABASE_URL={messaging.database_url}",
        f"--from-literal=RABBIT_MANAGEMENT_URL={management}",
        "--from-literal=ALLOW_PRIVATE_SOURCES=true",
    )  # fmt: skip
    yield name
    keda_cluster.kubectl("delete", "namespace", name, "--wait=false")


@pytest.fixture
def keda_batches(keda_cluster: KubeCluster, keda_namespace: str) -> Iterator[Batches]:
    helper = Batches(keda_cluster, keda_namespace)
    yield helper
    helper.close()


@pytest.fixture
async def start_keda_operator(
    keda_cluster: KubeCluster,
    keda_namespace: str,
    messaging: CommonSettings,
    rabbitmq_server: ServerHandle,
    tmp_path: Path,
) -> AsyncIterator[OperatorFactory]:
    """`await start_keda_operator(http=True)` starts an ImageBatch operator on the KEDA cluster;
    with `http`, it asks KEDA for the management API (`protocol: http`)."""

    def env(*, http: bool = False, **extra: str) -> dict[str, str]:
        if http:
            extra["RABBIT_MANAGEMENT_URL"] = rabbitmq_server.extra["management_url"]
        return operator_env(
            keda_cluster,
            messaging,
            keda_namespace,
            KEDA_POLLING_INTERVAL_SECONDS=str(POLLING_SECONDS),
            KEDA_COOLDOWN_SECONDS=str(COOLDOWN_SECONDS),
            **extra,
        )

    async with operators(env, tmp_path) as start:
        yield start


@pytest.fixture
async def keda_supervisor(
    keda_cluster: KubeCluster, keda_namespace: str, tmp_path: Path
) -> AsyncIterator[Any]:
    """Local worker processes for as many replicas as KEDA gives each batch's Deployment."""
    async with supervise(keda_cluster, keda_namespace, tmp_path) as running:
        yield running


class KedaObjects:
    """The KEDA objects of one namespace, and the Events KEDA posted about them."""

    def __init__(self, cluster: KubeCluster, namespace: str) -> None:
        self.namespace = namespace
        self._stack = contextlib.ExitStack()
        api = self._stack.enter_context(api_client(cluster))
        self._objects = client.CustomObjectsApi(api)
        self._core = client.CoreV1Api(api)

    def close(self) -> None:
        self._stack.close()

    def _get(self, plural: str, name: str) -> dict[str, Any] | None:
        try:
            found: object = self._objects.get_namespaced_custom_object(
                KEDA_GROUP, KEDA_VERSION, self.namespace, plural, name
            )
            return cast(dict[str, Any], found)
        except client.exceptions.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    async def scaled_object(self, batch: str) -> dict[str, Any] | None:
        return await asyncio.to_thread(self._get, "scaledobjects", f"{batch}-worker")

    async def wait_scaled_object(
        self,
        batch: str,
        check: Callable[[dict[str, Any]], bool],
        *,
        what: str,
        within: float = 30.0,
    ) -> dict[str, Any]:
        """The batch's ScaledObject once it exists and `check` holds on it."""
        found = await eventually(
            lambda: self.scaled_object(batch),
            lambda o: o is not None and check(o),
            within=within,
            what=what,
        )
        assert found is not None
        return found

    async def wait_gone(self, batch: str, *, why: str, within: float = 60.0) -> None:
        """Until the batch's ScaledObject and TriggerAuthentication are both gone (deleted, and
        KEDA's finalizers cleared)."""
        await eventually(
            lambda: self.scaled_object(batch),
            lambda o: o is None,
            within=within,
            what=f"the ScaledObject gone {why}",
        )
        await eventually(
            lambda: self.trigger_authentication(batch),
            lambda o: o is None,
            within=within,
            what=f"the TriggerAuthentication gone {why}",
        )

    async def trigger_authentication(self, batch: str) -> dict[str, Any] | None:
        return await asyncio.to_thread(self._get, "triggerauthentications", f"{batch}-rabbitmq")

    async def warnings(self) -> list[tuple[str, str, str]]:
        """(kind, reason, message) of every Warning Event about a KEDA object here."""
        found = await asyncio.to_thread(
            self._core.list_namespaced_event, self.namespace, field_selector="type=Warning"
        )
        return [
            (str(e.involved_object.kind), str(e.reason), str(e.message))
            for e in found.items
            if e.involved_object.kind in ("ScaledObject", "TriggerAuthentication")
        ]


def condition(obj: dict[str, Any] | None, kind: str) -> str | None:
    """The status ("True"/"False"/"Unknown") of the condition `kind` of a KEDA object."""
    for entry in ((obj or {}).get("status") or {}).get("conditions") or []:
        if entry.get("type") == kind:
            return str(entry.get("status"))
    return None


@pytest.fixture
def keda_objects(keda_cluster: KubeCluster, keda_namespace: str) -> Iterator[KedaObjects]:
    helper = KedaObjects(keda_cluster, keda_namespace)
    yield helper
    helper.close()
