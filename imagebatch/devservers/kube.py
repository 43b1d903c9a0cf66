"""A real Kubernetes control plane without nodes, the way controller-runtime's envtest runs one:
etcd, kube-apiserver and (for garbage collection and Deployments → ReplicaSets)
kube-controller-manager as local processes. Pods are never scheduled: nothing runs containers.

Binaries come from `KUBEBUILDER_ASSETS`, else from the cache `hack/envtest/build.sh` fills.
"""

from __future__ import annotations

import base64
import json
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from imagebatch.devservers.certs import ClusterCerts, write_cluster_certs
from imagebatch.devservers.process import (
    ServerStartError,
    ThrowawayServer,
    find_cached,
    free_port,
    log_tail,
    spawn,
    stop_group,
    wait_until,
)

REQUIRED_BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager")
CONTROLLERS = ",".join(
    [
        "garbage-collector-controller",
        "deployment-controller",
        "replicaset-controller",
        "namespace-controller",
        "serviceaccount-controller",
    ]
)


def find_assets() -> Path:
    """The folder with etcd/kube-apiserver/kube-controller-manager, or a clear error."""
    return find_cached(
        env="KUBEBUILDER_ASSETS",
        cache="envtest",
        needs=REQUIRED_BINARIES,
        what="envtest binaries (etcd, kube-apiserver, kube-controller-manager)",
        make="envtest",
    )


@dataclass
class KubeControlPlane(ThrowawayServer):
    """etcd + kube-apiserver (+ kube-controller-manager) on free loopback ports.

    After `start()`, `kubeconfig` is an admin kubeconfig (client certificate in system:masters)
    for kubectl and the Python clients.
    """

    assets: Path = field(default_factory=find_assets)
    controller_manager: bool = True
    etcd_port: int = field(default_factory=free_port)
    etcd_peer_port: int = field(default_factory=free_port)
    port: int = field(default_factory=free_port)
    startup_seconds: float = 0.0

    def __post_init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="imagebatch-kube-"))
        self.kubeconfig = self.base / "kubeconfig"
        self._processes: list[subprocess.Popen[bytes]] = []
        self.certs: ClusterCerts | None = None

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def kubectl(self) -> str:
        """A kubectl binary: the version-matched one beside the assets, else the one on PATH."""
        local = self.assets / "kubectl"
        if local.is_file():
            return str(local)
        found = shutil.which("kubectl")
        if not found:
            raise ServerStartError("kubectl not found: run `make envtest`")
        return found

    def start(self, *manifests: Path) -> KubeControlPlane:
        """Start the control plane; `manifests` (e.g. the CRDs) are applied before the
        controller-manager starts, so its garbage collector knows their kinds from the first
        moment instead of after its next discovery round (30 s)."""
        began = time.monotonic()
        self.certs = write_cluster_certs(self.base / "pki")
        self._start_etcd()
        self._start_apiserver()
        self._write_kubeconfig()
        if manifests:
            self.apply(*manifests)
        if self.controller_manager:
            self._start_controller_manager()
        self.startup_seconds = time.monotonic() - began
        return self

    def _start_etcd(self) -> None:
        log = self.base / "etcd.log"
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        client = f"http://127.0.0.1:{self.etcd_port}"
        process = spawn(
            [
                str(self.assets / "etcd"),
                "--name=imagebatch",
                f"--data-dir={self.base / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=imagebatch={peer}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
            log=log,
        )
        self._processes.append(process)

        def healthy() -> bool:
            with urllib.request.urlopen(f"{client}/health", timeout=1) as response:
                return bool(json.load(response).get("health") == "true")

        wait_until(healthy, timeout=30, what="etcd", process=process, log=log)

    def _ssl_context(self) -> ssl.SSLContext:
        assert self.certs is not None
        context = ssl.create_default_context(cafile=str(self.certs.ca_cert))
        context.load_cert_chain(str(self.certs.admin_cert), str(self.certs.admin_key))
        return context

    def _start_apiserver(self) -> None:
        assert self.certs is not None
        log = self.base / "kube-apiserver.log"
        certs = self.certs
        process = spawn(
            [
                str(self.assets / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.port}",
                f"--cert-dir={self.base / 'apiserver'}",
                f"--tls-cert-file={certs.server_cert}",
                f"--tls-private-key-file={certs.server_key}",
                f"--client-ca-file={certs.ca_cert}",
                "--service-cluster-ip-range=10.0.0.0/24",
                f"--service-account-issuer={self.server}",
                f"--service-account-key-file={certs.sa_pub}",
                f"--service-account-signing-key-file={certs.sa_key}",
                "--authorization-mode=RBAC",
                "--allow-privileged=true",
                # No token controller hands out service-account tokens here: as envtest does, do
                # not require them at admission.
                "--disable-admission-plugins=ServiceAccount",
                "--enable-priority-and-fairness=false",
                "--profiling=false",
                "--v=0",
            ],
            log=log,
        )
        self._processes.append(process)
        context = self._ssl_context()

        def ready() -> bool:
            with urllib.request.urlopen(f"{self.server}/readyz", timeout=2, context=context) as r:
                return bool(r.status == 200)

        wait_until(
            ready, timeout=90, what="kube-apiserver", process=process, log=log, interval=0.25
        )

    def _write_kubeconfig(self) -> None:
        assert self.certs is not None

        def b64(path: Path) -> str:
            return base64.b64encode(path.read_bytes()).decode()

        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "envtest",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority-data": b64(self.certs.ca_cert),
                    },
                }
            ],
            "users": [
                {
                    "name": "admin",
                    "user": {
                        "client-certificate-data": b64(self.certs.admin_cert),
                        "client-key-data": b64(self.certs.admin_key),
                    },
                }
            ],
            "contexts": [{"name": "envtest", "context": {"cluster": "envtest", "user": "admin"}}],
            "current-context": "envtest",
        }
        self.kubeconfig.write_text(json.dumps(config, indent=2))
        self.kubeconfig.chmod(0o600)

    def _start_controller_manager(self) -> None:
        assert self.certs is not None
        log = self.base / "kube-controller-manager.log"
        process = spawn(
            [
                str(self.assets / "kube-controller-manager"),
                f"--kubeconfig={self.kubeconfig}",
                f"--controllers={CONTROLLERS}",
                "--leader-elect=false",
                "--secure-port=0",
                "--use-service-account-credentials=false",
                f"--root-ca-file={self.certs.ca_cert}",
                f"--service-account-private-key-file={self.certs.sa_key}",
                "--concurrent-gc-syncs=5",
                "--v=0",
            ],
            log=log,
        )
        self._processes.append(process)
        # It serves no endpoint here; it is "ready" once it has stayed up past its flag parsing.
        time.sleep(1.0)
        if process.poll() is not None:
            tail = log_tail(log)
            code = process.returncode
            raise ServerStartError(f"kube-controller-manager exited with {code}:\n{tail}")

    def apply(self, *paths: Path, wait_established: bool = True) -> None:
        """`kubectl apply` the manifests (e.g. the CRDs) and wait for CRDs to be established."""
        argv = [self.kubectl(), f"--kubeconfig={self.kubeconfig}", "apply", "--server-side"]
        for path in paths:
            argv += ["-f", str(path)]
        self._kubectl_or_fail(argv)
        if wait_established:
            self._kubectl_or_fail(
                [
                    self.kubectl(),
                    f"--kubeconfig={self.kubeconfig}",
                    "wait",
                    "--for=condition=Established",
                    "--timeout=60s",
                    "crd",
                    "--all",
                ]
            )

    @staticmethod
    def _kubectl_or_fail(argv: list[str]) -> None:
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ServerStartError(f"{' '.join(argv[2:])} failed: {result.stderr or result.stdout}")

    def close(self) -> None:
        for process in reversed(self._processes):
            stop_group(process, timeout=15)
        self._processes.clear()
        shutil.rmtree(self.base, ignore_errors=True)
