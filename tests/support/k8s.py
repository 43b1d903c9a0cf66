"""The Kubernetes API server of the test run.

With `KUBECONFIG` set, tests use that cluster (a kind cluster, say). Otherwise they start the
envtest control plane — etcd, kube-apiserver and kube-controller-manager as local processes — and
install the CRDs from `crds/`. Either way the kubeconfig is exported (`KUBECONFIG`) for kubectl
and the Python clients.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.servers import STARTUP_SECONDS

REPO = Path(__file__).resolve().parents[2]
CRDS = REPO / "crds"


@dataclass(frozen=True)
class KubeCluster:
    """How tests reach the API server."""

    kubeconfig: Path
    kubectl_binary: str
    started_here: bool

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.kubectl_binary, f"--kubeconfig={self.kubeconfig}", *args],
            capture_output=True,
            text=True,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result


TEST_CONTEXT_PREFIXES = (
    "kind-",
    "k3d-",
    "envtest",
    "minikube",
    "docker-desktop",
    "rancher-desktop",
)


def refuse_unless_test_cluster(cluster: KubeCluster) -> None:
    """Tests create and delete namespaces: never let a stray KUBECONFIG point them at production.

    Set IMAGEBATCH_TEST_ANY_CLUSTER=1 to use a context whose name does not look like a test one.
    """
    context = cluster.kubectl("config", "current-context").stdout.strip()
    if (
        context.startswith(TEST_CONTEXT_PREFIXES)
        or os.environ.get("IMAGEBATCH_TEST_ANY_CLUSTER") == "1"
    ):
        return
    raise RuntimeError(
        f"KUBECONFIG's current context {context!r} does not look like a test cluster "
        f"(expected a name starting with one of {TEST_CONTEXT_PREFIXES}); unset KUBECONFIG to use "
        "the local envtest control plane, or set IMAGEBATCH_TEST_ANY_CLUSTER=1"
    )


@pytest.fixture(scope="session")
def kube_cluster() -> Iterator[KubeCluster]:
    external = os.environ.get("KUBECONFIG")
    if external:
        import shutil

        kubectl = shutil.which("kubectl")
        if kubectl is None:
            raise RuntimeError("KUBECONFIG is set but kubectl is not on PATH")
        cluster = KubeCluster(Path(external), kubectl, started_here=False)
        refuse_unless_test_cluster(cluster)
        cluster.kubectl("apply", "--server-side", "-f", str(CRDS))
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
        yield cluster
        return

    from imagebatch.devservers.kube import KubeControlPlane

    began = time.monotonic()
    plane = KubeControlPlane()
    try:
        plane.start(CRDS)
        STARTUP_SECONDS["kubernetes (etcd + kube-apiserver + controller-manager)"] = (
            time.monotonic() - began
        )
        previous = os.environ.get("KUBECONFIG")
        os.environ["KUBECONFIG"] = str(plane.kubeconfig)
        try:
            yield KubeCluster(plane.kubeconfig, plane.kubectl(), started_here=True)
        finally:
            if previous is None:
                os.environ.pop("KUBECONFIG", None)
            else:
                os.environ["KUBECONFIG"] = previous
    finally:
        plane.close()


@pytest.fixture
def namespace(kube_cluster: KubeCluster) -> Iterator[str]:
    """A namespace of this test alone, deleted afterwards (without waiting for it to go)."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    kube_cluster.kubectl("create", "namespace", name)
    yield name
    kube_cluster.kubectl("delete", "namespace", name, "--wait=false")


@contextlib.contextmanager
def api_client(cluster: KubeCluster) -> Iterator[Any]:
    """A kubernetes.client.ApiClient for `cluster`, closed afterwards."""
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(cluster.kubeconfig), client_configuration=configuration
    )
    api = client.ApiClient(configuration)
    try:
        yield api
    finally:
        api.close()  # type: ignore[no-untyped-call]
