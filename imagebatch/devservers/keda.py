"""The real KEDA operator as a local process against a local control plane, the way the envtest
binaries run: built from the Go module proxy by `hack/keda/build.sh`, pointed at a kubeconfig,
and bound to loopback only.

Run outside a cluster, KEDA needs a few things a Deployment would give it: `WATCH_NAMESPACE=""`
(all namespaces) and `KEDA_CLUSTER_OBJECT_NAMESPACE` in its environment, and a `--cert-dir` with
`ca.crt`/`tls.crt`/`tls.key`, because its internal metrics gRPC server always serves TLS. Its
three listeners default to every interface, so each gets a free 127.0.0.1 port. Leader election
and certificate rotation stay off (their defaults): there is one KEDA, and no Secret to rotate.

KEDA scales a target between 0 and 1 itself; 1 → N goes through an HPA and KEDA's metrics
adapter, an aggregated API the API server will not route to a loopback address, so that part
does not happen here.

Binaries come from `KEDA_DIR`, else from the cache `hack/keda/build.sh` fills; KEDA's own CRDs
are beside the binary in `crds/`.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from imagebatch.devservers.certs import write_serving_certs
from imagebatch.devservers.process import (
    OneProcessServer,
    find_cached,
    free_port,
    http_ok,
    spawn,
    wait_until,
)

BINARY = "keda"
CLUSTER_OBJECT_NAMESPACE = "keda"
"""Where KEDA looks for the Secrets of ClusterTriggerAuthentications; ImageBatch uses none."""


def find_keda() -> Path:
    """The folder with the `keda` binary and its `crds/`, or a clear error."""
    return find_cached(
        env="KEDA_DIR", cache="keda", needs=[BINARY, "crds"], what="the KEDA operator", make="keda"
    )


def keda_crds(assets: Path | None = None) -> list[Path]:
    """KEDA's own CustomResourceDefinitions, as the pinned KEDA release ships them."""
    return sorted(((assets or find_keda()) / "crds").glob("*.yaml"))


@dataclass
class KedaOperator(OneProcessServer):
    """One KEDA operator watching every namespace of the cluster behind `kubeconfig`.

    `stop()` ends the process and keeps its log (a test can stop KEDA and go on); `close()`
    also removes its folder.
    """

    kubeconfig: Path
    assets: Path = field(default_factory=find_keda)
    health_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    metrics_service_port: int = field(default_factory=free_port)
    startup_seconds: float = 0.0

    def __post_init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="imagebatch-keda-"))
        self.log = self.base / "keda.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def ready_url(self) -> str:
        return f"http://127.0.0.1:{self.health_port}/readyz"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> KedaOperator:
        began = time.monotonic()
        certs = write_serving_certs(self.base / "certs", "keda-operator")
        self._process = spawn(
            [
                str(self.assets / BINARY),
                f"--kubeconfig={self.kubeconfig}",
                f"--cert-dir={certs}",
                f"--health-probe-bind-address=127.0.0.1:{self.health_port}",
                f"--metrics-bind-address=127.0.0.1:{self.metrics_port}",
                f"--metrics-service-bind-address=127.0.0.1:{self.metrics_service_port}",
                f"--ca-dir={certs}",
                "--leader-elect=false",
                "--enable-cert-rotation=false",
                "--zap-log-level=info",
                "--zap-encoder=console",
            ],
            log=self.log,
            env={
                "WATCH_NAMESPACE": "",
                "KEDA_CLUSTER_OBJECT_NAMESPACE": CLUSTER_OBJECT_NAMESPACE,
                "POD_NAMESPACE": CLUSTER_OBJECT_NAMESPACE,
                # No proxy variable of the test environment may send KEDA's scaler traffic away
                # from loopback.
                "NO_PROXY": "*",
                "HTTP_PROXY": "",
                "HTTPS_PROXY": "",
            },
            cwd=self.base,
        )
        wait_until(
            lambda: http_ok(self.ready_url),
            timeout=60,
            what="the KEDA operator",
            process=self._process,
            log=self.log,
            interval=0.2,
        )
        self.startup_seconds = time.monotonic() - began
        return self

    stop_timeout = 15.0
    """KEDA stops scaling at SIGTERM; its finalizers stay where they are."""
